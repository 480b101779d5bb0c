"""`deepmlf describe`: the resolved config and parameter counts per component, without training."""

from __future__ import annotations

import json
from typing import Annotated, Optional

import typer

from deepmlf_cli.errors import handle_errors
from deepmlf_cli.options import Debug, JsonOutput, LanguageModel, Preset


def describe(
    preset: Preset = "sims",
    lm: LanguageModel = None,
    random_init: Annotated[bool, typer.Option("--random-init", help="Build the LM from its config alone (no weights needed).")] = False,
    mm_layers: Annotated[Optional[str], typer.Option("--mm-layers", help="0-based LM layers followed by an MM block, e.g. 5..11 or 3,5,7.")] = None,
    n_fusion: Annotated[Optional[int], typer.Option("--n-fusion", help="Number of fusion tokens.")] = None,
    ffw: Annotated[Optional[str], typer.Option("--ffw", help="MM-block FFW: full, lora or none.")] = None,
    as_json: JsonOutput = False,
    debug: Debug = False,
) -> None:
    """Print the resolved config and parameter counts (total and trainable) per component."""
    with handle_errors(debug):
        from models.config import get_preset, parse_layer_list
        from models.deepmlf import DeepMLF
        from models.summary import count_parameters, per_block_parameters

        overrides = {}
        if lm:
            overrides["lm"] = lm
        if mm_layers is not None:
            overrides["mm_layers"] = parse_layer_list(mm_layers)
        if n_fusion is not None:
            overrides["n_fusion"] = n_fusion
        if ffw is not None:
            overrides["ffw_mode"] = ffw
        config = get_preset(preset or "sims").model_config(**overrides)
        model, _ = DeepMLF.from_config(config, random_init=random_init, meta=random_init)
        counts = count_parameters(model)
        blocks = per_block_parameters(model)
        if as_json:
            typer.echo(json.dumps({
                "config": config.to_dict(),
                "lm_layers": model.lm.n_layers,
                "d_model": model.lm.d_model,
                "parameters": {k: {"total": v.total, "trainable": v.trainable} for k, v in counts.items()},
                "mm_block_parameters": {str(k): v.total for k, v in blocks.items()},
            }, indent=2))
            return
        _render(config, model, counts, blocks)


def _render(config, model, counts, blocks) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    cfg_table = Table(title="Resolved config", show_header=False, box=None)
    for key, value in config.to_dict().items():
        cfg_table.add_row(key, str(value))
    console.print(cfg_table)
    console.print(f"LM: {model.lm.n_layers} layers, d_model {model.lm.d_model}; "
                  f"{len(blocks)} MM blocks after layers {list(config.mm_layers)}")
    table = Table(title="Parameters")
    table.add_column("component")
    table.add_column("total", justify="right")
    table.add_column("trainable", justify="right")
    for name, count in counts.items():
        table.add_row(name, f"{count.total / 1e6:,.2f} M", f"{count.trainable / 1e6:,.2f} M",
                      style="bold" if name == "all" else None)
    console.print(table)
    if blocks:
        one = next(iter(blocks.values()))
        console.print(f"one MM block: {one.total / 1e6:.2f} M parameters ({one.trainable / 1e6:.2f} M trainable)")


def register(app: typer.Typer) -> None:
    app.command("describe")(describe)
