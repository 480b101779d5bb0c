"""`deepmlf extract`: raw videos → audio/face features and transcripts; with labels, a dataset."""

from __future__ import annotations

import enum
import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from deepmlf_cli.errors import EXIT_FAILURE, handle_errors
from deepmlf_cli.options import (
    DEFAULT_WHISPER_MODEL,
    AllowMissing,
    Debug,
    JsonOutput,
    LanguageOption,
    Quiet,
    TranslateOption,
    WhisperBackendChoice,
    WhisperBackendOption,
    WhisperModelOption,
    Workers,
)
from extractors.choices import (
    DEFAULT_AUDIO,
    DEFAULT_FACE,
    DEFAULT_FPS,
    DEFAULT_TRANSCRIPT,
    AudioBackend,
    FaceBackend,
    TranscriptMode,
)
from models.schemes import Scheme


class OutputFormat(str, enum.Enum):
    deepmlf = "deepmlf"
    mmsa = "mmsa"


def extract(
    inputs: Annotated[Path, typer.Argument(help="A media file, a folder of media (recursive), or an MMSA folder with label.csv and Raw/.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder (dataset or per-clip features).")],
    labels: Annotated[Optional[Path], typer.Option("--labels", help="MMSA label.csv: builds train/valid/test splits from its mode column.")] = None,
    audio: Annotated[AudioBackend, typer.Option("--audio", help="Audio extractor.")] = DEFAULT_AUDIO,
    face: Annotated[FaceBackend, typer.Option("--face", help="Face extractor (mediapipe runs offline).")] = DEFAULT_FACE,
    fps: Annotated[float, typer.Option("--fps", help="Video frames sampled per second for the face extractor.")] = DEFAULT_FPS,
    functionals: Annotated[bool, typer.Option("--functionals", help="openSMILE: one row of clip-level functionals instead of frame-level LLDs.")] = False,
    transcript: Annotated[TranscriptMode, typer.Option("--transcript", help="auto: label text > sidecar .txt/.srt/.vtt > Whisper; given: never Whisper.")] = DEFAULT_TRANSCRIPT,
    whisper_model: WhisperModelOption = DEFAULT_WHISPER_MODEL,
    whisper_backend: WhisperBackendOption = WhisperBackendChoice.transformers,
    language: LanguageOption = None,
    translate: TranslateOption = False,
    output_format: Annotated[OutputFormat, typer.Option("--format", help="mmsa also writes an MMSA-compatible pickle next to the dataset.")] = OutputFormat.deepmlf,
    scheme: Annotated[Optional[Scheme], typer.Option("--scheme", help="Metric scheme (default: sims when all labels are in [-1, 1], else mosi).")] = None,
    name: Annotated[Optional[str], typer.Option("--name", help="Dataset name (default: the output folder's name).")] = None,
    shard: Annotated[Optional[str], typer.Option("--shard", help="K/N: process only shard K of N (1-based); re-run without it to assemble.")] = None,
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
        from extractors.batch import run_extract
        from extractors.inputs import parse_shard
        from extractors.recipe import build_recipe
        from models.data.format import save_extracted

        shard_kn = parse_shard(shard)
        recipe = build_recipe(
            audio=audio.value,
            face=face.value,
            fps=fps,
            functionals=functionals,
            transcript=transcript.value,
            whisper_model=whisper_model or DEFAULT_WHISPER_MODEL,
            whisper_backend=(whisper_backend or WhisperBackendChoice.transformers).value,
            language=language,
            task="translate" if translate else "transcribe",
        )
        summary = run_with_progress(
            run_extract,
            quiet=quiet or json_output,
            inputs=inputs,
            out=out,
            recipe=recipe,
            labels=labels,
            workers=workers,
            shard=shard_kn,
            mmsa=output_format == OutputFormat.mmsa,
            scheme=scheme,
            name=name,
            allow_missing=allow_missing,
            write_dataset=save_extracted,
        )
    if json_output:
        typer.echo(json.dumps(summary.to_dict(), indent=2, ensure_ascii=False))
    else:
        _render(summary, quiet)
    if summary.failed:
        raise typer.Exit(EXIT_FAILURE)


def run_with_progress(run, quiet: bool, **kwargs):
    """Call run(**kwargs, on_plan=..., on_result=...) under a Rich progress bar (clips/s, failures)."""
    if quiet:
        return run(**kwargs)
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from deepmlf_cli.errors import err_console
    from deepmlf_cli.render import make_progress

    state = {"failed": 0, "done": 0}
    with make_progress(False, err_console, (
        TextColumn("[bold]extract[/]"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]:.2f} clips/s"),
        TextColumn("[red]{task.fields[failed]} failed[/]"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )) as progress:
        # The bar appears once the batch is planned: an error before that prints no empty "0/?" bar.
        task = None

        def on_plan(total: int, already: int) -> None:
            nonlocal task
            task = progress.add_task("extract", total=total, rate=0.0, failed=0)

        def on_result(result) -> None:
            state["failed"] += result.status == "failed"
            state["done"] += result.status == "done"
            elapsed = progress.tasks[0].elapsed or 1e-9
            progress.update(task, advance=1, failed=state["failed"], rate=state["done"] / elapsed)

        return run(**kwargs, on_plan=on_plan, on_result=on_result)


def _render(summary, quiet: bool) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console(highlight=False, soft_wrap=True)
    if summary.failed:
        table = Table(title="failed clips", title_justify="left")
        table.add_column("clip", style="bold")
        table.add_column("reason", overflow="fold")
        for r in summary.failed:
            table.add_row(escape(r.key), escape(r.reason))
        console.print(table)
    table = Table(title=f"extract → {summary.out}", title_justify="left")
    for col in ("done", "skipped", "failed", "clips/s", "RTF", "output"):
        table.add_column(col, justify="right" if col not in ("output",) else "left")
    if summary.manifest and summary.kind == "dataset":
        splits = summary.manifest["splits"]
        output = f"dataset ({summary.manifest['scheme']}): " + ", ".join(f"{k} {v}" for k, v in splits.items())
    elif summary.manifest:
        output = f"{len(summary.manifest['clips'])} clips in features/"
    else:
        output = "per-clip features only"
    table.add_row(
        str(summary.count("done")),
        str(summary.count("skipped")),
        f"[red]{summary.count('failed')}[/]" if summary.failed else "0",
        f"{summary.clips_per_s:.2f}",
        f"{summary.realtime_factor:.3f}",
        output,
    )
    console.print(table)
    for note in summary.notes:
        console.print(f"[yellow]note:[/] {escape(note)}")
    if summary.errors_file:
        console.print(f"[red]{len(summary.failed)} clip(s) failed[/]; reasons in {summary.errors_file}")


def register(app: typer.Typer) -> None:
    """Add `extract` to the root app."""
    app.command("extract")(extract)
