"""`deepmlf compare` on hand-made run directories."""

from __future__ import annotations

import csv
import io
import json

import pytest
from typer.testing import CliRunner

from deepmlf_cli.app import app
from models.errors import ConfigError, DeepMLFError
from models.evaluation.compare import compare_runs, comparison_csv, table_rows, three_class_metrics
from models.evaluation.metrics import summarize_run
from models.run import Run


def make_run(path, kind, scheme, seed_rows, predictions=None):
    path.mkdir(parents=True)
    (path / "run.json").write_text(json.dumps({"spec": {"kind": kind}, "dataset": {"name": "toy"}}))
    Run(path).write_results(summarize_run(seed_rows, scheme))
    for seed, (labels, preds) in (predictions or {}).items():
        (path / f"seed_{seed}").mkdir()
        lines = ["id,label,prediction,text_head,av_head,fusion_head"]
        lines += [f"c{i},{y},{p},nan,nan,nan" for i, (y, p) in enumerate(zip(labels, preds))]
        (path / f"seed_{seed}" / "predictions_test.csv").write_text("\n".join(lines) + "\n")
    return path


SIMS = {"Mult_acc_2": 0.0, "F1_score": 0.0, "MAE": 0.0, "Corr": 0.0, "Mult_acc_3": 0.0, "Mult_acc_5": 0.0}


def test_three_class_metrics_on_hand_made_values():
    labels = [-0.5, 0.0, 0.5, 0.5]
    preds = [-0.2, 0.05, 0.05, 0.9]  # neg ✓, neutral ✓, neutral ✗, pos ✓
    got = three_class_metrics(preds, labels, "sims")
    assert got["Acc_3"] == pytest.approx(0.75)
    # F1 per class: neg 1.0 (support 1), neutral 2/3 (support 1), pos 2/3 (support 2) → (1 + 2/3 + 4/3) / 4
    assert got["F1_3"] == pytest.approx(0.75)
    assert three_class_metrics([-1.0, 0.0, 2.0], [-3.0, 0.0, 0.1], "mosi")["Acc_3"] == 1.0


def test_comparison_table_and_csv(tmp_path):
    a = make_run(
        tmp_path / "early",
        "early",
        "sims",
        {0: {**SIMS, "Mult_acc_2": 0.6, "MAE": 0.5}, 1: {**SIMS, "Mult_acc_2": 0.8, "MAE": 0.3}},
        predictions={0: ([-0.5, 0.5], [-0.5, 0.5]), 1: ([-0.5, 0.5], [0.5, 0.5])},
    )
    b = make_run(tmp_path / "late", "late", "sims", {0: {**SIMS, "Mult_acc_2": 0.7, "MAE": 0.4}})
    comparison = compare_runs([a, b])
    assert comparison.metrics == ["Mult_acc_2", "F1_score", "MAE", "Corr", "Mult_acc_3", "Mult_acc_5", "Acc_3", "F1_3"]
    rows = table_rows(comparison)
    assert rows[0][:3] == ["early", "early", "2"]
    assert rows[0][3] == "0.7000 ± 0.1000"  # mean ± std (ddof=0) over seeds
    assert rows[0][5] == "0.4000 ± 0.1000"
    assert rows[0][9] == "0.7500 ± 0.2500"  # Acc_3 from the predictions: seed 0 1.0, seed 1 0.5
    assert rows[1][3] == "0.7000 ± 0.0000" and rows[1][9] == "–"  # no predictions saved → no 3-class metrics
    table = list(csv.DictReader(io.StringIO(comparison_csv(comparison))))
    assert [r["run"] for r in table] == ["early", "late"]
    # the CSV's seeds column is the count the table shows; the ids have their own column
    assert [r["seeds"] for r in table] == [rows[0][2], rows[1][2]] == ["2", "1"]
    assert [r["seed_ids"] for r in table] == ["0 1", "0"]
    assert float(table[0]["Mult_acc_2_mean"]) == pytest.approx(0.7)
    assert float(table[0]["Mult_acc_2_std"]) == pytest.approx(0.1)
    assert table[1]["Acc_3_mean"] == ""


def test_compare_refuses_mixed_schemes_and_missing_results(tmp_path):
    a = make_run(tmp_path / "a", "early", "sims", {0: SIMS})
    b = make_run(tmp_path / "b", "late", "mosi", {0: {"Non0_acc_2": 0.5, "MAE": 1.0}})
    with pytest.raises(ConfigError, match="different metric schemes"):
        compare_runs([a, b])
    (tmp_path / "empty").mkdir()
    with pytest.raises(DeepMLFError, match="no results.json"):
        compare_runs([tmp_path / "empty"])


def test_compare_command(tmp_path):
    a = make_run(tmp_path / "a", "early", "sims", {0: {**SIMS, "MAE": 0.25}})
    out = tmp_path / "cmp.csv"
    result = CliRunner().invoke(app, ["compare", str(a), "--csv", str(out)])
    assert result.exit_code == 0, result.output
    assert "sims metrics" in result.output and out.is_file()
    result = CliRunner().invoke(app, ["compare", str(a), "--json"])
    assert json.loads(result.output)["runs"][0]["mean"]["MAE"] == 0.25
    result = CliRunner().invoke(app, ["compare", str(a), str(tmp_path / "missing")])
    assert result.exit_code == 1 and "does not exist" in result.output
