"""`deepmlf evaluate`: the field's metrics for a run's checkpoints, or for any predictions CSV."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from deepmlf_cli.errors import handle_errors
from deepmlf_cli.options import DataDir, Debug, Device, JsonOutput, LanguageModel


def evaluate(
    run_dir: Annotated[Optional[Path], typer.Argument(help="A run directory from `deepmlf train` (every seed), or one checkpoint.")] = None,
    dataset: Annotated[Optional[str], typer.Option("--dataset", "-d", help="Dataset to score on (default: the one the run was trained on).")] = None,
    data_dir: DataDir = None,
    split: Annotated[str, typer.Option("--split", help="train, valid or test (also val, validation, dev).")] = "test",
    predictions: Annotated[Optional[Path], typer.Option("--predictions", help="Score a CSV with label,prediction columns instead of a run.")] = None,
    scheme: Annotated[Optional[str], typer.Option("--scheme", help="mosi (MOSI/MOSEI metrics) or sims: needed with --predictions; with a run, overrides a dataset whose scheme was guessed (default: the run's).")] = None,
    lm: LanguageModel = None,
    device: Device = "auto",
    as_json: JsonOutput = False,
    debug: Debug = False,
) -> None:
    """Compute Acc-2/F1/Acc-5/Acc-7/MAE/Corr exactly as MMSA does (mosi/mosei or sims scheme)."""
    with handle_errors(debug):
        from deepmlf_cli.render import console, metrics_table, results_table
        from models.errors import ConfigError
        from models.evaluation.metrics import SCHEMES, compute_metrics, read_predictions_csv

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
        from models.data.types import canonical_split, with_scheme
        from models.devices import resolve_device
        from models.evaluation.evaluate import evaluate_checkpoint
        from models.run import Run, checkpoint_seed
        from models.training.runs import summarize_run

        split = canonical_split(split)
        checkpoints = Run(run_dir).checkpoints()
        run = Run.find_upwards(run_dir)  # a seed or checkpoint directory belongs to the run above it
        trained_on = run.dataset() if run is not None else {}
        if dataset is None:
            if run is None:
                raise ConfigError(f"{run_dir}: no run.json to take the dataset from; pass --dataset")
            dataset = trained_on["source"]
            if not Path(dataset).expanduser().exists() and ("/" in dataset or "\\" in dataset):
                raise ConfigError(f"{run_dir} was trained on {dataset}, which is not there any more; "
                                  f"pass its new place with --dataset")
        data = load_data(dataset, data_dir, quiet=as_json, scheme=scheme)
        if scheme is None and data.scheme_guessed and trained_on.get("scheme") in SCHEMES:
            data = with_scheme(data, trained_on["scheme"])  # score as the run was scored
        rows, lm_cache = {}, {}  # the seeds share one frozen LM: load it once
        for checkpoint in checkpoints:
            seed = checkpoint_seed(checkpoint) or "0"
            metrics, _ = evaluate_checkpoint(checkpoint, data, split, device=resolve_device(device), lm_cache=lm_cache,
                                             lm=lm)
            rows[seed] = metrics
        results = summarize_run(rows, data.scheme)
        cleaned = {split: data.cleaning_report.get(split, {})}
        if as_json:
            typer.echo(json.dumps({"run_dir": str(run_dir), "dataset": data.source, "split": split, **results,
                                   "cleaned": cleaned}, indent=2))
        elif len(rows) == 1:  # one seed: every metric once (a mean ± std table would repeat it)
            seed, row = next(iter(rows.items()))
            console.print(metrics_table(row, list(row), f"{run_dir} (seed {seed}) on {data.name}/{split}"))
        else:
            console.print(results_table(results, f"{run_dir} on {data.name}/{split}"))


def register(app: typer.Typer) -> None:
    app.command("evaluate")(evaluate)
