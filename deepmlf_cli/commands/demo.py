"""`deepmlf demo`: the whole job offline on the embedded sample (what `make demo` runs).

sample dataset + tiny local GPT-2 → pretrain the AV encoder → train DeepMLF
from it → evaluate on the test split → compare with the AV-only (and, when
available, text-only) models. Re-running resumes: finished steps are skipped.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from deepmlf_cli.errors import handle_errors
from deepmlf_cli.options import Debug, Quiet, Seed


def demo(
    out: Annotated[Path, typer.Option("--out", "-o", help="Where the sample, the tiny LM and the runs go.")] = Path("runs/demo"),
    seed: Seed = None,
    epochs: Annotated[int, typer.Option("--epochs", help="Maximum epochs per model.")] = 40,
    quiet: Quiet = False,
    debug: Debug = False,
) -> None:
    """Run pretrain → train → evaluate on the embedded sample, offline, and print the results."""
    with handle_errors(debug):
        from deepmlf_cli.commands.train import run_and_report
        from deepmlf_cli.render import console, results_table
        from deepmlf_cli.resolve import build_spec, load_data
        from models.runs import MODEL_KINDS, av_pretrain_spec
        from models.sample import write_sample_dataset
        from models.tiny_lm import build_tiny_lm

        seeds = seed or [0]
        data_dir = out / "sample"
        if not (data_dir / "manifest.json").is_file():
            write_sample_dataset(data_dir)
        data = load_data(str(data_dir), None, quiet=True)
        lm_dir = out / "tiny-gpt2"
        if not (lm_dir / "config.json").is_file():
            build_tiny_lm(lm_dir, "gpt2", corpus=data.splits["train"].texts)
        console.print(f"[bold]deepmlf demo[/]: {data.name} dataset ({', '.join(f'{k} {len(v)}' for k, v in data.splits.items())}), "
                      f"tiny GPT-2 in {lm_dir}, outputs in {out}")
        common = dict(preset="sample", config_file=None, seeds=seeds)
        overrides = {"max_epochs": epochs, "device": "cpu"}
        results = {}

        def stage(kind: str, name: str, title: str, **extra):
            run_dir = out / name
            spec, chosen = build_spec(kind, data, model_overrides={"lm": str(lm_dir)}, train_overrides=overrides,
                                      **common, **extra)
            if kind == "av":
                spec = av_pretrain_spec(spec, chosen.av_pretrain_lr)
            if not quiet:
                console.rule(title)
            results[name] = run_and_report(data, spec, run_dir, resume=(run_dir / "run.json").is_file(),
                                           quiet=quiet, as_json=False, title=title)

        stage("av", "pretrain", "1. AV encoder pretraining (also the AV-only model)")
        if "text" in MODEL_KINDS:
            stage("text", "text-only", "2. text-only model (same frozen LM)")
        stage("deepmlf", "deepmlf", "3. DeepMLF from the pretrained AV encoder (Pre&Tune)", init_av=str(out / "pretrain"))

        summary = {name: {"seeds": res["seeds"], "mean": res["mean"], "std": res["std"]} for name, res in results.items()}
        (out / "demo_results.json").write_text(json.dumps(summary, indent=2))
        _print_comparison(console, results)
        console.print(f"next: [bold]deepmlf evaluate {out / 'deepmlf'}[/] · plots in {out / 'deepmlf'}/seed_*/plots")


def _print_comparison(console, results) -> None:
    from rich.table import Table

    from models.metrics import PRIMARY_METRICS

    names = list(PRIMARY_METRICS["sims"])
    table = Table(title="Embedded sample, test split (mean over seeds)")
    table.add_column("model")
    for name in names:
        table.add_column(name, justify="right")
    labels = {"pretrain": "AV only", "text-only": "text only", "deepmlf": "DeepMLF"}
    for run, res in results.items():
        table.add_row(labels.get(run, run), *[f"{res['mean'][n]:.4f}" for n in names],
                      style="bold" if run == "deepmlf" else None)
    console.print(table)


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
