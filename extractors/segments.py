"""A long clip cut into segments (`deepmlf predict --segment`): its utterances, else fixed windows.

Utterances come from the clip's timed transcript (sidecar subtitles or
Whisper's timestamps); a clip without them (a plain .txt sidecar, no speech)
is cut into fixed windows with no text. Each segment's features are then
extracted on its own window of the clip, with the recipe the model was
trained on.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from .feature_recipe import FeatureRecipe
from .pipeline import ClipFeatures, Pipeline, extract_clip
from .transcript import Transcript, get_transcript

MIN_SEGMENT_S = 0.05  # shorter utterances (after clipping to the clip) carry no frame to extract


class Span(NamedTuple):
    """One segment: [start, end) in seconds from the clip's start, and the words spoken in it ("" for a window)."""

    start: float
    end: float
    text: str


def fixed_windows(duration: float, window: float) -> list[tuple[float, float]]:
    """[start, end) windows of `window` s covering the clip; a short tail (< window/4) joins the last one."""
    bounds: list[tuple[float, float]] = []
    start = 0.0
    while start < duration - 1e-6:
        end = min(start + window, duration)
        if bounds and end - start < window / 4:
            bounds[-1] = (bounds[-1][0], end)
        else:
            bounds.append((start, end))
        start = end
    return bounds


def utterance_spans(transcript: Transcript, duration: float, window: float) -> list[Span]:
    """The transcript's timed segments clipped to [0, duration] (slivers dropped), else fixed windows with no text."""
    spans = [Span(max(0.0, s.start), min(s.end, duration), s.text) for s in transcript.segments if s.start < duration]
    spans = [s for s in spans if s.end - s.start > MIN_SEGMENT_S]
    if not spans:
        spans = [Span(a, b, "") for a, b in fixed_windows(duration, window)]
    return spans


def clip_transcript(
    path: Path, recipe: FeatureRecipe, transcript: str | None, has_audio: bool, pipeline: Pipeline | None = None
) -> Transcript:
    """The whole clip's transcript by the recipe's rules; a given `transcript` wins (it has no timestamps).

    pipeline: the recipe's loaded pipeline, whose Whisper is reused (else one is built for this call).
    """
    text_cfg = recipe.transcript
    if transcript is not None:
        return Transcript(" ".join(transcript.split()), "given")
    whisper = None
    if text_cfg.mode in ("auto", "whisper"):
        whisper = pipeline.whisper if pipeline is not None else text_cfg.transcriber()
    return get_transcript(path, text_cfg.mode, None, whisper, has_audio)


def segment_clip(
    path: Path,
    recipe: FeatureRecipe,
    transcript: str | None,
    duration: float,
    has_audio: bool,
    window: float,
    pipeline: Pipeline | None = None,
) -> tuple[list[Span], Transcript]:
    """(start, end, text) per utterance (sidecar subtitles or Whisper), else fixed windows; and the whole transcript."""
    full = clip_transcript(path, recipe, transcript, has_audio, pipeline)
    return utterance_spans(full, duration, window), full


def extract_segments(
    path: Path, recipe: FeatureRecipe, spans: list[Span], pipeline: Pipeline | None = None
) -> list[ClipFeatures]:
    """Each span's features, extracted on its own window; a window never reads the clip's transcript.

    The segment's text is the span's own (its utterance), never the whole
    sidecar or a Whisper run over the window, so transcription is off here.
    pipeline: the recipe's loaded pipeline (its extractors are reused); else the process's cached one.
    """
    if pipeline is not None:
        return [pipeline.extract(Path(path), start=span.start, end=span.end, text=False) for span in spans]
    silent = recipe.with_transcript(mode="none")
    return [extract_clip(path, silent, start=span.start, end=span.end) for span in spans]
