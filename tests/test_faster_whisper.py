"""The faster-whisper backend end to end (transcribe, extract, predict) with a tiny Whisper converted offline.

The tiny model is random and its vocabulary is small, so CTranslate2 treats
it as English-only (its rule: multilingual from 51,865 tokens): these tests
check the plumbing, the segments' bounds and the checks made before a batch.
"""

from __future__ import annotations

import json
import shutil

import pytest

pytest.importorskip("faster_whisper", reason="faster-whisper (in the `test` extra: `make install`) is not installed")
from extractors.errors import ExtractionError

import media as tm
from tiny_whisper import build_tiny_whisper, convert_to_faster_whisper

FW = ["--whisper-backend", "faster-whisper"]


@pytest.fixture(scope="module")
def whispers(tmp_path_factory):
    """{'hf': a transformers Whisper folder, 'ct2': its faster-whisper conversion}."""
    root = tmp_path_factory.mktemp("fw")
    hf = build_tiny_whisper(root / "hf", max_target_positions=448)  # CTranslate2 decodes up to 448 positions
    return {"hf": hf, "ct2": convert_to_faster_whisper(hf, root / "ct2")}


@pytest.fixture(scope="module")
def speech(tmp_path_factory):
    return tm.make_face_clip(tmp_path_factory.mktemp("fw-media") / "talk.mp4", 1.5, audio="speech")


def _cli(args):
    from typer.testing import CliRunner

    from deepmlf_cli.app import app

    return CliRunner().invoke(app, args)


def test_transcribe_with_faster_whisper(whispers, speech):
    from extractors.transcript import WhisperTranscriber

    res = _cli(["transcribe", str(speech), "--whisper-model", str(whispers["ct2"]), *FW, "--format", "json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["source"] == f"whisper:{whispers['ct2']}" and isinstance(out["text"], str)
    # faster-whisper times the padded 30 s window; segments stay inside the 1.5 s clip
    t = WhisperTranscriber(str(whispers["ct2"]), "faster-whisper").transcribe(speech)
    assert all(0.0 <= s.start <= s.end <= 1.6 for s in t.segments)


def test_backend_and_model_format_must_match(whispers, speech, tmp_path):
    from extractors.batch import run_extract
    from extractors.feature_recipe import build_recipe

    res = _cli(["transcribe", str(speech), "--whisper-model", str(whispers["ct2"])])
    assert res.exit_code == 1 and "use --whisper-backend faster-whisper" in res.output
    assert len(res.output.strip().splitlines()) == 1 and "Traceback" not in res.output
    res = _cli(["transcribe", str(speech), "--whisper-model", str(whispers["hf"]), *FW])
    assert res.exit_code == 1 and "use --whisper-backend transformers" in res.output
    # extract checks once, before any clip's audio and face work
    recipe = build_recipe(face="none", whisper_model=str(whispers["ct2"]))
    with pytest.raises(ExtractionError, match="use --whisper-backend faster-whisper"):
        run_extract(speech.parent, tmp_path / "out", recipe)
    assert not list((tmp_path / "out").rglob("*.npz"))


def test_english_only_faster_whisper_refuses_other_languages_and_translate(whispers, speech):
    for extra, message in (
        (["--language", "zh"], "English-only and cannot transcribe --language zh"),
        (["--translate"], "English-only and cannot translate"),
    ):
        res = _cli(["transcribe", str(speech), "--whisper-model", str(whispers["ct2"]), *FW, *extra])
        assert res.exit_code == 1 and message in res.output, res.output
    res = _cli(["transcribe", str(speech), "--whisper-model", str(whispers["ct2"]), *FW, "--language", "en"])
    assert res.exit_code == 0, res.output


def test_extract_and_predict_with_faster_whisper(whispers, speech, tmp_path, tiny_gpt2, monkeypatch):
    # a labelled corpus whose last row has no text: Whisper (faster-whisper) transcribes it
    root = tm.make_mmsa_corpus(tmp_path / "c", (4, 2, 2))
    lines = (root / "label.csv").read_text().splitlines()
    lines[-1] = lines[-1].replace("clip number 8", "")
    (root / "label.csv").write_text("\n".join(lines) + "\n")
    args = ["extract", str(root), "--out", str(tmp_path / "ds"), "--whisper-model", str(whispers["ct2"]), *FW, "--json"]
    res = _cli(args)  # the random model's text fails faster-whisper's own decode scores: refused like an empty one
    assert res.exit_code == 1 and json.loads(res.stdout)["failed"] == 1, res.output
    reason = (tmp_path / "ds" / "errors.tsv").read_text().splitlines()[1]
    assert "vid0$_$0008" in reason and "refused by Whisper's hallucination guards (average log-probability" in reason
    res = _cli([*args, "--allow-missing"])  # kept on request; the resumed run adds only that clip
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    sources = {c["key"]: c["text_source"] for c in summary["clips"]}
    assert sources["vid0$_$0008"] == f"whisper:{whispers['ct2']}" and sources["vid1$_$0001"] == "given"
    assert any("row 9 of label.csv has no text: transcribed with Whisper" in n for n in summary["notes"])
    manifest = json.loads((tmp_path / "ds" / "manifest.json").read_text())
    assert manifest["recipe"]["transcript"]["backend"] == "faster-whisper"

    # a model whose recipe names the default transformers Whisper, not cached here: predict takes the user's
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    res = _cli(["extract", str(root), "--out", str(tmp_path / "ds2"), "-q"])
    assert res.exit_code == 1 and "row 9 of label.csv has no text and needs Whisper" in res.output  # fails alone
    res = _cli(["train", "-d", str(tmp_path / "ds2"), "--preset", "sims", "--lm", str(tiny_gpt2), "--mm-layers", "1..3", "--n-fusion", "2",
                "--epochs", "1", "--batch-size", "2", "--grad-accum", "1", "--out", str(tmp_path / "run"), "--json"])  # fmt: skip
    assert res.exit_code == 0, res.output
    res = _cli(["predict", str(speech), "--model", str(tmp_path / "run"), "--whisper-model", str(whispers["ct2"]), *FW,
                "--allow-missing", "--json"])  # fmt: skip
    assert res.exit_code == 0, res.output
    [result] = json.loads(res.stdout)
    assert result["status"] == "ok" and result["transcript_source"] == f"whisper:{whispers['ct2']}"
    res = _cli(
        ["predict", str(speech), "--model", str(tmp_path / "run"), "--whisper-model", str(whispers["ct2"]), "-q"]
    )
    assert res.exit_code == 1 and "use --whisper-backend faster-whisper" in res.output


def test_faster_whisper_transcripts_are_reproducible(whispers):
    """The same clip gives the same text every time (the default temperature fallback sampled, unseeded:
    the tiny random model's low log-probabilities triggered it on every clip, and once gave an empty text)."""
    from extractors.transcript import WhisperTranscriber

    clip = tm.make_face_clip(whispers["ct2"].parent / "again.mp4", 0.8, audio="speech")
    w = WhisperTranscriber(str(whispers["ct2"]), "faster-whisper")
    texts = {w.transcribe(clip).text for _ in range(4)}
    assert len(texts) == 1 and texts != {""}


def test_a_vocabulary_txt_folder_is_judged_by_its_vocabulary_too(whispers, speech, tmp_path):
    """Issue 19 item 6: the real tiny.en ships vocabulary.txt (not .json); --translate and --language went through."""
    ct2 = tmp_path / "ct2-txt"
    shutil.copytree(whispers["ct2"], ct2)
    tokens = json.loads((ct2 / "vocabulary.json").read_text())
    (ct2 / "vocabulary.txt").write_text("\n".join(tokens) + "\n")
    (ct2 / "vocabulary.json").unlink()
    for extra, message in ((["--translate"], "English-only and cannot translate"),
                           (["--language", "zh"], "English-only and cannot transcribe --language zh"),
                           (["--language", "xx"], "English-only and cannot transcribe --language xx")):  # fmt: skip
        res = _cli(["transcribe", str(speech), "--whisper-model", str(ct2), *FW, *extra])
        assert res.exit_code == 1 and message in res.output and len(res.output.strip().splitlines()) == 1, res.output
    res = _cli(["transcribe", str(speech), "--whisper-model", str(ct2), *FW, "--language", "en"])
    assert res.exit_code == 0, res.output  # CTranslate2 reads that vocabulary: the folder itself is fine
