"""Whisper plumbing with a tiny random Whisper saved and loaded through from_pretrained(dir).

A random model says nothing meaningful: these tests check that text and
segments come back, language/task reach generate, silence and missing models
are handled, and the `deepmlf transcribe` command's outputs.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from extractors.errors import ExtractionError, ModelNotCachedError

import media as tm
from tiny_whisper import build_tiny_whisper


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
    """Fast because it never tries the network (each hub lookup would retry for ~20 s): any socket
    connection or name lookup during the check fails the test, instead of a wall-clock bound."""
    import socket
    import time

    from extractors.transcript import WhisperTranscriber, resolve_whisper_model

    attempts = []

    def no_network(*args, **kwargs):
        attempts.append(args)
        raise OSError("network access during an offline model check")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    monkeypatch.setattr(time, "sleep", no_network)  # no retry loop either
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotCachedError, match="not cached locally") as err:
        resolve_whisper_model("openai/whisper-small")
    assert "\n" not in str(err.value) and attempts == []
    with pytest.raises(ModelNotCachedError, match="does not exist"):
        WhisperTranscriber(str(tmp_path / "nowhere" / "model")).transcribe(np.ones(16000, np.float32) * 0.1)


def test_pipeline_uses_whisper_only_when_no_text(tiny_whisper, speech_clip):
    from extractors.feature_recipe import build_recipe
    from extractors.pipeline import extract_clip

    recipe = build_recipe(face="none", whisper_model=str(tiny_whisper), language="zh")
    clip = extract_clip(speech_clip["speech"], recipe)
    assert clip.transcript.source.startswith("whisper:") and clip.vision.shape == (0, 0)
    assert extract_clip(speech_clip["speech"], recipe, transcript="given text").text == "given text"


def test_transcribe_command_formats(tiny_whisper, speech_clip, tmp_path):
    from typer.testing import CliRunner

    from deepmlf_cli.app import app

    runner = CliRunner()
    res = runner.invoke(
        app, ["transcribe", str(speech_clip["speech"]), "--whisper-model", str(tiny_whisper), "--format", "json"]
    )
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["source"].startswith("whisper:")
    out = tmp_path / "texts"
    folder = speech_clip["speech"].parent
    (folder / "quiet.srt").write_text("1\n00:00:00,000 --> 00:00:01,000\nsidecar words\n")
    res = runner.invoke(
        app,
        ["transcribe", str(folder), "--out", str(out), "--format", "srt", "-q", "--whisper-model", str(tiny_whisper)],
    )
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in out.iterdir()) == ["mute.srt", "quiet.srt", "talk.srt"]
    assert "sidecar words" in (out / "quiet.srt").read_text()
    res = runner.invoke(app, ["transcribe", str(speech_clip["speech"]), "--whisper-model", str(tmp_path / "missing")])
    assert res.exit_code == 1 and "does not exist" in res.output and "Traceback" not in res.output


# --------------------------------------------------------------------------- issue 11: the model's languages
@pytest.fixture(scope="module")
def english_whisper(tmp_path_factory):
    return build_tiny_whisper(tmp_path_factory.mktemp("tiny-whisper-en"), english_only=True)


def test_language_and_translate_are_checked_against_the_model(tiny_whisper, english_whisper, speech_clip):
    from typer.testing import CliRunner

    from deepmlf_cli.app import app
    from extractors.transcript import WhisperTranscriber

    assert WhisperTranscriber(str(tiny_whisper), language="zh").check().languages == {"en", "zh"}
    assert WhisperTranscriber(str(tiny_whisper), language="Chinese").language == "zh"  # names as Whisper knows them
    with pytest.raises(ExtractionError, match=r"does not know --language fr; use one of en, zh"):
        WhisperTranscriber(str(tiny_whisper), language="fr").check()
    assert WhisperTranscriber(str(english_whisper), language="en").check().english_only
    with pytest.raises(ExtractionError, match="English-only and cannot translate"):
        WhisperTranscriber(str(english_whisper), task="translate").check()
    with pytest.raises(ExtractionError, match="English-only and cannot transcribe --language zh"):
        WhisperTranscriber(str(english_whisper), language="zh").check()
    runner = CliRunner()
    for extra, message in ((["--language", "fr"], "does not know --language fr"), (["--translate"], "English-only")):
        model = tiny_whisper if extra[0] == "--language" else english_whisper
        res = runner.invoke(app, ["transcribe", str(speech_clip["speech"]), "--whisper-model", str(model), *extra])
        assert res.exit_code == 1 and message in res.output and "Traceback" not in res.output
    res = runner.invoke(
        app,
        [
            "transcribe",
            str(speech_clip["speech"]),
            "--whisper-model",
            str(tiny_whisper),
            "--translate",
            "--format",
            "json",
        ],
    )
    assert res.exit_code == 0, res.output


def test_transcript_options_are_one_definition_in_every_command():
    import typer

    from deepmlf_cli.app import app

    group = typer.main.get_command(app)
    options = {}
    for name in ("extract", "transcribe", "predict"):
        params = {p.opts[0]: p for p in group.commands[name].params if p.opts and p.opts[0].startswith("--")}
        options[name] = {
            o: (params[o].help, tuple(params[o].opts))
            for o in ("--whisper-model", "--whisper-backend", "--language", "--translate")
        }
    assert options["extract"] == options["transcribe"] == options["predict"]


# --------------------------------------------------------------------------- issue 19 item 5: hallucination guards
def test_whispers_own_guards_refuse_a_hallucinated_transcript(tiny_whisper, speech_clip, tmp_path):
    from typer.testing import CliRunner

    from deepmlf_cli.app import app
    from extractors.transcript import Segment, Transcript, WhisperTranscriber, guard_failure

    # the 0.3 s clip's "a bit of a bit of …": a loop compresses far better than speech
    assert "compression ratio" in guard_failure("a bit of " * 70, [])
    assert guard_failure("the film was quite good", [Segment(0, 1, "the film was quite good", -0.3, 0.9)]) is None
    both = guard_failure("uh", [Segment(0, 1, "uh", -1.5, 0.8)])
    assert "average log-probability -1.50 < -1.0" in both and "no-speech probability 0.80 > 0.6" in both
    # openai-whisper's random tiny checkpoint scored a decode NaN: that fails, and stays out of the JSON
    broken = Transcript("Guten", "whisper:x", [Segment(0, 0.02, "Guten", float("nan"), 0.1)])
    assert guard_failure(broken.text, broken.segments) == "average log-probability is nan (the decode broke down)"
    assert "avg_logprob" not in json.dumps(broken.to_dict(), allow_nan=False)
    # the random tiny model guesses: its own decode scores say so
    t = WhisperTranscriber(str(tiny_whisper)).transcribe(speech_clip["speech"])
    assert t.text and t.rejected and t.rejected.startswith("average log-probability")
    # transcribe shows the text, and says on stderr that the guards refuse it
    res = CliRunner().invoke(app, ["transcribe", str(speech_clip["speech"]), "--whisper-model", str(tiny_whisper)])
    assert res.exit_code == 0 and res.stdout == t.text + "\n", res.output
    assert "note: Whisper's hallucination guards refuse this transcript (average log-probability" in res.stderr
    # treated like an empty transcript: the same one-line error, --allow-missing keeps the clip and its text
    folder = tmp_path / "clips"
    folder.mkdir()
    tm.make_face_clip(folder / "talk.mp4", 1.0, audio="speech")
    args = ["extract", str(folder), "--whisper-model", str(tiny_whisper), "--face", "none", "-q"]
    res = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "ds")])
    assert res.exit_code == 1, res.output
    reason = (tmp_path / "ds" / "errors.tsv").read_text().splitlines()[1]
    assert (
        "transcript refused by Whisper's hallucination guards (average log-probability" in reason
        and "--allow-missing" in reason
    )
    res = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "ds2"), "--allow-missing", "--json"])
    assert res.exit_code == 0, res.output
    [clip] = json.loads(res.stdout)["clips"]
    assert clip["text_source"] == f"whisper:{tiny_whisper}"


# --------------------------------------------------------------------------- issue 19 item 6: language checks fail closed
def test_a_model_without_generation_config_is_judged_by_its_vocabulary(tiny_whisper, speech_clip, tmp_path):
    """No generation_config.json: Whisper's own rule (vocabulary size, config.json) says English-only, before any work."""
    import shutil

    from typer.testing import CliRunner

    from deepmlf_cli.app import app
    from extractors.transcript import WhisperTranscriber

    bare = tmp_path / "no-gen"
    shutil.copytree(tiny_whisper, bare)
    (bare / "generation_config.json").unlink()
    info = WhisperTranscriber(str(bare)).check()
    assert info.english_only and info.languages == {"en"}
    for extra, message in ((["--translate"], "English-only and cannot translate"),
                           (["--language", "zh"], "English-only and cannot transcribe --language zh"),
                           (["--language", "xx"], "English-only and cannot transcribe --language xx")):  # fmt: skip
        res = CliRunner().invoke(app, ["transcribe", str(speech_clip["speech"]), "--whisper-model", str(bare), *extra])
        assert res.exit_code == 1 and message in res.output and len(res.output.strip().splitlines()) == 1, res.output
    # the multilingual model's own generation config still decides for it
    assert not WhisperTranscriber(str(tiny_whisper)).check().english_only
