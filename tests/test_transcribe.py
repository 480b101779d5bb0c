"""Whisper plumbing with a tiny random Whisper saved and loaded through from_pretrained(dir).

A random model says nothing meaningful: these tests check that text and
segments come back, language/task reach generate, silence and missing models
are handled, and the `deepmlf transcribe` command's outputs.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
import media as tm  # noqa: E402

from extractors.errors import ExtractionError, ModelNotCachedError  # noqa: E402


def build_tiny_whisper(folder: Path) -> Path:
    """A 1-layer, 16-wide multilingual Whisper with a byte-level BPE tokenizer and Whisper's special tokens."""
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
        max_source_positions=1500, max_target_positions=64, pad_token_id=ids[eot], bos_token_id=ids[eot],
        eos_token_id=ids[eot], decoder_start_token_id=ids["<|startoftranscript|>"],
    )  # fmt: skip
    torch.manual_seed(0)
    model = WhisperForConditionalGeneration(cfg)
    model.generation_config = GenerationConfig(
        decoder_start_token_id=ids["<|startoftranscript|>"], eos_token_id=ids[eot], pad_token_id=ids[eot],
        bos_token_id=ids[eot], max_length=24, no_timestamps_token_id=ids["<|notimestamps|>"],
        lang_to_id={"<|en|>": ids["<|en|>"], "<|zh|>": ids["<|zh|>"]},
        task_to_id={"transcribe": ids["<|transcribe|>"], "translate": ids["<|translate|>"]},
        is_multilingual=True, begin_suppress_tokens=[], suppress_tokens=[], max_initial_timestamp_index=50,
        prev_sot_token_id=ids["<|startofprev|>"],
    )  # fmt: skip
    model.save_pretrained(folder)
    WhisperProcessor(feature_extractor=WhisperFeatureExtractor(feature_size=80), tokenizer=tok).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tiny_whisper(tmp_path_factory):
    return build_tiny_whisper(tmp_path_factory.mktemp("tiny-whisper"))


@pytest.fixture(scope="module")
def speech_clip(tmp_path_factory):
    d = tmp_path_factory.mktemp("speech")
    return {
        "speech": tm.make_face_clip(d / "talk.mp4", 1.5, audio="speech"),
        "silent": tm.make_silent_clip(d / "quiet.mp4", 1.0),
        "video_only": tm.make_video_only(d / "mute.mp4", 0.5),
    }


def test_whisper_returns_text_and_ordered_segments(tiny_whisper, speech_clip):
    from extractors.transcript import WhisperTranscriber

    for language, task in ((None, "transcribe"), ("zh", "transcribe"), ("en", "translate")):
        t = WhisperTranscriber(str(tiny_whisper), language=language, task=task).transcribe(speech_clip["speech"])
        assert isinstance(t.text, str) and t.source == f"whisper:{tiny_whisper}" and t.language == language
        for seg in t.segments:
            assert 0.0 <= seg.start <= seg.end <= 1.6 and isinstance(seg.text, str)
    window = WhisperTranscriber(str(tiny_whisper)).transcribe(speech_clip["speech"], start=0.5, end=1.0)
    assert all(s.end <= 0.5 + 1e-6 for s in window.segments)


def test_whisper_refuses_bad_options_and_skips_silence(tiny_whisper, speech_clip):
    from extractors.transcript import WhisperTranscriber

    with pytest.raises(ExtractionError, match="transcribe or translate"):
        WhisperTranscriber(str(tiny_whisper), task="summarise")
    with pytest.raises(ExtractionError, match="Whisper"):
        WhisperTranscriber(str(tiny_whisper), language="fr").transcribe(speech_clip["speech"])  # not in this model
    w = WhisperTranscriber(str(tiny_whisper))
    assert w.transcribe(speech_clip["silent"]).source == "silence"
    assert w.transcribe(speech_clip["video_only"]).source == "no-audio"


def test_uncached_hub_model_fails_fast_in_one_line(monkeypatch, tmp_path):
    import time

    from extractors.transcript import WhisperTranscriber, resolve_whisper_model

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    t0 = time.perf_counter()
    with pytest.raises(ModelNotCachedError, match="not cached locally") as err:
        resolve_whisper_model("openai/whisper-small")
    assert "\n" not in str(err.value) and time.perf_counter() - t0 < 5
    with pytest.raises(ModelNotCachedError, match="does not exist"):
        WhisperTranscriber(str(tmp_path / "nowhere" / "model")).transcribe(np.ones(16000, np.float32) * 0.1)


def test_pipeline_uses_whisper_only_when_no_text(tiny_whisper, speech_clip):
    from extractors.pipeline import extract_clip
    from extractors.recipe import build_recipe

    recipe = build_recipe(face="none", whisper_model=str(tiny_whisper), language="zh")
    clip = extract_clip(speech_clip["speech"], recipe)
    assert clip.transcript.source.startswith("whisper:") and clip.vision.shape == (0, 0)
    assert extract_clip(speech_clip["speech"], recipe, transcript="given text").text == "given text"


def test_transcribe_command_formats(tiny_whisper, speech_clip, tmp_path):
    from typer.testing import CliRunner

    from deepmlf_cli.app import app

    runner = CliRunner()
    res = runner.invoke(app, ["transcribe", str(speech_clip["speech"]), "--whisper-model", str(tiny_whisper), "--format", "json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["source"].startswith("whisper:")
    out = tmp_path / "texts"
    folder = speech_clip["speech"].parent
    (folder / "quiet.srt").write_text("1\n00:00:00,000 --> 00:00:01,000\nsidecar words\n")
    res = runner.invoke(app, ["transcribe", str(folder), "--out", str(out), "--format", "srt", "-q", "--whisper-model", str(tiny_whisper)])
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in out.iterdir()) == ["mute.srt", "quiet.srt", "talk.srt"]
    assert "sidecar words" in (out / "quiet.srt").read_text()
    res = runner.invoke(app, ["transcribe", str(speech_clip["speech"]), "--whisper-model", str(tmp_path / "missing")])
    assert res.exit_code == 1 and "does not exist" in res.output and "Traceback" not in res.output
