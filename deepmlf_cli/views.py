"""What the commands print: training and evaluation results, describe's recipe, the batch commands' tables
(predict, transcribe, extract; failures as one line each). Tables are built in deepmlf_cli.render."""

from __future__ import annotations

import json
import math
from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from deepmlf_cli.errors import print_error
from deepmlf_cli.render import metrics_table, results_table, stderr, stdout, transposed_table


def _fmt(value) -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:+.3f}"


# --------------------------------------------------------------------------- train, pretrain, demo
def show_note(note: str) -> None:
    """One yellow "note:" line on stdout (text, never markup)."""
    stdout.print(f"[yellow]note:[/] {escape(note)}")


def show_run_results(results: dict, run_dir: Path, title: str, as_json: bool = False) -> None:
    """A trained run's results as JSON, or its test table, notes and where it was saved."""
    if as_json:
        typer.echo(json.dumps({"run_dir": str(run_dir), **results}, indent=2))
        return
    if results["mean"]:
        stdout.print(results_table(results, f"{title} — test split"))
    for note in results.get("notes", []):
        show_note(note)
    stdout.print(f"run saved in [bold]{escape(str(run_dir))}[/] (results.json, results.csv, seed_*/best, seed_*/plots)")


def show_study(result: dict, out_dir: Path, dataset_name: str, as_json: bool = False) -> None:
    """A study's variants as columns of mean ± std (or JSON), and where it was saved."""
    from models.evaluation.compare import format_mean_std

    if as_json:
        typer.echo(json.dumps({"out": str(out_dir), **result}, indent=2))
        return
    rows = [
        [row["name"], *[format_mean_std(row["mean"].get(m), row["std"].get(m)) for m in result["primary"]]]
        for row in result["rows"]
    ]
    stdout.print(
        transposed_table(
            f"{result['title']} — {dataset_name}, test split (mean ± std over seeds)",
            ["variant", *result["primary"]],
            rows,
        )
    )
    stdout.print(
        f"study saved in [bold]{escape(str(out_dir))}[/] (study.csv, study.json, study.png, one run per variant)"
    )


def show_demo_comparison(results: dict) -> None:
    """demo: the sample's models side by side, one column per model, the scheme's primary metrics as rows."""
    from models.schemes import Scheme

    labels = {"pretrain": "AV only", "text-only": "text only", "deepmlf": "DeepMLF"}
    table = Table(title="Embedded sample, test split (mean over seeds)")
    table.add_column("metric", no_wrap=True)
    for run in results:
        table.add_column(labels.get(run, run), justify="right", style="bold" if run == "deepmlf" else None)
    for name in Scheme.SIMS.primary_metrics:
        table.add_row(name, *[f"{res['mean'][name]:.4f}" for res in results.values()])
    stdout.print(table)


# --------------------------------------------------------------------------- describe
def _fields_table(title: str, fields: dict) -> Table:
    table = Table(title=title, show_header=False, box=None)
    for key, value in fields.items():
        table.add_row(key, escape(str(value)))  # values are plain text: "[sin | cos]" is not Rich markup
    return table


def show_description(recipe: dict, counts: dict, as_json: bool = False) -> None:
    """describe: a preset's recipe as field tables, then parameter counts per component (or all as JSON)."""
    if as_json:
        typer.echo(json.dumps({**recipe, **counts}, indent=2))
        return
    stdout.print(f"preset {recipe['preset']}: {recipe['description']}", markup=False)
    for note in recipe["notes"]:
        stdout.print(f"note: {note}", markup=False)
    stdout.print(_fields_table("Model", recipe["model"]))
    stdout.print(_fields_table("Model rules", recipe["model_rules"]))
    stdout.print(_fields_table("Training (DeepMLF)", recipe["train"]))
    stdout.print(_fields_table("Training procedure (DeepMLF)", recipe["procedure"]))
    stdout.print(
        _fields_table(
            "AV pretraining",
            {**recipe["pretrain"]["train"], **{f"model.{k}": v for k, v in recipe["pretrain"]["model"].items()}},
        )
    )
    stdout.print(_fields_table("AV pretraining procedure", recipe["pretrain"]["procedure"]))
    if counts["parameters"] is None:
        stdout.print(f"no parameter counts: {counts['parameters_unavailable']}", markup=False)
        return
    mm_layers = recipe["model"]["mm_layers"]
    stdout.print(
        f"LM: {counts['lm_layers']} layers, d_model {counts['d_model']}; "
        f"{len(counts['mm_block_parameters'])} MM blocks after layers {mm_layers}"
    )
    table = Table(title="Parameters")
    table.add_column("component")
    table.add_column("total", justify="right")
    table.add_column("trainable", justify="right")
    for name, count in counts["parameters"].items():
        table.add_row(
            name,
            f"{count['total'] / 1e6:,.2f} M",
            f"{count['trainable'] / 1e6:,.2f} M",
            style="bold" if name == "all" else None,
        )
    stdout.print(table)
    blocks = counts["mm_block_parameters"]
    if blocks:
        stdout.print(f"one MM block: {next(iter(blocks.values())) / 1e6:.2f} M parameters")


# --------------------------------------------------------------------------- evaluate
def show_scored_predictions(scored: dict, as_json: bool = False) -> None:
    """evaluate --predictions: the metrics of a CSV, as JSON or a table."""
    if as_json:
        typer.echo(json.dumps(scored, indent=2))
        return
    metrics = scored["metrics"]
    title = f"{Path(scored['predictions']).name} ({scored['n']} rows, {scored['scheme']})"
    stdout.print(metrics_table(metrics, list(metrics), title))


def show_evaluation(run_dir: Path, data, split: str, rows: dict, results: dict, as_json: bool = False) -> None:
    """A run evaluated on a split: JSON, one seed's every metric, or every seed with mean ± std."""
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "run_dir": str(run_dir),
                    "dataset": data.source,
                    "split": split,
                    **results,
                    "cleaned": {split: data.cleaning_report.get(split, {})},
                },
                indent=2,
            )
        )
    elif len(rows) == 1:  # one seed: every metric once (a mean ± std table would repeat it)
        seed, row = next(iter(rows.items()))
        stdout.print(metrics_table(row, list(row), f"{run_dir} (seed {seed}) on {data.name}/{split}"))
    else:
        stdout.print(results_table(results, f"{run_dir} on {data.name}/{split}"))


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


def render_report(report, console=stdout) -> None:
    """A PredictReport: the result table (and each clip's timeline with --segment), then failures as one line each."""
    ok = [r for r in report.results if r["status"] == "ok"]
    from models.schemes import Scheme

    lo, hi = (int(v) for v in Scheme(report.scheme).scale)
    if ok:
        table = Table(
            title=f"predictions · {report.checkpoint} · scale [{lo}, {hi}]",
            title_justify="left",
            caption="scores clipped to the scale (raw values: --json); text/AV/fusion: each path's own "
            "head, not parts of the score (see deepmlf predict --help)",
            caption_justify="left",
        )
        for col, justify in (
            ("clip", "left"),
            ("score", "right"),
            ("polarity", "left"),
            ("text", "right"),
            ("AV", "right"),
            ("fusion", "right"),
            ("transcript", "left"),
        ):
            table.add_column(
                col,
                justify=justify,
                overflow="fold" if col == "clip" else "ellipsis",
                max_width=40 if col == "transcript" else None,
            )
        colours = {"negative": "red", "neutral": "yellow", "positive": "green"}
        for r in ok:
            # keys and transcripts are user text: "[laughs]" must print, not vanish as markup
            snippet = escape(r["transcript"]) if r["transcript"] else f"[dim]({escape(r['transcript_source'])})[/]"
            table.add_row(
                escape(r["key"]),
                _fmt(r["score"]),
                f"[{colours[r['polarity']]}]{r['polarity']}[/]",
                _fmt(r["heads"]["text"]),
                _fmt(r["heads"]["av"]),
                _fmt(r["heads"]["fusion"]),
                snippet,
            )
        console.print(table)
    for r in ok:
        if r.get("segments"):
            timeline = Table(title=f"{escape(r['key'])}: timeline", title_justify="left")
            for col in ("start", "end", "score", "polarity", "text"):
                timeline.add_column(col, justify="right" if col in ("start", "end", "score") else "left")
            for s in r["segments"]:
                timeline.add_row(
                    f"{s['start']:.1f}", f"{s['end']:.1f}", _fmt(s["score"]), s["polarity"], escape(s["text"])
                )
            console.print(timeline)
            console.print(escape(f"timeline: {r['timeline_csv']} · plot: {r['plot']}"))
    for note in report.notes:
        console.print(f"[yellow]note:[/] {escape(note)}")
    for r in report.failed:
        print_error(failure_line(r))
    if report.results:
        console.print(f"{len(ok)} predicted, {len(report.failed)} failed")


# --------------------------------------------------------------------------- transcribe
# extract and predict refuse such a text like an empty one; transcribe shows it, and says so
GUARD_NOTE = "Whisper's hallucination guards refuse this transcript ({}); extract and predict treat it as empty"


def show_transcripts(results: list[dict], out: Path | None, as_json: bool = False) -> None:
    """transcribe's rows as JSON, or a single file's transcript as it is (no --out), or a table."""
    if as_json:
        for row in results:
            row.pop("rendered", None)
        typer.echo(json.dumps(results, indent=2, ensure_ascii=False))
    elif out is None and len(results) == 1 and results[0]["status"] == "done":
        typer.echo(results[0]["rendered"], nl=False)
        if refused := results[0].get("transcript", {}).get("rejected"):  # stdout stays the transcript alone
            stderr.print(f"[yellow]note:[/] {escape(GUARD_NOTE.format(refused))}")
    else:
        render_transcripts(results, out)


def render_transcripts(results: list[dict], out: Path | None) -> None:
    """One row per clip: status, transcript source, the text's start (or the failure's reason)."""
    table = Table(title=f"transcribe → {out}" if out else "transcribe", title_justify="left")
    for col in ("clip", "status", "source", "text / reason"):
        table.add_column(col, overflow="fold")
    for r in results:
        detail = r["reason"] if r["status"] == "failed" else (r["text"][:80] + ("…" if len(r["text"]) > 80 else ""))
        if refused := r.get("transcript", {}).get("rejected"):
            detail += " — " + GUARD_NOTE.format(refused)
        status = "[red]failed[/]" if r["status"] == "failed" else "done"
        table.add_row(escape(r["key"]), status, escape(r["source"]), escape(detail))
    stdout.print(table)


# --------------------------------------------------------------------------- extract
def show_extract(summary, as_json: bool = False, quiet: bool = False) -> None:
    """An extract summary as JSON, or as tables."""
    if as_json:
        typer.echo(json.dumps(summary.to_dict(), indent=2, ensure_ascii=False))
    else:
        render_extract(summary, quiet)


def render_extract(summary, quiet: bool) -> None:
    """An extract summary: the failed clips, then counts, speed and what was written."""
    if summary.failed:
        table = Table(title="failed clips", title_justify="left")
        table.add_column("clip", style="bold")
        table.add_column("reason", overflow="fold")
        for r in summary.failed:
            table.add_row(escape(r.key), escape(r.reason))
        stdout.print(table)
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
    stdout.print(table)
    for note in summary.notes:
        show_note(note)
    if summary.errors_file:
        stdout.print(f"[red]{len(summary.failed)} clip(s) failed[/]; reasons in {summary.errors_file}")
