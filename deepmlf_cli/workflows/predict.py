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

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deepmlf_cli.predictor import DEFAULT_RUNS, DEFAULT_WINDOW_S, failed_result, one_line  # standard library only

__all__ = ["PredictReport", "collect_inputs", "predict_paths"]


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
    from deepmlf_cli.predictor import Predictor
    from deepmlf_cli.workflows.evaluate import check_lm_mismatch
    from models.errors import ConfigError

    if window <= 0:
        raise ConfigError(f"--window must be positive, not {window}")
    predictor = Predictor.load(
        run_dir,
        runs_root=runs_root,
        device=device,
        lm=lm,
        lm_mismatch_ok=check_lm_mismatch(lm_mismatch),
        whisper=whisper,
        no_whisper=no_whisper,
    )
    items = collect_inputs(paths)
    predictor.check_whisper([p for _, p in items], transcript)
    report = PredictReport(predictor.run_dir, predictor.checkpoint, predictor.scheme, notes=list(predictor.notes))
    if on_plan:
        on_plan(len(items))
    for key, path in items:
        result = predictor.predict_safe(
            path, key=key, transcript=transcript, segment=segment, window=window, allow_missing=allow_missing
        )
        if save and result["status"] == "ok" and segment:
            try:
                save(result)
            except OSError as exc:
                result = failed_result(key, path, one_line(exc))
        report.results.append(result)
        if on_result:
            on_result(result)
    return report
