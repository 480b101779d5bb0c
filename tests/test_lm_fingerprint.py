"""A run records a fingerprint of its LM's weights; evaluate and predict refuse other weights (issue 19 item 14)."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from test_training import small_sample, spec_for  # noqa: F401  (fixture re-used)
from typer.testing import CliRunner

from deepmlf_cli.app import app
from models.checkpoint import lm_fingerprint, load_model
from models.errors import CheckpointError
from models.run import Run
from models.training.experiment import train_run


@pytest.fixture(scope="module")
def trained(small_sample, tiny_gpt2, tmp_path_factory):  # noqa: F811
    dataset, data_dir = small_sample
    run_dir = tmp_path_factory.mktemp("fp") / "run"
    train_run(dataset, spec_for(tiny_gpt2, epochs=1), run_dir, device="cpu")
    return run_dir, data_dir


@pytest.fixture(scope="module")
def other_lm(tiny_gpt2, tmp_path_factory):
    """The same architecture and tokenizer with other weights (another checkpoint of the same model)."""
    from transformers import AutoModelForCausalLM

    target = tmp_path_factory.mktemp("other") / "lmcopy"
    shutil.copytree(tiny_gpt2, target)
    model = AutoModelForCausalLM.from_pretrained(str(tiny_gpt2))
    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    model.save_pretrained(str(target))
    return target


def test_the_fingerprint_ignores_dtype_and_place_not_weights(tiny_gpt2, other_lm, tmp_path):
    from models.nn.lm import load_causal_lm

    fp32 = lm_fingerprint(load_causal_lm(str(tiny_gpt2))[0])
    assert lm_fingerprint(load_causal_lm(str(tiny_gpt2), dtype=torch.bfloat16)[0]) == fp32  # trained bf16, run fp32
    moved = shutil.copytree(tiny_gpt2, tmp_path / "moved")
    assert lm_fingerprint(load_causal_lm(str(moved))[0]) == fp32
    assert lm_fingerprint(load_causal_lm(str(other_lm))[0]) != fp32


def test_a_run_refuses_an_lm_with_other_weights_unless_told(trained, tiny_gpt2, other_lm, tmp_path):
    run_dir, _ = trained
    best = Run(run_dir).best()
    saved = json.loads((best / "meta.json").read_text())["lm_fingerprint"]
    with pytest.raises(CheckpointError, match=rf"weights {saved}\).*{other_lm}.*--lm-mismatch ok"):
        load_model(best, lm=str(other_lm))
    assert load_model(best, lm=str(other_lm), lm_mismatch_ok=True).notes == []
    moved = shutil.copytree(tiny_gpt2, tmp_path / "moved")
    assert load_model(best, lm=str(moved)).notes == []  # the same LM at another place is fine


def test_a_checkpoint_without_a_fingerprint_loads_with_a_note(trained, tmp_path):
    run_dir, _ = trained
    old = shutil.copytree(Run(run_dir).best(), tmp_path / "old")
    meta = json.loads((old / "meta.json").read_text())
    del meta["lm_fingerprint"]
    (old / "meta.json").write_text(json.dumps(meta))
    loaded = load_model(old)
    assert len(loaded.notes) == 1 and "fingerprint" in loaded.notes[0]


def test_evaluate_with_another_lm_is_one_line_and_lm_mismatch_ok_runs_it(trained, other_lm):
    run_dir, data_dir = trained
    res = CliRunner().invoke(
        app, ["evaluate", str(run_dir), "--dataset", str(data_dir), "--lm", str(other_lm), "--device", "cpu"]
    )
    assert res.exit_code == 1
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and "other weights" in lines[0] and "--lm-mismatch ok" in lines[0], res.output
    res = CliRunner().invoke(
        app,
        [
            "evaluate",
            str(run_dir),
            "--dataset",
            str(data_dir),
            "--lm",
            str(other_lm),
            "--lm-mismatch",
            "ok",
            "--device",
            "cpu",
            "--json",
        ],
    )
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(app, ["evaluate", str(run_dir), "--lm-mismatch", "yes"])
    assert res.exit_code == 1 and "--lm-mismatch yes" in res.output


def test_predict_with_another_lm_is_one_line_naming_the_way_out(trained, other_lm, tmp_path):
    run_dir, _ = trained
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"")  # never read: the LM is checked when the run loads, before any clip
    res = CliRunner().invoke(
        app, ["predict", str(clip), "--model", str(run_dir), "--lm", str(other_lm), "--device", "cpu"]
    )
    assert res.exit_code == 1
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and "other weights" in lines[0] and "--lm-mismatch ok" in lines[0], res.output
