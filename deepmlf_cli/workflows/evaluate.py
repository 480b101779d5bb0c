"""`deepmlf evaluate`: a run's checkpoints on a split of the dataset it names, or a predictions CSV."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def score_predictions(predictions: Path, scheme: str | None) -> dict[str, Any]:
    """The scheme's metrics of a CSV with label,prediction columns: {predictions, scheme, n, metrics}."""
    from models.errors import ConfigError
    from models.evaluation.metrics import SCHEMES, compute_metrics, read_predictions_csv

    if scheme not in SCHEMES:
        raise ConfigError(f"--predictions needs --scheme {' or '.join(SCHEMES)} (the metric definitions to use)")
    pred, label = read_predictions_csv(predictions)
    return {
        "predictions": str(predictions),
        "scheme": scheme,
        "n": len(label),
        "metrics": compute_metrics(pred, label, scheme),
    }


def check_lm_mismatch(value: str | None) -> bool:
    """--lm-mismatch: None (refuse an LM whose weights differ from the run's) or "ok" (use it anyway)."""
    from models.errors import ConfigError

    if value not in (None, "ok"):
        raise ConfigError(
            f"--lm-mismatch {value}: the only value is ok (use an LM whose weights differ from the run's)"
        )
    return value == "ok"


def evaluate_run_dir(
    run_dir: Path | None,
    dataset: str | None,
    data_dir: Path | None,
    split: str = "test",
    *,
    scheme: str | None = None,
    lm: str | None = None,
    lm_mismatch: str | None = None,
    device: str = "auto",
    quiet: bool = False,
) -> tuple[Any, str, dict[str, dict[str, float]], dict[str, Any]]:
    """(dataset, split, metrics per seed, summary) of every seed's checkpoint in `run_dir`.

    The dataset defaults to the one the run recorded, and its scheme to the run's
    when the dataset's own was only guessed, so the run is scored as it was trained.
    """
    from deepmlf_cli.resolve import load_data
    from models.data.types import canonical_split, with_scheme
    from models.devices import resolve_device
    from models.errors import ConfigError
    from models.evaluation.evaluate import evaluate_checkpoints
    from models.evaluation.metrics import SCHEMES
    from models.run import Run

    lm_mismatch_ok = check_lm_mismatch(lm_mismatch)
    if run_dir is None:
        raise ConfigError("give a RUN_DIR to evaluate, or --predictions FILE.csv --scheme mosi|sims")
    split = canonical_split(split)
    checkpoints = Run(run_dir).checkpoints()  # a missing run fails before any data is loaded
    run = Run.find_upwards(run_dir)  # a seed or checkpoint directory belongs to the run above it
    trained_on = run.dataset() if run is not None else {}
    if dataset is None:
        if run is None:
            raise ConfigError(f"{run_dir}: no run.json to take the dataset from; pass --dataset")
        dataset = trained_on["source"]
        if not Path(dataset).expanduser().exists() and ("/" in dataset or "\\" in dataset):
            raise ConfigError(
                f"{run_dir} was trained on {dataset}, which is not there any more; pass its new place with --dataset"
            )
    data = load_data(dataset, data_dir, quiet=quiet, scheme=scheme)
    if scheme is None and data.scheme_guessed and trained_on.get("scheme") in SCHEMES:
        data = with_scheme(data, trained_on["scheme"])  # score as the run was scored
    rows, results = evaluate_checkpoints(
        checkpoints, data, split, device=resolve_device(device), lm=lm, lm_mismatch_ok=lm_mismatch_ok
    )
    return data, split, rows, results
