"""transformers' Whisper (WhisperForConditionalGeneration): the default backend, a saved model folder or a cached hub id."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ..choices import WhisperBackend
from ..errors import ModelNotCachedError
from .base import MULTILINGUAL_VOCAB, WHISPER_RATE, Segment, TranscriberBackend, clip_segment, read_json


class TransformersWhisper(TranscriberBackend):
    """Greedy decoding with timestamps; audio over 30 s goes through transformers' sequential long-form decoding."""

    name = WhisperBackend.transformers
    format = "transformers"
    package = "transformers"
    module = "transformers"
    describes = "transformers"

    def parameters(self) -> dict[str, Any]:
        return {"decoding": "greedy", "timestamps": True}

    def languages(self, location: Path) -> tuple[bool, frozenset[str] | None]:
        # generate's own rule first (generation_config's is_multilingual and lang_to_id); a model that
        # ships no generation config is judged by its vocabulary size, Whisper's rule (config.json).
        gen = read_json(location / "generation_config.json")
        gen = gen if isinstance(gen, dict) else {}
        if gen.get("is_multilingual") is False:
            return True, frozenset({"en"})
        langs = gen.get("lang_to_id")
        if isinstance(langs, dict) and langs:
            return False, frozenset(k.strip("<|>") for k in langs)
        config = read_json(location / "config.json")
        size = config.get("vocab_size") if isinstance(config, dict) else None
        if gen.get("is_multilingual") is None and isinstance(size, int) and size < MULTILINGUAL_VOCAB:
            return True, frozenset({"en"})
        return False, None

    def load(self, location: Path) -> Any:
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        from transformers import WhisperForConditionalGeneration, WhisperProcessor
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # library code does not draw on the user's terminal
        try:
            processor = WhisperProcessor.from_pretrained(location)
            model = WhisperForConditionalGeneration.from_pretrained(location)
        except OSError as exc:
            raise ModelNotCachedError(f"cannot load Whisper from {location}: {str(exc).splitlines()[0]}") from None
        model.eval()
        return processor, model

    def transcribe(
        self, impl: Any, samples: np.ndarray, language: str | None, task: str
    ) -> tuple[str, list[Segment], str | None]:
        import torch

        processor, model = impl
        long_form = samples.size > 30 * WHISPER_RATE
        # Whisper sees 30 s windows; longer audio goes through its own sequential
        # long-form decoding, which needs the whole, unpadded feature sequence.
        inputs = processor(
            samples,
            sampling_rate=WHISPER_RATE,
            return_tensors="pt",
            truncation=not long_form,
            padding="longest" if long_form else "max_length",
            return_attention_mask=True,
        )
        kwargs: dict[str, Any] = {"return_timestamps": True, "task": task}
        if language:
            kwargs["language"] = language
        if long_form:
            kwargs["attention_mask"] = inputs["attention_mask"]
        with torch.inference_mode():  # a ValueError (e.g. a language it does not know) becomes one line upstream
            tokens = model.generate(inputs["input_features"], **kwargs)
        if not isinstance(tokens, torch.Tensor):
            tokens = tokens["sequences"]
        ids = tokens[0].tolist()
        segments = segments_from_tokens(processor.tokenizer, ids, samples.size / WHISPER_RATE)
        if not long_form:  # one 30 s window, one decode: its confidence is every segment's
            avg_logprob, no_speech = decode_confidence(
                model, processor.tokenizer, inputs["input_features"], tokens, language, task
            )
            for seg in segments:
                seg.avg_logprob, seg.no_speech_prob = avg_logprob, no_speech
        return processor.tokenizer.decode(ids, skip_special_tokens=True).strip(), segments, language


def decode_confidence(
    model, tokenizer, features, tokens, language: str | None, task: str
) -> tuple[float | None, float | None]:
    """(average log-probability of the generated tokens, no-speech probability at <|startoftranscript|>),
    as openai-whisper defines them, from teacher-forced passes over the prompt generate used and its output
    (the raw logits: openai-whisper scores after its timestamp rules, which only ever raise a kept token).

    generate returns only the generated tokens: the prompt (SOT, then for a multilingual model the
    language, detected at SOT as Whisper does, and the task) is rebuilt from the generation config.
    """
    import torch

    gen = model.generation_config
    sot = tokenizer.convert_tokens_to_ids("<|startoftranscript|>")
    vocab = tokenizer.get_vocab()
    with torch.inference_mode():
        first = model(input_features=features, decoder_input_ids=torch.tensor([[sot]])).logits[0, 0].float()  # (V,)
    nospeech = next((vocab[t] for t in ("<|nospeech|>", "<|nocaptions|>") if t in vocab), None)
    no_speech = float(torch.softmax(first, dim=-1)[nospeech]) if nospeech is not None else None
    prompt = [sot]
    lang_to_id, task_to_id = getattr(gen, "lang_to_id", None) or {}, getattr(gen, "task_to_id", None) or {}
    if lang_to_id and task in task_to_id:
        lang_id = lang_to_id.get(f"<|{language}|>") if language else None
        if lang_id is None:  # detected: the most likely language token at SOT
            lang_id = max(lang_to_id.values(), key=lambda i: float(first[i]))
        prompt += [lang_id, task_to_id[task]]
    generated = tokens[0].tolist()
    if not generated:
        return None, no_speech
    full = torch.tensor([prompt + generated])  # (1, P+G)
    with torch.inference_mode():
        logits = model(input_features=features, decoder_input_ids=full).logits[0].float()  # (P+G, V)
    logprobs = torch.log_softmax(logits[len(prompt) - 1 : -1], dim=-1)  # (G, V): each predicts the next token
    total = float(logprobs.gather(1, torch.tensor(generated)[:, None]).sum())
    return total / (len(generated) + 1), no_speech  # openai-whisper's normalisation: sum / (length + 1)


def segments_from_tokens(tokenizer, ids: list[int], duration: float) -> list[Segment]:
    """Split a generated sequence at its timestamp tokens into (start, end, text) segments.

    Timestamp tokens follow <|notimestamps|> in Whisper's vocabulary, 0.02 s apart.
    Long-form output restarts the clock at every 30 s window; the offset is tracked.
    """
    ts_begin = tokenizer.convert_tokens_to_ids("<|notimestamps|>") + 1
    special = set(tokenizer.all_special_ids)
    segments: list[Segment] = []
    offset, start, last, text_ids = 0.0, None, 0.0, []
    for tok in ids:
        if tok >= ts_begin:
            t = (tok - ts_begin) * 0.02 + offset
            if start is None:
                if t < last - 1e-6:  # clock restarted: a new 30 s window
                    offset += last if last > 0 else 0.0
                    t = (tok - ts_begin) * 0.02 + offset
                start = t
            else:
                text = tokenizer.decode(text_ids, skip_special_tokens=True).strip()
                if text:
                    # A model's timestamps are predictions: keep them inside the audio and ordered.
                    segments.append(Segment(*clip_segment(start, t, duration), text))
                start, text_ids, last = None, [], t
        elif tok not in special:
            text_ids.append(tok)
    if text_ids:
        text = tokenizer.decode(text_ids, skip_special_tokens=True).strip()
        if text:
            segments.append(Segment(*clip_segment(start if start is not None else last, duration, duration), text))
    return segments
