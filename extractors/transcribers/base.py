"""What every Whisper backend is: the narrow interface, the transcript types it returns, the shared checks.

A backend (transformers, faster-whisper, openai-whisper) is a small class:
its name (the `WhisperBackend` enum), the model format it loads, the
package whose version a recipe records, how it finds a model without the
network, which languages that model knows (read from the model itself), how
it loads, and how it turns 16 kHz mono samples into segments. Everything
else (sidecars, silence, precedence, the checks' wording) is shared and lives
in extractors/transcript.py, which looks backends up in the table in
extractors/transcribers/__init__.py.
"""

from __future__ import annotations

import json
import math
import zlib
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ..choices import WhisperBackend
from ..errors import BackendUnavailableError, ModelNotCachedError

WHISPER_RATE = 16000  # every Whisper reads 16 kHz mono
# Whisper counts as multilingual from this vocabulary size on (openai-whisper's
# `Whisper.is_multilingual`, and CTranslate2's rule that faster-whisper follows):
# smaller vocabularies are the English-only models.
MULTILINGUAL_VOCAB = 51865
# Whisper's own hallucination guards (openai-whisper's transcribe defaults): text that compresses this
# well is a loop ("a bit of a bit of ..."), a decode below this average log-probability is a guess, and
# a window the model itself calls speechless above this probability (with a poor decode) is not speech.
COMPRESSION_RATIO_MAX = 2.4
AVG_LOGPROB_MIN = -1.0
NO_SPEECH_PROB_MAX = 0.6


@dataclass
class Segment:
    """One stretch of speech: seconds from the clip (or window) start, and its text.

    avg_logprob, no_speech_prob: Whisper's confidence in the decode that made
    the segment, where the backend exposes them (None otherwise).
    """

    start: float
    end: float
    text: str
    avg_logprob: float | None = None
    no_speech_prob: float | None = None


@dataclass
class Transcript:
    """A clip's text with where it came from; segments carry timestamps when the source has them."""

    text: str
    source: str  # "given", "sidecar:<file name>", "whisper:<model>", "silence", "no-audio", "none"
    segments: list[Segment] = field(default_factory=list)
    language: str | None = None
    rejected: str | None = None  # why Whisper's guards refuse this text (then it counts as empty), or None

    def to_dict(self) -> dict:
        # a score the backend could not compute (None, NaN) is left out: the JSON stays standard
        segments = [
            {k: v for k, v in asdict(s).items() if v is not None and not (isinstance(v, float) and math.isnan(v))}
            for s in self.segments
        ]
        out = {"text": self.text, "source": self.source, "language": self.language, "segments": segments}
        return out | ({"rejected": self.rejected} if self.rejected else {})


def compression_ratio(text: str) -> float:
    """How well the text compresses (openai-whisper's measure): high for repeated phrases."""
    raw = text.encode("utf-8")
    return len(raw) / len(zlib.compress(raw)) if raw else 0.0


def guard_failure(text: str, segments: list[Segment]) -> str | None:
    """Why Whisper's own guards refuse this transcript, or None when it passes.

    The compression ratio is measured on the text (the same for every backend);
    the average log-probability is the segments' mean weighted by their text
    length, and the no-speech probability is the first segment's (the window
    Whisper asks it for), where the backend reports them.
    """
    reasons = []
    ratio = compression_ratio(text)
    if ratio > COMPRESSION_RATIO_MAX:
        reasons.append(f"compression ratio {ratio:.2f} > {COMPRESSION_RATIO_MAX} (repeated text)")
    scored = [(len(s.text) or 1, s.avg_logprob) for s in segments if s.avg_logprob is not None]
    logprob = sum(n * lp for n, lp in scored) / sum(n for n, _ in scored) if scored else None
    if logprob is not None and not logprob >= AVG_LOGPROB_MIN:  # NaN (a decode that broke down) fails too
        reasons.append(
            f"average log-probability {logprob:.2f} < {AVG_LOGPROB_MIN}"
            if math.isfinite(logprob)
            else f"average log-probability is {logprob} (the decode broke down)"
        )
        no_speech = segments[0].no_speech_prob if segments else None
        if no_speech is not None and no_speech > NO_SPEECH_PROB_MAX:  # Whisper's rule: both, or it is speech
            reasons.append(f"no-speech probability {no_speech:.2f} > {NO_SPEECH_PROB_MAX}")
    return "; ".join(reasons) or None


@dataclass(frozen=True)
class WhisperModelInfo:
    """What a Whisper model is, read from its files without loading the weights."""

    location: str
    format: str  # "transformers", "ctranslate2" (faster-whisper) or "openai-whisper"
    english_only: bool
    languages: frozenset[str] | None  # codes the model knows; None when its files do not say


def model_format(location: Path) -> str | None:
    """The format of a model on disk: 'ctranslate2' (model.bin, no transformers weights), 'transformers',
    'openai-whisper' (a .pt checkpoint file), or None."""
    location = Path(location)
    if location.is_file():
        return "openai-whisper" if location.suffix == ".pt" else None
    hf_weights = (
        "model.safetensors",
        "model.safetensors.index.json",
        "pytorch_model.bin",
        "pytorch_model.bin.index.json",
    )
    if (location / "model.bin").is_file() and not any((location / n).is_file() for n in hf_weights):
        return "ctranslate2"
    if (location / "config.json").is_file():
        return "transformers"
    return None


def read_json(path: Path) -> dict | list | None:
    """A JSON file's content, or None when it is missing or not JSON."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def resolve_hub_model(model: str) -> str:
    """A loadable location for `model`: a local directory or file, or the hub id when its files are in the local cache.

    Raises ModelNotCachedError (one line, with the fix) otherwise, without any
    network access: the hub on these machines never answers, and each lookup
    would retry for ~20 s.
    """
    local = Path(model).expanduser()
    if local.is_file():
        return str(local)  # the format check names the backend that reads it
    if local.is_dir():
        if not (local / "config.json").is_file() and not (local / "model.bin").is_file():
            raise ModelNotCachedError(
                f"{local}: not a Whisper model directory (no config.json); point --whisper-model at a saved model"
            )
        return str(local)
    if local.suffix or model.startswith((".", "/", "~")) or model.count("/") > 1:
        raise ModelNotCachedError(f"Whisper model directory {model} does not exist; check --whisper-model")
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(model, "config.json")
    if not isinstance(cached, str):
        raise ModelNotCachedError(
            f"Whisper model {model} is not cached locally; pass --whisper-model DIR (a saved model), "
            f"or download it once where the hub is reachable (`hf download {model}`), "
            "or use a sidecar .txt/.srt/.vtt / the label file's text column"
        )
    return str(Path(cached).parent)


class TranscriberBackend(ABC):
    """One Whisper implementation. Stateless: the loaded model is returned by `load` and handed back to `transcribe`."""

    name: ClassVar[WhisperBackend]
    format: ClassVar[str]  # the model format it loads (see `model_format`)
    package: ClassVar[str]  # the distribution whose version a recipe records
    module: ClassVar[str]  # its import name, checked before a batch
    describes: ClassVar[str]  # the model format in words, for errors
    convert_hint: ClassVar[str] = ""  # how to turn another format into this one ({location} is filled in)

    def parameters(self) -> dict[str, Any]:
        """Decoding settings this backend fixes (recorded for the reader; they never change per call)."""
        return {}

    def version(self) -> str | None:
        """The installed version of the backend's package, or None when it is not installed."""
        try:
            return metadata.version(self.package)
        except metadata.PackageNotFoundError:
            return None

    def require_installed(self) -> None:
        """Raise BackendUnavailableError (one line, the install command) unless the package imports."""
        try:
            __import__(self.module)
        except ImportError:
            raise BackendUnavailableError(
                f"{self.package} is not installed; `pip install -c requirements/constraints.txt {self.package}`, "
                "or use --whisper-backend transformers"
            ) from None

    def locate(self, model: str) -> Path:
        """Where `model` (a path, hub id or name) is on disk, without the network; ModelNotCachedError otherwise."""
        return Path(resolve_hub_model(model))

    @abstractmethod
    def languages(self, location: Path) -> tuple[bool, frozenset[str] | None]:
        """(english_only, language codes) as the model at `location` itself records them."""

    @abstractmethod
    def load(self, location: Path) -> Any:
        """The loaded model (on CPU), ready for `transcribe`."""

    @abstractmethod
    def transcribe(
        self, impl: Any, samples: np.ndarray, language: str | None, task: str
    ) -> tuple[str, list[Segment], str | None]:
        """(text, segments relative to the samples' start, the language spoken) for mono 16 kHz samples (N,).

        A ValueError (an option the model refuses) becomes a one-line ExtractionError in the caller.
        """


def clip_segment(start: float, end: float, duration: float) -> tuple[float, float]:
    """A predicted (start, end) kept inside the audio and ordered, rounded to 10 ms."""
    start = min(max(float(start), 0.0), duration)
    return round(start, 2), round(min(max(float(end), start), duration), 2)
