"""`deepmlf train`: DeepMLF (stage 2 of the curriculum) with several seeds, resumable."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from deepmlf_cli.errors import handle_errors
from deepmlf_cli.options import (
    DataDir,
    DatasetArg,
    Debug,
    Device,
    JsonOutput,
    LanguageModel,
    Preset,
    Quiet,
    SchemeOption,
    Seed,
)

ConfigFile = Annotated[Optional[Path], typer.Option("--config", help="TOML file with preset, \\[model] and \\[train] tables.")]
OutDir = Annotated[Optional[Path], typer.Option("--out", "-o", help="Run directory (default: runs/<dataset>-<model>-<time>).")]
Resume = Annotated[bool, typer.Option("--resume", help="Continue an interrupted run in --out, with the settings it was started with (options that differ are an error; --device may change).")]
Epochs = Annotated[Optional[int], typer.Option("--max-epochs", "--epochs", help="Cap on epochs (default: the preset's; none for the paper presets, which train until early stopping).")]
BatchSize = Annotated[Optional[int], typer.Option("--batch-size", help="Clips per batch.")]
LearningRate = Annotated[Optional[float], typer.Option("--lr", help="Peak learning rate.")]
# The kinds `train` offers (models.training.runs.MODEL_KINDS, listed here so --help needs no torch import;
# tests check the two agree). "av" is `deepmlf pretrain`'s.
TRAIN_MODELS = ("deepmlf", "early", "late", "attention", "text", "audio", "vision")
Patience = Annotated[Optional[int], typer.Option("--patience", help="Epochs without better validation L1 before stopping.")]


def train(
    dataset: DatasetArg,
    data_dir: DataDir = None,
    preset: Preset = None,
    lm: LanguageModel = None,
    model: Annotated[Optional[str], typer.Option("--model", help=f"Which model: {', '.join(TRAIN_MODELS)} (default deepmlf; case does not matter).")] = None,
    config: ConfigFile = None,
    mm_layers: Annotated[Optional[str], typer.Option("--mm-layers", help="0-based LM layers with an MM block, e.g. 5..11.")] = None,
    n_fusion: Annotated[Optional[int], typer.Option("--n-fusion", help="Number of fusion tokens.")] = None,
    init_av: Annotated[Optional[str], typer.Option("--init-av", help="A `deepmlf pretrain` run (Pre&Tune), or 'random'.")] = None,
    freeze_av: Annotated[bool, typer.Option("--freeze-av", help="Keep the pretrained AV encoder frozen (Pre&Fro).")] = False,
    lm_dropout: Annotated[Optional[str], typer.Option("--lm-dropout", help="on (the reference) or off: the frozen LM without dropout, so each clip's text states below the first MM block are computed once and reused every epoch.")] = None,
    seed: Seed = None,
    epochs: Epochs = None,
    batch_size: BatchSize = None,
    grad_accum: Annotated[Optional[int], typer.Option("--grad-accum", help="Batches per optimizer step.")] = None,
    lr: LearningRate = None,
    patience: Patience = None,
    lm_dtype: Annotated[Optional[str], typer.Option("--lm-dtype", help="Frozen LM weights: auto (bfloat16 on CUDA, float32 on CPU), float32 or bfloat16.")] = None,
    checkpoint_layers: Annotated[Optional[bool], typer.Option("--checkpoint-layers/--no-checkpoint-layers", help="Recompute each LM layer in backward: less activation memory for large LMs, more compute.")] = None,
    out: OutDir = None,
    resume: Resume = False,
    scheme: SchemeOption = None,
    device: Device = "auto",
    quiet: Quiet = False,
    as_json: JsonOutput = False,
    debug: Debug = False,
) -> None:
    """Train DeepMLF (or a baseline) on a dataset: early stopping on validation, best state tested, every seed kept."""
    with handle_errors(debug):
        from deepmlf_cli.resolve import build_spec, default_run_dir, init_distributed, load_data, resumed_spec
        from models.config import parse_layer_list
        from models.errors import ConfigError
        from models.nn.registry import model_kind
        from models.run import Run

        if freeze_av and not init_av:
            raise ConfigError("--freeze-av needs --init-av RUN (a pretrained AV encoder to freeze)")
        if resume and out is None:
            raise ConfigError("--resume needs --out RUN_DIR (the run to continue)")
        if lm_dropout not in (None, "on", "off"):
            raise ConfigError(f"--lm-dropout {lm_dropout}: choose on or off")
        kind = model_kind(model) if model is not None else None
        if resume:
            saved = Run(out).spec()  # says so when --out holds no run
        init_distributed()
        data = load_data(dataset, data_dir, quiet, scheme=scheme)
        model_overrides = {"lm": lm, "n_fusion": n_fusion,
                           "mm_layers": parse_layer_list(mm_layers) if mm_layers else None,
                           "lm_dropout": None if lm_dropout is None else lm_dropout == "on"}
        train_overrides = {"max_epochs": epochs, "batch_size": batch_size, "grad_accum": grad_accum, "lr": lr,
                           "patience": patience, "lm_dtype": lm_dtype,
                           "checkpoint_layers": checkpoint_layers}
        # A run.json exists once training started (even if killed in its first epoch): its settings
        # are the base, so --resume never falls back to the dataset's default preset.
        if resume and Run(out).exists() and preset is None and config is None:
            # Options not given keep the run's values; those given must match them (train_run checks).
            spec = resumed_spec(saved, kind, model_overrides, train_overrides, seed, init_av, freeze_av)
        else:
            spec, _ = build_spec(kind or "deepmlf", data, preset, config, model_overrides, train_overrides, seed,
                                 init_av=init_av, freeze_av=freeze_av)
        run_dir = out or default_run_dir(data, spec.kind)
        run_and_report(data, spec, run_dir, resume, quiet, as_json, title=f"{spec.kind} on {data.name}", device=device)


def run_and_report(data, spec, run_dir: Path, resume: bool, quiet: bool, as_json: bool, title: str,
                   device: str = "auto") -> dict:
    """Train every seed with progress bars, then print the results table (or JSON)."""
    from rich.markup import escape

    from deepmlf_cli.render import EpochProgress, console, make_progress, results_table
    from deepmlf_cli.resolve import is_main_process
    from models.evaluation.metrics import PRIMARY_METRICS
    from models.training.runs import train_run

    primary = PRIMARY_METRICS[data.scheme][0]
    show = is_main_process() and not as_json
    with make_progress(quiet or not show) as progress:
        results = train_run(data, spec, run_dir, resume=resume, device=device,
                            progress=lambda s: EpochProgress(f"seed {s}", progress, primary))
    if not is_main_process():
        return results
    if as_json:
        typer.echo(json.dumps({"run_dir": str(run_dir), **results}, indent=2))
    else:
        if results["mean"]:
            console.print(results_table(results, f"{title} — test split"))
        for note in results.get("notes", []):
            console.print(f"[yellow]note:[/] {escape(note)}")
        console.print(f"run saved in [bold]{run_dir}[/] (results.json, results.csv, seed_*/best, seed_*/plots)")
    return results


def register(app: typer.Typer) -> None:
    app.command("train")(train)
