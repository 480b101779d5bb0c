"""Result tables of the batch commands (predict, transcribe, extract); failures as one line each."""

from __future__ import annotations

import json
import math
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from deepmlf_cli.errors import print_error


def _fmt(value) -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:+.3f}"


# --------------------------------------------------------------------------- predict
def failure_line(result: dict) -> str:
    """A failed clip's one-line reason, naming its file once."""
    return result["error"] if result["path"] in result["error"] else f"{result['path']}: {result['error']}"


def show_report(report, as_json: bool = False) -> None:
    """A PredictReport as the JSON list of results (failures also as lines on stderr), or as tables."""
    if not as_json:
        return render_report(report)
    typer.echo(json.dumps(report.results, indent=2, ensure_ascii=False))
    for r in report.failed:
        print_error(failure_line(r))


def render_report(report, console=None) -> None:
    """A PredictReport: the result table (and each clip's timeline with --segment), then failures as one line each."""
    console = console or Console(highlight=False, soft_wrap=True)
    ok = [r for r in report.results if r["status"] == "ok"]
    from models.schemes import Scheme

    lo, hi = (int(v) for v in Scheme(report.scheme).scale)
    if ok:
        table = Table(title=f"predictions · {report.checkpoint} · scale [{lo}, {hi}]", title_justify="left",
                      caption="scores clipped to the scale (raw values: --json); text/AV/fusion: each path's own "
                              "head, not parts of the score (see deepmlf predict --help)", caption_justify="left")
        for col, justify in (("clip", "left"), ("score", "right"), ("polarity", "left"), ("text", "right"),
                             ("AV", "right"), ("fusion", "right"), ("transcript", "left")):
            table.add_column(col, justify=justify, overflow="fold" if col == "clip" else "ellipsis",
                             max_width=40 if col == "transcript" else None)
        colours = {"negative": "red", "neutral": "yellow", "positive": "green"}
        for r in ok:
            # keys and transcripts are user text: "[laughs]" must print, not vanish as markup
            snippet = escape(r["transcript"]) if r["transcript"] else f"[dim]({escape(r['transcript_source'])})[/]"
            table.add_row(escape(r["key"]), _fmt(r["score"]), f"[{colours[r['polarity']]}]{r['polarity']}[/]",
                          _fmt(r["heads"]["text"]), _fmt(r["heads"]["av"]), _fmt(r["heads"]["fusion"]), snippet)
        console.print(table)
    for r in ok:
        if r.get("segments"):
            timeline = Table(title=f"{escape(r['key'])}: timeline", title_justify="left")
            for col in ("start", "end", "score", "polarity", "text"):
                timeline.add_column(col, justify="right" if col in ("start", "end", "score") else "left")
            for s in r["segments"]:
                timeline.add_row(f"{s['start']:.1f}", f"{s['end']:.1f}", _fmt(s["score"]), s["polarity"], escape(s["text"]))
            console.print(timeline)
            console.print(escape(f"timeline: {r['timeline_csv']} · plot: {r['plot']}"))
    for note in report.notes:
        console.print(f"[yellow]note:[/] {escape(note)}")
    for r in report.failed:
        print_error(failure_line(r))
    if report.results:
        console.print(f"{len(ok)} predicted, {len(report.failed)} failed")


# --------------------------------------------------------------------------- transcribe
def show_transcripts(results: list[dict], out: Path | None, as_json: bool = False) -> None:
    """transcribe's rows as JSON, or a single file's transcript as it is (no --out), or a table."""
    if as_json:
        for row in results:
            row.pop("rendered", None)
        typer.echo(json.dumps(results, indent=2, ensure_ascii=False))
    elif out is None and len(results) == 1 and results[0]["status"] == "done":
        typer.echo(results[0]["rendered"], nl=False)
    else:
        render_transcripts(results, out)


def render_transcripts(results: list[dict], out: Path | None) -> None:
    """One row per clip: status, transcript source, the text's start (or the failure's reason)."""
    table = Table(title=f"transcribe → {out}" if out else "transcribe", title_justify="left")
    for col in ("clip", "status", "source", "text / reason"):
        table.add_column(col, overflow="fold")
    for r in results:
        detail = r["reason"] if r["status"] == "failed" else (r["text"][:80] + ("…" if len(r["text"]) > 80 else ""))
        status = "[red]failed[/]" if r["status"] == "failed" else "done"
        table.add_row(escape(r["key"]), status, escape(r["source"]), escape(detail))
    Console(highlight=False, soft_wrap=True).print(table)


# --------------------------------------------------------------------------- extract
def show_extract(summary, as_json: bool = False, quiet: bool = False) -> None:
    """An extract summary as JSON, or as tables."""
    if as_json:
        typer.echo(json.dumps(summary.to_dict(), indent=2, ensure_ascii=False))
    else:
        render_extract(summary, quiet)


def render_extract(summary, quiet: bool) -> None:
    """An extract summary: the failed clips, then counts, speed and what was written."""
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
