"""`deepmlf demo`: the whole job offline on embedded data (what `make demo` runs; steps in deepmlf_cli.workflows.demo)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from deepmlf_cli.errors import EXIT_FAILURE, handle_errors
from deepmlf_cli.options import Debug, Quiet, Seed
from deepmlf_cli.workflows.demo import VIDEO_EPOCHS  # standard library only: `--help` stays fast


def demo(
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Where the sample, the tiny LM, the clips and the runs go.")
    ] = Path("runs/demo"),
    seed: Seed = None,
    epochs: Annotated[int, typer.Option("--epochs", help="Maximum epochs per model on the sample.")] = 40,
    lm_steps: Annotated[
        int,
        typer.Option("--lm-steps", help="Next-token training steps of the tiny LM (about 45 s per 1000 on 2 cores)."),
    ] = 1000,
    video_epochs: Annotated[
        int, typer.Option("--video-epochs", help="Maximum epochs of the model trained on the generated clips.")
    ] = VIDEO_EPOCHS,
    quiet: Quiet = False,
    debug: Debug = False,
) -> None:
    """Run pretrain → train → evaluate on the embedded sample, then extract → train → predict on generated clips."""
    with handle_errors(debug):
        from deepmlf_cli.workflows.demo import run_demo

        report = run_demo(out, seed, epochs=epochs, lm_steps=lm_steps, video_epochs=video_epochs, quiet=quiet)
    if report is not None and report.failed:
        raise typer.Exit(EXIT_FAILURE)


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
