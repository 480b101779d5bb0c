"""`deepmlf evaluate`: the field's metrics for a run's checkpoints, or for any predictions CSV."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from deepmlf_cli.errors import handle_errors
from deepmlf_cli.options import DataDir, Debug, Device, JsonOutput


def evaluate(
    run_dir: Annotated[Optional[Path], typer.Argument(help="A run directory from `deepmlf train` (every seed), or one checkpoint.")] = None,
    dataset: Annotated[Optional[str], typer.Option("--dataset", "-d", help="Dataset to score on (default: the one the run was trained on).")] = None,
    data_dir: DataDir = None,
    split: Annotated[str, typer.Option("--split", help="train, valid or test.")] = "test",
    predictions: Annotated[Optional[Path], typer.Option("--predictions", help="Score a CSV with label,prediction columns instead of a run.")] = None,
    scheme: Annotated[Optional[str], typer.Option("--scheme", help="mosi (MOSI/MOSEI metrics) or sims; with --predictions.")] = None,
    device: Device = "auto",
    as_json: JsonOutput = False,
    debug: Debug = False,
) -> None:
    """Compute Acc-2/F1/Acc-5/Acc-7/MAE/Corr exactly as MMSA does (mosi/mosei or sims scheme)."""
    with handle_errors(debug):
        from deepmlf_cli.render import console, metrics_table, results_table
        from models.errors import ConfigError
        from models.metrics import PRIMARY_METRICS, SCHEMES, compute_metrics, read_predictions_csv

        if predictions is not None:
            if scheme not in SCHEMES:
                raise ConfigError(f"--predictions needs --scheme {' or '.join(SCHEMES)} (the metric definitions to use)")
            pred, label = read_predictions_csv(predictions)
            metrics = compute_metrics(pred, label, scheme)
            if as_json:
                typer.echo(json.dumps({"predictions": str(predictions), "scheme": scheme, "n": len(label),
                                       "metrics": metrics}, indent=2))
            else:
                console.print(metrics_table(metrics, list(metrics), f"{predictions.name} ({len(label)} rows, {scheme})"))
            return
        if run_dir is None:
            raise ConfigError("give a RUN_DIR to evaluate, or --predictions FILE.csv --scheme mosi|sims")
        from deepmlf_cli.resolve import load_data
        from models.evaluation import evaluate_checkpoint
        from models.runs import RUN_FILE, run_checkpoints, summarize_run
        from models.training import resolve_device

        checkpoints = run_checkpoints(run_dir)
        if dataset is None:
            run_file = next((p / RUN_FILE for p in (run_dir, *run_dir.parents) if (p / RUN_FILE).is_file()), None)
            if run_file is None:
                raise ConfigError(f"{run_dir}: no run.json to take the dataset from; pass --dataset")
            dataset = json.loads(run_file.read_text())["dataset"]["source"]
        data = load_data(dataset, data_dir, quiet=as_json)
        rows, lm_cache = {}, {}  # the seeds share one frozen LM: load it once
        for checkpoint in checkpoints:
            seed = checkpoint.parent.name.removeprefix("seed_")
            metrics, _ = evaluate_checkpoint(checkpoint, data, split, device=resolve_device(device), lm_cache=lm_cache)
            rows[seed] = metrics
        results = summarize_run(rows, data.scheme)
        if as_json:
            typer.echo(json.dumps({"run_dir": str(run_dir), "dataset": data.source, "split": split, **results}, indent=2))
        else:
            console.print(results_table(results, f"{run_dir} on {data.name}/{split}"))
            if len(rows) == 1:
                console.print(metrics_table(next(iter(rows.values())), list(PRIMARY_METRICS[data.scheme]), "all metrics"))


def register(app: typer.Typer) -> None:
    app.command("evaluate")(evaluate)
