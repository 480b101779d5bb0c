"""`deepmlf study NAME`: one of the paper's studies as one command (a run per variant, a table and a plot)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from deepmlf_cli.commands.train import ConfigFile
from deepmlf_cli.errors import handle_errors
from deepmlf_cli.options import DataDir, DatasetArg, Debug, Device, JsonOutput, LanguageModel, Preset, Quiet, Seed

STUDY_NAMES = "depth, fusion-tokens, av-init, losses, augmentation, gating, fusion-inputs, lm-dropout"


def study(
    name: Annotated[str, typer.Argument(help=f"Which study: {STUDY_NAMES}.")],
    dataset: DatasetArg,
    data_dir: DataDir = None,
    preset: Preset = None,
    lm: LanguageModel = None,
    config: ConfigFile = None,
    seed: Seed = None,
    epochs: Annotated[Optional[int], typer.Option("--epochs", help="Maximum epochs per variant.")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Study directory (default: runs/<dataset>-study-<name>-<time>). Re-running resumes.")] = None,
    device: Device = "auto",
    quiet: Quiet = False,
    as_json: JsonOutput = False,
    debug: Debug = False,
) -> None:
    """Run a study of the paper (every variant trained like `deepmlf train`), then write study.csv/json and study.png."""
    with handle_errors(debug):
        import os

        from deepmlf_cli.render import EpochProgress, console, make_progress, transposed_table
        from deepmlf_cli.resolve import build_spec, default_run_dir, load_data
        from models.errors import ConfigError
        from models.evaluation.compare import format_mean_std
        from models.evaluation.metrics import PRIMARY_METRICS
        from models.training.studies import STUDIES, run_study

        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            raise ConfigError("deepmlf study runs in one process; start it without torchrun (train a single "
                              "variant with `torchrun ... train` for several GPUs)")
        if name not in STUDIES:
            raise ConfigError(f"unknown study {name!r}; choose one of: {STUDY_NAMES}")
        data = load_data(dataset, data_dir, quiet or as_json)
        spec, chosen = build_spec("deepmlf", data, preset, config, {"lm": lm},
                                  {"max_epochs": epochs}, seed)
        out_dir = out or default_run_dir(data, f"study-{name}")
        primary = PRIMARY_METRICS[data.scheme]
        show = not (quiet or as_json)
        with make_progress(not show) as progress:
            result = run_study(
                name, data, spec, out_dir, pretrain_preset=chosen, device=device,
                progress=lambda variant, s: EpochProgress(f"{variant} · seed {s}", progress, primary[0]),
                on_variant=(lambda v: console.print(f"[bold]{v}[/]")) if show else None,
            )
        if as_json:
            typer.echo(json.dumps({"out": str(out_dir), **result}, indent=2))
            return
        rows = [[row["name"], *[format_mean_std(row["mean"].get(m), row["std"].get(m)) for m in result["primary"]]]
                for row in result["rows"]]
        console.print(transposed_table(f"{result['title']} — {data.name}, test split (mean ± std over seeds)",
                                       ["variant", *result["primary"]], rows))
        console.print(f"study saved in [bold]{out_dir}[/] (study.csv, study.json, study.png, one run per variant)")


def register(app: typer.Typer) -> None:
    app.command("study")(study)
