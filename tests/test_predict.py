"""`deepmlf predict` end to end, offline: clips → extract → tiny model → predict (file, folder, --segment)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

import media as tm

HEAD_KEYS = {"text", "av", "fusion"}
RESULT_KEYS = {
    "path",
    "key",
    "status",
    "error",
    "score",
    "raw_score",
    "polarity",
    "heads",
    "raw_heads",
    "scale",
    "transcript",
    "transcript_source",
    "duration",
    "timings",
}


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_gpt2):
    """A SIMS-like corpus of 8 short face clips, extracted with labels, and a 1-epoch tiny DeepMLF run on it."""
    return build_trained(tmp_path_factory.mktemp("predict"), tiny_gpt2)


def build_trained(root: Path, lm: Path) -> Path:
    """`trained`'s corpus and run under `root` (the serve tests build it once per session through tests/serving.py)."""
    from typer.testing import CliRunner

    from deepmlf_cli.app import app

    rows = ["video_id,clip_id,text,label,mode"]
    for i, split in enumerate(["train"] * 4 + ["valid"] * 2 + ["test"] * 2):
        tm.make_face_clip(root / "SIMS" / "Raw" / "v" / f"{i:02d}.mp4", 0.6 + 0.2 * (i % 2), audio="speech")
        rows.append(f"v,{i:02d},clip number {i},{(-1) ** i * 0.3 * (i % 4)},{split}")
    (root / "SIMS" / "label.csv").write_text("\n".join(rows) + "\n")
    runner = CliRunner()
    res = runner.invoke(app, ["extract", str(root / "SIMS"), "--out", str(root / "ds"), "-q"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["train", "-d", str(root / "ds"), "--preset", "sims", "--lm", str(lm), "--mm-layers", "1..3",
                              "--n-fusion", "2", "--epochs", "1", "--batch-size", "2", "--grad-accum", "1", "--out", str(root / "runs" / "r1"),
                              "--json"])  # fmt: skip
    assert res.exit_code == 0, res.output
    return root


def _invoke(args, cwd: Path | None = None, command: str | None = "predict"):
    from typer.testing import CliRunner

    from deepmlf_cli.app import app

    old = Path.cwd()
    if cwd is not None:
        os.chdir(cwd)
    try:
        return CliRunner().invoke(app, [command, *args] if command else args)
    finally:
        os.chdir(old)


def test_one_file_matches_evaluate_and_json_schema(trained):
    from models.data.load import load_dataset
    from models.evaluation.evaluate import evaluate_checkpoint
    from models.run import Run

    clip = trained / "SIMS" / "Raw" / "v" / "07.mp4"  # a test-split clip
    res = _invoke([str(clip), "--transcript", "clip number 7", "--json"], cwd=trained)  # default model: newest run
    assert res.exit_code == 0, res.output
    (item,) = json.loads(res.stdout)
    assert set(item) == RESULT_KEYS and item["status"] == "ok" and item["error"] is None
    assert set(item["heads"]) == HEAD_KEYS and all(isinstance(v, float) for v in item["heads"].values())
    assert item["scale"] == [-1.0, 1.0] and item["polarity"] in ("negative", "neutral", "positive")
    assert item["transcript"] == "clip number 7" and item["transcript_source"] == "given"
    _, preds = evaluate_checkpoint(Run(trained / "runs" / "r1").best(), load_dataset(trained / "ds"), "test")
    test_ids = list(load_dataset(trained / "ds").splits["test"].ids)
    k = test_ids.index("v$_$07")
    # raw values are what evaluate scores; the shown ones are the same, clipped to the scale
    assert item["raw_score"] == pytest.approx(float(preds["prediction"][k]), abs=1e-5)
    assert item["raw_heads"]["text"] == pytest.approx(float(preds["text"][k]), abs=1e-5)
    assert item["raw_heads"]["av"] == pytest.approx(float(preds["av"][k]), abs=1e-5)
    assert item["score"] == pytest.approx(float(np.clip(preds["prediction"][k], -1, 1)), abs=1e-5)
    assert item["heads"]["av"] == pytest.approx(float(np.clip(preds["av"][k], -1, 1)), abs=1e-5)


def test_folder_with_bad_files_csv_and_exit_code(trained, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    good = tm.make_face_clip(folder / "good.mp4", 0.8, audio="speech")
    (folder / "good.txt").write_text("a sidecar transcript")
    tm.make_audio_only(folder / "audio_only.m4a", 0.8)
    (folder / "audio_only.txt").write_text("words without a face")
    tm.make_face_clip(folder / "silent.mp4", 0.8, audio="silence")
    tm.make_face_clip(folder / "untranscribed.mp4", 0.8, audio="speech")
    tm.make_empty_file(folder / "empty.mp4")
    tm.make_text_as_mp4(folder / "text.mp4")
    tm.make_truncated_mp4(folder / "truncated.mp4")
    out_csv = tmp_path / "out.csv"
    res = _invoke([str(folder), "--model", str(trained / "runs" / "r1"), "--no-whisper", "--csv", str(out_csv), "-q"])
    assert res.exit_code == 1 and "Traceback" not in res.output
    for reason in (
        "empty file",
        "not a media file",
        "truncated",
        "audio_only.m4a: no video track;",
        "silent.mp4: silent audio track, empty transcript;",
        "untranscribed.mp4: empty transcript;",
    ):
        lines = [ln for ln in res.output.splitlines() if reason in ln]
        assert len(lines) == 1 and lines[0].startswith("error:"), res.output
    assert res.output.count("--allow-missing") == 3
    assert "1 predicted, 6 failed" in res.output
    rows = out_csv.read_text().splitlines()
    assert rows[0].startswith("path,start,end,score,polarity") and len(rows) == 8
    assert any(str(good) in r and "a sidecar transcript" in r for r in rows)

    # --allow-missing predicts the readable clips that lack a modality; the unreadable ones still fail
    res = _invoke([str(folder), "--model", str(trained / "runs" / "r1"), "--no-whisper", "--allow-missing", "--json"])
    assert res.exit_code == 1
    status = {item["key"]: item["status"] for item in json.loads(res.stdout)}
    assert [k for k, v in sorted(status.items()) if v == "ok"] == ["audio_only", "good", "silent", "untranscribed"]


def test_a_model_is_only_asked_for_what_it_reads(trained, tmp_path):
    """An AV-only run needs no transcript (and never runs Whisper); it still needs a face and speech."""
    res = _invoke(
        [
            "train",
            "-d",
            str(trained / "ds"),
            "--model",
            "av",
            "--epochs",
            "1",
            "--batch-size",
            "2",
            "--grad-accum",
            "1",
            "--out",
            str(tmp_path / "av"),
            "-q",
        ],
        command=None,
    )  # not under runs/: the newest run stays r1
    assert res.exit_code == 0, res.output
    untranscribed = tm.make_face_clip(tmp_path / "untranscribed.mp4", 0.8, audio="speech")
    silent = tm.make_face_clip(tmp_path / "silent.mp4", 0.8, audio="silence")
    res = _invoke([str(untranscribed), str(silent), "--model", str(tmp_path / "av"), "--json"])
    assert res.exit_code == 1
    by_key = {item["key"]: item for item in json.loads(res.stdout)}
    assert by_key["untranscribed"]["status"] == "ok" and by_key["untranscribed"]["transcript_source"] == "none"
    assert by_key["silent"]["status"] == "failed" and by_key["silent"]["error"].endswith("anyway")
    assert "silent audio track;" in by_key["silent"]["error"] and "transcript;" not in by_key["silent"]["error"]


def test_segment_timeline_from_subtitles_and_windows(trained, tmp_path):
    long = tm.make_face_clip(tmp_path / "long.mp4", 3.0, fps=10, audio="speech")
    (tmp_path / "long.srt").write_text(
        "1\n00:00:00,000 --> 00:00:01,200\nfirst part\n\n2\n00:00:01,200 --> 00:00:03,000\nsecond part\n"
    )
    nosub = tm.make_face_clip(tmp_path / "nosub.mp4", 2.5, fps=10, audio="speech")
    # nosub has no words in any window: --allow-missing keeps it (the rule is tested below)
    res = _invoke([str(long), str(nosub), "--model", str(trained / "runs" / "r1"), "--segment", "--window", "1",
                   "--no-whisper", "--allow-missing", "--out", str(tmp_path / "tl"), "--json"])  # fmt: skip
    assert res.exit_code == 0, res.output
    by_key = {r["key"]: r for r in json.loads(res.stdout)}
    segs = by_key["long"]["segments"]
    assert [(s["start"], s["end"], s["text"]) for s in segs] == [(0.0, 1.2, "first part"), (1.2, 3.0, "second part")]
    assert all(set(s) == {"start", "end", "text", "score", "raw_score", "polarity", "heads", "raw_heads"} for s in segs)
    assert [(s["start"], s["end"]) for s in by_key["nosub"]["segments"]] == [(0.0, 1.0), (1.0, 2.0), (2.0, 2.5)]
    for item in by_key.values():
        assert Path(item["plot"]).read_bytes()[:4] == b"\x89PNG"
        assert Path(item["timeline_csv"]).read_text().startswith("path,start,end")
        weights = [s["end"] - s["start"] for s in item["segments"]]
        mean = sum(w * s["raw_score"] for w, s in zip(weights, item["segments"])) / sum(weights)
        assert item["raw_score"] == pytest.approx(mean) and item["score"] == pytest.approx(float(np.clip(mean, -1, 1)))


def test_clear_errors_no_model_and_no_recipe(trained, tmp_path):
    res = _invoke([str(trained / "SIMS" / "Raw" / "v" / "00.mp4")], cwd=tmp_path)
    assert res.exit_code == 1 and "no trained model found" in res.output and "Traceback" not in res.output
    # A run trained on features that cannot be computed from video: drop the recipe from its meta.
    from models.run import Run

    meta_file = Run(trained / "runs" / "r1").best() / "meta.json"
    saved = meta_file.read_text()
    meta = json.loads(saved)
    meta["dataset"]["recipe"] = None
    try:
        meta_file.write_text(json.dumps(meta))
        res = _invoke([str(trained / "SIMS" / "Raw" / "v" / "00.mp4"), "--model", str(trained / "runs" / "r1")])
    finally:
        meta_file.write_text(saved)
    assert res.exit_code == 1 and "cannot be computed from raw video" in res.output
    assert "deepmlf extract" in res.output and "deepmlf train --dataset" in res.output


def test_prediction_library_normalises_like_training(trained):
    from models.checkpoint import load_model
    from models.evaluation.predict import ClipInput, predict_features
    from models.run import Run

    loaded = load_model(Run(trained / "runs" / "r1").best())
    rng = np.random.default_rng(0)
    clip = ClipInput(
        rng.standard_normal((20, 33)).astype(np.float32), rng.standard_normal((4, 181)).astype(np.float32), "hi"
    )
    empty = ClipInput(np.zeros((0, 33), np.float32), np.zeros((0, 181), np.float32), "")
    a, b = predict_features(loaded, [clip, empty])
    (alone,) = predict_features(loaded, [clip])
    assert a.score == pytest.approx(alone.score, abs=1e-5) and np.isfinite(b.score)

    # The checkpoint's train-split statistics are applied, as training applied them: z-scoring the
    # clip by hand with them and predicting with no normaliser gives the same scores.
    import dataclasses

    from models.data.normalize import FeatureNormalizer

    norm = loaded.normalizer
    assert not np.allclose(norm.audio_mean, 0) and not np.allclose(norm.vision_std, 1)  # a real normaliser
    identity = dataclasses.replace(
        loaded,
        normalizer=FeatureNormalizer(
            np.zeros_like(norm.audio_mean),
            np.ones_like(norm.audio_std),
            np.zeros_like(norm.vision_mean),
            np.ones_like(norm.vision_std),
        ),
    )
    by_hand = ClipInput(
        (clip.audio - norm.audio_mean) / norm.audio_std, (clip.vision - norm.vision_mean) / norm.vision_std, clip.text
    )
    (manual,) = predict_features(identity, [by_hand])
    assert manual.score == pytest.approx(alone.score, abs=1e-5)
    assert manual.raw_heads == pytest.approx(alone.raw_heads, abs=1e-5)
    (unnormalised,) = predict_features(identity, [clip])
    assert unnormalised.raw_heads["av"] != pytest.approx(alone.raw_heads["av"], abs=1e-4)  # it matters
    from models.errors import DatasetError

    with pytest.raises(DatasetError, match="trained on 33/181"):
        predict_features(loaded, [ClipInput(np.zeros((3, 5), np.float32), np.zeros((2, 181), np.float32), "")])


def test_scores_outside_the_scale_are_shown_clipped_and_kept_raw_in_json():
    from rich.console import Console

    from deepmlf_cli.views import render_report
    from deepmlf_cli.workflows.predict import PredictReport
    from models.evaluation.predict import Prediction

    pred = Prediction(
        raw_score=1.309, polarity="positive", raw_heads={"text": -1.7, "av": 0.4, "fusion": None}, scale=(-1.0, 1.0)
    )
    item = pred.to_dict()
    assert item["score"] == 1.0 and item["raw_score"] == 1.309
    assert item["heads"] == {"text": -1.0, "av": 0.4, "fusion": None} and item["raw_heads"]["text"] == -1.7
    report = PredictReport(
        Path("run"),
        Path("run/best"),
        "sims",
        results=[
            {
                "path": "a.mp4",
                "key": "a",
                "status": "ok",
                "error": None,
                **item,
                "transcript": "hi",
                "transcript_source": "given",
                "duration": 1.0,
                "timings": {},
            }
        ],
    )
    console = Console(record=True, width=200)
    render_report(report, console)
    text = console.export_text()
    assert "+1.000" in text and "-1.000" in text and "1.309" not in text and "1.7" not in text
    assert "not parts of the score" in text


def test_predict_help_explains_the_heads_and_takes_lm(trained, tmp_path):
    import shutil

    res = _invoke(["--help"], command="predict")
    text = " ".join(res.output.replace("│", " ").split())
    assert "auxiliary heads" in text and "not parts of the score" in text and "--lm" in text
    # a run whose LM moved: --lm names its new place
    from models.checkpoint import load_model
    from models.run import Run

    lm = load_model(Run(trained / "runs" / "r1").best()).model.config.lm
    shutil.copytree(lm, tmp_path / "moved-lm")
    clip = trained / "SIMS" / "Raw" / "v" / "07.mp4"
    args = [str(clip), "--model", str(trained / "runs" / "r1"), "--transcript", "clip number 7", "--json"]
    res = _invoke([*args, "--lm", str(tmp_path / "nowhere")])
    assert res.exit_code == 1 and "nowhere" in res.output and "Traceback" not in res.output
    moved = _invoke([*args, "--lm", str(tmp_path / "moved-lm")])
    plain = _invoke(args)
    assert moved.exit_code == 0, moved.output
    assert json.loads(moved.stdout)[0]["raw_score"] == pytest.approx(json.loads(plain.stdout)[0]["raw_score"], abs=1e-6)


def test_the_workflow_returns_results_and_writes_no_files(trained, tmp_path):
    from deepmlf_cli.outputs import timeline_saver
    from deepmlf_cli.workflows.predict import predict_paths

    clips = tmp_path / "clips"
    long = tm.make_face_clip(clips / "long.mp4", 2.0, fps=10, audio="speech")
    (clips / "long.srt").write_text(
        "1\n00:00:00,000 --> 00:00:00,800\nfirst part\n\n2\n00:00:00,800 --> 00:00:02,000\nsecond part\n"
    )
    other = tm.make_face_clip(clips / "other.mp4", 1.5, fps=10, audio="speech")
    before = sorted(p for p in tmp_path.rglob("*"))
    old = Path.cwd()
    os.chdir(tmp_path)  # the command's default --out (predictions/) would land here
    try:
        report = predict_paths(
            [long, other], trained / "runs" / "r1", segment=True, window=1.0, no_whisper=True, allow_missing=True
        )  # other has no subtitles: its windows have no words
    finally:
        os.chdir(old)
    assert sorted(p for p in tmp_path.rglob("*")) == before
    assert [r["status"] for r in report.results] == ["ok", "ok"]
    assert [s["text"] for s in report.results[0]["segments"]] == ["first part", "second part"]
    assert "plot" not in report.results[0] and "timeline_csv" not in report.results[0]
    # the command's hook writes each timeline; a write that fails fails that clip only
    save = timeline_saver(tmp_path / "tl")
    calls = []

    def flaky(result):
        calls.append(result["key"])
        if result["key"] == "long":
            raise PermissionError(f"cannot write {tmp_path / 'tl'}")
        save(result)

    report = predict_paths(
        [long, other],
        trained / "runs" / "r1",
        segment=True,
        window=1.0,
        no_whisper=True,
        allow_missing=True,
        save=flaky,
    )
    assert calls == ["long", "other"]
    failed, ok = report.results
    assert failed["status"] == "failed" and "cannot write" in failed["error"]
    assert Path(ok["plot"]).read_bytes()[:4] == b"\x89PNG" and Path(ok["timeline_csv"]).is_file()


def test_segment_without_words_in_any_window_is_an_empty_transcript(trained, tmp_path):
    """--segment --no-whisper on a clip without subtitles scores every window from no text: the
    empty-transcript rule applies (issue 19 item 7), --allow-missing keeps it."""
    nosub = tm.make_face_clip(tmp_path / "nosub.mp4", 2.0, fps=10, audio="speech")
    args = [
        str(nosub),
        "--model",
        str(trained / "runs" / "r1"),
        "--segment",
        "--window",
        "1",
        "--no-whisper",
        "--out",
        str(tmp_path / "tl"),
        "--json",
    ]
    res = _invoke(args)
    assert res.exit_code == 1
    (item,) = json.loads(res.stdout)
    assert item["status"] == "failed" and "empty transcript" in item["error"] and "--allow-missing" in item["error"]
    res = _invoke([*args, "--allow-missing"])
    assert res.exit_code == 0 and json.loads(res.stdout)[0]["status"] == "ok"


def test_predictor_loads_once_and_answers_like_the_command(trained):
    """The library object: one load, then the same dict `predict --json` prints; a bad file is a failed result."""
    from deepmlf_cli.predictor import Predictor

    clip = trained / "SIMS" / "Raw" / "v" / "07.mp4"
    res = _invoke([str(clip), "--model", str(trained / "runs" / "r1"), "--transcript", "clip number 7", "--json"])
    (expected,) = json.loads(res.stdout)
    predictor = Predictor.load(trained / "runs" / "r1")
    got = predictor.predict(clip, transcript="clip number 7")
    assert set(got) == RESULT_KEYS and got["raw_score"] == pytest.approx(expected["raw_score"], abs=1e-6)
    assert got["heads"] == pytest.approx(expected["heads"], abs=1e-6)
    bad = trained / "bad.mp4"
    bad.write_bytes(b"not a video at all")
    failed = predictor.predict_safe(bad, shown_as="upload.mp4")
    assert failed["status"] == "failed" and failed["path"] == "upload.mp4" and str(bad) not in failed["error"]
    card = predictor.card()
    assert card["run"] == "r1" and card["scale"] == [-1.0, 1.0] and "audio" in card["feature_recipe"]
    assert card["preset"] == "sims"  # run.json records the preset `train --preset sims` built the run from
