"""`deepmlf transcribe`: speech → text for a clip or a folder (sidecar transcripts first, else Whisper)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from deepmlf_cli.errors import EXIT_FAILURE, fail, handle_errors
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
from extractors.choices import TranscriptFormat


def transcribe(
    inputs: Annotated[Path, typer.Argument(help="A media file or a folder of media (recursive).")],
    output_format: Annotated[
        TranscriptFormat, typer.Option("--format", "-f", help="txt, srt (with segment times) or json.")
    ] = TranscriptFormat.txt,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", "-o", help="Folder for <clip>.<format> files (default: print a single file's transcript)."
        ),
    ] = None,
    whisper_model: WhisperModelOption = DEFAULT_WHISPER_MODEL,
    whisper_backend: WhisperBackendOption = WhisperBackendChoice.transformers,
    language: LanguageOption = None,
    translate: TranslateOption = False,
    use_sidecar: Annotated[
        bool, typer.Option("--sidecar/--no-sidecar", help="Use a .txt/.srt/.vtt next to the clip when there is one.")
    ] = True,
    quiet: Quiet = False,
    json_output: JsonOutput = False,
    debug: Debug = False,
) -> None:
    """Transcribe speech with Whisper, or read the clip's sidecar transcript when it has one."""
    with handle_errors(debug):
        from deepmlf_cli.outputs import transcript_writer
        from deepmlf_cli.progress import ClipProgress
        from deepmlf_cli.views import show_transcripts
        from deepmlf_cli.workflows.transcribe import transcribe_paths
        from extractors.errors import ExtractionError

        if inputs.is_dir() and out is None and not json_output:
            raise ExtractionError(f"{inputs} is a folder: give --out DIR for the transcripts (or --json)")
        with ClipProgress("transcribe", quiet=quiet or json_output, transient=False, min_total=2) as bar:
            results = transcribe_paths(
                inputs,
                output_format.value,
                whisper_model=whisper_model or DEFAULT_WHISPER_MODEL,
                backend=(whisper_backend or WhisperBackendChoice.transformers).value,
                language=language,
                translate=translate,
                use_sidecar=use_sidecar,
                on_plan=bar.on_plan,
                on_result=bar.on_result,
                write=transcript_writer(out, output_format.value) if out is not None else None,
            )
    show_transcripts(results, out, json_output)
    if any(r["status"] == "failed" for r in results):
        if len(results) == 1 and not json_output:
            raise fail(results[0]["reason"])
        raise typer.Exit(EXIT_FAILURE)


def register(app: typer.Typer) -> None:
    """Add `transcribe` to the root app."""
    app.command("transcribe")(transcribe)
