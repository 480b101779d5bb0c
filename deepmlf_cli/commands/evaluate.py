"""`deepmlf evaluate`: the field's metrics for a run's checkpoints, or for any predictions CSV."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from deepmlf_cli.errors import handle_errors
from deepmlf_cli.options import DataDir, Debug, Device, JsonOutput, LanguageModel, LmMismatch


def evaluate(
    run_dir: Annotated[
        Path | None, typer.Argument(help="A run directory from `deepmlf train` (every seed), or one checkpoint.")
    ] = None,
    dataset: Annotated[
        str | None,
        typer.Option("--dataset", "-d", help="Dataset to score on (default: the one the run was trained on)."),
    ] = None,
    data_dir: DataDir = None,
    split: Annotated[str, typer.Option("--split", help="train, valid or test (also val, validation, dev).")] = "test",
    predictions: Annotated[
        Path | None, typer.Option("--predictions", help="Score a CSV with label,prediction columns instead of a run.")
    ] = None,
    scheme: Annotated[
        str | None,
        typer.Option(
            "--scheme",
            help="mosi (MOSI/MOSEI metrics) or sims: needed with --predictions; with a run, overrides a dataset whose scheme was guessed (default: the run's).",
        ),
    ] = None,
    lm: LanguageModel = None,
    lm_mismatch: LmMismatch = None,
    device: Device = "auto",
    as_json: JsonOutput = False,
    debug: Debug = False,
) -> None:
    """Compute Acc-2/F1/Acc-5/Acc-7/MAE/Corr exactly as MMSA does (mosi/mosei or sims scheme)."""
    with handle_errors(debug):
        from deepmlf_cli.views import show_evaluation, show_scored_predictions
        from deepmlf_cli.workflows.evaluate import evaluate_run_dir, score_predictions

        if predictions is not None:
            show_scored_predictions(score_predictions(predictions, scheme), as_json)
            return
        data, split, rows, results = evaluate_run_dir(
            run_dir,
            dataset,
            data_dir,
            split,
            scheme=scheme,
            lm=lm,
            lm_mismatch=lm_mismatch,
            device=device,
            quiet=as_json,
        )
        show_evaluation(run_dir, data, split, rows, results, as_json)


def register(app: typer.Typer) -> None:
    app.command("evaluate")(evaluate)
