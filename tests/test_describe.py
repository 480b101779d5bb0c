"""`deepmlf describe --random-init`: parameter parity with the paper (Tables 6-7), offline."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from deepmlf_cli.app import app

runner = CliRunner()

# (lm, layers, paper's M parameters of the MM blocks alone)
PAPER = [
    ("gpt2", "7..11", 29.75),
    ("gpt2", "5..11", 41.65),
    ("gpt2", "3..11", 53.55),
    ("gpt2-medium", "0..5", 63.30),
    ("gpt2-large", "7,14,21,28,35", 82.35),
]


@pytest.mark.parametrize("lm,layers,paper_millions", PAPER)
def test_mm_block_parameters_match_the_paper(lm, layers, paper_millions):
    result = runner.invoke(app, ["describe", "--random-init", "--lm", lm, "--mm-layers", layers, "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    mm = report["parameters"]["mm_blocks"]
    assert abs(mm["total"] / 1e6 - paper_millions) / paper_millions < 0.003
    assert mm["trainable"] == mm["total"]
    assert report["parameters"]["frozen_lm"]["trainable"] == 0


def test_describe_table_and_bad_layer():
    result = runner.invoke(app, ["describe", "--random-init", "--preset", "sims"])
    assert result.exit_code == 0, result.output
    assert "mm_blocks" in result.stdout and "41.66 M" in result.stdout
    bad = runner.invoke(app, ["describe", "--random-init", "--lm", "gpt2", "--mm-layers", "3,12"])
    assert bad.exit_code == 1
    assert "outside the LM" in bad.output and "Traceback" not in bad.output


def test_describe_prints_the_recipe_even_without_the_lm(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the sample preset's tiny LM (runs/demo/tiny-gpt2) is not here
    result = runner.invoke(app, ["describe", "--preset", "sample", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["parameters"] is None and "deepmlf demo" in report["parameters_unavailable"]
    assert report["train"]["clip_mode"] == "norm" and report["pretrain"]["train"]["schedule"] == "plateau"
    table = runner.invoke(app, ["describe", "--preset", "mosi"])
    assert table.exit_code == 0, table.output
    assert (
        "AV pretraining" in table.stdout and "cosine_period_epochs" in table.stdout and "lora_dropout" in table.stdout
    )


def test_describe_rules_follow_the_preset_and_its_overrides(tmp_path, monkeypatch):
    """The sample (no fixed dataset, copy-lm, Vaswani positions, mean readout) and an FFW-less override."""
    monkeypatch.chdir(tmp_path)
    report = json.loads(runner.invoke(app, ["describe", "--preset", "sample", "--json"]).stdout)
    rules, procedure = report["model_rules"], report["procedure"]
    assert "at_train_size" not in procedure and "at_train_size" not in report["pretrain"]["procedure"]
    assert rules["ffw_init"].startswith("copy-lm: ") and "lora_init" not in rules
    assert rules["av_positions"].startswith("vaswani: ") and rules["av_batchnorm"] == "none"
    assert report["pretrain"]["procedure"]["readout"].startswith("mean: ")
    no_ffw = json.loads(runner.invoke(app, ["describe", "--preset", "sims", "--ffw", "none", "--json"]).stdout)
    assert no_ffw["model_rules"]["ffw_init"] == "the MM blocks have no FFW (ffw_mode none)"
    assert "mlp_form" not in no_ffw["model_rules"]
    table = runner.invoke(app, ["describe", "--preset", "sims"])
    assert table.exit_code == 0 and "Model rules" in table.stdout and "at_train_size" in table.stdout
    assert "[sin | cos] halves" in table.stdout  # printed as text, not taken for Rich markup
