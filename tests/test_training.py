"""Training runs end to end on a small sample: results, resume, evaluate, AV init, config files, DDP."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from deepmlf_cli.app import app
from models.config import TrainConfig, get_preset
from models.data.format import save_dataset
from models.data.load import load_dataset
from models.data.sample import make_sample_dataset
from models.run import RunSpec
from models.training.experiment import train_run
from models.training.schedule import lr_at_step

from conftest import free_port

runner = CliRunner()


@pytest.fixture(scope="module")
def small_sample(tmp_path_factory):
    path = save_dataset(
        make_sample_dataset(n_train=48, n_valid=24, n_test=24, seed=3), tmp_path_factory.mktemp("data") / "small"
    )
    return load_dataset(path), path


def spec_for(lm_dir, epochs=2, seeds=(0,), kind="deepmlf", **train):
    model = get_preset("sample").model_config(lm=str(lm_dir), mm_layers=(1, 3), n_fusion=2)
    return RunSpec(
        kind,
        model,
        TrainConfig(**{"lr": 1e-3, "batch_size": 16, "grad_accum": 2, "max_epochs": epochs, "patience": 5, **train}),
        seeds,
    )


class StopAt:
    """Callbacks that simulate Ctrl-C when an epoch starts."""

    def __init__(self, epoch):
        self.epoch = epoch

    def on_epoch_start(self, epoch, n):
        if epoch == self.epoch:
            raise KeyboardInterrupt

    def on_batch(self, loss):
        pass

    def on_epoch_end(self, epoch, record):
        pass


def test_cosine_schedule_warms_up_then_decays():
    lrs = [lr_at_step(s, 1e-3, 1e-7, warmup_steps=10, period_steps=90) for s in range(100)]
    assert lrs[0] == 0.0 and lrs[9] == pytest.approx(9e-4) and lrs[10] == pytest.approx(1e-3)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))
    assert lrs[-1] == pytest.approx(1e-7, abs=1e-6)


def test_run_saves_every_seed_and_evaluate_reproduces_its_test_metrics(small_sample, tiny_gpt2, tmp_path):
    dataset, path = small_sample
    results = train_run(dataset, spec_for(tiny_gpt2, seeds=(0, 1)), tmp_path / "run")
    assert set(results["seeds"]) == {"0", "1"} and "Mult_acc_2" in results["mean"]
    for seed in (0, 1):
        seed_dir = tmp_path / "run" / f"seed_{seed}"
        assert (seed_dir / "best" / "model.safetensors").is_file()
        assert all((seed_dir / "plots" / f).is_file() for f in ("curves.png", "scatter_test.png", "confusion_test.png"))
    csv_rows = (tmp_path / "run" / "results.csv").read_text().splitlines()
    assert csv_rows[0].startswith("seed,") and csv_rows[-2].startswith("mean") and csv_rows[-1].startswith("std")
    # `deepmlf evaluate` on the run recomputes exactly the metrics training wrote.
    out = runner.invoke(app, ["evaluate", str(tmp_path / "run"), "--json", "--device", "cpu"])
    assert out.exit_code == 0, out.output
    evaluated = json.loads(out.stdout)
    for seed in ("0", "1"):
        trained = json.loads((tmp_path / "run" / f"seed_{seed}" / "metrics.json").read_text())["test"]
        for name, value in trained.items():
            assert evaluated["seeds"][seed][name] == pytest.approx(value, abs=1e-6, nan_ok=True)


def test_an_interrupted_run_resumes_without_losing_finished_epochs(small_sample, tiny_gpt2, tmp_path):
    dataset, _ = small_sample
    spec = spec_for(tiny_gpt2, epochs=3, patience=10)
    with pytest.raises(KeyboardInterrupt):
        train_run(dataset, spec, tmp_path / "run", progress=lambda s: StopAt(2))
    state = json.loads((tmp_path / "run" / "seed_0" / "state" / "state.json").read_text())
    assert state["epoch"] == 2 and len(state["history"]) == 2
    assert not list((tmp_path / "run").rglob("*.tmp"))
    # Without --resume an existing run is refused, not overwritten.
    with pytest.raises(Exception, match="--resume"):
        train_run(dataset, spec, tmp_path / "run")
    started = []

    class Record(StopAt):
        def on_epoch_start(self, epoch, n):
            started.append(epoch)

    train_run(dataset, spec, tmp_path / "run", resume=True, progress=lambda s: Record(-1))
    assert started == [2]  # only the missing epoch ran
    history = json.loads((tmp_path / "run" / "seed_0" / "history.json").read_text())
    assert [h["epoch"] for h in history] == [0, 1, 2]


def test_pretrained_av_encoder_initialises_deepmlf(small_sample, tiny_gpt2, tmp_path):
    from models.checkpoint import read_checkpoint
    from models.nn.av_pretrain import load_av_weights
    from models.nn.deepmlf import DeepMLF

    dataset, _ = small_sample
    pre = spec_for(tiny_gpt2, epochs=1, kind="av", schedule="plateau")
    train_run(dataset, pre, tmp_path / "pre")
    weights = read_checkpoint(tmp_path / "pre" / "seed_0" / "best").weights
    config = pre.model.replace(d_audio=dataset.d_audio, d_vision=dataset.d_vision)
    model, _ = DeepMLF.from_config(config)
    assert load_av_weights(model, weights, freeze=True) > 10
    assert torch.equal(model.av_encoder.fusion.weight, weights["av_encoder.fusion.weight"])
    assert not any(p.requires_grad for p in model.av_encoder.parameters())
    # Pre&Fro checkpoints keep the frozen encoder (it does not come from the LM).
    assert "av_encoder.fusion.weight" in model.trainable_state_dict()


def test_cli_train_with_config_file_and_overrides(small_sample, tiny_gpt2, tmp_path):
    _, path = small_sample
    config = tmp_path / "exp.toml"
    config.write_text(
        'preset = "sample"\n[model]\nn_fusion = 3\nmm_layers = [2, 3]\n[train]\nbatch_size = 16\n'
        "grad_accum = 1\nmax_epochs = 5\n"
    )
    out = runner.invoke(
        app,
        [
            "train",
            "--dataset",
            str(path),
            "--config",
            str(config),
            "--lm",
            str(tiny_gpt2),
            "--epochs",
            "1",
            "--out",
            str(tmp_path / "r"),
            "--quiet",
            "--json",
            "--device",
            "cpu",
        ],
    )
    assert out.exit_code == 0, out.output
    saved = json.loads((tmp_path / "r" / "run.json").read_text())["spec"]
    assert saved["model"]["n_fusion"] == 3 and saved["model"]["mm_layers"] == [2, 3]
    assert saved["train"]["max_epochs"] == 1 and saved["train"]["batch_size"] == 16  # CLI beats the file
    bad = tmp_path / "bad.toml"
    bad.write_text("[model]\nn_fuson = 3\n")
    out = runner.invoke(
        app,
        ["train", "--dataset", str(path), "--config", str(bad), "--lm", str(tiny_gpt2), "--out", str(tmp_path / "r2")],
    )
    assert out.exit_code == 1 and "n_fuson" in out.output and "Traceback" not in out.output
    bad.write_text("epochs = 3\n")  # the fix names [model] and [train]: printed as text, not Rich markup
    out = runner.invoke(
        app,
        ["train", "--dataset", str(path), "--config", str(bad), "--lm", str(tiny_gpt2), "--out", str(tmp_path / "r3")],
    )
    assert out.exit_code == 1 and "use preset, [model] and [train]" in out.output


def test_cli_errors_are_one_line(tmp_path):
    out = runner.invoke(app, ["train", "--dataset", str(tmp_path / "nope.pkl")])
    assert out.exit_code == 1 and "Traceback" not in out.output and "nope.pkl" in out.output
    out = runner.invoke(app, ["evaluate", str(tmp_path / "no-run")])
    assert out.exit_code == 1 and "does not exist" in out.output


def test_evaluate_scores_a_predictions_csv(tmp_path):
    csv = tmp_path / "p.csv"
    csv.write_text("label,prediction\n0.8,0.6\n-0.4,-0.2\n0.2,-0.1\n-1.0,-0.9\n")
    out = runner.invoke(app, ["evaluate", "--predictions", str(csv), "--scheme", "sims", "--json"])
    assert out.exit_code == 0, out.output
    metrics = json.loads(out.stdout)["metrics"]
    assert metrics["Mult_acc_2"] == pytest.approx(0.75)
    assert metrics["MAE"] == pytest.approx(np.mean([0.2, 0.2, 0.3, 0.1]), abs=1e-6)
    out = runner.invoke(app, ["evaluate", "--predictions", str(csv)])
    assert out.exit_code == 1 and "--scheme" in out.output


@pytest.mark.slow
def test_torchrun_two_processes_with_gloo(small_sample, tiny_gpt2, tmp_path):
    _, path = small_sample
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(free_port()),
        "-m",
        "deepmlf_cli.app",
        "train",
        "--dataset",
        str(path),
        "--preset",
        "sample",
        "--lm",
        str(tiny_gpt2),
        "--epochs",
        "1",
        "--batch-size",
        "8",
        "--out",
        str(tmp_path / "ddp"),
        "--quiet",
        "--device",
        "cpu",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads((tmp_path / "ddp" / "results.json").read_text())
    assert "0" in results["seeds"] and (tmp_path / "ddp" / "seed_0" / "best" / "model.safetensors").is_file()
