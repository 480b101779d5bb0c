"""`deepmlf describe`: a preset's fully resolved recipe (model, training, AV pretraining) and the
parameter counts per component, without training and without weights."""

from __future__ import annotations

import json
from typing import Annotated, Optional

import typer

from deepmlf_cli.errors import handle_errors
from deepmlf_cli.options import Debug, JsonOutput, LanguageModel

DescribePreset = Annotated[str, typer.Option("--preset", help="Named recipe: mosei, mosei-large, sims, mosi or sample.")]


def describe(
    preset: DescribePreset = "sims",
    lm: LanguageModel = None,
    random_init: Annotated[bool, typer.Option("--random-init", hidden=True, help="Kept for older scripts: counts never need weights.")] = False,
    mm_layers: Annotated[Optional[str], typer.Option("--mm-layers", help="0-based LM layers followed by an MM block, e.g. 5..11 or 3,5,7.")] = None,
    n_fusion: Annotated[Optional[int], typer.Option("--n-fusion", help="Number of fusion tokens.")] = None,
    ffw: Annotated[Optional[str], typer.Option("--ffw", help="MM-block FFW: full, lora or none.")] = None,
    as_json: JsonOutput = False,
    debug: Debug = False,
) -> None:
    """Print the preset's resolved model, training and pretraining recipe, and parameter counts per component.

    The counts come from the LM's config alone (local directory, cache, or the
    built-in table of the presets' LMs): no weights are loaded.
    """
    with handle_errors(debug):
        from models.config import get_preset, parse_layer_list

        overrides = {}
        if lm:
            overrides["lm"] = lm
        if mm_layers is not None:
            overrides["mm_layers"] = parse_layer_list(mm_layers)
        if n_fusion is not None:
            overrides["n_fusion"] = n_fusion
        if ffw is not None:
            overrides["ffw_mode"] = ffw
        chosen = get_preset(preset)
        recipe = resolved_recipe(chosen, chosen.model_config(**overrides))
        counts = _count(recipe["model"])
        if as_json:
            typer.echo(json.dumps({**recipe, **counts}, indent=2))
            return
        _render(recipe, counts)


def resolved_recipe(chosen, config) -> dict:
    """Every field of the model, of DeepMLF training and of AV pretraining, defaults filled in."""
    from models.config import TrainConfig

    pretrain_model = config.replace(**chosen.pretrain_model).to_dict()
    model = config.to_dict()
    return {
        "preset": chosen.name,
        "description": chosen.description,
        "notes": list(chosen.notes),
        "model": model,
        "train": TrainConfig.from_dict(chosen.train).to_dict(),
        "pretrain": {
            "train": TrainConfig.from_dict(chosen.pretrain).to_dict(),
            # Only what differs from the DeepMLF model (the AV settings must match for loading).
            "model": {k: v for k, v in pretrain_model.items() if model[k] != v},
        },
    }


def _count(model_fields: dict) -> dict:
    """Parameter counts of the model built on the meta device; None with a reason when its LM is unknown."""
    from models.config import ModelConfig
    from models.errors import ModelNotAvailableError
    from models.nn.deepmlf import DeepMLF
    from models.nn.summary import count_parameters, per_block_parameters

    config = ModelConfig.from_dict(model_fields)
    try:
        model, _ = DeepMLF.from_config(config, random_init=True, meta=True)
    except ModelNotAvailableError as exc:
        return {"parameters": None, "parameters_unavailable": str(exc)}
    counts = count_parameters(model)
    return {
        "lm_layers": model.lm.n_layers,
        "d_model": model.lm.d_model,
        "parameters": {k: {"total": v.total, "trainable": v.trainable} for k, v in counts.items()},
        "mm_block_parameters": {str(k): v.total for k, v in per_block_parameters(model).items()},
    }


def _fields_table(title: str, fields: dict):
    from rich.table import Table

    table = Table(title=title, show_header=False, box=None)
    for key, value in fields.items():
        table.add_row(key, str(value))
    return table


def _render(recipe: dict, counts: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(highlight=False)
    console.print(f"preset {recipe['preset']}: {recipe['description']}", markup=False)
    for note in recipe["notes"]:
        console.print(f"note: {note}", markup=False)
    console.print(_fields_table("Model", recipe["model"]))
    console.print(_fields_table("Training (DeepMLF)", recipe["train"]))
    console.print(_fields_table("AV pretraining", {**recipe["pretrain"]["train"],
                                                   **{f"model.{k}": v for k, v in recipe["pretrain"]["model"].items()}}))
    if counts["parameters"] is None:
        console.print(f"no parameter counts: {counts['parameters_unavailable']}", markup=False)
        return
    mm_layers = recipe["model"]["mm_layers"]
    console.print(f"LM: {counts['lm_layers']} layers, d_model {counts['d_model']}; "
                  f"{len(counts['mm_block_parameters'])} MM blocks after layers {mm_layers}")
    table = Table(title="Parameters")
    table.add_column("component")
    table.add_column("total", justify="right")
    table.add_column("trainable", justify="right")
    for name, count in counts["parameters"].items():
        table.add_row(name, f"{count['total'] / 1e6:,.2f} M", f"{count['trainable'] / 1e6:,.2f} M",
                      style="bold" if name == "all" else None)
    console.print(table)
    blocks = counts["mm_block_parameters"]
    if blocks:
        one = next(iter(blocks.values()))
        console.print(f"one MM block: {one / 1e6:.2f} M parameters")


def register(app: typer.Typer) -> None:
    app.command("describe")(describe)
