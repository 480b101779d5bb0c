"""`deepmlf transcribe`: speech → text for a clip or a folder (sidecar transcripts first, else Whisper)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from deepmlf_cli.errors import EXIT_FAILURE, handle_errors
from deepmlf_cli.options import (
    DEFAULT_WHISPER_MODEL,
    Debug,
    JsonOutput,
    LanguageOption,
    Quiet,
    TranslateOption,
    WhisperBackendChoice,
    WhisperBackendOption,
    WhisperModelOption,
)
from extractors.choices import TranscriptFormat, TranscriptMode


def transcribe(
    inputs: Annotated[Path, typer.Argument(help="A media file or a folder of media (recursive).")],
    output_format: Annotated[TranscriptFormat, typer.Option("--format", "-f", help="txt, srt (with segment times) or json.")] = TranscriptFormat.txt,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Folder for <clip>.<format> files (default: print a single file's transcript).")] = None,
    whisper_model: WhisperModelOption = DEFAULT_WHISPER_MODEL,
    whisper_backend: WhisperBackendOption = WhisperBackendChoice.transformers,
    language: LanguageOption = None,
    translate: TranslateOption = False,
    use_sidecar: Annotated[bool, typer.Option("--sidecar/--no-sidecar", help="Use a .txt/.srt/.vtt next to the clip when there is one.")] = True,
    quiet: Quiet = False,
    json_output: JsonOutput = False,
    debug: Debug = False,
) -> None:
    """Transcribe speech with Whisper, or read the clip's sidecar transcript when it has one."""
    results: list[dict] = []
    with handle_errors(debug):
        from extractors.dataset import clip_filename, write_text
        from extractors.errors import ExtractionError
        from extractors.inputs import discover_media
        from extractors.media import probe
        from extractors.transcript import TranscriptPolicy, format_transcript, get_transcript

        jobs = discover_media(inputs)
        if not jobs:
            raise ExtractionError(f"{inputs}: no media files found")
        if inputs.is_dir() and out is None and not json_output:
            raise ExtractionError(f"{inputs} is a folder: give --out DIR for the transcripts (or --json)")
        policy = TranscriptPolicy(TranscriptMode.auto if use_sidecar else TranscriptMode.whisper,
                                  whisper_backend or WhisperBackendChoice.transformers, whisper_model or DEFAULT_WHISPER_MODEL,
                                  language, "translate" if translate else "transcribe")
        mode, transcriber = policy.mode, policy.transcriber()
        if any(policy.needs_whisper(j.path) for j in jobs):
            transcriber.check()  # model, backend and language: one clear line now, not one per clip
        progress = _progress(quiet or json_output or len(jobs) == 1, len(jobs))
        with progress or _Null():
            task = progress.add_task("transcribe", total=len(jobs), failed=0) if progress else None
            failed = 0
            for job in jobs:
                t0 = time.perf_counter()
                row = {"key": job.key, "path": str(job.path), "status": "done", "reason": "", "source": "", "text": ""}
                try:
                    info = probe(job.path)
                    transcript = get_transcript(job.path, mode, None, transcriber, info.has_audio)
                    rendered = format_transcript(transcript, output_format.value, info.duration)
                    row.update(source=transcript.source, text=transcript.text, transcript=transcript.to_dict())
                    if out is not None:
                        target = out / f"{clip_filename(job.key)}.{output_format.value}"
                        write_text(target, rendered)
                        row["file"] = str(target)
                    else:
                        row["rendered"] = rendered
                except ExtractionError as exc:
                    failed += 1
                    row.update(status="failed", reason=str(exc))
                row["seconds"] = round(time.perf_counter() - t0, 3)
                results.append(row)
                if progress:
                    progress.update(task, advance=1, failed=failed)
    if json_output:
        for row in results:
            row.pop("rendered", None)
        typer.echo(json.dumps(results, indent=2, ensure_ascii=False))
    elif out is None and len(results) == 1 and results[0]["status"] == "done":
        typer.echo(results[0]["rendered"], nl=False)
    else:
        _render(results, out)
    if any(r["status"] == "failed" for r in results):
        if len(results) == 1 and not json_output:
            from deepmlf_cli.errors import fail

            raise fail(results[0]["reason"])
        raise typer.Exit(EXIT_FAILURE)


class _Null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _progress(disabled: bool, total: int):
    if disabled:
        return None
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from deepmlf_cli.errors import err_console

    return Progress(
        TextColumn("[bold]transcribe[/]"), BarColumn(), MofNCompleteColumn(),
        TextColumn("[red]{task.fields[failed]} failed[/]"), TimeElapsedColumn(), console=err_console,
    )


def _render(results: list[dict], out: Path | None) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=f"transcribe → {out}" if out else "transcribe", title_justify="left")
    for col in ("clip", "status", "source", "text / reason"):
        table.add_column(col, overflow="fold")
    for r in results:
        detail = r["reason"] if r["status"] == "failed" else (r["text"][:80] + ("…" if len(r["text"]) > 80 else ""))
        status = "[red]failed[/]" if r["status"] == "failed" else "done"
        table.add_row(escape(r["key"]), status, escape(r["source"]), escape(detail))
    Console(highlight=False, soft_wrap=True).print(table)


def register(app: typer.Typer) -> None:
    """Add `transcribe` to the root app."""
    app.command("transcribe")(transcribe)
