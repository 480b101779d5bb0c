"""`deepmlf pretrain`: stage 1 of the curriculum, the AV encoder alone (L1 on the label)."""

from __future__ import annotations

import typer

from deepmlf_cli.errors import handle_errors, resume_hint
from deepmlf_cli.options import (
    BatchSize,
    ConfigFile,
    DataDir,
    DatasetArg,
    Debug,
    Device,
    Epochs,
    JsonOutput,
    LearningRate,
    OutDir,
    Patience,
    Preset,
    Quiet,
    Resume,
    Seed,
)


def pretrain(
    dataset: DatasetArg,
    data_dir: DataDir = None,
    preset: Preset = None,
    config: ConfigFile = None,
    seed: Seed = None,
    epochs: Epochs = None,
    batch_size: BatchSize = None,
    lr: LearningRate = None,
    patience: Patience = None,
    out: OutDir = None,
    resume: Resume = False,
    device: Device = "auto",
    quiet: Quiet = False,
    as_json: JsonOutput = False,
    debug: Debug = False,
) -> None:
    """Pretrain the AV encoder with the preset's pretraining recipe (`deepmlf describe --preset NAME`);
    `deepmlf train --init-av RUN_DIR` starts from it."""
    with handle_errors(debug, resume_hint(resume)):
        from deepmlf_cli.workflows.train import pretrain_spec, run_and_report

        data, resolved = pretrain_spec(
            dataset,
            data_dir,
            out,
            resume,
            preset=preset,
            config=config,
            seeds=seed,
            quiet=quiet,
            train_overrides={"max_epochs": epochs, "batch_size": batch_size, "patience": patience, "lr": lr},
        )
        run_and_report(data, resolved, quiet, as_json, title=f"AV encoder pretraining on {data.name}", device=device)


def register(app: typer.Typer) -> None:
    app.command("pretrain")(pretrain)
