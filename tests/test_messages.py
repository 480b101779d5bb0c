"""Messages that said the wrong thing (issue 19 items 13, 16, 20): each names what is true and the fix."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from typer.testing import CliRunner

from deepmlf_cli.app import app

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


def _help(*command: str) -> str:
    res = runner.invoke(app, [*command, "--help"], env={"COLUMNS": "400", "TERM": "dumb", "NO_COLOR": "1"})
    assert res.exit_code == 0, res.output
    return res.output


# --------------------------------------------------------------------------- item 20: README and --help
def _readme_commands() -> list[list[str]]:
    """Every `deepmlf CMD ...` line of the README's code blocks, as words (comments dropped)."""
    commands, in_code = [], False
    for line in (ROOT / "README.md").read_text().splitlines():
        if line.startswith("```"):
            in_code = not in_code
        elif in_code and line.strip().startswith("deepmlf "):
            commands.append(shlex.split(line.split("#")[0]))
    return commands


def test_every_flag_the_readme_uses_is_shown_by_its_commands_help():
    commands = _readme_commands()
    assert len(commands) > 10
    helps: dict[tuple[str, ...], str] = {}
    for words in commands:
        command = tuple(words[1:3]) if words[1] == "study" else (words[1],)
        helps.setdefault(command, _help(*command))
        for flag in (w.split("=")[0] for w in words if w.startswith("--")):
            assert re.search(rf"{re.escape(flag)}\b", helps[command]), f"`{' '.join(words)}`: {flag} hidden by --help"


def test_train_help_lists_every_preset():
    from models.config import PRESETS

    text = _help("train")
    for name in PRESETS:
        assert name in text.split("--preset", 1)[1].split("--", 1)[0], name


# --------------------------------------------------------------------------- item 20: LM paths
def test_a_relative_lm_folder_missing_says_it_is_relative_to_the_current_directory(tmp_path, monkeypatch):
    from models.errors import ModelNotAvailableError
    from models.nn.lm import resolve_lm_source

    monkeypatch.chdir(tmp_path)
    with pytest.raises(
        ModelNotAvailableError,
        match=rf"runs/demo/tiny-gpt2 \(relative to the current directory, "
        rf"{re.escape(str(tmp_path))}\) does not exist.*make demo",
    ):
        resolve_lm_source("runs/demo/tiny-gpt2")


def test_a_missing_bare_lm_folder_does_not_suggest_hf_download(tmp_path, monkeypatch):
    import huggingface_hub.constants

    from models.errors import ModelNotAvailableError
    from models.nn.lm import resolve_lm_source

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "cache"))
    with pytest.raises(ModelNotAvailableError) as info:
        resolve_lm_source("lmcopy")
    text = str(info.value)
    assert "hf download" not in text and "no directory lmcopy" in text and "--lm path" in text
    with pytest.raises(ModelNotAvailableError, match="`hf download gpt2`"):  # a legacy hub id still is one
        resolve_lm_source("gpt2")


# --------------------------------------------------------------------------- item 20: our own MMSA pickle
def test_our_mmsa_pickle_keeps_the_feature_recipe_so_its_runs_can_predict(tmp_path):
    from test_extract import _mmsa_corpus

    from deepmlf_cli.predictor import model_recipe
    from models.data.load import load_dataset
    from models.training.experiment import dataset_info

    root = _mmsa_corpus(tmp_path / "SIMS")
    out = tmp_path / "ds"
    res = runner.invoke(app, ["extract", str(root), "--out", str(out), "--format", "mmsa", "-q"])
    assert res.exit_code == 0, res.output
    folder, pickled = load_dataset(out), load_dataset(out / "ds.pkl")
    assert pickled.recipe == folder.recipe and pickled.recipe
    assert pickled.audio_features == folder.audio_features and pickled.vision_rate_hz == folder.vision_rate_hz
    # what predict reads from a run trained on the pickle: the recipe, not "cannot be computed from raw video"
    assert (
        model_recipe({"dataset": dataset_info(pickled)}, tmp_path).to_dict()
        == model_recipe({"dataset": dataset_info(folder)}, tmp_path).to_dict()
    )


# --------------------------------------------------------------------------- item 21: a copied run with its data
def test_a_run_copied_with_its_data_and_lm_resumes_there_by_content_not_path(tiny_gpt2, tmp_path):
    import shutil

    from test_training import spec_for

    from models.data.format import save_dataset
    from models.data.load import load_dataset
    from models.data.sample import make_sample_dataset
    from models.errors import CheckpointError, ConfigError
    from models.run import Run
    from models.training.experiment import train_run

    old = tmp_path / "old" / "demo"
    save_dataset(make_sample_dataset(n_train=24, n_valid=12, n_test=12, seed=3), old / "sample")
    shutil.copytree(tiny_gpt2, old / "tiny-gpt2")
    train_run(load_dataset(old / "sample"), spec_for(old / "tiny-gpt2", epochs=1), old / "run", device="cpu")
    new = tmp_path / "elsewhere" / "copy"
    shutil.copytree(old, new)
    best = Run(new / "run").best() / "model.safetensors"
    stamp = best.stat().st_mtime_ns
    shutil.rmtree(tmp_path / "old")  # moved, not only copied: the old paths are gone
    train_run(
        load_dataset(new / "sample"), spec_for(new / "tiny-gpt2", epochs=1), new / "run", resume=True, device="cpu"
    )
    assert best.stat().st_mtime_ns == stamp  # the finished seed is recognised, not retrained
    # other content at the new place is still another dataset
    save_dataset(make_sample_dataset(n_train=24, n_valid=12, n_test=12, seed=4), tmp_path / "other")
    with pytest.raises(ConfigError, match="other content"):
        train_run(
            load_dataset(tmp_path / "other"),
            spec_for(new / "tiny-gpt2", epochs=1),
            new / "run",
            resume=True,
            device="cpu",
        )
    # and an LM with other weights in the LM's new place is refused
    import torch
    from transformers import AutoModelForCausalLM

    lm = AutoModelForCausalLM.from_pretrained(str(new / "tiny-gpt2"))
    with torch.no_grad():
        next(lm.parameters()).add_(1.0)
    lm.save_pretrained(str(new / "tiny-gpt2"))
    with pytest.raises(CheckpointError, match="other weights"):
        train_run(
            load_dataset(new / "sample"), spec_for(new / "tiny-gpt2", epochs=1), new / "run", resume=True, device="cpu"
        )


# --------------------------------------------------------------------------- item 13: a train split below a batch
def test_a_train_split_smaller_than_a_batch_trains_with_a_note(tiny_gpt2, tmp_path):
    from test_training import spec_for

    from models.data.format import save_dataset
    from models.data.load import load_dataset
    from models.data.sample import make_sample_dataset

    data = tmp_path / "one"
    save_dataset(make_sample_dataset(n_train=1, n_valid=4, n_test=4, seed=3), data)
    res = runner.invoke(
        app,
        [
            "train",
            "--dataset",
            str(data),
            "--lm",
            str(tiny_gpt2),
            "--preset",
            "sample",
            "--epochs",
            "1",
            "--out",
            str(tmp_path / "run"),
            "--device",
            "cpu",
            "--json",
        ],
    )
    assert res.exit_code == 0, res.output
    import json

    notes = json.loads(res.stdout)["notes"]
    assert any("only 1 clip(s), fewer than one batch" in n and "--batch-size" in n for n in notes), notes
    # a train split of a batch or more: no such note
    from models.training.experiment import small_train_note

    assert small_train_note(load_dataset(data), spec_for(tiny_gpt2).train) is not None
    save_dataset(make_sample_dataset(n_train=16, n_valid=4, n_test=4, seed=3), tmp_path / "sixteen")
    assert small_train_note(load_dataset(tmp_path / "sixteen"), spec_for(tiny_gpt2).train) is None  # batch 16


# --------------------------------------------------------------------------- item 16: study with layers outside the LM
def test_study_with_layers_outside_the_lm_names_the_study_s_own_options_and_leaves_nothing(tiny_gpt2, tmp_path):
    from models.data.format import save_dataset
    from models.data.sample import make_sample_dataset

    data = save_dataset(make_sample_dataset(n_train=8, n_valid=4, n_test=4), tmp_path / "sample")
    out = tmp_path / "studies" / "gating"
    res = runner.invoke(
        app,
        [
            "study",
            "gating",
            "--dataset",
            str(data),
            "--preset",
            "mosi",
            "--lm",
            str(tiny_gpt2),
            "--epochs",
            "1",
            "--device",
            "cpu",
            "--out",
            str(out),
        ],
    )
    assert res.exit_code == 1, res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and "--mm-layers" not in lines[0], res.output  # no bare "sigmoid" heading either
    assert "variant sigmoid" in lines[0] and "--preset" in lines[0] and "--config" in lines[0], lines[0]
    assert not out.exists()  # no empty studies/gating/sigmoid/ (nor studies/gating/)


def test_a_study_variant_heading_names_the_study(tiny_gpt2, tmp_path, monkeypatch, capsys):
    import models.training.studies as studies
    from deepmlf_cli.workflows.study import study_with_progress
    from models.data.format import save_dataset
    from models.data.sample import make_sample_dataset

    def fake_run_study(name, data, spec, out_dir, on_variant=None, **_):
        on_variant("sigmoid")  # what run_study does before each variant's training
        return {"rows": []}

    monkeypatch.setattr(studies, "run_study", fake_run_study)
    data = save_dataset(make_sample_dataset(n_train=8, n_valid=4, n_test=4), tmp_path / "sample")
    study_with_progress(
        "gating",
        str(data),
        None,
        tmp_path / "out",
        preset="sample",
        config=None,
        lm=str(tiny_gpt2),
        epochs=1,
        seeds=None,
    )
    printed = [line.strip() for line in capsys.readouterr().out.splitlines() if "sigmoid" in line]
    assert printed == ["study gating · variant sigmoid"], printed
