"""How known errors reach the user: one red line with the next step, no traceback.

Library packages raise; this module turns their errors into exit codes.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator

import typer

from deepmlf_cli.render import stderr

# Exit codes mean something: 1 = bad input / known failure, 2 = usage
# (Typer's own), 130 = interrupted by the user.
EXIT_FAILURE = 1
EXIT_INTERRUPTED = 130


def known_error_types() -> tuple[type[BaseException], ...]:
    """Errors raised on purpose by our packages (imported lazily: they are light)."""
    from extractors.errors import ExtractionError
    from models.errors import DeepMLFError

    # Only our own classes: a bare FileNotFoundError/PermissionError is a bug's (say, a file the code
    # itself should have written) and keeps its traceback; errors about the user's paths are raised
    # as these classes, with the path and the fix in the message.
    return (DeepMLFError, ExtractionError)


def print_error(message: str) -> None:
    """One red error line on stderr; the message is text, never markup (paths and "[model]" stay intact)."""
    from rich.markup import escape

    stderr.print(f"[bold red]error:[/] {escape(message)}")


def fail(message: str) -> typer.Exit:
    """Print one red error line and return the Exit to raise."""
    print_error(message)
    return typer.Exit(EXIT_FAILURE)


RERUN_RESUMES = "re-run the same command to resume"


def resume_hint(resuming: bool) -> str:
    """What Ctrl-C tells a user of a command whose runs continue only with --resume (train, pretrain)."""
    return RERUN_RESUMES if resuming else "re-run the same command with --resume to continue"


@contextlib.contextmanager
def handle_errors(debug: bool = False, rerun: str = RERUN_RESUMES) -> Iterator[None]:
    """Context for a command body: known errors become one line and exit 1; Ctrl-C says `rerun`."""
    try:
        yield
    except typer.Exit:
        raise
    except KeyboardInterrupt:
        stderr.print(f"[yellow]interrupted[/] — finished work is saved; {rerun}.")
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except known_error_types() as exc:
        if debug:
            raise
        text = str(exc)
        from models.errors import DiskFullError

        if isinstance(exc, DiskFullError):
            text = f"{text}, then {rerun}"  # train/pretrain: "... with --resume to continue"
        if isinstance(exc, FileNotFoundError) and exc.filename and str(exc.filename) not in text:
            text = f"{text}: {exc.filename}"
        raise fail(text) from None
    except Exception:
        if debug:
            raise
        stderr.print_exception(max_frames=3)
        stderr.print("[bold red]error:[/] unexpected failure (above); re-run with --debug for the full traceback.")
        raise typer.Exit(EXIT_FAILURE) from None


def is_interactive() -> bool:
    return sys.stderr.isatty()
