"""`deepmlf serve`: a local web page and JSON API over one warm model (deepmlf_cli.server; routes there)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from deepmlf_cli.errors import handle_errors
from deepmlf_cli.options import (
    AllowMissing,
    Debug,
    Device,
    LanguageOption,
    WhisperBackendOption,
    WhisperModelOption,
)


def serve(
    model: Annotated[
        Path | None,
        typer.Option(
            "--model",
            "-m",
            help="A run directory (or checkpoint) from `deepmlf train`; default: the newest under ./runs.",
        ),
    ] = None,
    host: Annotated[
        str, typer.Option("--host", help="Address to listen on; anything but loopback needs --token or --no-token.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="TCP port.")] = 8000,
    max_upload_mb: Annotated[
        float, typer.Option("--max-upload-mb", help="Largest upload per request, in MiB (413 past it).")
    ] = 200.0,
    queue: Annotated[
        int, typer.Option("--queue", min=0, help="Requests that may wait behind the one in flight (503 past it).")
    ] = 8,
    token: Annotated[
        str | None,
        typer.Option(
            "--token", envvar="DEEPMLF_SERVE_TOKEN", help="Every /api call then needs `Authorization: Bearer TOKEN`."
        ),
    ] = None,
    no_token: Annotated[
        bool, typer.Option("--no-token", help="Serve a non-loopback --host without a token (prints a warning).")
    ] = False,
    lm: Annotated[
        str | None, typer.Option("--lm", help="The run's frozen LM at a new place; default: the one the run names.")
    ] = None,
    no_whisper: Annotated[
        bool,
        typer.Option("--no-whisper", help="Never run Whisper: clips without a sent `text` read an empty transcript."),
    ] = False,
    whisper_model: WhisperModelOption = None,
    whisper_backend: WhisperBackendOption = None,
    language: LanguageOption = None,
    allow_missing: AllowMissing = False,
    device: Device = "cpu",
    debug: Debug = False,
) -> None:
    """Serve a trained run: a page to drop clips on and a JSON API (POST /api/predict), the model loaded once.

    Ctrl-C or SIGTERM finishes the request in flight, then exits 0.
    """
    with handle_errors(debug):
        from deepmlf_cli.render import stderr
        from deepmlf_cli.workflows.serve import ServeOptions, check_options
        from deepmlf_cli.workflows.serve import serve as run_server
        from models.devices import resolve_device

        whisper = {
            "model": whisper_model,
            "language": language,
            "backend": whisper_backend.value if whisper_backend else None,
            "task": None,
        }
        opts = ServeOptions(
            model,
            host,
            port,
            max_upload_mb,
            queue,
            token,
            no_token,
            no_whisper,
            allow_missing,
            str(resolve_device(device)),
            lm,
            whisper,
        )
        for warning in check_options(opts):
            stderr.print(f"[yellow]warning:[/] {warning}")

        def ready(url: str, card: dict) -> None:
            lo, hi = card["scale"]
            typer.echo(
                f"deepmlf serve: {url}  (run {card['path']}, {card['kind']} on {card['lm']}, scale [{lo:g}, {hi:g}])"
            )

        run_server(opts, on_ready=ready)


def register(app: typer.Typer) -> None:
    """Add `serve` to the root app."""
    app.command("serve")(serve)
