"""The field's sentiment metrics, computed exactly as the MMSA toolkit computes them.

The scheme's scale, clipping and class bins are ``models.schemes.Scheme``'s.

Reference: thuiar/MMSA, ``src/MMSA/utils/metricsTop.py`` (``MetricsTop``),
regression mode:

* ``scheme="mosi"`` (CMU-MOSI and CMU-MOSEI, labels in [-3, 3]) follows
  ``__eval_mosei_regression`` (``__eval_mosi_regression`` calls it):

  - ``Has0_acc_2`` / ``Has0_F1_score``: ``>= 0`` against ``< 0`` on every clip
    (zero counts as positive).
  - ``Non0_acc_2`` / ``Non0_F1_score``: clips whose *truth* is exactly 0 are
    dropped, then ``> 0`` against ``<= 0`` (a prediction of exactly 0 counts as
    negative).
  - ``Mult_acc_5`` / ``Mult_acc_7``: ``np.round`` (half to even) of predictions
    and truth clipped to [-2, 2] / [-3, 3], compared for equality.
  - ``MAE`` and ``Corr`` (Pearson) on the *unclipped* values.
  - Every value rounded to 4 decimals, as MMSA returns them.

* ``scheme="sims"`` (CH-SIMS, labels in [-1, 1]) follows
  ``__eval_sims_regression``: predictions and truth are clipped to [-1, 1]
  first (MAE and Corr use the clipped values too), then binned with left-open,
  right-closed bins whose outer edges are -1.01 and 1.01:
  2 classes cut at 0 (so 0 is negative), 3 classes at -0.1/0.1, 5 classes at
  -0.7/-0.1/0.1/0.7. ``F1_score`` is the weighted F1 on the 2-class bins.
  MMSA does not round these.

F1 is sklearn's ``f1_score(truth, pred, average="weighted")``: per-class F1
over the classes present in truth or prediction, weighted by the class's
support in truth; a class with no predicted or no true member has F1 0.

Subtle points, each the same as MMSA unless said otherwise:

* MMSA receives float32 torch tensors, so bins, clipping and the MAE are
  computed in float32 here too (``0.1`` as a bin edge compares as
  ``float32(0.1)``); Pearson goes through ``np.corrcoef`` in float64.
* Which Acc-2 a paper means varies: MOSI/MOSEI papers in the MMSA line
  (DeepMLF included) usually quote the non-zero one; ``PRIMARY_METRICS`` lists
  ``Non0_acc_2`` first and keeps ``Has0_acc_2`` beside it.
* Constant predictions or truth make Pearson undefined: ``Corr`` is NaN (MMSA
  gets NaN from ``np.corrcoef`` too, with a warning we silence).
* All-zero truth leaves nothing for the ``Non0`` metrics: they are NaN here,
  where MMSA would crash on an empty index array.
* ``summarize_seeds`` uses ``np.std`` with ``ddof=0``, as MMSA's ``run.py`` does
  when it writes mean and std over seeds.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from models.errors import ConfigError, DatasetError, DeepMLFError
from models.schemes import SIMS_EDGES, Scheme

SCHEMES: tuple[str, ...] = tuple(s.value for s in Scheme)

# Keys in the order tables show them. The first entry is the headline number.
PRIMARY_METRICS: dict[str, tuple[str, ...]] = {s.value: s.primary_metrics for s in Scheme}

# MMSA's SIMS bin edges: (edges[i], edges[i+1]] is class i (kept here for callers; Scheme owns them).
SIMS_EDGES_2: tuple[float, ...] = SIMS_EDGES[2]
SIMS_EDGES_3: tuple[float, ...] = SIMS_EDGES[3]
SIMS_EDGES_5: tuple[float, ...] = SIMS_EDGES[5]

POLARITY_NAMES: dict[int, tuple[str, ...]] = {
    2: ("negative", "positive"),
    3: ("negative", "neutral", "positive"),
}


def _check_scheme(scheme: str) -> Scheme:
    return Scheme.parse(scheme)


def _as_vector(values, what: str) -> np.ndarray:
    """Flatten to a float32 vector, as MMSA's ``tensor.view(-1)`` does."""
    try:
        array = np.asarray(values, dtype=np.float32).reshape(-1)  # (N,)
    except (TypeError, ValueError) as exc:
        raise DeepMLFError(f"{what} must be numbers: {exc}") from exc
    if not np.all(np.isfinite(array)):
        bad = int(np.flatnonzero(~np.isfinite(array))[0])
        raise DeepMLFError(
            f"{what} hold a non-finite value at index {bad} ({array[bad]}): "
            "metrics need finite numbers; check the model output or the label file"
        )
    return array


def _accuracy(pred: np.ndarray, truth: np.ndarray) -> float:
    """Share of equal entries; NaN for empty inputs."""
    if truth.size == 0:
        return math.nan
    return float(np.mean(pred == truth))


def weighted_f1(truth: np.ndarray, pred: np.ndarray) -> float:
    """sklearn's ``f1_score(truth, pred, average="weighted")`` in numpy.

    Classes are the union of labels in ``truth`` and ``pred``; each class's F1
    is ``2·TP / (2·TP + FP + FN)`` (0 when that is 0/0) and is weighted by its
    support in ``truth``. NaN for empty inputs.
    """
    truth = np.asarray(truth).reshape(-1)  # (N,)
    pred = np.asarray(pred).reshape(-1)  # (N,)
    if truth.shape != pred.shape:
        raise DeepMLFError(f"weighted_f1: {truth.size} labels but {pred.size} predictions")
    if truth.size == 0:
        return math.nan
    total = 0.0
    for cls in np.union1d(truth, pred):
        tp = float(np.sum((pred == cls) & (truth == cls)))
        fp = float(np.sum((pred == cls) & (truth != cls)))
        fn = float(np.sum((pred != cls) & (truth == cls)))
        denom = 2.0 * tp + fp + fn
        f1 = 2.0 * tp / denom if denom > 0 else 0.0
        total += f1 * (tp + fn)  # support in truth
    return total / truth.size


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation as ``np.corrcoef(a, b)[0][1]``; NaN when either is constant."""
    a = np.asarray(a).reshape(-1)
    b = np.asarray(b).reshape(-1)
    if a.size < 2 or np.all(a == a[0]) or np.all(b == b[0]):
        return math.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(np.corrcoef(a, b)[0][1])


def _round4(value: float) -> float:
    # MMSA calls round(x, 4) on numpy scalars, i.e. np.round (half to even).
    return value if math.isnan(value) else float(np.round(value, 4))


def _mosi_metrics(pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    mae = float(np.mean(np.abs(pred - truth)))
    corr = pearson(pred, truth)
    classes = Scheme.MOSI.classes  # round(clip(±3)) / round(clip(±2)), compared for equality
    acc7 = _accuracy(classes(pred, 7), classes(truth, 7))
    acc5 = _accuracy(classes(pred, 5), classes(truth, 5))

    nonzero = truth != 0
    non0_truth = truth[nonzero] > 0
    non0_pred = pred[nonzero] > 0
    non0_acc = _accuracy(non0_pred, non0_truth)
    non0_f1 = weighted_f1(non0_truth, non0_pred)

    has0_truth = truth >= 0
    has0_pred = pred >= 0
    results = {
        "Has0_acc_2": _accuracy(has0_pred, has0_truth),
        "Has0_F1_score": weighted_f1(has0_truth, has0_pred),
        "Non0_acc_2": non0_acc,
        "Non0_F1_score": non0_f1,
        "Mult_acc_5": acc5,
        "Mult_acc_7": acc7,
        "MAE": mae,
        "Corr": corr,
    }
    return {key: _round4(value) for key, value in results.items()}


def _sims_metrics(pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    lo, hi = Scheme.SIMS.scale
    pred = np.clip(pred, lo, hi)
    truth = np.clip(truth, lo, hi)
    classes = Scheme.SIMS.classes  # bins of the clipped values
    pred2, truth2 = classes(pred, 2), classes(truth, 2)
    return {
        "Mult_acc_2": _accuracy(pred2, truth2),
        "Mult_acc_3": _accuracy(classes(pred, 3), classes(truth, 3)),
        "Mult_acc_5": _accuracy(classes(pred, 5), classes(truth, 5)),
        "F1_score": weighted_f1(truth2, pred2),
        "MAE": float(np.mean(np.abs(pred - truth))),
        "Corr": pearson(pred, truth),
    }


def compute_metrics(predictions, labels, scheme: Scheme | str) -> dict[str, float]:
    """The MMSA regression metrics for one set of predictions.

    Args:
        predictions: (N,) model outputs (any array-like; flattened).
        labels: (N,) regression truth.
        scheme: ``"mosi"`` for MOSI/MOSEI-style [-3, 3] labels, ``"sims"`` for
            CH-SIMS-style [-1, 1] labels.

    Returns:
        MMSA's metric names mapped to floats; accuracies and F1 are fractions
        in [0, 1] (not percent). See the module docstring for the exact rules.
    """
    scheme = _check_scheme(scheme)
    pred = _as_vector(predictions, "predictions")
    truth = _as_vector(labels, "labels")
    if pred.shape != truth.shape:
        raise DeepMLFError(f"{pred.size} predictions but {truth.size} labels: they must pair up one to one")
    if truth.size == 0:
        raise DeepMLFError("no predictions to score: the split is empty")
    if scheme.clips_before_scoring:
        return _sims_metrics(pred, truth)
    return _mosi_metrics(pred, truth)


def polarity_classes(values, scheme: Scheme | str, n_classes: int = 3) -> np.ndarray:
    """Map regression values to polarity classes (names in ``POLARITY_NAMES``).

    3 classes (0 negative, 1 neutral, 2 positive):
      * ``"sims"``: MMSA's 3-class SIMS bins after clipping to [-1, 1]:
        [-1, -0.1] / (-0.1, 0.1] / (0.1, 1].
      * ``"mosi"``: ``< 0`` / ``== 0`` / ``> 0``, as MMSA's MOSI classification
        labels are defined.
    2 classes (0 negative, 1 positive): the binary split each scheme's Acc-2
    uses over all clips: SIMS ``<= 0`` vs ``> 0``; MOSI ``< 0`` vs ``>= 0`` (Has0).

    Returns:
        (N,) int64 class indices.
    """
    scheme = _check_scheme(scheme)
    if n_classes not in POLARITY_NAMES:
        raise ConfigError(f"n_classes={n_classes} is not supported: use 2 or 3")
    return scheme.classes(_as_vector(values, "values"), n_classes)  # (N,)


def summarize_seeds(results: Sequence[dict[str, float]]) -> dict[str, tuple[float, float]]:
    """Mean and standard deviation of each metric over seeds.

    Uses ``np.std`` with ``ddof=0`` as MMSA's multi-seed summary does. Only
    metrics present in every seed's dict are summarised, in the first dict's
    key order.
    """
    if not results:
        raise DeepMLFError("no seed results to summarise: run at least one seed")
    keys = [key for key in results[0] if all(key in r for r in results)]
    summary: dict[str, tuple[float, float]] = {}
    for key in keys:
        values = np.asarray([float(r[key]) for r in results], dtype=np.float64)  # (S,)
        summary[key] = (float(np.mean(values)), float(np.std(values)))
    return summary


def read_predictions_csv(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read a CSV with ``label`` and ``prediction`` columns.

    Returns:
        ``(predictions, labels)``, each (N,) float64.

    Raises:
        DatasetError: missing file or columns, an empty file, or a row whose
            label or prediction is not a finite number (the row is named by its
            1-based line number in the file, the header being line 1).
    """
    import pandas as pd  # local: the metrics themselves need only numpy

    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: no such predictions file (a CSV with label,prediction columns)")
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path}: not a readable CSV ({exc})") from exc
    columns = [str(c).strip() for c in frame.columns]
    frame.columns = columns
    missing = [c for c in ("label", "prediction") if c not in columns]
    if missing:
        raise DatasetError(
            f"{path}: missing column(s) {', '.join(missing)}; found {', '.join(columns) or 'none'}. "
            "The file needs a header with 'label' and 'prediction'"
        )
    if len(frame) == 0:
        raise DatasetError(f"{path}: has a header but no rows")
    out = {}
    for column in ("prediction", "label"):
        numbers = pd.to_numeric(frame[column].str.strip(), errors="coerce").to_numpy(np.float64)
        bad = np.flatnonzero(~np.isfinite(numbers))
        if bad.size:
            row = int(bad[0])
            raise DatasetError(
                f"{path}: line {row + 2} has {column}={frame[column].iloc[row]!r}, not a finite number"
                f" ({bad.size} such row(s)); fix or drop those rows"
            )
        out[column] = numbers
    return out["prediction"], out["label"]


def summarize_run(rows: Mapping[Any, dict[str, float]], scheme: str) -> dict[str, Any]:
    """A run's results: per-seed metric rows (seed → metrics) plus mean ± std over seeds."""
    summary = summarize_seeds(list(rows.values()))
    return {
        "scheme": scheme,
        "primary": list(PRIMARY_METRICS[scheme]),
        "seeds": {str(k): v for k, v in rows.items()},
        "mean": {k: m for k, (m, _) in summary.items()},
        "std": {k: s for k, (_, s) in summary.items()},
    }
