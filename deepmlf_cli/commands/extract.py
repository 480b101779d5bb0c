"""`deepmlf extract`: raw videos → audio/face features and transcripts; with labels, a dataset."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from deepmlf_cli.errors import EXIT_FAILURE, handle_errors
from deepmlf_cli.options import (
    DEFAULT_WHISPER_MODEL,
    AllowMissing,
    Debug,
    JsonOutput,
    LanguageOption,
    OutputFormat,
    Quiet,
    TranslateOption,
    WhisperBackendChoice,
    WhisperBackendOption,
    WhisperModelOption,
    Workers,
)
from extractors import choices
from models.schemes import Scheme


def extract(
    inputs: Annotated[
        Path,
        typer.Argument(help="A media file, a folder of media (recursive), or an MMSA folder with label.csv and Raw/."),
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder (dataset or per-clip features).")],
    labels: Annotated[
        Path | None,
        typer.Option("--labels", help="MMSA label.csv: builds train/valid/test splits from its mode column."),
    ] = None,
    audio: Annotated[choices.AudioBackend, typer.Option("--audio", help="Audio extractor.")] = choices.DEFAULT_AUDIO,
    face: Annotated[
        choices.FaceBackend, typer.Option("--face", help="Face extractor (mediapipe runs offline).")
    ] = choices.DEFAULT_FACE,
    fps: Annotated[
        float, typer.Option("--fps", help="Video frames sampled per second for the face extractor.")
    ] = choices.DEFAULT_FPS,
    functionals: Annotated[
        bool,
        typer.Option("--functionals", help="openSMILE: one row of clip-level functionals instead of frame-level LLDs."),
    ] = False,
    transcript: Annotated[
        choices.TranscriptMode,
        typer.Option("--transcript", help="auto: label text > sidecar .txt/.srt/.vtt > Whisper; given: never Whisper."),
    ] = choices.DEFAULT_TRANSCRIPT,
    whisper_model: WhisperModelOption = DEFAULT_WHISPER_MODEL,
    whisper_backend: WhisperBackendOption = WhisperBackendChoice.transformers,
    language: LanguageOption = None,
    translate: TranslateOption = False,
    output_format: Annotated[
        OutputFormat, typer.Option("--format", help="mmsa also writes an MMSA-compatible pickle next to the dataset.")
    ] = OutputFormat.deepmlf,
    scheme: Annotated[
        Scheme | None,
        typer.Option("--scheme", help="Metric scheme (default: sims when all labels are in [-1, 1], else mosi)."),
    ] = None,
    name: Annotated[
        str | None, typer.Option("--name", help="Dataset name (default: the output folder's name).")
    ] = None,
    shard: Annotated[
        str | None,
        typer.Option("--shard", help="K/N: process only shard K of N (1-based); re-run without it to assemble."),
    ] = None,
    workers: Workers = 1,
    allow_missing: AllowMissing = False,
    quiet: Quiet = False,
    json_output: JsonOutput = False,
    debug: Debug = False,
) -> None:
    """Extract audio, face and text features from videos; with labels, write a dataset `deepmlf train` reads.

    Re-running skips clips already done (resume). A bad clip never stops the
    batch: it is listed in OUT/errors.tsv and the summary, and the exit code is 1.
    """
    with handle_errors(debug):
        from deepmlf_cli.views import show_extract
        from deepmlf_cli.workflows.extract import extract_with_progress

        recipe = {
            "audio": audio,
            "face": face,
            "fps": fps,
            "functionals": functionals,
            "transcript": transcript,
            "whisper_model": whisper_model or DEFAULT_WHISPER_MODEL,
            "language": language,
            "whisper_backend": whisper_backend or WhisperBackendChoice.transformers,
            "task": "translate" if translate else "transcribe",
        }
        summary = extract_with_progress(
            inputs,
            out,
            recipe,
            shard=shard,
            quiet=quiet or json_output,
            labels=labels,
            workers=workers,
            mmsa=output_format == OutputFormat.mmsa,
            scheme=scheme,
            name=name,
            allow_missing=allow_missing,
        )
    show_extract(summary, json_output, quiet)
    if summary.failed:
        raise typer.Exit(EXIT_FAILURE)


def register(app: typer.Typer) -> None:
    """Add `extract` to the root app."""
    app.command("extract")(extract)
