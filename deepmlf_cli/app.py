"""Root Typer app: registers the commands and nothing else.

Heavy libraries (torch, transformers, librosa) are imported inside the
commands, so `deepmlf --help` starts instantly.
"""

from __future__ import annotations

import importlib
from typing import Annotated

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
    version: Annotated[
        bool | None, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = None,
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
    "serve",
    "compare",
    "study",
    "describe",
    "demo",
)


def register_commands(app: typer.Typer, names: tuple[str, ...] = COMMAND_MODULES) -> None:
    """Register every command module's commands on `app`.

    A module that cannot be imported because a Python module is missing (a
    dependency not installed, or a command file missing from the checkout) is a
    broken install: its command stays listed, marked unavailable, and running it
    prints one line naming the missing module and `make install`, exit 1. The
    other commands keep working. Any other import error propagates.
    """
    for name in names:
        try:
            module = importlib.import_module(f"deepmlf_cli.commands.{name}")
        except ModuleNotFoundError as exc:
            _register_unavailable(app, name, exc.name or str(exc))
            continue
        module.register(app)


def _register_unavailable(app: typer.Typer, name: str, missing: str) -> None:
    message = (
        f"`deepmlf {name}` is unavailable: Python module '{missing}' is not installed (a broken install); "
        "run `make install` (or `pip install -e .` in the checkout)"
    )

    # Any arguments are accepted, so `deepmlf NAME --its-options` gets this line rather than a usage error.
    @app.command(
        name,
        help=f"Unavailable: module '{missing}' is missing; run `make install`.",
        context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    )
    def unavailable(ctx: typer.Context) -> None:
        from deepmlf_cli.errors import fail

        raise fail(message)


register_commands(app)


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
