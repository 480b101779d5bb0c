"""OpenAI's whisper package as the third backend, end to end (transcribe, extract, predict), offline.

The checkpoint is built here in that package's own format ({"dims": ModelDimensions
fields, "model_state_dict"}), random and tiny: its text is arbitrary, so these
tests check the plumbing, the checks made before a batch and what the recipe records.
"""

from __future__ import annotations

import json
import shutil

import pytest

pytest.importorskip("whisper", reason="openai-whisper (installed --no-deps by `make install`) is not installed")
from extractors.errors import ExtractionError, ModelNotCachedError

import media as tm
from tiny_whisper import build_tiny_whisper

OW = ["--whisper-backend", "openai-whisper"]


def build_openai_checkpoint(path, english_only: bool = False):
    """A 1-layer, 8-wide Whisper saved as whisper.load_model reads it; n_vocab decides multilinguality."""
    import dataclasses

    import torch
    from whisper.model import ModelDimensions, Whisper

    dims = ModelDimensions(n_mels=80, n_audio_ctx=1500, n_audio_state=8, n_audio_head=2, n_audio_layer=1,
                           n_vocab=51864 if english_only else 51865, n_text_ctx=64, n_text_state=8, n_text_head=2,
                           n_text_layer=1)  # fmt: skip
    torch.manual_seed(0)
    model = Whisper(dims)
    torch.save({"dims": dataclasses.asdict(dims), "model_state_dict": model.state_dict()}, path)
    return path


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("ow")
    return {
        "multi": build_openai_checkpoint(root / "tiny.pt"),
        "en": build_openai_checkpoint(root / "tiny-en.pt", english_only=True),
    }


@pytest.fixture(scope="module")
def speech(tmp_path_factory):
    return tm.make_face_clip(tmp_path_factory.mktemp("ow-media") / "talk.mp4", 1.5, audio="speech")


def _cli(args):
    from typer.testing import CliRunner

    from deepmlf_cli.app import app

    return CliRunner().invoke(app, args)


def test_transcribe_with_openai_whisper_never_runs_ffmpeg(checkpoints, speech, monkeypatch):
    import whisper.audio

    from extractors.transcript import WhisperTranscriber

    def no_ffmpeg(*args, **kwargs):
        raise AssertionError(f"openai-whisper ran a program: {args}")

    monkeypatch.setattr(whisper.audio, "run", no_ffmpeg)  # its load_audio's `ffmpeg` call
    res = _cli(["transcribe", str(speech), "--whisper-model", str(checkpoints["multi"]), *OW, "--format", "json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["source"] == f"whisper:{checkpoints['multi']}" and isinstance(out["text"], str)
    w = WhisperTranscriber(str(checkpoints["multi"]), "openai-whisper", language="zh")
    t = w.transcribe(speech)
    assert t.language == "zh" and all(0.0 <= s.start <= s.end <= 1.6 for s in t.segments)
    assert w.transcribe(speech).text == t.text  # temperature 0 only: the same clip, the same text
    window = w.transcribe(speech, start=0.5, end=1.0)
    assert all(s.end <= 0.5 + 1e-6 for s in window.segments)


def test_uncached_name_fails_at_once_in_one_line_and_a_cached_one_loads(checkpoints, tmp_path, monkeypatch):
    import socket

    from extractors.transcript import WhisperTranscriber

    attempts = []

    def no_network(*args, **kwargs):
        attempts.append(args)
        raise OSError("network access during an offline model check")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    with pytest.raises(ModelNotCachedError, match=r"tiny.en is not in openai-whisper's cache .*tiny.en.pt") as err:
        WhisperTranscriber("tiny.en", "openai-whisper").check()
    assert "\n" not in str(err.value) and attempts == []
    with pytest.raises(ModelNotCachedError, match="does not exist; pass --whisper-model PATH.pt"):
        WhisperTranscriber(str(tmp_path / "missing.pt"), "openai-whisper").check()
    (tmp_path / "cache" / "whisper").mkdir(parents=True)
    shutil.copy(checkpoints["en"], tmp_path / "cache" / "whisper" / "tiny.en.pt")
    info = WhisperTranscriber("tiny.en", "openai-whisper").check()
    assert info.english_only and info.location == str(tmp_path / "cache" / "whisper" / "tiny.en.pt")
    res = _cli(["transcribe", str(checkpoints["en"]), "--whisper-model", "base", *OW])
    assert (
        res.exit_code == 1
        and "not in openai-whisper's cache" in res.output
        and len(res.output.strip().splitlines()) == 1
    )


def test_language_translate_and_format_checks_match_the_other_backends(checkpoints, speech, tmp_path):
    from extractors.transcript import WhisperTranscriber

    multi = WhisperTranscriber(str(checkpoints["multi"]), "openai-whisper").check()
    assert not multi.english_only and {"en", "zh"} <= multi.languages and len(multi.languages) == 99
    for extra, message in ((["--language", "zh"], "English-only and cannot transcribe --language zh"),
                           (["--translate"], "English-only and cannot translate"),
                           (["--language", "xx"], "English-only and cannot transcribe --language xx")):  # fmt: skip
        res = _cli(["transcribe", str(speech), "--whisper-model", str(checkpoints["en"]), *OW, *extra])
        assert res.exit_code == 1 and message in res.output and len(res.output.strip().splitlines()) == 1, res.output
    res = _cli(["transcribe", str(speech), "--whisper-model", str(checkpoints["multi"]), *OW, "--language", "xx"])
    assert res.exit_code == 1 and "does not know --language xx" in res.output
    res = _cli(
        [
            "transcribe",
            str(speech),
            "--whisper-model",
            str(checkpoints["multi"]),
            *OW,
            "--translate",
            "--format",
            "json",
        ]
    )
    assert res.exit_code == 0, res.output  # a multilingual checkpoint translates
    # extract checks once, before any clip's audio and face work
    res = _cli(["extract", str(speech.parent), "--out", str(tmp_path / "ds"), "--whisper-model", str(checkpoints["en"]), *OW,
                "--language", "zh", "--face", "none", "-q"])  # fmt: skip
    assert res.exit_code == 1 and "English-only and cannot transcribe --language zh" in res.output, res.output
    assert len(res.output.strip().splitlines()) == 1 and not list((tmp_path / "ds").rglob("*.npz"))
    # a checkpoint given to another backend, another backend's folder given to this one: named, one line
    res = _cli(["transcribe", str(speech), "--whisper-model", str(checkpoints["multi"])])
    assert res.exit_code == 1 and "use --whisper-backend openai-whisper" in res.output, res.output
    hf = build_tiny_whisper(tmp_path / "hf")
    res = _cli(["transcribe", str(speech), "--whisper-model", str(hf), *OW])
    assert res.exit_code == 1 and "use --whisper-backend transformers" in res.output, res.output
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ExtractionError, match="junk.pt: not an openai-whisper checkpoint"):
        WhisperTranscriber(str(tmp_path / "junk.pt"), "openai-whisper").check()


def test_extract_and_predict_with_openai_whisper(checkpoints, speech, tmp_path, tiny_gpt2):
    from importlib import metadata

    # a labelled corpus whose last row has no text: openai-whisper transcribes it
    root = tm.make_mmsa_corpus(tmp_path / "c", (4, 2, 2))
    lines = (root / "label.csv").read_text().splitlines()
    lines[-1] = lines[-1].replace("clip number 8", "")
    (root / "label.csv").write_text("\n".join(lines) + "\n")
    model = str(checkpoints["multi"])
    args = ["extract", str(root), "--out", str(tmp_path / "ds"), "--whisper-model", model, *OW, "--json"]
    res = _cli(args)  # the random model's text fails openai-whisper's own decode scores: refused like an empty one
    assert res.exit_code == 1 and json.loads(res.stdout)["failed"] == 1, res.output
    reason = (tmp_path / "ds" / "errors.tsv").read_text().splitlines()[1]
    assert "vid0$_$0008" in reason and "refused by Whisper's hallucination guards (" in reason
    res = _cli([*args, "--allow-missing"])  # kept on request; the resumed run adds only that clip
    assert res.exit_code == 0, res.output
    sources = {c["key"]: c["text_source"] for c in json.loads(res.stdout)["clips"]}
    assert sources["vid0$_$0008"] == f"whisper:{model}" and sources["vid1$_$0001"] == "given"
    recipe = json.loads((tmp_path / "ds" / "manifest.json").read_text())["recipe"]
    assert recipe["transcript"]["backend"] == "openai-whisper" and recipe["transcript"]["model"] == model
    assert recipe["libraries"]["openai-whisper"] == metadata.version("openai-whisper")

    res = _cli(["train", "-d", str(tmp_path / "ds"), "--preset", "sims", "--lm", str(tiny_gpt2), "--mm-layers", "1..3", "--n-fusion", "2",
                "--epochs", "1", "--batch-size", "2", "--grad-accum", "1", "--out", str(tmp_path / "run"), "--json"])  # fmt: skip
    assert res.exit_code == 0, res.output
    # predict takes the Whisper its recipe names: the openai-whisper checkpoint
    res = _cli(["predict", str(speech), "--model", str(tmp_path / "run"), "--allow-missing", "--json"])
    assert res.exit_code == 0, res.output
    [result] = json.loads(res.stdout)
    assert result["status"] == "ok" and result["transcript_source"] == f"whisper:{model}"
    res = _cli(
        [
            "predict",
            str(speech),
            "--model",
            str(tmp_path / "run"),
            "--whisper-model",
            str(checkpoints["en"]),
            "--translate",
            "-q",
        ]
    )
    assert res.exit_code == 1 and "English-only and cannot translate" in res.output
