"""Transcripts: given text, sidecar files (.txt/.srt/.vtt), or Whisper.

Order of precedence for a clip: text given by the caller (the label file's
`text` column) > a sidecar file next to the clip with the same stem > Whisper
(one of the backends in extractors/transcribers, keyed by `WhisperBackend`).
Whisper models are resolved from a local path or the local cache before
anything is loaded, so a missing model fails at once with one line instead of
waiting on the network.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from .choices import (
    DEFAULT_WHISPER_BACKEND,
    DEFAULT_WHISPER_MODEL,
    DEFAULT_WHISPER_TASK,
    WHISPER_TASKS,
    TranscriptFormat,
    TranscriptMode,
    WhisperBackend,
)
from .errors import ExtractionError
from .media import load_audio
from .transcribers import BACKENDS, backend_for_format
from .transcribers.base import (
    WHISPER_RATE,
    Segment,
    Transcript,
    WhisperModelInfo,
    guard_failure,
    model_format,
    resolve_hub_model,
)

# The names this module has always offered (the transcript types moved next to the backends).
resolve_whisper_model = resolve_hub_model
whisper_format = model_format
SIDECAR_EXTENSIONS = (".txt", ".srt", ".vtt")
# Below this RMS the track is digital silence: Whisper would only hallucinate.
SILENCE_RMS = 1e-4


# ---------------------------------------------------------------------------
# Sidecars
def find_sidecar(media_path: Path) -> Path | None:
    """The first of `<stem>.txt`, `<stem>.srt`, `<stem>.vtt` next to the clip, if any."""
    media_path = Path(media_path)
    for ext in SIDECAR_EXTENSIONS:
        candidate = media_path.with_suffix(ext)
        if candidate.is_file() and candidate != media_path:
            return candidate
    return None


_TIME = re.compile(r"(?:(\d+):)?(\d{1,2}):(\d{2})[.,](\d{1,3})")


def _seconds(stamp: str) -> float:
    m = _TIME.fullmatch(stamp.strip())
    if not m:
        raise ValueError(stamp)
    h, mnt, s, frac = m.groups()
    return int(h or 0) * 3600 + int(mnt) * 60 + int(s) + int(frac.ljust(3, "0")) / 1000


def parse_subtitles(text: str) -> list[Segment]:
    """Cues of an SRT or WebVTT document as segments (tags like <i> removed)."""
    segments = []
    for block in re.split(r"\n\s*\n", text.replace("\r\n", "\n").replace("\ufeff", "")):
        lines = [ln for ln in block.strip().split("\n") if ln.strip()]
        for i, line in enumerate(lines):
            if "-->" in line:
                left, right = line.split("-->", 1)
                try:
                    start, end = _seconds(left), _seconds(right.strip().split()[0])
                except (ValueError, IndexError):
                    break
                body = " ".join(re.sub(r"<[^>]+>", "", ln).strip() for ln in lines[i + 1 :])
                if body:
                    segments.append(Segment(start, end, body))
                break
    return segments


def read_sidecar(path: Path) -> Transcript:
    """A transcript file: plain text (.txt) or subtitles (.srt/.vtt, with their timestamps)."""
    path = Path(path)
    try:
        raw = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise ExtractionError(f"{path}: transcript is not UTF-8 text; re-save it as UTF-8") from None
    if path.suffix.lower() in (".srt", ".vtt"):
        segments = parse_subtitles(raw)
        text = " ".join(s.text for s in segments)
    else:
        segments = []
        text = " ".join(raw.split())
    return Transcript(text=text, source=f"sidecar:{path.name}", segments=segments)


# ---------------------------------------------------------------------------
# Whisper
def _language_code(language: str) -> str:
    """An ISO code for `language` ("zh", or a name such as "Chinese" that Whisper's tokenizer knows)."""
    language = language.strip().lower()
    if len(language) <= 3:
        return language
    try:
        from transformers.models.whisper.tokenization_whisper import TO_LANGUAGE_CODE
    except ImportError:
        return language
    return TO_LANGUAGE_CODE.get(language, language)


def _short_list(items, limit: int = 16) -> str:
    items = sorted(items)
    return ", ".join(items[:limit]) + (f", … ({len(items)} in all)" if len(items) > limit else "")


def parse_whisper_backend(value: WhisperBackend | str) -> WhisperBackend:
    """The Whisper backend named by `value` (a WhisperBackend or its string); a one-line ExtractionError otherwise."""
    try:
        return WhisperBackend(value)
    except ValueError:
        choices = ", ".join(b.value for b in WhisperBackend)
        raise ExtractionError(f"unknown Whisper backend {value!r}; choose one of: {choices}") from None


def parse_transcript_mode(value: TranscriptMode | str) -> TranscriptMode:
    """The transcript mode named by `value` (a TranscriptMode or its string); a one-line ExtractionError otherwise."""
    try:
        return TranscriptMode(value)
    except ValueError:
        choices = ", ".join(m.value for m in TranscriptMode)
        raise ExtractionError(f"unknown transcript mode {value!r}; choose one of: {choices}") from None


def _whisper_options(backend: WhisperBackend | str, language: str | None, task: str) -> WhisperBackend:
    """The backend as an enum, after checking the backend, language and task (one-line errors naming the option)."""
    backend = parse_whisper_backend(backend)
    if task not in WHISPER_TASKS:
        raise ExtractionError(f"Whisper task must be transcribe or translate, not {task!r}")
    if language is not None and not (isinstance(language, str) and re.fullmatch(r"[a-z]{2,3}|[A-Za-z ]+", language)):
        raise ExtractionError(f"invalid --language {language!r}; use an ISO code such as zh or en")
    return backend


class WhisperTranscriber:
    """Speech to text with timestamps, through one of the Whisper backends (extractors/transcribers).

    model:    hub id (must be in the local cache) or a local directory (a .pt checkpoint or name for openai-whisper)
    language: ISO code such as "zh" or "en"; None lets Whisper detect it
    task:     "transcribe" or "translate" (to English)
    """

    def __init__(
        self,
        model: str = DEFAULT_WHISPER_MODEL,
        backend: WhisperBackend | str = WhisperBackend.transformers,
        language: str | None = None,
        task: str = "transcribe",
    ) -> None:
        self.backend = _whisper_options(backend, language, task)
        self.impl = BACKENDS[self.backend]
        self.model_id = model
        self.language = _language_code(language) if language else None
        self.task = task
        self._model: Any = None  # what the backend's load returned
        self._info: WhisperModelInfo | None = None

    def check(self) -> WhisperModelInfo:
        """Find the model and check it against the backend, --language and --translate, without loading it.

        Run once before a batch: every clip would otherwise fail the same way,
        after its audio and face work.
        """
        if self._info is not None:
            return self._info
        location = self.impl.locate(self.model_id)
        fmt = model_format(location)
        if fmt is not None and fmt != self.impl.format:
            other = backend_for_format(fmt)
            hint = f"use --whisper-backend {other.name.value}" if other else "use a Whisper model"
            extra = self.impl.convert_hint.format(location=location)
            raise ExtractionError(
                f"Whisper model {self.model_id} is a {other.describes if other else fmt} model, not a {self.impl.describes} one; "
                + hint
                + (f", {extra}" if extra else "")
            )
        self.impl.require_installed()
        english_only, languages = self.impl.languages(location)
        if english_only and self.task == "translate":
            raise ExtractionError(
                f"Whisper model {self.model_id} is English-only and cannot translate; drop --translate, "
                "or use a multilingual model (e.g. openai/whisper-small, not a .en one)"
            )
        if english_only and self.language not in (None, "en"):
            raise ExtractionError(
                f"Whisper model {self.model_id} is English-only and cannot transcribe --language {self.language}; "
                "drop --language, or use a multilingual model (e.g. openai/whisper-small, not a .en one)"
            )
        if self.language is not None and languages is not None and self.language not in languages:
            raise ExtractionError(
                f"Whisper model {self.model_id} does not know --language {self.language}; "
                f"use one of {_short_list(languages)}, or leave --language out to detect it"
            )
        self._info = WhisperModelInfo(str(location), self.impl.format, english_only, languages)
        return self._info

    def _load(self) -> Any:
        if self._model is None:
            self._model = self.impl.load(Path(self.check().location))
        return self._model

    def transcribe(self, source: Path | np.ndarray, start: float | None = None, end: float | None = None) -> Transcript:
        """Transcribe a file (or a [start, end) window of it), or mono 16 kHz samples (N,).

        Segments are relative to the start of what was transcribed. Silent audio
        returns an empty transcript marked "silence" instead of a hallucination.
        """
        if isinstance(source, np.ndarray):
            samples = source.astype(np.float32).reshape(-1)
        else:
            samples = load_audio(Path(source), WHISPER_RATE, start, end)  # (N,)
            if samples.size == 0:
                return Transcript("", "no-audio")
        if samples.size == 0 or float(np.sqrt(np.mean(samples**2))) < SILENCE_RMS:
            return Transcript("", "silence")
        model = self._load()
        try:
            text, segments, language = self.impl.transcribe(model, samples, self.language, self.task)
        except ValueError as exc:  # e.g. a language code the model does not know
            raise ExtractionError(f"Whisper {self.model_id}: {str(exc).splitlines()[0]}") from None
        # Whisper's own hallucination guards: a failing text counts as empty (require_modalities says why)
        return Transcript(
            text, f"whisper:{self.model_id}", segments, language, guard_failure(text, segments) if text else None
        )


@dataclass(frozen=True)
class TranscriptPolicy:
    """How a recipe gets each clip's text: the mode and, when Whisper runs, which model and how.

    Validated on construction (one-line errors naming the option). It is not
    part of a recipe's feature hash: changing it re-transcribes clips, it
    does not re-extract their audio and face features.
    """

    mode: TranscriptMode = TranscriptMode.auto
    backend: WhisperBackend = DEFAULT_WHISPER_BACKEND
    model: str = DEFAULT_WHISPER_MODEL  # hub id (must be cached) or a local model folder
    language: str | None = None  # None: Whisper detects it
    task: str = DEFAULT_WHISPER_TASK  # "transcribe", or "translate" to English

    def __post_init__(self) -> None:
        mode = parse_transcript_mode(self.mode)
        if not isinstance(self.model, str) or not self.model.strip():
            raise ExtractionError(
                f"Whisper model must be a hub id or a model folder, not {self.model!r}; check --whisper-model"
            )
        language = self.language or None
        object.__setattr__(self, "mode", mode)
        object.__setattr__(self, "backend", _whisper_options(self.backend, language, self.task))
        object.__setattr__(self, "language", language)

    @classmethod
    def from_dict(cls, d: dict) -> TranscriptPolicy:
        """From a recipe's `transcript` entry; absent keys take the defaults older recipes had."""
        return cls(
            mode=d.get("mode", TranscriptMode.auto.value),
            backend=d.get("backend", DEFAULT_WHISPER_BACKEND.value),
            model=d.get("model", DEFAULT_WHISPER_MODEL),
            language=d.get("language"),
            task=d.get("task", DEFAULT_WHISPER_TASK),
        )

    def to_dict(self) -> dict:
        """The JSON form stored in recipes (keys and order as datasets and runs have them)."""
        return {
            "mode": self.mode.value,
            "backend": self.backend.value,
            "model": self.model,
            "language": self.language,
            "task": self.task,
        }

    @cached_property
    def hash(self) -> str:
        """Short hash of the policy: a clip's text is redone when this changes, its features are not."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:16]

    def needs_whisper(self, path: Path | None, given: str | None = None) -> bool:
        """Whether the clip at `path` gets its text from Whisper: no given text, and no sidecar unless the mode is whisper.

        The same precedence as `get_transcript`; callers ask it before a batch
        to check Whisper once (`check_whisper`) instead of failing every clip.
        """
        if self.mode in (TranscriptMode.none, TranscriptMode.given) or path is None:
            return False
        if given is not None and str(given).strip():
            return False  # given text wins in every mode
        return self.mode == TranscriptMode.whisper or find_sidecar(path) is None

    def transcriber(self) -> WhisperTranscriber:
        """A Whisper transcriber with these settings (nothing loads until it transcribes)."""
        return WhisperTranscriber(self.model, self.backend, self.language, self.task)

    def check_whisper(self) -> WhisperModelInfo:
        """Check the Whisper settings (model, backend, language, task) once, before a batch, without loading it."""
        return self.transcriber().check()


def get_transcript(
    media_path: Path,
    mode: TranscriptMode | str = TranscriptMode.auto,
    given: str | None = None,
    transcriber: WhisperTranscriber | None = None,
    has_audio: bool = True,
) -> Transcript:
    """A clip's transcript by the precedence rules of `mode` (see the module docstring)."""
    mode = TranscriptMode(mode)
    if mode == TranscriptMode.none:
        return Transcript("", "none")
    if given is not None and str(given).strip():
        return Transcript(" ".join(str(given).split()), "given")
    if mode != TranscriptMode.whisper:
        sidecar = find_sidecar(media_path)
        if sidecar is not None:
            return read_sidecar(sidecar)
        if mode == TranscriptMode.given:
            return Transcript("", "none")
    if not has_audio:
        return Transcript("", "no-audio")
    if transcriber is None:
        raise ExtractionError(f"{media_path}: no transcript given and no Whisper transcriber configured")
    return transcriber.transcribe(media_path)


# ---------------------------------------------------------------------------
# Output formats
def _srt_time(seconds: float) -> str:
    ms = int(round(max(0.0, seconds) * 1000))
    h, ms = divmod(ms, 3_600_000)
    m, ms = divmod(ms, 60_000)
    s, ms = divmod(ms, 1000)
    return f"{h:02d}:{m:02d}:{s:02d},{ms:03d}"


def format_transcript(transcript: Transcript, fmt: TranscriptFormat | str, duration: float | None = None) -> str:
    """Render as plain text, SubRip (one cue per segment, or one cue for the whole text) or JSON."""
    fmt = TranscriptFormat(fmt)
    if fmt == TranscriptFormat.txt:
        return transcript.text + "\n"
    if fmt == TranscriptFormat.json:
        return json.dumps(transcript.to_dict(), ensure_ascii=False, indent=2) + "\n"
    segments = transcript.segments or ([Segment(0.0, duration or 0.0, transcript.text)] if transcript.text else [])
    cues = [f"{i}\n{_srt_time(s.start)} --> {_srt_time(s.end)}\n{s.text}\n" for i, s in enumerate(segments, start=1)]
    return "\n".join(cues)
