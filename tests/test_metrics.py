"""MMSA metrics: hand-computed cases, edge cases, and a cross-check against sklearn."""

from __future__ import annotations

import math

import numpy as np
import pytest

from models.errors import ConfigError, DatasetError, DeepMLFError
from models.evaluation.metrics import (
    PRIMARY_METRICS,
    compute_metrics,
    pearson,
    polarity_classes,
    read_predictions_csv,
    summarize_seeds,
    weighted_f1,
)

# --- MOSI/MOSEI scheme -----------------------------------------------------

MOSI_TRUTH = [-2.0, -0.5, 0.0, 1.0, 2.5, 3.5]
MOSI_PRED = [-1.5, 0.4, 0.0, -0.2, 2.6, 1.4]


def test_mosi_hand_computed():
    m = compute_metrics(MOSI_PRED, MOSI_TRUTH, "mosi")
    assert list(m) == [
        "Has0_acc_2",
        "Has0_F1_score",
        "Non0_acc_2",
        "Non0_F1_score",
        "Mult_acc_5",
        "Mult_acc_7",
        "MAE",
        "Corr",
    ]
    # Has0: truth >= 0 -> FFTTTT, pred >= 0 -> FTTFTT: 4 of 6 agree.
    assert m["Has0_acc_2"] == 0.6667
    # class F: TP1 FP1 FN1 -> F1 .5 (support 2); class T: TP3 FP1 FN1 -> .75 (support 4)
    assert m["Has0_F1_score"] == 0.6667
    # Non0 drops the truth-0 clip: truth>0 FFTTT, pred>0 FTFTT -> 3 of 5.
    assert m["Non0_acc_2"] == 0.6
    # class F: F1 .5 (support 2); class T: TP2 FP1 FN1 -> 2/3 (support 3) -> 3/5
    assert m["Non0_F1_score"] == 0.6
    # Acc-7 rounds clip(+-3): truth -2,-0,0,1,2,3 vs pred -2,0,0,-0,3,1 -> 3/6
    assert m["Mult_acc_7"] == 0.5
    # Acc-5 rounds clip(+-2): truth -2,-0,0,1,2,2 vs pred -2,0,0,-0,2,1 -> 4/6
    assert m["Mult_acc_5"] == 0.6667
    # MAE on unclipped values: (.5+.9+0+1.2+.1+2.1)/6
    assert m["MAE"] == 0.8
    expected_corr = np.corrcoef(np.float32(MOSI_PRED), np.float32(MOSI_TRUTH))[0, 1]
    assert m["Corr"] == round(float(expected_corr), 4)


def test_mosi_zero_prediction_is_positive_for_has0_negative_for_non0():
    m = compute_metrics([0.0, 0.0], [1.0, -1.0], "mosi")
    assert m["Has0_acc_2"] == 0.5  # 0 >= 0 is positive: right for 1, wrong for -1
    assert m["Non0_acc_2"] == 0.5  # 0 > 0 is False (negative): wrong for 1, right for -1


def test_mosi_rounding_is_half_to_even():
    # np.round(0.5) == 0, np.round(1.5) == 2, np.round(2.5) == 2, np.round(-0.5) == -0.
    truth = [0.0, 2.0, 2.0, 0.0]
    pred = [0.5, 1.5, 2.5, -0.5]
    m = compute_metrics(pred, truth, "mosi")
    assert m["Mult_acc_7"] == 1.0
    # clip(+-2) first: 2.5 -> 2; still all equal
    assert m["Mult_acc_5"] == 1.0
    # and 3.5 clipped to 3 for Acc-7 rounds to 3, 2.5 stays 2
    assert compute_metrics([3.5], [3.0], "mosi")["Mult_acc_7"] == 1.0
    assert compute_metrics([2.5], [3.0], "mosi")["Mult_acc_7"] == 0.0


def test_mosi_all_zero_truth_leaves_non0_undefined():
    m = compute_metrics([0.3, -0.2, 0.0], [0.0, 0.0, 0.0], "mosi")
    assert math.isnan(m["Non0_acc_2"]) and math.isnan(m["Non0_F1_score"])
    assert m["Has0_acc_2"] == 0.6667
    # only class True in truth: F1 of True = 2*2/(2*2+0+1) = .8, weight 1
    assert m["Has0_F1_score"] == 0.8
    assert math.isnan(m["Corr"])  # constant truth


def test_mosi_values_are_rounded_to_4_places():
    m = compute_metrics([0.1, 0.2, 0.3], [0.0, 0.5, 1.0], "mosi")
    for value in m.values():
        assert math.isnan(value) or value == round(value, 4)


# --- SIMS scheme -----------------------------------------------------------

SIMS_TRUTH = [-1.0, -0.6, -0.2, 0.0, 0.2, 0.8, 1.0]
SIMS_PRED = [-1.3, -0.05, 0.0, 0.1, 0.12, 0.7, 0.71]


def test_sims_hand_computed():
    m = compute_metrics(SIMS_PRED, SIMS_TRUTH, "sims")
    assert list(m) == ["Mult_acc_2", "Mult_acc_3", "Mult_acc_5", "F1_score", "MAE", "Corr"]
    # 2 bins (-1.01,0] (0,1.01]: truth 0000111, pred 0001111
    assert m["Mult_acc_2"] == pytest.approx(6 / 7)
    # 3 bins cut at -.1/.1: truth 0001222, pred 0111222 (0.1 is in the middle bin)
    assert m["Mult_acc_3"] == pytest.approx(5 / 7)
    # 5 bins -.7/-.1/.1/.7: truth 0112344, pred 0222334 (0.7 is in bin 3)
    assert m["Mult_acc_5"] == pytest.approx(4 / 7)
    # both classes have F1 6/7
    assert m["F1_score"] == pytest.approx(6 / 7)
    # clipped first: -1.3 -> -1
    assert m["MAE"] == pytest.approx((0 + 0.55 + 0.2 + 0.1 + 0.08 + 0.1 + 0.29) / 7, abs=1e-6)
    clipped = np.clip(np.float32(SIMS_PRED), -1, 1)
    assert m["Corr"] == pytest.approx(np.corrcoef(clipped, np.float32(SIMS_TRUTH))[0, 1])


def test_sims_clips_before_everything():
    # Out-of-range predictions are clipped: 5.0 -> 1.0 gives MAE 0 against 1.0.
    m = compute_metrics([5.0, -7.0], [1.0, -1.0], "sims")
    assert m["MAE"] == 0.0
    assert m["Mult_acc_5"] == 1.0
    assert m["Corr"] == pytest.approx(1.0)


def test_sims_zero_is_negative():
    m = compute_metrics([0.0, 0.01], [-0.2, 0.2], "sims")
    assert m["Mult_acc_2"] == 1.0


# --- helpers ---------------------------------------------------------------


def test_weighted_f1_matches_hand_value():
    # classes a,b,c; truth supports 3,2,1
    truth = np.array([0, 0, 0, 1, 1, 2])
    pred = np.array([0, 0, 1, 1, 2, 2])
    # class0: TP2 FP0 FN1 -> 4/5; class1: TP1 FP1 FN1 -> 1/2; class2: TP1 FP1 FN0 -> 2/3
    expected = (0.8 * 3 + 0.5 * 2 + (2 / 3) * 1) / 6
    assert weighted_f1(truth, pred) == pytest.approx(expected)


def test_pearson_constant_is_nan():
    assert math.isnan(pearson([1, 1, 1], [1, 2, 3]))
    assert pearson([1, 2, 3], [2, 4, 6]) == pytest.approx(1.0)


def test_polarity_classes():
    sims = polarity_classes([-1.0, -0.1, -0.09, 0.1, 0.11, 3.0], "sims")
    assert sims.tolist() == [0, 0, 1, 1, 2, 2]
    assert polarity_classes([-0.2, 0.0, 0.2], "sims", n_classes=2).tolist() == [0, 0, 1]
    mosi = polarity_classes([-2.0, -0.01, 0.0, 0.01, 3.0], "mosi")
    assert mosi.tolist() == [0, 0, 1, 2, 2]
    assert polarity_classes([-0.5, 0.0, 0.5], "mosi", n_classes=2).tolist() == [0, 1, 1]
    with pytest.raises(ConfigError):
        polarity_classes([0.0], "mosi", n_classes=5)


def test_summarize_seeds_population_std():
    summary = summarize_seeds([{"MAE": 1.0, "Corr": 0.5}, {"MAE": 3.0, "Corr": 0.5}])
    assert summary == {"MAE": (2.0, 1.0), "Corr": (0.5, 0.0)}
    with pytest.raises(DeepMLFError):
        summarize_seeds([])


def test_primary_metrics_are_computed_keys():
    for scheme in ("mosi", "sims"):
        keys = compute_metrics([0.1, -0.3, 0.5], [0.2, -0.4, 0.6], scheme)
        assert set(PRIMARY_METRICS[scheme]) <= set(keys)


def test_bad_inputs():
    with pytest.raises(ConfigError, match="scheme"):
        compute_metrics([0.0], [0.0], "mosei")
    with pytest.raises(DeepMLFError, match="pair up"):
        compute_metrics([0.0, 1.0], [0.0], "mosi")
    with pytest.raises(DeepMLFError, match="index 1"):
        compute_metrics([0.0, float("nan")], [0.0, 1.0], "sims")
    with pytest.raises(DeepMLFError, match="empty"):
        compute_metrics([], [], "sims")


# --- predictions CSV -------------------------------------------------------


def test_read_predictions_csv(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text("id,label,prediction\na,0.2,0.1\nb,-1,-0.4\n")
    pred, label = read_predictions_csv(path)
    assert pred.tolist() == [0.1, -0.4]
    assert label.tolist() == [0.2, -1.0]


def test_read_predictions_csv_errors(tmp_path):
    with pytest.raises(DatasetError, match="no such"):
        read_predictions_csv(tmp_path / "missing.csv")
    path = tmp_path / "p.csv"
    path.write_text("label,pred\n0,1\n")
    with pytest.raises(DatasetError, match="missing column.*prediction.*found label, pred"):
        read_predictions_csv(path)
    path.write_text("label,prediction\n0,1\n0.5,abc\n")
    with pytest.raises(DatasetError, match="line 3 has prediction='abc'"):
        read_predictions_csv(path)
    path.write_text("label,prediction\n0,1\n,0.2\n")
    with pytest.raises(DatasetError, match="line 3 has label=''"):
        read_predictions_csv(path)
    path.write_text("label,prediction\nnan,1\n")
    with pytest.raises(DatasetError, match="line 2"):
        read_predictions_csv(path)
    path.write_text("label,prediction\n")
    with pytest.raises(DatasetError, match="no rows"):
        read_predictions_csv(path)


# --- cross-check against sklearn (tests only) ------------------------------


def _sklearn_reference(pred, truth, scheme):
    """An independent re-statement of MMSA's rules using sklearn's scorers."""
    sk = pytest.importorskip("sklearn.metrics", reason="scikit-learn (a librosa dependency) is not installed")
    pred = np.asarray(pred, np.float32)
    truth = np.asarray(truth, np.float32)
    if scheme == "mosi":
        nz = truth != 0
        return {
            "Has0_acc_2": sk.accuracy_score(pred >= 0, truth >= 0),
            "Has0_F1_score": sk.f1_score(truth >= 0, pred >= 0, average="weighted"),
            "Non0_acc_2": sk.accuracy_score(pred[nz] > 0, truth[nz] > 0),
            "Non0_F1_score": sk.f1_score(truth[nz] > 0, pred[nz] > 0, average="weighted"),
            "Mult_acc_5": np.mean(np.round(np.clip(pred, -2, 2)) == np.round(np.clip(truth, -2, 2))),
            "Mult_acc_7": np.mean(np.round(np.clip(pred, -3, 3)) == np.round(np.clip(truth, -3, 3))),
            "MAE": np.mean(np.abs(pred - truth)),
            "Corr": np.corrcoef(pred, truth)[0][1],
        }
    pred = np.clip(pred, -1, 1)
    truth = np.clip(truth, -1, 1)
    cut2 = np.digitize(truth, [0.0], right=True), np.digitize(pred, [0.0], right=True)
    cut3 = [np.digitize(x, np.float32([-0.1, 0.1]), right=True) for x in (truth, pred)]
    cut5 = [np.digitize(x, np.float32([-0.7, -0.1, 0.1, 0.7]), right=True) for x in (truth, pred)]
    return {
        "Mult_acc_2": sk.accuracy_score(*cut2),
        "Mult_acc_3": sk.accuracy_score(*cut3),
        "Mult_acc_5": sk.accuracy_score(*cut5),
        "F1_score": sk.f1_score(cut2[0], cut2[1], average="weighted"),
        "MAE": np.mean(np.abs(pred - truth)),
        "Corr": np.corrcoef(pred, truth)[0][1],
    }


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("scheme", ["mosi", "sims"])
def test_matches_sklearn_reference(scheme, seed):
    rng = np.random.default_rng(seed)
    span = 3.0 if scheme == "mosi" else 1.0
    step = 1 / 3 if scheme == "mosi" else 0.2  # label grids of the real datasets
    truth = np.round(rng.uniform(-span, span, 300) / step) * step
    pred = truth * 0.6 + rng.normal(0, 0.5 * span, 300)
    pred[:10] = 0.0  # exact zeros exercise the >=0 / >0 boundary
    ours = compute_metrics(pred, truth, scheme)
    ref = _sklearn_reference(pred, truth, scheme)
    assert list(ours) == list(ref)
    for key in ref:
        expected = round(float(ref[key]), 4) if scheme == "mosi" else float(ref[key])
        assert ours[key] == pytest.approx(expected, abs=1e-6), key
