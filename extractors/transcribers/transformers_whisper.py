"""transformers' Whisper (WhisperForConditionalGeneration): the default backend, a saved model folder or a cached hub id."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ..choices import WhisperBackend
from ..errors import ModelNotCachedError
from .base import WHISPER_RATE, Segment, TranscriberBackend, clip_segment, read_json


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
        gen = read_json(location / "generation_config.json")
        if not isinstance(gen, dict):
            return False, None
        if gen.get("is_multilingual") is False:
            return True, frozenset({"en"})
        langs = gen.get("lang_to_id")
        if isinstance(langs, dict) and langs:
            return False, frozenset(k.strip("<|>") for k in langs)
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

    def transcribe(self, impl: Any, samples: np.ndarray, language: str | None, task: str) -> tuple[str, list[Segment], str | None]:
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
        return processor.tokenizer.decode(ids, skip_special_tokens=True).strip(), segments, language


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
