"""`deepmlf train`: DeepMLF (stage 2 of the curriculum) with several seeds, resumable."""

from __future__ import annotations

from typing import Annotated

import typer

from deepmlf_cli.errors import handle_errors, resume_hint
from deepmlf_cli.options import (
    TRAIN_MODELS,
    BatchSize,
    ConfigFile,
    DataDir,
    DatasetArg,
    Debug,
    Device,
    Epochs,
    JsonOutput,
    LanguageModel,
    LearningRate,
    OutDir,
    Patience,
    Preset,
    Quiet,
    Resume,
    SchemeOption,
    Seed,
)


def train(
    dataset: DatasetArg,
    data_dir: DataDir = None,
    preset: Preset = None,
    lm: LanguageModel = None,
    model: Annotated[
        str | None,
        typer.Option(
            "--model", help=f"Which model: {', '.join(TRAIN_MODELS)} (default deepmlf; case does not matter)."
        ),
    ] = None,
    config: ConfigFile = None,
    mm_layers: Annotated[
        str | None, typer.Option("--mm-layers", help="0-based LM layers with an MM block, e.g. 5..11.")
    ] = None,
    n_fusion: Annotated[int | None, typer.Option("--n-fusion", help="Number of fusion tokens.")] = None,
    init_av: Annotated[
        str | None, typer.Option("--init-av", help="A `deepmlf pretrain` run (Pre&Tune), or 'random'.")
    ] = None,
    freeze_av: Annotated[
        bool, typer.Option("--freeze-av", help="Keep the pretrained AV encoder frozen (Pre&Fro).")
    ] = False,
    lm_dropout: Annotated[
        str | None,
        typer.Option(
            "--lm-dropout",
            help="on (the reference) or off: the frozen LM without dropout, so each clip's text states below the first MM block are computed once and reused every epoch.",
        ),
    ] = None,
    seed: Seed = None,
    epochs: Epochs = None,
    batch_size: BatchSize = None,
    grad_accum: Annotated[int | None, typer.Option("--grad-accum", help="Batches per optimizer step.")] = None,
    batching: Annotated[
        str | None,
        typer.Option(
            "--batching",
            help="How training batches are cut: window (a seeded shuffle as the reference's, each optimizer step's clips regrouped by length: the same steps, less padding; the paper presets' default), shuffle (the reference's procedure) or bucketed (global length buckets: fastest, changes which clips share a step).",
        ),
    ] = None,
    lr: LearningRate = None,
    patience: Patience = None,
    lm_dtype: Annotated[
        str | None,
        typer.Option(
            "--lm-dtype",
            help="Frozen LM weights and so the precision (bf16 autocast with a bf16 LM): auto (bfloat16 on CUDA, float32 on CPU), float32 or bfloat16 (on a CPU: fast with AVX512-BF16/AMX). Default: the preset's (float32 for mosei, mosei-large, sims; auto for mosi).",
        ),
    ] = None,
    checkpoint_layers: Annotated[
        bool | None,
        typer.Option(
            "--checkpoint-layers/--no-checkpoint-layers",
            help="Recompute each LM layer in backward: less activation memory for large LMs, more compute.",
        ),
    ] = None,
    out: OutDir = None,
    resume: Resume = False,
    scheme: SchemeOption = None,
    device: Device = "auto",
    quiet: Quiet = False,
    as_json: JsonOutput = False,
    debug: Debug = False,
) -> None:
    """Train DeepMLF (or a baseline) on a dataset: early stopping on validation, best state tested, every seed kept."""
    with handle_errors(debug, resume_hint(resume)):
        from deepmlf_cli.workflows.train import run_and_report, train_spec

        data, resolved = train_spec(
            dataset,
            data_dir,
            out,
            resume,
            model=model,
            preset=preset,
            config=config,
            seeds=seed,
            model_overrides={"lm": lm, "n_fusion": n_fusion, "mm_layers": mm_layers, "lm_dropout": lm_dropout},
            train_overrides={
                "max_epochs": epochs,
                "batch_size": batch_size,
                "grad_accum": grad_accum,
                "lr": lr,
                "patience": patience,
                "lm_dtype": lm_dtype,
                "checkpoint_layers": checkpoint_layers,
                "batching": batching,
            },
            init_av=init_av,
            freeze_av=freeze_av,
            scheme=scheme,
            quiet=quiet,
        )
        run_and_report(data, resolved, quiet, as_json, title=f"{resolved.spec.kind} on {data.name}", device=device)


def register(app: typer.Typer) -> None:
    app.command("train")(train)
