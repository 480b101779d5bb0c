"""Transcripts: given text, sidecar files (.txt/.srt/.vtt), or Whisper.

Order of precedence for a clip: text given by the caller (the label file's
`text` column) > a sidecar file next to the clip with the same stem > Whisper
(transformers, or faster-whisper as the faster CPU backend). Whisper models
are resolved from a local directory or the local Hugging Face cache before
anything is loaded, so a missing model fails at once with one line instead of
waiting on the hub.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import asdict, dataclass, field
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
from .errors import BackendUnavailableError, ExtractionError, ModelNotCachedError
from .media import load_audio

WHISPER_RATE = 16000
SIDECAR_EXTENSIONS = (".txt", ".srt", ".vtt")
# Below this RMS the track is digital silence: Whisper would only hallucinate.
SILENCE_RMS = 1e-4


@dataclass
class Segment:
    """One stretch of speech: seconds from the clip (or window) start, and its text."""

    start: float
    end: float
    text: str


@dataclass
class Transcript:
    """A clip's text with where it came from; segments carry timestamps when the source has them."""

    text: str
    source: str  # "given", "sidecar:<file name>", "whisper:<model>", "silence", "no-audio", "none"
    segments: list[Segment] = field(default_factory=list)
    language: str | None = None

    def to_dict(self) -> dict:
        return {"text": self.text, "source": self.source, "language": self.language, "segments": [asdict(s) for s in self.segments]}


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
def resolve_whisper_model(model: str) -> str:
    """A loadable location for `model`: a local directory, or the hub id when its files are in the local cache.

    Raises ModelNotCachedError (one line, with the fix) otherwise, without any
    network access: the hub on these machines never answers, and each lookup
    would retry for ~20 s.
    """
    local = Path(model).expanduser()
    if local.is_dir():
        if not (local / "config.json").is_file() and not (local / "model.bin").is_file():
            raise ModelNotCachedError(f"{local}: not a Whisper model directory (no config.json); point --whisper-model at a saved model")
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


# A CTranslate2 Whisper counts as multilingual from this vocabulary size on
# (CTranslate2's own rule, which faster-whisper follows: smaller vocabularies
# are the English-only models, and faster-whisper then silently decodes "en").
_CT2_MULTILINGUAL_VOCAB = 51865


@dataclass(frozen=True)
class WhisperModelInfo:
    """What a Whisper model folder is, read from its files without loading the weights."""

    location: str
    format: str  # "transformers" or "ctranslate2" (faster-whisper)
    english_only: bool
    languages: frozenset[str] | None  # codes the model knows; None when its files do not say


def whisper_format(location: Path) -> str | None:
    """'ctranslate2' for a faster-whisper folder (model.bin, no transformers weights), 'transformers', or None."""
    location = Path(location)
    hf_weights = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")
    if (location / "model.bin").is_file() and not any((location / n).is_file() for n in hf_weights):
        return "ctranslate2"
    if (location / "config.json").is_file():
        return "transformers"
    return None


def _read_json(path: Path) -> dict | list | None:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _model_languages(location: Path, fmt: str) -> tuple[bool, frozenset[str] | None]:
    """(english_only, language codes) as the model's own files record them."""
    if fmt == "ctranslate2":
        vocab = _read_json(location / "vocabulary.json")
        if not isinstance(vocab, list):
            return False, None
        if len(vocab) < _CT2_MULTILINGUAL_VOCAB:
            return True, frozenset({"en"})
        try:
            from faster_whisper.tokenizer import _LANGUAGE_CODES
        except ImportError:
            return False, None
        return False, frozenset(_LANGUAGE_CODES)
    gen = _read_json(location / "generation_config.json")
    if not isinstance(gen, dict):
        return False, None
    if gen.get("is_multilingual") is False:
        return True, frozenset({"en"})
    langs = gen.get("lang_to_id")
    if isinstance(langs, dict) and langs:
        return False, frozenset(k.strip("<|>") for k in langs)
    return False, None


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
        raise ExtractionError(f"unknown Whisper backend {value!r}; choose transformers or faster-whisper") from None


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
    """Speech to text with timestamps, through transformers' Whisper or faster-whisper.

    model:    hub id (must be in the local cache) or a local directory
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
        self.model_id = model
        self.language = _language_code(language) if language else None
        self.task = task
        # faster-whisper's WhisperModel, or transformers' (WhisperProcessor, WhisperForConditionalGeneration)
        self._impl: Any = None
        self._info: WhisperModelInfo | None = None

    def check(self) -> WhisperModelInfo:
        """Find the model and check it against the backend, --language and --translate, without loading it.

        Run once before a batch: every clip would otherwise fail the same way,
        after its audio and face work.
        """
        if self._info is not None:
            return self._info
        location = Path(resolve_whisper_model(self.model_id))
        fmt = whisper_format(location)
        if self.backend == WhisperBackend.transformers and fmt == "ctranslate2":
            raise ExtractionError(
                f"Whisper model {self.model_id} is a faster-whisper (CTranslate2) model; use --whisper-backend faster-whisper"
            )
        if self.backend == WhisperBackend.faster_whisper:
            if fmt == "transformers":
                raise ExtractionError(
                    f"Whisper model {self.model_id} is a transformers model, not a faster-whisper (CTranslate2) one; "
                    "use --whisper-backend transformers, or convert it: ct2-transformers-converter --model "
                    f"{location} --output_dir DIR --copy_files tokenizer.json preprocessor_config.json"
                )
            try:
                import faster_whisper  # noqa: F401
            except ImportError:
                raise BackendUnavailableError(
                    "faster-whisper is not installed; `pip install -c requirements/constraints.txt faster-whisper`, "
                    "or use --whisper-backend transformers"
                ) from None
        english_only, languages = _model_languages(location, fmt or "transformers")
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
        self._info = WhisperModelInfo(str(location), fmt or "transformers", english_only, languages)
        return self._info

    def _load(self):
        if self._impl is not None:
            return self._impl
        location = self.check().location
        if self.backend == WhisperBackend.faster_whisper:
            from faster_whisper import WhisperModel

            self._impl = WhisperModel(location, device="cpu", compute_type="int8")
            return self._impl
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        from transformers import WhisperForConditionalGeneration, WhisperProcessor
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # library code does not draw on the user's terminal

        try:
            processor = WhisperProcessor.from_pretrained(location)
            model = WhisperForConditionalGeneration.from_pretrained(location)
        except OSError as exc:
            raise ModelNotCachedError(f"cannot load Whisper from {location}: {str(exc).splitlines()[0]}") from None
        model.eval()
        self._impl = (processor, model)
        return self._impl

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
        impl = self._load()
        if self.backend == WhisperBackend.faster_whisper:
            return self._faster(impl, samples)
        processor, model = impl
        return self._transformers(processor, model, samples)

    def _faster(self, model, samples: np.ndarray) -> Transcript:
        # temperature 0 only (beam search, as the transformers backend decodes greedily): faster-whisper's
        # default falls back to unseeded sampling when a decode looks poor, so the same clip's text (and
        # a dataset built from it) changed from run to run.
        segments, info = model.transcribe(samples, language=self.language, task=self.task, temperature=0.0)
        duration = samples.size / WHISPER_RATE
        segs = []
        for s in segments:  # faster-whisper times the padded 30 s window: keep segments inside the audio
            start = round(min(float(s.start), duration), 2)
            segs.append(Segment(start, round(min(max(float(s.end), start), duration), 2), s.text.strip()))
        return Transcript(" ".join(s.text for s in segs).strip(), f"whisper:{self.model_id}", segs, getattr(info, "language", self.language))

    def _transformers(self, processor, model, samples: np.ndarray) -> Transcript:
        import torch

        long_form = samples.size > 30 * WHISPER_RATE
        # Whisper sees 30 s windows; longer audio goes through its own sequential
        # long-form decoding, which needs the whole, unpadded feature sequence.
        inputs = processor(
            samples,
            sampling_rate=WHISPER_RATE,
            return_tensors="pt",
            truncation=not long_form,
            padding="longest" if long_form else "max_length",
            return_attention_mask=True,
        )
        kwargs = {"return_timestamps": True, "task": self.task}
        if self.language:
            kwargs["language"] = self.language
        if long_form:
            kwargs["attention_mask"] = inputs["attention_mask"]
        try:
            with torch.inference_mode():
                tokens = model.generate(inputs["input_features"], **kwargs)
        except ValueError as exc:  # e.g. a language code the model does not know
            raise ExtractionError(f"Whisper {self.model_id}: {str(exc).splitlines()[0]}") from None
        if not isinstance(tokens, torch.Tensor):
            tokens = tokens["sequences"]
        ids = tokens[0].tolist()
        segments = _segments_from_tokens(processor.tokenizer, ids, samples.size / WHISPER_RATE)
        text = processor.tokenizer.decode(ids, skip_special_tokens=True).strip()
        return Transcript(text, f"whisper:{self.model_id}", segments, self.language)


def _segments_from_tokens(tokenizer, ids: list[int], duration: float) -> list[Segment]:
    """Split a generated sequence at its timestamp tokens into (start, end, text) segments.

    Timestamp tokens follow <|notimestamps|> in Whisper's vocabulary, 0.02 s apart.
    Long-form output restarts the clock at every 30 s window; the offset is tracked.
    """
    ts_begin = tokenizer.convert_tokens_to_ids("<|notimestamps|>") + 1
    special = set(tokenizer.all_special_ids)
    segments: list[Segment] = []
    offset, start, last, text_ids = 0.0, None, 0.0, []
    for tok in ids:
        if tok >= ts_begin:
            t = (tok - ts_begin) * 0.02 + offset
            if start is None:
                if t < last - 1e-6:  # clock restarted: a new 30 s window
                    offset += last if last > 0 else 0.0
                    t = (tok - ts_begin) * 0.02 + offset
                start = t
            else:
                text = tokenizer.decode(text_ids, skip_special_tokens=True).strip()
                if text:
                    # A model's timestamps are predictions: keep them inside the audio and ordered.
                    seg_start = min(start, duration)
                    segments.append(Segment(round(seg_start, 2), round(min(max(t, seg_start), duration), 2), text))
                start, text_ids, last = None, [], t
        elif tok not in special:
            text_ids.append(tok)
    if text_ids:
        text = tokenizer.decode(text_ids, skip_special_tokens=True).strip()
        if text:
            seg_start = min(start if start is not None else last, duration)
            segments.append(Segment(round(seg_start, 2), round(duration, 2), text))
    return segments


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
            raise ExtractionError(f"Whisper model must be a hub id or a model folder, not {self.model!r}; check --whisper-model")
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
        return {"mode": self.mode.value, "backend": self.backend.value, "model": self.model,
                "language": self.language, "task": self.task}

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
