"""`deepmlf demo` end to end at toy sizes: sample runs, then clips → extract → train → predict, and a resume."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest


def _demo(out: Path, cwd: Path):
    from typer.testing import CliRunner

    from deepmlf_cli.app import app

    old = Path.cwd()
    os.chdir(cwd)
    try:
        return CliRunner().invoke(
            app, ["demo", "--out", str(out), "--epochs", "1", "--lm-steps", "3", "--video-epochs", "2", "--quiet"]
        )
    finally:
        os.chdir(old)


@pytest.mark.slow
def test_demo_ends_with_a_prediction_on_a_generated_clip_and_resumes(tmp_path):
    from deepmlf_cli.predictor import latest_run
    from deepmlf_cli.workflows.demo import NEW_CLIP_TEXT, VIDEO_SPLITS
    from models.data.load import load_dataset

    out = tmp_path / "runs" / "demo"
    res = _demo(out, tmp_path)
    assert res.exit_code == 0, res.output
    # the three sample models, compared
    summary = json.loads((out / "demo_results.json").read_text())
    assert set(summary) == {"pretrain", "text-only", "deepmlf"}
    assert "Embedded sample, test split" in res.output and "DeepMLF" in res.output
    # the raw-video path: a dataset extracted from the generated clips, with their recipe
    videos = load_dataset(out / "video-dataset")
    assert {k: len(v) for k, v in videos.splits.items()} == {
        s: VIDEO_SPLITS.count(s) for s in ("train", "valid", "test")
    }
    assert videos.recipe is not None and videos.d_vision == 181
    # the run trained on them is the newest, so `deepmlf predict CLIP` picks it by default
    assert latest_run(tmp_path / "runs") == out / "video-deepmlf"
    # and the output ends with the prediction table for the demo's own clip, read from its sidecar
    tail = res.output[res.output.index("predictions ·") :]
    assert "new_clip" in tail and "1 predicted, 0 failed" in tail
    assert NEW_CLIP_TEXT.split()[0] in tail and any(p in tail for p in ("positive", "negative", "neutral"))

    stamps = {p: p.stat().st_mtime_ns for p in (out / "videos" / "Raw").rglob("*.mp4")}
    again = _demo(out, tmp_path)
    assert again.exit_code == 0, again.output
    assert {p: p.stat().st_mtime_ns for p in (out / "videos" / "Raw").rglob("*.mp4")} == stamps  # clips kept
    assert "1 predicted, 0 failed" in again.output

    # a finished runs/demo moved elsewhere re-runs there (issue 19 item 21): the data is recognised by its
    # content, the LM and AV encoder by their place in the moved folder; nothing is retrained
    import shutil

    moved = tmp_path / "elsewhere" / "runs" / "demo"
    shutil.copytree(out, moved)
    shutil.rmtree(out)
    best = {p: p.stat().st_mtime_ns for p in moved.glob("*/seed_*/best/model.safetensors")}
    assert len(best) == 4
    third = _demo(moved, tmp_path / "elsewhere")
    assert third.exit_code == 0, third.output
    assert {p: p.stat().st_mtime_ns for p in best} == best and "1 predicted, 0 failed" in third.output
