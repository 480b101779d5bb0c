"""Root Typer app: registers the commands and nothing else.

Heavy libraries (torch, transformers, librosa) are imported inside the
commands, so `deepmlf --help` starts instantly.
"""

from __future__ import annotations

import importlib
from typing import Annotated, Optional

import typer

app = typer.Typer(
    name="deepmlf",
    help="Multimodal sentiment analysis: from raw videos to a trained DeepMLF model and predictions.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=True,  # --install-completion / --show-completion for bash, zsh, fish, PowerShell
    rich_markup_mode="rich",
)



def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            number = version("deepmlf")
        except PackageNotFoundError:  # a source checkout that was never installed
            number = "unknown (not installed)"
        typer.echo(f"deepmlf {number}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[Optional[bool], typer.Option("--version", callback=_version, is_eager=True,
                                                    help="Print the version and exit.")] = None,
) -> None:
    """Multimodal sentiment analysis: from raw videos to a trained DeepMLF model and predictions."""


# Order is the order `deepmlf --help` lists them.
COMMAND_MODULES = (
    "extract",
    "transcribe",
    "pretrain",
    "train",
    "evaluate",
    "predict",
    "compare",
    "study",
    "describe",
    "demo",
)

for _name in COMMAND_MODULES:
    try:
        _module = importlib.import_module(f"deepmlf_cli.commands.{_name}")
    except ModuleNotFoundError as exc:  # a command still being built in this checkout
        if exc.name != f"deepmlf_cli.commands.{_name}":
            raise
        continue
    _module.register(app)


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
