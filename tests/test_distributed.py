"""Several processes never hang: equal batch counts, rank 0's decisions, gathered evaluation (torchrun, gloo)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from typer.testing import CliRunner

from deepmlf_cli.app import app
from models.data.format import save_dataset
from models.data.sample import make_sample_dataset
from models.distributed import gather_predictions, shard_batches

from conftest import free_port

runner = CliRunner()


@pytest.mark.parametrize("n", [1, 2, 6, 7, 8])
def test_every_rank_gets_the_same_number_of_batches_and_all_batches_are_seen(n):
    batches = [np.array([2 * i, 2 * i + 1]) for i in range(n)]
    shares = [shard_batches(batches, rank, 3) for rank in range(3)]
    assert len({len(s) for s in shares}) == 1  # the same forward/backward count on every rank
    assert len(shares[0]) == -(-n // 3)
    seen = {int(b[0]) for s in shares for b in s}
    assert seen == {2 * i for i in range(n)}  # padding repeats batches, it drops none


def test_one_process_keeps_every_batch_in_order():
    batches = [np.array([i]) for i in range(5)]
    assert [int(b[0]) for b in shard_batches(batches, 0, 1)] == list(range(5))
    local = {"prediction": np.arange(4, dtype=np.float32)}
    assert gather_predictions(local, np.arange(4), 4) is local  # no process group: nothing to gather


# Runs `deepmlf train` under torchrun and records, per rank, what it did: the
# batch count of every epoch, how many epochs fit ran, and the test metrics it computed.
_RECORDER = textwrap.dedent("""
    import json, os, sys
    import models.training.loop, models.training.experiment
    from deepmlf_cli.app import app

    rank, out = int(os.environ["RANK"]), os.environ["RECORD_DIR"]
    record = {"batches": [], "epochs": None, "test": None}
    shard = models.training.loop.shard_batches
    fit = models.training.experiment.fit
    compute = models.training.experiment.compute_metrics

    def shard_and_count(batches, r, w):
        mine = shard(batches, r, w)
        record["batches"].append(len(mine))
        return mine

    def fit_and_count(*args, **kwargs):
        result = fit(*args, **kwargs)
        record.update(epochs=len(result.history), best_epoch=result.best_epoch, stopped=result.stopped_early)
        return result

    def metrics_and_keep(*args, **kwargs):
        record["test"] = compute(*args, **kwargs)
        return record["test"]

    models.training.loop.shard_batches = shard_and_count
    models.training.experiment.fit = fit_and_count
    models.training.experiment.compute_metrics = metrics_and_keep
    try:
        app(sys.argv[1:], prog_name="deepmlf")
    finally:
        with open(os.path.join(out, f"rank_{rank}.json"), "w") as f:
            json.dump(record, f)
""")


@pytest.mark.slow
def test_torchrun_three_processes_uneven_batches_stop_together_and_match_evaluate(tiny_gpt2, tmp_path):
    # 52 train clips in batches of 8: 7 batches (6 of 8, one of 4), 7 = 2·3 + 1, so the old
    # `batches[rank::world]` gave ranks 3, 2, 2 batches and, with grad_accum 2, different
    # all-reduce counts (a hang). Valid/test: 25 clips in eval batches of 4 = 7 batches, uneven too.
    data = save_dataset(make_sample_dataset(n_train=52, n_valid=25, n_test=25, seed=5), tmp_path / "data")
    config = tmp_path / "train.toml"
    config.write_text("[train]\neval_batch_size = 4\nweight_decay = 0.0\n")
    script = tmp_path / "record.py"
    script.write_text(_RECORDER)
    run_dir, records = tmp_path / "run", tmp_path / "records"
    records.mkdir()
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
        "RECORD_DIR": str(records),
        "PYTHONPATH": os.pathsep.join([os.getcwd(), os.environ.get("PYTHONPATH", "")]),
    }
    # lr 0.05 with patience 1: validation L1 stops improving within a few epochs, well before 12.
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "3",
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(free_port()),
        str(script),
        "train",
        "--dataset",
        str(data),
        "--preset",
        "sample",
        "--lm",
        str(tiny_gpt2),
        "--config",
        str(config),
        "--mm-layers",
        "1,3",
        "--n-fusion",
        "2",
        "--epochs",
        "12",
        "--patience",
        "1",
        "--lr",
        "0.05",
        "--batch-size",
        "8",
        "--grad-accum",
        "2",
        "--batching",
        "window",  # windows of 3 ranks x 2 x 8 clips
        "--out",
        str(run_dir),
        "--quiet",
        "--device",
        "cpu",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=420)
    assert proc.returncode == 0, proc.stderr[-3000:]

    ranks = [json.loads((records / f"rank_{r}.json").read_text()) for r in range(3)]
    assert ranks[0]["stopped"] and ranks[0]["epochs"] < 12  # early stopping fired
    for other in ranks[1:]:
        assert other["epochs"] == ranks[0]["epochs"] and other["best_epoch"] == ranks[0]["best_epoch"]
        assert other["batches"] == ranks[0]["batches"]  # same forward/backward count every epoch
        assert other["test"] == ranks[0]["test"]  # every rank computed the metrics on the full, gathered split
    assert ranks[0]["batches"][0] == 3  # ceil(7 / 3)

    results = json.loads((run_dir / "results.json").read_text())
    assert results["seeds"]["0"] == ranks[0]["test"]
    evaluated = runner.invoke(app, ["evaluate", str(run_dir), "--device", "cpu", "--json"])
    assert evaluated.exit_code == 0, evaluated.output
    single = json.loads(evaluated.output)["seeds"]["0"]
    assert single.keys() == ranks[0]["test"].keys()
    for name, value in single.items():
        assert value == pytest.approx(ranks[0]["test"][name], rel=1e-5, abs=1e-6), name
