"""A tiny random Whisper built offline (transformers format), and its faster-whisper conversion."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def build_tiny_whisper(folder: Path, max_target_positions: int = 64, english_only: bool = False) -> Path:
    """A 1-layer, 16-wide Whisper (multilingual: en, zh) with a byte-level BPE tokenizer and Whisper's special tokens.

    english_only: saved as an English-only model (is_multilingual False, no language tokens in generate).
    max_target_positions: 448 for CTranslate2, which decodes up to Whisper's full length.
    """
    import torch
    from transformers import (
        GenerationConfig,
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
        WhisperProcessor,
        WhisperTokenizer,
    )
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    vocab = {ch: i for i, ch in enumerate(bytes_to_unicode().values())}
    merges = []
    for a, b in [("h", "e"), ("l", "l"), ("he", "ll"), ("Ġ", "w")]:
        merges.append((a, b))  # transformers 5 takes merges as pairs
        vocab[a + b] = len(vocab)
    specials = ["<|endoftext|>", "<|startoftranscript|>", "<|en|>", "<|zh|>", "<|translate|>", "<|transcribe|>",
                "<|startoflm|>", "<|startofprev|>", "<|nospeech|>", "<|notimestamps|>"]  # fmt: skip
    specials += [f"<|{i * 0.02:.2f}|>" for i in range(1501)]  # timestamp tokens follow <|notimestamps|>
    for s in specials:
        vocab[s] = len(vocab)
    eot = "<|endoftext|>"
    tok = WhisperTokenizer(vocab=vocab, merges=merges, unk_token=eot, bos_token=eot, eos_token=eot, pad_token=eot)
    tok.add_special_tokens({"additional_special_tokens": specials[1:]})
    ids = {s: tok.convert_tokens_to_ids(s) for s in specials[:10]}
    cfg = WhisperConfig(
        vocab_size=len(tok), num_mel_bins=80, d_model=16, encoder_layers=1, decoder_layers=1,
        encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32,
        max_source_positions=1500, max_target_positions=max_target_positions, pad_token_id=ids[eot], bos_token_id=ids[eot],
        eos_token_id=ids[eot], decoder_start_token_id=ids["<|startoftranscript|>"],
    )  # fmt: skip
    torch.manual_seed(0)
    model = WhisperForConditionalGeneration(cfg)
    model.generation_config = GenerationConfig(
        decoder_start_token_id=ids["<|startoftranscript|>"], eos_token_id=ids[eot], pad_token_id=ids[eot],
        bos_token_id=ids[eot], max_length=24, no_timestamps_token_id=ids["<|notimestamps|>"],
        **({} if english_only else {
            "lang_to_id": {"<|en|>": ids["<|en|>"], "<|zh|>": ids["<|zh|>"]},
            "task_to_id": {"transcribe": ids["<|transcribe|>"], "translate": ids["<|translate|>"]},
        }),
        is_multilingual=not english_only, begin_suppress_tokens=[], suppress_tokens=[], max_initial_timestamp_index=50,
        prev_sot_token_id=ids["<|startofprev|>"],
    )  # fmt: skip
    model.save_pretrained(folder)
    features = WhisperFeatureExtractor(feature_size=80)
    WhisperProcessor(feature_extractor=features, tokenizer=tok).save_pretrained(folder)
    features.save_pretrained(folder)  # preprocessor_config.json too: CTranslate2's converter copies it
    return folder


def convert_to_faster_whisper(source: Path, out: Path) -> Path:
    """A faster-whisper (CTranslate2) folder from a saved transformers Whisper, converted in a subprocess.

    Converting and then decoding in one process was seen to abort (free(): invalid pointer).
    """
    code = (
        "import sys, ctranslate2.converters as c; "
        "c.TransformersConverter(sys.argv[1], copy_files=['tokenizer.json', 'preprocessor_config.json']).convert(sys.argv[2], force=True)"
    )
    subprocess.run([sys.executable, "-c", code, str(source), str(out)], check=True, capture_output=True, text=True)
    return out
