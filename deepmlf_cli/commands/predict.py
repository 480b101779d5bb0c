"""`deepmlf predict`: sentiment of new clips with a trained run (deepmlf_cli.workflows.predict; JSON schema there)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from deepmlf_cli.errors import EXIT_FAILURE, handle_errors
from deepmlf_cli.options import (
    AllowMissing,
    Debug,
    Device,
    JsonOutput,
    LanguageOption,
    Quiet,
    TranslateOption,
    WhisperBackendOption,
    WhisperModelOption,
)
from deepmlf_cli.predictor import DEFAULT_WINDOW_S  # standard library only: `--help` stays fast


def predict(
    paths: Annotated[list[Path], typer.Argument(help="Media files and/or folders (searched recursively).")],
    model: Annotated[
        Path | None,
        typer.Option(
            "--model",
            "-m",
            help="A run directory (or checkpoint) from `deepmlf train`; default: the newest under ./runs.",
        ),
    ] = None,
    lm: Annotated[
        str | None,
        typer.Option(
            "--lm",
            help="The run's frozen LM at a new place (a moved run or LM directory); default: the one the run names.",
        ),
    ] = None,
    transcript: Annotated[
        str | None, typer.Option("--transcript", help="The text spoken in the clip(s); wins over sidecars and Whisper.")
    ] = None,
    no_whisper: Annotated[
        bool, typer.Option("--no-whisper", help="Never run Whisper: sidecar .txt/.srt/.vtt text, else empty.")
    ] = False,
    segment: Annotated[
        bool,
        typer.Option(
            "--segment", help="Long videos: predict each utterance (subtitles/Whisper) or fixed window; timeline + PNG."
        ),
    ] = False,
    window: Annotated[
        float,
        typer.Option("--window", help="Window length in seconds for --segment when there are no utterance timestamps."),
    ] = DEFAULT_WINDOW_S,
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Folder for --segment's timeline CSVs and PNG plots.")
    ] = Path("predictions"),
    lm_mismatch: Annotated[
        str | None,
        typer.Option(
            "--lm-mismatch",
            help="ok: use an --lm whose weights differ from the ones the run was trained with (default: refuse it).",
        ),
    ] = None,
    csv_file: Annotated[
        Path | None,
        typer.Option("--csv", help="Also write the results to this CSV (one row per clip, or per segment)."),
    ] = None,
    whisper_model: WhisperModelOption = None,
    whisper_backend: WhisperBackendOption = None,
    language: LanguageOption = None,
    translate: TranslateOption = False,
    allow_missing: AllowMissing = False,
    device: Device = "cpu",
    quiet: Quiet = False,
    as_json: JsonOutput = False,
    debug: Debug = False,
) -> None:
    """Sentiment score, polarity and per-modality heads of new clips, with the features the model was trained on.

    The score is the task head (reading audio/vision, text and the fusion tokens together), shown clipped to
    the dataset's scale (--json keeps raw_score). The text, AV and fusion columns are auxiliary heads trained on
    the same label, each reading one path alone: what that path predicts by itself, not parts of the score.

    Exit code 1 when any clip failed (the others are still predicted and printed).
    """
    with handle_errors(debug):
        from deepmlf_cli.outputs import report_rows, timeline_saver, write_csv
        from deepmlf_cli.progress import ClipProgress
        from deepmlf_cli.views import show_report
        from deepmlf_cli.workflows.predict import predict_paths
        from models.devices import resolve_device
        from models.io import check_writable_file

        if csv_file is not None:
            check_writable_file(csv_file, "--csv")  # before Whisper and the model run
        whisper = {
            "model": whisper_model,
            "language": language,
            "backend": whisper_backend.value if whisper_backend else None,
            "task": "translate" if translate else None,
        }
        with ClipProgress("predict", quiet=quiet or as_json) as bar:
            report = predict_paths(
                paths,
                model,
                transcript=transcript,
                no_whisper=no_whisper,
                segment=segment,
                window=window,
                device=str(resolve_device(device)),
                allow_missing=allow_missing,
                lm=lm,
                lm_mismatch=lm_mismatch,
                whisper=whisper,
                save=timeline_saver(out),
                on_plan=bar.on_plan,
                on_result=bar.on_result,
            )
        if csv_file is not None:
            write_csv(csv_file, report_rows(report))
    show_report(report, as_json)
    if report.failed:
        raise typer.Exit(EXIT_FAILURE)


def register(app: typer.Typer) -> None:
    """Add `predict` to the root app."""
    app.command("predict")(predict)
