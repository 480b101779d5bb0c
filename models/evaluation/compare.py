"""Runs side by side: each run's test metrics as mean ± std over seeds, as table rows and CSV.

Reads what `models.training.experiment.train_run` writes (through `models.run.Run`): ``results.json`` (scheme, primary
metrics, per-seed rows, mean, std), ``run.json`` (kind, dataset) and each
seed's ``predictions_test.csv``. The 3-class polarity metrics (negative /
neutral / positive, ``models.evaluation.metrics.polarity_classes``) are computed here
from the saved predictions: the models regress, and 3-class mode is an
evaluation of their scores.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from models.errors import ConfigError, DeepMLFError
from models.evaluation.metrics import (
    PRIMARY_METRICS,
    polarity_classes,
    read_predictions_csv,
    summarize_seeds,
    weighted_f1,
)
from models.run import Run
from models.schemes import Scheme

# The 3-class metrics added to every run's row.
THREE_CLASS_METRICS: tuple[str, ...] = ("Acc_3", "F1_3")


def three_class_metrics(predictions, labels, scheme: Scheme) -> dict[str, float]:
    """Accuracy and weighted F1 over negative/neutral/positive (the scheme's 3-class bins)."""
    pred = polarity_classes(predictions, scheme, 3)
    truth = polarity_classes(labels, scheme, 3)
    return {"Acc_3": float(np.mean(pred == truth)), "F1_3": weighted_f1(truth, pred)}


@dataclass
class RunRow:
    """One run's summary: mean and std of every metric over its seeds."""

    name: str
    kind: str
    dataset: str
    scheme: str
    seeds: list[str]
    mean: dict[str, float]
    std: dict[str, float]
    path: str = ""


@dataclass
class Comparison:
    scheme: str
    metrics: list[str]  # column order
    rows: list[RunRow] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "scheme": self.scheme,
            "metrics": self.metrics,
            "runs": [
                {
                    "name": r.name,
                    "kind": r.kind,
                    "dataset": r.dataset,
                    "path": r.path,
                    "seeds": r.seeds,
                    "mean": r.mean,
                    "std": r.std,
                }
                for r in self.rows
            ],
        }


def _seed_three_class(run: Run, seeds: Sequence[str], scheme: Scheme) -> list[dict[str, float]]:
    rows = []
    for seed in seeds:
        path = run.seed_predictions(seed)
        if path is None:  # a run without saved predictions shows the regression metrics only
            return []
        predictions, labels = read_predictions_csv(path)
        rows.append(three_class_metrics(predictions, labels, scheme))
    return rows


def load_run_row(run_dir: Path, name: str | None = None) -> RunRow:
    """A run directory written by `deepmlf train` (or a study variant) → its summary row."""
    run_dir = Path(run_dir)
    run = Run(run_dir)
    results = run.results()
    if results is None:
        what = "does not exist" if not run_dir.exists() else "has no results.json (is the run finished?)"
        raise DeepMLFError(f"{run_dir} {what}; pass run directories written by `deepmlf train`")
    try:
        scheme, seed_rows = results["scheme"], results["seeds"]
    except (KeyError, TypeError) as exc:
        raise DeepMLFError(f"{run.results_file} is not a deepmlf results file (no {exc})") from None
    info: dict[str, Any] = run.info() if run.exists() else {}
    kind = info.get("spec", {}).get("kind", "?")
    dataset = info.get("dataset", {}).get("name", "?")
    seeds = list(seed_rows)
    per_seed = [dict(seed_rows[s]) for s in seeds]
    extra = _seed_three_class(run, seeds, scheme)
    if extra:
        per_seed = [{**row, **more} for row, more in zip(per_seed, extra)]
    summary = summarize_seeds(per_seed)
    return RunRow(
        name=name or run_dir.name,
        kind=kind,
        dataset=dataset,
        scheme=scheme,
        seeds=seeds,
        mean={k: m for k, (m, _) in summary.items()},
        std={k: s for k, (_, s) in summary.items()},
        path=str(run_dir),
    )


def compare_runs(run_dirs: Sequence[Path], names: Sequence[str] | None = None) -> Comparison:
    """Rows for every run; refuses runs scored with different metric schemes."""
    if not run_dirs:
        raise DeepMLFError("no runs to compare: pass one or more run directories")
    rows = [load_run_row(Path(d), names[i] if names else None) for i, d in enumerate(run_dirs)]
    schemes = sorted({r.scheme for r in rows})
    if len(schemes) > 1:
        detail = ", ".join(f"{r.name}: {r.scheme}" for r in rows)
        raise ConfigError(f"runs use different metric schemes ({detail}); compare runs of one scheme at a time")
    scheme = schemes[0]
    metrics = [m for m in (*PRIMARY_METRICS[scheme], *THREE_CLASS_METRICS) if any(m in r.mean for r in rows)]
    return Comparison(scheme=scheme, metrics=metrics, rows=rows)


def format_mean_std(mean: float | None, std: float | None) -> str:
    if mean is None or math.isnan(mean):
        return "–"
    return f"{mean:.4f} ± {std:.4f}"


def table_rows(comparison: Comparison) -> list[list[str]]:
    """[name, kind, n seeds, 'mean ± std' per metric] for every run."""
    return [
        [r.name, r.kind, str(len(r.seeds))] + [format_mean_std(r.mean.get(m), r.std.get(m)) for m in comparison.metrics]
        for r in comparison.rows
    ]


def comparison_csv(comparison: Comparison) -> str:
    """One line per run: run, kind, dataset, seeds (how many, as the table shows), seed_ids, then
    <metric>_mean and <metric>_std."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(
        ["run", "kind", "dataset", "seeds", "seed_ids"]
        + [f"{m}_{part}" for m in comparison.metrics for part in ("mean", "std")]
    )
    for r in comparison.rows:
        values = []
        for m in comparison.metrics:
            values += [f"{r.mean[m]:.6g}", f"{r.std[m]:.6g}"] if m in r.mean else ["", ""]
        writer.writerow([r.name, r.kind, r.dataset, len(r.seeds), " ".join(r.seeds)] + values)
    return buffer.getvalue()
