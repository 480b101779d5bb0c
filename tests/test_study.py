"""`deepmlf study`: variants of every study, and one study end to end on a tiny sample."""

from __future__ import annotations

import csv
import json

import pytest
from typer.testing import CliRunner

from deepmlf_cli.app import app
from models.config import PRESETS, ModelConfig
from models.errors import ConfigError
from models.training.studies import STUDIES, depth_layer_sets, study_variants, variant_dir_name


def test_depth_variants_stay_inside_the_lm():
    assert depth_layer_sets(4) == [(3,), (2, 3), (1, 2, 3), (0, 1, 2, 3)]
    sets = depth_layer_sets(12)
    assert sets[0] == (11,) and sets[-1] == tuple(range(12))
    assert all(0 <= i < 12 for layers in sets for i in layers)


def test_help_lists_exactly_the_registered_studies():
    # STUDY_NAMES is a literal so that `deepmlf study --help` need not import torch; it must
    # name the studies the registry runs, in its order.
    from deepmlf_cli.workflows.study import STUDY_NAMES

    assert STUDY_NAMES.split(", ") == list(STUDIES)


def test_every_study_builds_valid_configs():
    base = PRESETS["sample"].model_config()
    for name in STUDIES:
        variants = study_variants(name, base, 4)
        assert len(variants) >= 3
        assert len({variant_dir_name(v.name) for v in variants}) == len(variants)
        for v in variants:
            base.replace(**v.model_overrides)  # validated by ModelConfig
    av = study_variants("av-init", base, 4)
    assert [(v.name, v.init_av, v.freeze_av) for v in av] == [
        ("Pre&Tune", "pretrain", False),
        ("Pre&Fro", "pretrain", True),
        ("Random&Tune", None, False),
    ]
    inputs = study_variants("fusion-inputs", base, 4)
    assert {(v.model_overrides["fusion_inputs"], v.model_overrides["ffw_mode"]) for v in inputs} == {
        (i, f) for i in ("fusion", "text", "both") for f in ("full", "none")
    }
    with pytest.raises(ConfigError, match="unknown study"):
        study_variants("nope", ModelConfig(), 4)


def test_av_init_study_end_to_end(tmp_path, tiny_gpt2):
    from models.data.format import save_dataset
    from models.data.sample import make_sample_dataset

    data_dir = save_dataset(make_sample_dataset(n_train=32, n_valid=16, n_test=16), tmp_path / "sample")
    out = tmp_path / "study"
    args = [
        "study",
        "av-init",
        "--dataset",
        str(data_dir),
        "--preset",
        "sample",
        "--lm",
        str(tiny_gpt2),
        "--epochs",
        "1",
        "--device",
        "cpu",
        "--out",
        str(out),
        "--quiet",
        "--json",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    study = json.loads(result.output)
    assert [r["name"] for r in study["rows"]] == ["Pre&Tune", "Pre&Fro", "Random&Tune"]
    assert (out / "pretrain" / "results.json").is_file()
    spec = json.loads((out / "pre-fro" / "run.json").read_text())["spec"]
    assert spec["freeze_av"] and spec["init_av"] == str(out / "pretrain")
    rows = list(csv.DictReader((out / "study.csv").open()))
    assert [r["variant"] for r in rows] == ["Pre&Tune", "Pre&Fro", "Random&Tune"]
    assert "Mult_acc_2_mean" in rows[0]
    assert (out / "study.png").stat().st_size > 0
    # Re-running resumes: every variant is read back, nothing retrained.
    before = (out / "pre-tune" / "results.json").stat().st_mtime_ns
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0, again.output
    assert (out / "pre-tune" / "results.json").stat().st_mtime_ns == before
