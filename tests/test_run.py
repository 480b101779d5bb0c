"""models.run.Run: the one reader and writer of a run directory's layout (no training needed here)."""

from __future__ import annotations

import json
import os
import time

import numpy as np
import pytest

from models.config import ModelConfig, TrainConfig
from models.errors import CheckpointError, ConfigError
from models.run import Run, RunSpec, checkpoint_seed, is_checkpoint


def _checkpoint(directory):
    directory.mkdir(parents=True)
    for name in ("config.json", "model.safetensors"):
        (directory / name).write_text("{}")
    return directory


def _spec(seeds=(0, 1)):
    return RunSpec("deepmlf", ModelConfig(lm="lm"), TrainConfig(max_epochs=2), tuple(seeds))


def _run(tmp_path, seeds=(0, 1), name="run"):
    run = Run(tmp_path / name)
    run.write_info(_spec(seeds), {"name": "ds", "source": str(tmp_path / "ds")}, world_size=1)
    for seed in seeds:
        _checkpoint(run.seed_dir(seed) / "best")
    return run


def test_a_run_reads_back_what_it_wrote(tmp_path):
    run = _run(tmp_path)
    assert (
        run.exists()
        and run.spec() == _spec()
        and run.dataset()["source"] == str(tmp_path / "ds")
        and run.world_size() == 1
    )
    assert [checkpoint_seed(p) for p in run.checkpoints()] == ["0", "1"]
    assert run.best() == run.seed_dir(0) / "best" and run.best(seed=1) == run.seed_dir(1) / "best"
    with pytest.raises(CheckpointError, match="no checkpoint for seed 7; seeds: 0, 1"):
        run.best(seed=7)
    assert not run.is_started() and not run.is_finished() and run.results() is None


def test_seeds_are_done_when_their_metrics_are_written_and_the_results_round_trip(tmp_path):
    run = _run(tmp_path)
    labels = np.array([0.5, -1.0], dtype=np.float32)
    heads = {k: labels * 2 for k in ("prediction", "text", "av", "fusion")}
    run.write_seed(0, [{"epoch": 0}], {"test": {"MAE": 0.1}}, (["a", "b"], labels, heads))
    assert run.is_started() and run.seed_done(0) and not run.is_finished()
    assert run.seed_metrics(0)["test"] == {"MAE": 0.1}
    assert run.seed_predictions(0).read_text().splitlines()[1] == "a,0.5,1,1,1,1"
    assert run.seed_predictions(1) is None
    run.write_seed(1, [], {"test": {"MAE": 0.3}}, None)
    assert run.is_finished()
    results = {
        "scheme": "mosi",
        "seeds": {"0": {"MAE": 0.1}, "1": {"MAE": 0.3}},
        "mean": {"MAE": 0.2},
        "std": {"MAE": 0.1},
    }
    run.write_results(results)
    assert run.results() == results
    assert (run.path / "results.csv").read_text().splitlines() == ["seed,MAE", "0,0.1", "1,0.3", "mean,0.2", "std,0.1"]


def test_a_checkpoint_a_seed_dir_and_a_run_dir_all_name_their_checkpoint(tmp_path):
    run = _run(tmp_path)
    checkpoint = run.seed_dir(1) / "best"
    assert is_checkpoint(checkpoint) and not is_checkpoint(run.path)
    assert Run(checkpoint).best() == checkpoint
    assert Run(run.seed_dir(1)).best() == checkpoint
    assert checkpoint_seed(checkpoint) == "1" and checkpoint_seed(tmp_path / "lone") is None


def test_find_upwards_finds_the_run_holding_a_seed_or_a_checkpoint(tmp_path):
    run = _run(tmp_path)
    assert Run.find_upwards(run.seed_dir(0) / "best").path == run.path
    assert Run.find_upwards(run.path).path == run.path
    assert Run.find_upwards(_checkpoint(tmp_path / "elsewhere" / "ckpt")) is None


def test_latest_is_the_newest_run_that_holds_a_checkpoint(tmp_path):
    old, new = _run(tmp_path, name="a/old"), _run(tmp_path, name="b/new")
    empty = Run(tmp_path / "c" / "started")  # newest, but nothing trained yet
    empty.write_info(_spec(), {}, world_size=1)
    now = time.time()
    os.utime(old.run_file, (now - 30, now - 30))
    os.utime(new.run_file, (now - 20, now - 20))
    assert Run.latest(tmp_path).path == new.path
    with pytest.raises(CheckpointError, match="no trained model found under"):
        Run.latest(tmp_path / "c")


def test_missing_and_corrupt_run_files_are_one_line_errors(tmp_path):
    with pytest.raises(ConfigError, match="holds no run to resume"):
        Run(tmp_path / "nothing").spec()
    with pytest.raises(CheckpointError, match="does not exist"):
        Run(tmp_path / "nothing").checkpoints()
    assert Run(tmp_path / "nothing").checkpoints(required=False) == []
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "run.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="is not a deepmlf run file"):
        Run(broken).info()
    (broken / "run.json").write_text(
        json.dumps({"spec": {"kind": "deepmlf", "model": {"no_such_field": 1}, "train": {}, "seeds": [0]}})
    )
    with pytest.raises(CheckpointError, match="written by another deepmlf version"):
        Run(broken).spec()
