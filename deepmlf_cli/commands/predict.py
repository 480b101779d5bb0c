"""`deepmlf predict`: sentiment of new clips with a trained run, features made by the run's own recipe.

JSON schema (`--json` prints a list, one object per input clip):

    path               str    the media file
    key                str    its name (path relative to a given folder, no extension)
    status             str    "ok" or "failed"
    error              str|null  one-line reason when failed (other fields are then null)
    score              float  task head clipped to `scale` (with --segment: from the duration-weighted mean
                              of the segments' raw scores)
    raw_score          float  the task head's output as it is: a regression head can overshoot the scale
                              (e.g. +1.309 on [-1, 1]); `deepmlf evaluate` scores these values
    polarity           str    negative / neutral / positive (the scheme's 3-class bins)
    heads              {text, av, fusion: float|null}  auxiliary heads, clipped to `scale` (fusion: mean
                              over fusion tokens; null when the model has no such head)
    raw_heads          {text, av, fusion: float|null}  the same, unclipped
    scale              [lo, hi]  label range: [-1, 1] (sims) or [-3, 3] (mosi/mosei)

    How the heads relate to the score: the score is DeepMLF's task head, which reads the AV summary,
    the LM's last text state and the mean fusion token together. The text, AV and fusion heads are
    auxiliary heads trained on the same label, each reading one of those three alone: they show what
    that path predicts by itself, and the score is not their mean. Baselines fill only the heads of
    the modality they read (text/AV equal to the score; fusion null).
    transcript         str    the text the model read
    transcript_source  str    given / sidecar:<file> / whisper:<model> / silence / no-audio / none
    duration           float  seconds
    timings            {audio_s, face_s, transcript_s, model_s}
    segments           (with --segment) [{start, end, text, score, polarity, heads}]
    timeline_csv, plot (with --segment) paths of the timeline CSV and PNG
"""

from __future__ import annotations

import csv
import io
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Callable, Optional

import typer

from deepmlf_cli.errors import EXIT_FAILURE, handle_errors, print_error
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

if TYPE_CHECKING:
    from extractors.recipe import Recipe

DEFAULT_RUNS = Path("runs")
DEFAULT_WINDOW_S = 10.0
CSV_COLUMNS = ("path", "start", "end", "score", "polarity", "text_head", "av_head", "fusion_head", "transcript", "error")


@dataclass
class PredictReport:
    """What `predict_paths` returns: the model used and one result dict per clip (schema above)."""

    run_dir: Path
    checkpoint: Path
    scheme: str
    results: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def failed(self) -> list[dict[str, Any]]:
        return [r for r in self.results if r["status"] == "failed"]


# --------------------------------------------------------------------------- finding the model
def latest_run(root: Path = DEFAULT_RUNS) -> Path:
    """The run under `root` (recursive) whose run.json is newest and that holds a checkpoint."""
    from models.run import Run

    return Run.latest(root).path


def model_recipe(meta: dict, checkpoint: Path) -> Recipe:
    """The feature recipe stored with the model's training data (validated), or a plain error when there is none."""
    from extractors.recipe import Recipe
    from models.errors import CheckpointError

    dataset = meta.get("dataset") or {}
    recipe = dataset.get("recipe")
    if not recipe:
        raise CheckpointError(
            f"{checkpoint} was trained on {dataset.get('name', 'a dataset')} features that cannot be computed from raw "
            f"video (e.g. the MMSA pickles' COVAREP/Facet/OpenFace features); to predict on videos, train on extracted "
            f"features: `deepmlf extract videos/ --labels label.csv --out data/my` then `deepmlf train --dataset data/my`, "
            f"and pass that run to --model"
        )
    return Recipe.from_dict(recipe)


# --------------------------------------------------------------------------- inputs
def collect_inputs(paths: list[Path]) -> list[tuple[str, Path]]:
    """(key, path) per clip: files as given, folders searched recursively for media."""
    from extractors.inputs import discover_media
    from models.errors import ConfigError

    items: list[tuple[str, Path]] = []
    for path in paths:
        path = Path(path)
        if path.is_dir():
            jobs = discover_media(path)
            if not jobs:
                raise ConfigError(f"{path} holds no audio or video files")
            items.extend((job.key, job.path) for job in jobs)
        else:
            items.append((path.stem, path))  # a missing or bad file fails on its own, the others go on
    return items


# --------------------------------------------------------------------------- one clip
def _failed(key: str, path: Path, reason: str) -> dict[str, Any]:
    return {"path": str(path), "key": key, "status": "failed", "error": reason, "score": None, "raw_score": None,
            "polarity": None, "heads": None, "raw_heads": None, "scale": None, "transcript": None, "transcript_source": None, "duration": None, "timings": None}


def _predict_one(loaded, recipe: Recipe, key: str, path: Path, transcript: str | None, device: str,
                 needs: frozenset[str]) -> dict[str, Any]:
    """One clip's prediction; fails (MissingModalityError) when it lacks a modality in `needs`."""
    from extractors.pipeline import extract_clip, require_modalities
    from models.evaluation.predict import ClipInput, predict_features

    if not path.exists():
        raise FileNotFoundError(f"file not found: {path}")
    feats = extract_clip(path, recipe, transcript)
    require_modalities(path, feats.info, feats.text, "predict", needs)
    t0 = time.perf_counter()
    pred = predict_features(loaded, [ClipInput(feats.audio, feats.vision, feats.text, key)], device=device)[0]
    timings = {**feats.info["timings"], "model_s": round(time.perf_counter() - t0, 4)}
    return {"path": str(path), "key": key, "status": "ok", "error": None, **pred.to_dict(), "transcript": feats.text,
            "transcript_source": feats.transcript.source, "duration": feats.info["duration"], "timings": timings}


def fixed_windows(duration: float, window: float) -> list[tuple[float, float]]:
    """[start, end) windows of `window` s covering the clip; a short tail (< window/4) joins the last one."""
    bounds = []
    start = 0.0
    while start < duration - 1e-6:
        end = min(start + window, duration)
        if bounds and end - start < window / 4:
            bounds[-1] = (bounds[-1][0], end)
        else:
            bounds.append((start, end))
        start = end
    return bounds


def _segments_of(path: Path, recipe: Recipe, transcript: str | None, duration: float, has_audio: bool,
                 window: float) -> tuple[list[tuple[float, float, str]], Any]:
    """(start, end, text) per utterance (sidecar subtitles or Whisper), else fixed windows with no text."""
    from extractors.transcript import Transcript, get_transcript

    text_cfg = recipe.transcript
    if transcript is not None:
        full = Transcript(" ".join(transcript.split()), "given")
    else:
        whisper = None
        if text_cfg.mode in ("auto", "whisper"):
            whisper = text_cfg.transcriber()
        full = get_transcript(path, text_cfg.mode, None, whisper, has_audio)
    spans = [(max(0.0, s.start), min(s.end, duration), s.text) for s in full.segments if s.start < duration]
    spans = [s for s in spans if s[1] - s[0] > 0.05]
    if not spans:
        spans = [(a, b, "") for a, b in fixed_windows(duration, window)]
    return spans, full


def _predict_segments(loaded, recipe: Recipe, key: str, path: Path, transcript: str | None, window: float,
                      out_dir: Path, device: str, needs: frozenset[str]) -> dict[str, Any]:
    """A long clip's timeline; only a missing audio/video track in `needs` fails it (see predict_paths)."""
    from extractors.dataset import clip_filename
    from extractors.media import probe
    from extractors.pipeline import extract_clip, require_modalities
    from models.evaluation.metrics import POLARITY_NAMES, polarity_classes
    from models.evaluation.predict import ClipInput, clip_to_scale, predict_features

    if not path.exists():
        raise FileNotFoundError(f"file not found: {path}")
    info = probe(path)
    require_modalities(path, {"has_audio": info.has_audio, "has_video": info.has_video}, None, "predict", needs)
    t0 = time.perf_counter()
    spans, full = _segments_of(path, recipe, transcript, info.duration, info.has_audio, window)
    transcript_s = time.perf_counter() - t0
    silent = recipe.with_transcript(mode="none")  # windows get the segment's own text, never the whole sidecar
    inputs, timings = [], {"audio_s": 0.0, "face_s": 0.0, "transcript_s": transcript_s}
    for i, (start, end, text) in enumerate(spans):
        feats = extract_clip(path, silent, start=start, end=end)
        timings["audio_s"] += feats.info["timings"]["audio_s"]
        timings["face_s"] += feats.info["timings"]["face_s"]
        inputs.append(ClipInput(feats.audio, feats.vision, text, f"{key}#{i}"))
    t0 = time.perf_counter()
    preds = predict_features(loaded, inputs, device=device)
    timings["model_s"] = time.perf_counter() - t0
    segments = [{"start": round(s, 3), "end": round(e, 3), "text": t, "score": p.score, "raw_score": p.raw_score,
                 "polarity": p.polarity, "heads": p.heads, "raw_heads": p.raw_heads} for (s, e, t), p in zip(spans, preds)]
    weights = [max(e - s, 1e-6) for s, e, _ in spans]

    def mean(values):
        present = [(v, w) for v, w in zip(values, weights) if v is not None]
        return sum(v * w for v, w in present) / sum(w for _, w in present) if present else None

    raw_score = mean([p.raw_score for p in preds])
    scheme_scale = preds[0].scale
    polarity = POLARITY_NAMES[3][int(polarity_classes([raw_score], _scheme_of(scheme_scale), 3)[0])]
    raw_heads = {k: mean([p.raw_heads[k] for p in preds]) for k in ("text", "av", "fusion")}
    stem = clip_filename(key)
    timeline_csv = out_dir / f"{stem}.timeline.csv"
    plot = out_dir / f"{stem}.timeline.png"
    _write_csv(timeline_csv, [{"path": str(path), **_csv_row(seg, seg["start"], seg["end"])} for seg in segments])
    plot_timeline(segments, scheme_scale, plot, title=str(path.name))
    return {"path": str(path), "key": key, "status": "ok", "error": None,
            "score": clip_to_scale(raw_score, scheme_scale), "raw_score": raw_score, "polarity": polarity,
            "heads": {k: clip_to_scale(v, scheme_scale) for k, v in raw_heads.items()}, "raw_heads": raw_heads,
            "scale": list(scheme_scale), "transcript": full.text, "transcript_source": full.source,
            "duration": round(info.duration, 4), "timings": {k: round(v, 4) for k, v in timings.items()},
            "segments": segments, "timeline_csv": str(timeline_csv), "plot": str(plot)}


def _scheme_of(scale):
    from models.schemes import Scheme

    return Scheme.SIMS if tuple(scale) == Scheme.SIMS.scale else Scheme.MOSI


def plot_timeline(segments: list[dict], scale, path: Path, title: str = "") -> Path:
    """Sentiment over time: one step per segment, neutral band shaded; written via a temporary name."""
    from models.evaluation.plots import pyplot, save_figure

    fig, ax = pyplot().subplots(figsize=(9, 3))
    for seg in segments:
        colour = {"negative": "tab:red", "neutral": "tab:gray", "positive": "tab:green"}[seg["polarity"]]
        ax.hlines(seg["score"], seg["start"], seg["end"], colors=colour, linewidth=3)
    xs = [(s["start"] + s["end"]) / 2 for s in segments]
    ax.plot(xs, [s["score"] for s in segments], color="black", linewidth=0.8, alpha=0.5)
    band = _scheme_of(scale).neutral_band
    ax.axhspan(-band, band, color="gray", alpha=0.15) if band else ax.axhline(0, color="gray", linewidth=0.8)
    ax.set_ylim(scale[0] * 1.05, scale[1] * 1.05)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("sentiment")
    ax.set_title(title)
    save_figure(fig, path, dpi=100)
    return path


# --------------------------------------------------------------------------- the batch
def predict_paths(
    paths: list[Path],
    run_dir: Path | None = None,
    *,
    transcript: str | None = None,
    no_whisper: bool = False,
    segment: bool = False,
    window: float = DEFAULT_WINDOW_S,
    out_dir: Path = Path("predictions"),
    device: str = "cpu",
    allow_missing: bool = False,
    whisper: dict[str, str | None] | None = None,
    runs_root: Path = DEFAULT_RUNS,
    lm: str | None = None,
    on_plan: Callable[[int], None] | None = None,
    on_result: Callable[[dict], None] | None = None,
) -> PredictReport:
    """Predict every clip of `paths` (files or folders) with the run `run_dir` (default: the newest under runs/).

    The model and the extractors load once. A bad clip is recorded as failed
    (one-line reason) and the others go on; so is a clip without speech, a
    face or a transcript unless `allow_missing` (with --segment only a missing
    audio or video track counts: a long video's silent or faceless stretches are normal); errors that concern every clip (no
    model, no recipe, Whisper not cached) raise. `whisper` overrides the recipe's
    transcript settings (keys model, backend, language, task; None keeps the recipe's).
    """
    from extractors.errors import ExtractionError
    from extractors.pipeline import get_pipeline, recipe_modalities
    from models.checkpoint import load_model
    from models.errors import ConfigError, DeepMLFError
    from models.evaluation.predict import check_feature_sizes, model_scheme
    from models.nn.registry import model_inputs
    from models.run import Run

    if window <= 0:
        raise ConfigError(f"--window must be positive, not {window}")
    run_dir = Path(run_dir) if run_dir is not None else latest_run(runs_root)
    if not run_dir.exists():
        raise FileNotFoundError(f"model run not found: {run_dir}")
    checkpoint = Run(run_dir).best()
    loaded = load_model(checkpoint, device, lm=lm)
    recipe = model_recipe(loaded.meta, checkpoint)
    if whisper:  # the user's Whisper (text only: audio and face stay exactly as trained)
        recipe = recipe.with_transcript(**whisper)
    reads = model_inputs(loaded.meta.get("kind", "deepmlf"))
    if "text" not in reads:  # an AV or audio/vision-only model: never transcribe
        recipe = recipe.with_transcript(mode="none")
    elif no_whisper and recipe.transcript.mode in ("auto", "whisper"):
        recipe = recipe.with_transcript(mode="given")
    # What every clip must have: what the recipe extracts and this model reads.
    needs = frozenset() if allow_missing else recipe_modalities(recipe) & reads
    items = collect_inputs(paths)
    pipeline = get_pipeline(recipe)  # validates the recipe and loads the extractors once
    check_feature_sizes(loaded, len(pipeline.audio.feature_names()), len(pipeline.face.feature_names()))
    if any(p.is_file() and recipe.needs_whisper(p, transcript) for _, p in items):
        recipe.transcript.check_whisper()  # model, backend, language: one line now, not one failure per clip
    report = PredictReport(run_dir, checkpoint, model_scheme(loaded))
    diffs = recipe.version_differences()
    if diffs:
        report.notes.append("features may differ slightly from training: " + ", ".join(diffs))
    if on_plan:
        on_plan(len(items))
    for key, path in items:
        try:
            if segment:
                result = _predict_segments(loaded, recipe, key, path, transcript, window, Path(out_dir), device,
                                           needs)
            else:
                result = _predict_one(loaded, recipe, key, path, transcript, device, needs)
        except (ExtractionError, DeepMLFError, OSError) as exc:
            result = _failed(key, path, _one_line(exc))
        except Exception as exc:  # noqa: BLE001 — a batch carries on past any bad clip
            result = _failed(key, path, f"{type(exc).__name__}: {_one_line(exc)}")
        report.results.append(result)
        if on_result:
            on_result(result)
    return report


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


# --------------------------------------------------------------------------- output
def _fmt(value) -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:+.3f}"


def _csv_row(item: dict, start, end) -> dict:
    heads = item.get("heads") or {}
    return {"start": start, "end": end, "score": item.get("score"), "polarity": item.get("polarity"),
            "text_head": heads.get("text"), "av_head": heads.get("av"), "fusion_head": heads.get("fusion"),
            "transcript": item.get("transcript", item.get("text")), "error": item.get("error")}


def _write_csv(path: Path, rows: list[dict]) -> None:
    from models.io import atomic_write_text

    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS)
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in CSV_COLUMNS})
    atomic_write_text(Path(path), buffer.getvalue())


def report_rows(report: PredictReport) -> list[dict]:
    """CSV rows: one per clip, or one per segment with --segment."""
    rows = []
    for r in report.results:
        if r.get("segments"):
            rows.extend({"path": r["path"], **_csv_row(s, s["start"], s["end"])} for s in r["segments"])
        else:
            rows.append({"path": r["path"], **_csv_row(r, 0.0 if r["status"] == "ok" else None, r["duration"])})
    return rows


def failure_line(result: dict) -> str:
    """A failed clip's one-line reason, naming its file once."""
    return result["error"] if result["path"] in result["error"] else f"{result['path']}: {result['error']}"


def render_report(report: PredictReport, console=None) -> None:
    """The result table (and each clip's timeline with --segment), then failures as one line each."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from models.schemes import Scheme

    console = console or Console(highlight=False, soft_wrap=True)
    ok = [r for r in report.results if r["status"] == "ok"]
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


def predict(
    paths: Annotated[list[Path], typer.Argument(help="Media files and/or folders (searched recursively).")],
    model: Annotated[Optional[Path], typer.Option("--model", "-m", help="A run directory (or checkpoint) from `deepmlf train`; default: the newest under ./runs.")] = None,
    lm: Annotated[Optional[str], typer.Option("--lm", help="The run's frozen LM at a new place (a moved run or LM directory); default: the one the run names.")] = None,
    transcript: Annotated[Optional[str], typer.Option("--transcript", help="The text spoken in the clip(s); wins over sidecars and Whisper.")] = None,
    no_whisper: Annotated[bool, typer.Option("--no-whisper", help="Never run Whisper: sidecar .txt/.srt/.vtt text, else empty.")] = False,
    segment: Annotated[bool, typer.Option("--segment", help="Long videos: predict each utterance (subtitles/Whisper) or fixed window; timeline + PNG.")] = False,
    window: Annotated[float, typer.Option("--window", help="Window length in seconds for --segment when there are no utterance timestamps.")] = DEFAULT_WINDOW_S,
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for --segment's timeline CSVs and PNG plots.")] = Path("predictions"),
    csv_file: Annotated[Optional[Path], typer.Option("--csv", help="Also write the results to this CSV (one row per clip, or per segment).")] = None,
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
        from models.devices import resolve_device

        progress_kwargs = _progress(quiet or as_json)
        try:
            report = predict_paths(paths, model, transcript=transcript, no_whisper=no_whisper, segment=segment,
                                   window=window, out_dir=out, device=str(resolve_device(device)),
                                   allow_missing=allow_missing, lm=lm,
                                   whisper={"model": whisper_model, "language": language,
                                            "backend": whisper_backend.value if whisper_backend else None,
                                            "task": "translate" if translate else None},
                                   **progress_kwargs.get("callbacks", {}))
        finally:
            if progress_kwargs.get("progress") is not None:
                progress_kwargs["progress"].stop()
        if csv_file is not None:
            _write_csv(csv_file, report_rows(report))
    if as_json:
        typer.echo(json.dumps(report.results, indent=2, ensure_ascii=False))
        for r in report.failed:
            print_error(failure_line(r))
    else:
        render_report(report)
    if report.failed:
        raise typer.Exit(EXIT_FAILURE)


def _progress(quiet: bool) -> dict:
    """A Rich progress bar on stderr fed by predict_paths' callbacks (nothing when quiet)."""
    if quiet:
        return {}
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from deepmlf_cli.errors import err_console

    progress = Progress(TextColumn("[bold]predict[/]"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("[red]{task.fields[failed]} failed[/]"), TimeElapsedColumn(),
                        console=err_console, transient=True)
    state = {"task": None, "failed": 0}

    def on_plan(total: int) -> None:
        progress.start()
        state["task"] = progress.add_task("predict", total=total, failed=0)

    def on_result(result: dict) -> None:
        state["failed"] += result["status"] == "failed"
        progress.update(state["task"], advance=1, failed=state["failed"])

    return {"progress": progress, "callbacks": {"on_plan": on_plan, "on_result": on_result}}


def register(app: typer.Typer) -> None:
    """Add `predict` to the root app."""
    app.command("predict")(predict)
