"""One clip in, all features out, exactly as a recipe says.

`extract_clip(path, recipe)` is what `deepmlf extract` runs per clip and what
`deepmlf predict` calls for a new clip with the recipe stored in a model run,
so training and prediction features come from the same code and parameters.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import MissingModalityError
from .feature_recipe import FeatureRecipe
from .features import Features
from .media import load_audio, probe
from .transcript import SILENCE_RMS, Transcript, TranscriptMode, TranscriptPolicy, WhisperTranscriber, get_transcript


@dataclass
class ClipFeatures:
    """Everything extracted from one clip.

    audio:  (T_a, D_a) float32, T_a = 0 when the clip has no audio track
    vision: (T_v, D_v) float32, T_v = 0 when the clip has no video track;
            rows of frames without a face are zeros (vision_present False)
    """

    audio: np.ndarray
    audio_times: np.ndarray  # (T_a,) seconds
    audio_names: list[str]
    vision: np.ndarray
    vision_times: np.ndarray  # (T_v,) seconds
    vision_names: list[str]
    vision_present: np.ndarray  # (T_v,) bool: the main face was found in that frame
    text: str
    transcript: Transcript
    audio_rate_hz: float
    vision_rate_hz: float
    info: dict = field(default_factory=dict)  # duration, tracks, non-finite counts, timings


class Pipeline:
    """The extractors of one recipe, built once and reused for many clips (models stay loaded)."""

    def __init__(self, recipe: FeatureRecipe) -> None:
        self.recipe = recipe
        self.audio = recipe.audio.build()
        self.face = recipe.face.build()
        self.transcript_mode = recipe.transcript.mode
        self._whisper: WhisperTranscriber | None = None

    @property
    def whisper(self) -> WhisperTranscriber:
        """Built on first need: most labelled corpora never call Whisper."""
        if self._whisper is None:
            self._whisper = self.recipe.transcript.transcriber()
        return self._whisper

    def extract(
        self,
        path: Path,
        transcript: str | None = None,
        start: float | None = None,
        end: float | None = None,
        *,
        text: bool = True,
    ) -> ClipFeatures:
        """Features of a clip, or of its [start, end) window (timestamps then count from `start`).

        text=False skips the transcript (source "none"): predict's segments carry their own words.
        """
        path = Path(path)
        info = probe(path)  # raises MediaError for empty / non-media / truncated files
        timings = {}
        t0 = time.perf_counter()
        audio_rms = 0.0
        if info.has_audio and "audio" in self.recipe.modalities:  # never decode what the recipe does not read
            samples = load_audio(path, self.audio.sample_rate, start, end)  # (N,) mono at the recipe's rate
            audio_rms = float(np.sqrt(np.mean(samples.astype(np.float64) ** 2))) if samples.size else 0.0
            audio = self.audio.extract(samples, self.audio.sample_rate)
        else:
            audio = Features.empty(self.audio.feature_names(), self.audio.rate_hz, "no audio track")
        timings["audio_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        if info.has_video:
            vision = self.face.extract(path, start, end)
        else:
            vision = Features.empty(self.face.feature_names(), self.face.rate_hz, "no video track")
        if start is not None and len(vision):
            vision.timestamps = vision.timestamps - start
        timings["face_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        if not text:
            words = Transcript("", "none")
        elif start is None and end is None:
            words = get_transcript(path, self.transcript_mode, transcript, self.whisper_if_needed(), info.has_audio)
        elif transcript is not None or self.transcript_mode in (TranscriptMode.none, TranscriptMode.given):
            words = get_transcript(path, self.transcript_mode, transcript, None, info.has_audio)
        else:
            words = self.whisper.transcribe(path, start, end) if info.has_audio else Transcript("", "no-audio")
        timings["transcript_s"] = time.perf_counter() - t0
        assert vision.present is not None  # Features.__post_init__ fills it (all True when not given)
        duration = info.duration
        if start is not None or end is not None:
            duration = min(end if end is not None else duration, duration) - (start or 0.0)
        return ClipFeatures(
            audio=audio.values,
            audio_times=audio.timestamps,
            audio_names=audio.names,
            vision=vision.values,
            vision_times=vision.timestamps,
            vision_names=vision.names,
            vision_present=vision.present,
            text=words.text,
            transcript=words,
            audio_rate_hz=self.audio.rate_hz,
            vision_rate_hz=self.face.rate_hz,
            info={
                "duration": round(float(duration), 4),
                "has_audio": info.has_audio,
                "has_video": info.has_video,
                "audio_frames": len(audio),
                "audio_rms": round(audio_rms, 6),
                "vision_frames": len(vision),
                "frames_with_face": int(vision.present.sum()),
                # A track shorter than the clip (ffmpeg -shortest) is a fact about the media, not a failure.
                "notes": info.track_notes(),
                "nonfinite_cleaned": audio.nonfinite + vision.nonfinite,
                "transcript_rejected": words.rejected,
                "timings": {k: round(v, 4) for k, v in timings.items()},
            },
        )

    def whisper_if_needed(self) -> WhisperTranscriber | None:
        """The transcriber when this recipe transcribes, built on first need; None for given or no text."""
        return None if self.transcript_mode in (TranscriptMode.none, TranscriptMode.given) else self.whisper


ALL_MODALITIES: frozenset[str] = frozenset({"text", "audio", "vision"})


def missing_modalities(info: dict, text: str | None, needs: frozenset[str] = ALL_MODALITIES) -> list[str]:
    """What a clip lacks among the modalities in `needs`; [] when nothing.

    info: a ClipFeatures.info (or just has_audio/has_video when only the tracks
    are known); text: the transcript, or None when it is not known yet.
    """
    missing = []
    if "audio" in needs:
        if not info["has_audio"]:
            missing.append("no audio track")
        elif info.get("audio_rms", 1.0) < SILENCE_RMS:
            missing.append("silent audio track")
    if "vision" in needs:
        if not info["has_video"]:
            missing.append("no video track")
        elif info.get("frames_with_face", 1) == 0:
            missing.append("no face in any frame")
    if "text" in needs and text is not None and not text.strip():
        missing.append("empty transcript")
    elif "text" in needs and info.get("transcript_rejected"):  # Whisper's guards: treated as empty text
        missing.append(f"transcript refused by Whisper's hallucination guards ({info['transcript_rejected']})")
    return missing


def require_modalities(
    path: Path, info: dict, text: str | None, action: str, needs: frozenset[str] = ALL_MODALITIES
) -> None:
    """Raise MissingModalityError (one line: the file, what is missing, the fix) unless the clip has `needs`.

    A model fed a clip without speech, face or text still outputs a confident
    number, read from zeros; that is an error unless the user asks for it
    (`--allow-missing`), the way MMSA corpora keep such clips on purpose.
    """
    missing = missing_modalities(info, text, needs)
    if missing:
        raise MissingModalityError(
            f"{path}: {', '.join(missing)}; use a clip with speech, a visible face and a transcript "
            f"(given text, a sidecar .txt/.srt/.vtt or Whisper), or pass --allow-missing to {action} it anyway"
        )


_PIPELINES: dict[tuple[str, TranscriptPolicy], Pipeline] = {}  # per process: (feature hash, text policy) -> pipeline


def get_pipeline(recipe: FeatureRecipe) -> Pipeline:
    """The (cached) pipeline for a recipe; extractors and models are built once per process."""
    key = (recipe.feature_hash, recipe.transcript)  # the transcript policy picks the Whisper it holds
    if key not in _PIPELINES:
        _PIPELINES[key] = Pipeline(recipe)
    return _PIPELINES[key]


def extract_clip(
    path: Path,
    recipe: FeatureRecipe,
    transcript: str | None = None,
    *,
    start: float | None = None,
    end: float | None = None,
) -> ClipFeatures:
    """Recompute a clip's features exactly as `recipe` says (the recipe stored with a dataset or model run).

    transcript: known text for the clip (wins over sidecars and Whisper).
    start, end: optional window in seconds (predict's segments); timestamps count from `start`.
    """
    return get_pipeline(recipe).extract(Path(path), transcript, start, end)


def transcribe_clip(path: Path, recipe: FeatureRecipe, transcript: str | None = None) -> tuple[Transcript, dict]:
    """Only a clip's text by the recipe's transcript policy, and the probe's track info (has_audio, has_video).

    For clips whose features are already extracted under the same feature hash
    but whose transcript policy changed: no audio or face work is redone.
    """
    path = Path(path)
    info = probe(path)  # raises MediaError for empty / non-media / truncated files
    pipeline = get_pipeline(recipe)
    text = get_transcript(path, pipeline.transcript_mode, transcript, pipeline.whisper_if_needed(), info.has_audio)
    return text, {"has_audio": info.has_audio, "has_video": info.has_video, "transcript_rejected": text.rejected}
