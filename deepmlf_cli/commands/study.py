"""`deepmlf study NAME`: one of the paper's studies as one command (a run per variant, a table and a plot)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from deepmlf_cli.errors import handle_errors
from deepmlf_cli.options import (
    ConfigFile,
    DataDir,
    DatasetArg,
    Debug,
    Device,
    JsonOutput,
    LanguageModel,
    Preset,
    Quiet,
    Seed,
)
from deepmlf_cli.workflows.study import STUDY_NAMES  # standard library only: `--help` stays fast


def study(
    name: Annotated[str, typer.Argument(help=f"Which study: {STUDY_NAMES}.")],
    dataset: DatasetArg,
    data_dir: DataDir = None,
    preset: Preset = None,
    lm: LanguageModel = None,
    config: ConfigFile = None,
    seed: Seed = None,
    epochs: Annotated[int | None, typer.Option("--epochs", help="Maximum epochs per variant.")] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", "-o", help="Study directory (default: runs/<dataset>-study-<name>-<time>). Re-running resumes."
        ),
    ] = None,
    device: Device = "auto",
    quiet: Quiet = False,
    as_json: JsonOutput = False,
    debug: Debug = False,
) -> None:
    """Run a study of the paper (every variant trained like `deepmlf train`), then write study.csv/json and study.png."""
    with handle_errors(debug):
        from deepmlf_cli.views import show_study
        from deepmlf_cli.workflows.study import study_with_progress

        data, result, out_dir = study_with_progress(
            name,
            dataset,
            data_dir,
            out,
            preset=preset,
            config=config,
            lm=lm,
            epochs=epochs,
            seeds=seed,
            device=device,
            quiet=quiet or as_json,
        )
        show_study(result, out_dir, data.name, as_json)


def register(app: typer.Typer) -> None:
    app.command("study")(study)
