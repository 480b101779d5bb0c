"""`deepmlf describe`: a preset's fully resolved recipe (model, training, AV pretraining) and the
parameter counts per component, without training and without weights."""

from __future__ import annotations

from typing import Annotated

import typer

from deepmlf_cli.errors import handle_errors
from deepmlf_cli.options import Debug, JsonOutput, LanguageModel

DescribePreset = Annotated[
    str, typer.Option("--preset", help="Named recipe: mosei, mosei-large, sims, mosi or sample.")
]


def describe(
    preset: DescribePreset = "sims",
    lm: LanguageModel = None,
    random_init: Annotated[
        bool, typer.Option("--random-init", hidden=True, help="Kept for older scripts: counts never need weights.")
    ] = False,
    mm_layers: Annotated[
        str | None, typer.Option("--mm-layers", help="0-based LM layers followed by an MM block, e.g. 5..11 or 3,5,7.")
    ] = None,
    n_fusion: Annotated[int | None, typer.Option("--n-fusion", help="Number of fusion tokens.")] = None,
    ffw: Annotated[str | None, typer.Option("--ffw", help="MM-block FFW: full, lora or none.")] = None,
    as_json: JsonOutput = False,
    debug: Debug = False,
) -> None:
    """Print the preset's resolved model, training and pretraining recipe, and parameter counts per component.

    The counts come from the LM's config alone (local directory, cache, or the
    built-in table of the presets' LMs): no weights are loaded.
    """
    with handle_errors(debug):
        from deepmlf_cli.views import show_description
        from deepmlf_cli.workflows.describe import describe_preset

        recipe, counts = describe_preset(preset, lm=lm, mm_layers=mm_layers, n_fusion=n_fusion, ffw=ffw)
        show_description(recipe, counts, as_json)


def register(app: typer.Typer) -> None:
    app.command("describe")(describe)
