"""Sentiment of new clips with a trained run, features made by the run's own recipe (`deepmlf predict`).

`predict_paths` loads the model and the extractors once, then predicts every
clip; it returns the results and writes no files (the command writes the
--csv file and, through the `save` hook, each --segment timeline).

Result schema (one dict per input clip; `deepmlf predict --json` prints the list):

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
    segments           (with --segment) [{start, end, text, score, raw_score, polarity, heads, raw_heads}]
    timeline_csv, plot (with --segment, added by the command's `save`) paths of the timeline CSV and PNG
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from extractors.feature_recipe import FeatureRecipe


DEFAULT_RUNS = Path("runs")
DEFAULT_WINDOW_S = 10.0


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


def load_run_model(run_dir: Path | None, runs_root: Path, device: str, lm: str | None, lm_mismatch_ok: bool = False):
    """(run_dir, checkpoint, loaded model) of `run_dir`, default the newest run under `runs_root`.

    The one place predict finds and loads a model.
    """
    from models.checkpoint import load_model
    from models.errors import CheckpointError
    from models.run import Run

    run_dir = Path(run_dir) if run_dir is not None else latest_run(runs_root)
    if not run_dir.exists():
        raise CheckpointError(f"model run not found: {run_dir}; pass --model RUN_DIR written by `deepmlf train`")
    checkpoint = Run(run_dir).best()
    return run_dir, checkpoint, load_model(checkpoint, device, lm=lm, lm_mismatch_ok=lm_mismatch_ok)


def model_recipe(meta: dict, checkpoint: Path) -> FeatureRecipe:
    """The feature recipe stored with the model's training data (validated), or a plain error when there is none."""
    from extractors.feature_recipe import FeatureRecipe
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
    return FeatureRecipe.from_dict(recipe)


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
def failed_result(key: str, path: Path, reason: str) -> dict[str, Any]:
    """A failed clip's result: its one-line reason, every other field null."""
    return {"path": str(path), "key": key, "status": "failed", "error": reason, "score": None, "raw_score": None,
            "polarity": None, "heads": None, "raw_heads": None, "scale": None, "transcript": None, "transcript_source": None, "duration": None, "timings": None}


def _predict_one(loaded, recipe: FeatureRecipe, key: str, path: Path, transcript: str | None, device: str,
                 needs: frozenset[str]) -> dict[str, Any]:
    """One clip's prediction; fails (MissingModalityError) when it lacks a modality in `needs`."""
    from extractors.errors import InputNotFoundError
    from extractors.pipeline import extract_clip, require_modalities
    from models.evaluation.predict import ClipInput, predict_features

    if not path.exists():
        raise InputNotFoundError(f"file not found: {path}; check the path")
    feats = extract_clip(path, recipe, transcript)
    require_modalities(path, feats.info, feats.text, "predict", needs)
    t0 = time.perf_counter()
    pred = predict_features(loaded, [ClipInput(feats.audio, feats.vision, feats.text, key)], device=device)[0]
    timings = {**feats.info["timings"], "model_s": round(time.perf_counter() - t0, 4)}
    return {"path": str(path), "key": key, "status": "ok", "error": None, **pred.to_dict(), "transcript": feats.text,
            "transcript_source": feats.transcript.source, "duration": feats.info["duration"], "timings": timings}


def _predict_segments(loaded, recipe: FeatureRecipe, key: str, path: Path, transcript: str | None, window: float,
                      device: str, needs: frozenset[str]) -> dict[str, Any]:
    """A long clip's timeline; only a missing audio/video track in `needs` fails it (see predict_paths)."""
    from extractors.errors import InputNotFoundError
    from extractors.media import probe
    from extractors.pipeline import require_modalities
    from extractors.segments import extract_segments, segment_clip
    from models.evaluation.predict import ClipInput, predict_features
    from models.evaluation.timeline import clip_verdict, segment_rows

    if not path.exists():
        raise InputNotFoundError(f"file not found: {path}; check the path")
    info = probe(path)
    require_modalities(path, {"has_audio": info.has_audio, "has_video": info.has_video}, None, "predict", needs)
    t0 = time.perf_counter()
    spans, full = segment_clip(path, recipe, transcript, info.duration, info.has_audio, window)
    timings = {"audio_s": 0.0, "face_s": 0.0, "transcript_s": time.perf_counter() - t0}
    inputs = []
    for i, (span, feats) in enumerate(zip(spans, extract_segments(path, recipe, spans))):
        timings["audio_s"] += feats.info["timings"]["audio_s"]
        timings["face_s"] += feats.info["timings"]["face_s"]
        inputs.append(ClipInput(feats.audio, feats.vision, span.text, f"{key}#{i}"))
    t0 = time.perf_counter()
    preds = predict_features(loaded, inputs, device=device)
    timings["model_s"] = time.perf_counter() - t0
    return {"path": str(path), "key": key, "status": "ok", "error": None, **clip_verdict(spans, preds).to_dict(),
            "transcript": full.text, "transcript_source": full.source, "duration": round(info.duration, 4),
            "timings": {k: round(v, 4) for k, v in timings.items()}, "segments": segment_rows(spans, preds)}


# --------------------------------------------------------------------------- the batch
def predict_paths(
    paths: list[Path],
    run_dir: Path | None = None,
    *,
    transcript: str | None = None,
    no_whisper: bool = False,
    segment: bool = False,
    window: float = DEFAULT_WINDOW_S,
    device: str = "cpu",
    allow_missing: bool = False,
    whisper: dict[str, str | None] | None = None,
    runs_root: Path = DEFAULT_RUNS,
    lm: str | None = None,
    lm_mismatch: str | None = None,
    save: Callable[[dict], None] | None = None,
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
    `save(result)` is called on each --segment result before `on_result` (the
    command writes the timeline there); an OSError it raises fails that clip.
    Nothing here writes a file.
    """
    from deepmlf_cli.workflows.evaluate import check_lm_mismatch
    from extractors.errors import ExtractionError
    from extractors.pipeline import get_pipeline
    from models.errors import ConfigError, DeepMLFError
    from models.evaluation.predict import check_feature_sizes, model_scheme
    from models.nn.registry import model_inputs

    if window <= 0:
        raise ConfigError(f"--window must be positive, not {window}")
    run_dir, checkpoint, loaded = load_run_model(run_dir, runs_root, device, lm, check_lm_mismatch(lm_mismatch))
    recipe = model_recipe(loaded.meta, checkpoint)
    if whisper:  # the user's Whisper (text only: audio and face stay exactly as trained)
        recipe = recipe.with_transcript(**whisper)
    reads = model_inputs(loaded.meta.get("kind", "deepmlf"))
    if "text" not in reads:  # an AV or audio/vision-only model: never transcribe
        recipe = recipe.with_transcript(mode="none")
    elif no_whisper and recipe.transcript.mode in ("auto", "whisper"):
        recipe = recipe.with_transcript(mode="given")
    # What every clip must have: what the recipe extracts and this model reads.
    needs = frozenset() if allow_missing else recipe.modalities & reads
    items = collect_inputs(paths)
    pipeline = get_pipeline(recipe)  # validates the recipe and loads the extractors once
    check_feature_sizes(loaded, len(pipeline.audio.feature_names()), len(pipeline.face.feature_names()))
    if any(p.is_file() and recipe.needs_whisper(p, transcript) for _, p in items):
        recipe.transcript.check_whisper()  # model, backend, language: one line now, not one failure per clip
    report = PredictReport(run_dir, checkpoint, model_scheme(loaded))
    report.notes.extend(loaded.notes)  # e.g. an old run whose LM is not fingerprinted
    diffs = recipe.version_differences()
    if diffs:
        report.notes.append("features may differ slightly from training: " + ", ".join(diffs))
    if on_plan:
        on_plan(len(items))
    for key, path in items:
        try:
            if segment:
                result = _predict_segments(loaded, recipe, key, path, transcript, window, device, needs)
                if save:
                    save(result)
            else:
                result = _predict_one(loaded, recipe, key, path, transcript, device, needs)
        except (ExtractionError, DeepMLFError, OSError) as exc:
            result = failed_result(key, path, _one_line(exc))
        except Exception as exc:  # noqa: BLE001 — a batch carries on past any bad clip
            result = failed_result(key, path, f"{type(exc).__name__}: {_one_line(exc)}")
        report.results.append(result)
        if on_result:
            on_result(result)
    return report


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__

