"""`deepmlf serve`: load one run, check the server's settings, serve it with uvicorn (deepmlf_cli.server)."""

from __future__ import annotations

import ipaddress
import signal
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000


@dataclass
class ServeOptions:
    """What `deepmlf serve` was asked for (the command's options, validated by `check_options`)."""

    model: Path | None = None
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    max_upload_mb: float = 200.0
    queue: int = 8
    token: str | None = None
    no_token: bool = False
    no_whisper: bool = False
    allow_missing: bool = False
    device: str = "cpu"
    lm: str | None = None
    whisper: dict[str, str | None] | None = None


def is_loopback(host: str) -> bool:
    """Whether `host` only listens on this machine (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_options(opts: ServeOptions) -> list[str]:
    """Refuse unsafe or impossible settings in one line (ConfigError); return the warnings to print."""
    from models.errors import ConfigError

    if opts.queue < 0:
        raise ConfigError(f"--queue must be 0 or more, not {opts.queue}")
    if opts.max_upload_mb <= 0:
        raise ConfigError(f"--max-upload-mb must be positive, not {opts.max_upload_mb}")
    if opts.token is not None and opts.no_token:
        raise ConfigError("--token and --no-token contradict each other; pass one")
    if opts.token is not None and not opts.token.strip():
        raise ConfigError("--token is empty; pass a secret string, e.g. `--token $(openssl rand -hex 16)`")
    warnings = []
    if not is_loopback(opts.host):
        if opts.token is None and not opts.no_token:
            raise ConfigError(
                f"--host {opts.host} is reachable from other machines: pass --token T (every /api call "
                f"then needs `Authorization: Bearer T`), or --no-token to serve it open"
            )
        if opts.no_token:
            warnings.append(f"serving on {opts.host} without a token: anyone who can reach it can use the model")
    return warnings


def serve(opts: ServeOptions, on_ready: Callable[[str, dict], None] | None = None) -> None:
    """Load the run once, then serve it until SIGTERM/Ctrl-C (the request in flight finishes first).

    on_ready(url, card) is called once the model is loaded, before the port opens.
    """
    import uvicorn

    from deepmlf_cli.predictor import Predictor
    from deepmlf_cli.server import create_app
    from extractors.errors import ModelNotCachedError

    check_options(opts)
    predictor = Predictor.load(
        opts.model, device=opts.device, lm=opts.lm, whisper=opts.whisper, no_whisper=opts.no_whisper
    )
    if predictor.recipe.transcript.mode in ("auto", "whisper") and "text" in predictor.reads:
        try:  # an upload has no sidecar: Whisper must be there, say so now rather than per request
            predictor.recipe.transcript.check_whisper()
        except ModelNotCachedError as exc:
            first = str(exc).splitlines()[0].split("; or use a sidecar")[0].split(", or use a sidecar")[0]
            raise ModelNotCachedError(
                f"{first}; or serve with --no-whisper (each clip's words then come in the request's `text` field)"
            ) from None
    app = create_app(
        predictor,
        queue=opts.queue,
        max_upload_mb=opts.max_upload_mb,
        token=opts.token,
        allow_missing=opts.allow_missing,
    )
    host = f"[{opts.host}]" if ":" in opts.host else opts.host
    if on_ready:
        on_ready(f"http://{host}:{opts.port}/", predictor.card())
    # uvicorn handles SIGTERM/SIGINT: it stops accepting, waits for the request in flight and runs the
    # lifespan's shutdown (temporary files removed). Then it restores the handlers it found and raises the
    # signal again, which would kill the process (-15) or raise KeyboardInterrupt: the handlers it finds
    # are no-ops, so that shutdown ends as the command's normal return (exit 0).
    previous = {sig: signal.signal(sig, _ignore) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        uvicorn.run(app, host=opts.host, port=opts.port, log_level="warning", access_log=False)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _ignore(signum: int, frame: object) -> None:
    """The signal uvicorn raises again after its graceful shutdown: already handled."""
