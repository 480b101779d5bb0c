"""Resume and reload keep a run what it was: plateau state, saved settings, checkpoint keys."""

from __future__ import annotations

import json

import pytest
from test_training import StopAt, small_sample, spec_for  # noqa: F401  (fixture re-used)

from models.training.experiment import train_run


def _history(run_dir):
    return json.loads((run_dir / "seed_0" / "history.json").read_text())


def test_resumed_plateau_run_cuts_the_lr_like_an_uninterrupted_one(small_sample, tiny_gpt2, tmp_path):  # noqa: F811
    dataset, _ = small_sample
    # Patience 0 on the plateau: it cuts after every epoch without a better validation L1, so
    # its own counters (best, bad epochs) decide the lr; a fresh scheduler on resume would not.
    spec = spec_for(
        tiny_gpt2,
        epochs=6,
        kind="av",
        schedule="plateau",
        plateau_patience=0,
        plateau_factor=0.5,
        warmup_epochs=0.0,
        lr=5e-2,
        patience=10,
    )
    train_run(dataset, spec, tmp_path / "whole")
    with pytest.raises(KeyboardInterrupt):
        train_run(dataset, spec, tmp_path / "cut", progress=lambda s: StopAt(3))
    train_run(dataset, spec, tmp_path / "cut", resume=True)
    whole, cut = _history(tmp_path / "whole"), _history(tmp_path / "cut")
    assert [h["lr"] for h in cut] == pytest.approx([h["lr"] for h in whole])
    assert len({h["lr"] for h in whole}) > 1  # the scheduler did cut
    assert [h["valid_l1"] for h in cut] == pytest.approx([h["valid_l1"] for h in whole], abs=1e-6)


def test_checkpoint_with_tensors_the_model_lacks_is_refused(small_sample, tiny_gpt2, tmp_path):  # noqa: F811
    from safetensors.torch import load_file, save_file

    from models.checkpoint import load_model
    from models.errors import CheckpointError

    dataset, _ = small_sample
    train_run(dataset, spec_for(tiny_gpt2, epochs=1), tmp_path / "run")
    best = tmp_path / "run" / "seed_0" / "best"
    load_model(best, "cpu")  # loads as saved
    tensors = load_file(str(best / "model.safetensors"))
    # What an older model version saved: a per-modality final LayerNorm this model no longer has.
    tensors["av_encoder.audio.encoder.norm.weight"] = tensors["av_head.weight"].new_ones(30)
    save_file(tensors, str(best / "model.safetensors"))
    with pytest.raises(CheckpointError, match="av_encoder.audio.encoder.norm.weight"):
        load_model(best, "cpu")


def test_resume_of_a_run_killed_in_its_first_epoch_keeps_its_settings(small_sample, tiny_gpt2, tmp_path):  # noqa: F811
    from typer.testing import CliRunner

    from deepmlf_cli.app import app

    dataset, path = small_sample
    spec = spec_for(tiny_gpt2, epochs=1, lr=3e-3, seeds=(4,))
    with pytest.raises(KeyboardInterrupt):
        train_run(dataset, spec, tmp_path / "run", progress=lambda s: StopAt(0))
    assert not list((tmp_path / "run").glob("seed_*/state/state.json"))  # no epoch finished
    res = CliRunner().invoke(
        app, ["train", "-d", str(path), "--out", str(tmp_path / "run"), "--resume", "--device", "cpu", "--json", "-q"]
    )
    assert res.exit_code == 0, res.output
    saved = json.loads((tmp_path / "run" / "run.json").read_text())["spec"]
    assert saved["train"]["lr"] == 3e-3 and saved["seeds"] == [4]  # not the dataset preset's defaults
    assert (tmp_path / "run" / "seed_4" / "metrics.json").is_file()


def test_resume_with_another_process_count_is_refused(small_sample, tiny_gpt2, tmp_path, monkeypatch):  # noqa: F811
    import models.training.resolution
    from models.errors import ConfigError

    dataset, _ = small_sample
    spec = spec_for(tiny_gpt2, epochs=3)
    with pytest.raises(KeyboardInterrupt):
        train_run(dataset, spec, tmp_path / "run", progress=lambda s: StopAt(1))
    assert json.loads((tmp_path / "run" / "run.json").read_text())["world_size"] == 1
    # As if resumed under torchrun with 2 processes (the resolution runs before any collective).
    monkeypatch.setattr(models.training.resolution, "rank_and_world", lambda: (0, 2))
    with pytest.raises(ConfigError, match="trained in one process, not 2"):
        train_run(dataset, spec, tmp_path / "run", resume=True)


def test_the_device_is_not_a_run_setting_and_old_run_files_still_resume(small_sample, tiny_gpt2, tmp_path):  # noqa: F811
    """run.json holds what a run computes; a file written while it also held the device reads the same."""
    from models.run import Run

    dataset, _ = small_sample
    spec, run_dir = spec_for(tiny_gpt2, epochs=2), tmp_path / "r"
    with pytest.raises(KeyboardInterrupt):
        train_run(dataset, spec, run_dir, progress=lambda s: StopAt(1), device="cpu")
    info = json.loads((run_dir / "run.json").read_text())
    assert "device" not in info["spec"]["train"]
    info["spec"]["train"]["device"] = "cuda:3"  # as deepmlf wrote it before the device moved out
    (run_dir / "run.json").write_text(json.dumps(info))
    assert Run(run_dir).spec().train == spec.train
    results = train_run(dataset, spec, run_dir, resume=True, device="cpu")
    assert set(results["seeds"]) == {"0"}


def test_fit_counters_round_trip_and_read_an_older_state():
    import math

    from models.errors import ConfigError
    from models.training.state import FitCounters

    counters = FitCounters(
        epoch=3,
        step=15,
        best_score=0.4321,
        best_epoch=1,
        bad_epochs=2,
        history=[{"epoch": 0}],
        best_valid={"MAE": 0.4},
        plateau={"best": 0.4},
    )
    assert FitCounters.from_dict(json.loads(json.dumps(counters.to_dict()))) == counters
    assert math.isinf(FitCounters.from_dict(json.loads(json.dumps(FitCounters().to_dict()))).best_score)
    old = FitCounters.from_dict(
        {"epoch": 2, "step": 4, "best_mae": 0.5, "best_epoch": 0, "bad_epochs": 1, "history": [], "best_valid": {}}
    )  # a state.json written before the dataclass
    assert (old.best_score, old.plateau) == (0.5, None)
    with pytest.raises(ConfigError, match="unknown counters"):
        FitCounters.from_dict({"epoch": 1, "best_l2": 0.1})
