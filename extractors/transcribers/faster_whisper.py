"""faster-whisper (CTranslate2, int8 on CPU): a converted model folder (model.bin + vocabulary)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..choices import WhisperBackend
from .base import MULTILINGUAL_VOCAB, WHISPER_RATE, Segment, TranscriberBackend, clip_segment, read_json


class FasterWhisper(TranscriberBackend):
    """Beam search at temperature 0 only, so the same clip always gives the same text."""

    name = WhisperBackend.faster_whisper
    format = "ctranslate2"
    package = "faster-whisper"
    module = "faster_whisper"
    describes = "faster-whisper (CTranslate2)"
    convert_hint = (
        "or convert it: ct2-transformers-converter --model {location} --output_dir DIR "
        "--copy_files tokenizer.json preprocessor_config.json"
    )

    def parameters(self) -> dict[str, Any]:
        return {"device": "cpu", "compute_type": "int8", "temperature": 0.0}

    def languages(self, location: Path) -> tuple[bool, frozenset[str] | None]:
        multilingual = is_multilingual(location)
        if multilingual is None:
            return False, None
        if not multilingual:
            return True, frozenset({"en"})
        try:
            from faster_whisper.tokenizer import _LANGUAGE_CODES
        except ImportError:
            return False, None
        return False, frozenset(_LANGUAGE_CODES)

    def load(self, location: Path) -> Any:
        from faster_whisper import WhisperModel

        return WhisperModel(str(location), device="cpu", compute_type="int8")

    def transcribe(
        self, impl: Any, samples: np.ndarray, language: str | None, task: str
    ) -> tuple[str, list[Segment], str | None]:
        # temperature 0 only (beam search, as the transformers backend decodes greedily): faster-whisper's
        # default falls back to unseeded sampling when a decode looks poor, so the same clip's text (and
        # a dataset built from it) changed from run to run.
        segments, info = impl.transcribe(samples, language=language, task=task, temperature=0.0)
        duration = samples.size / WHISPER_RATE
        # faster-whisper times the padded 30 s window: keep segments inside the audio
        segs = [
            Segment(*clip_segment(s.start, s.end, duration), s.text.strip(), s.avg_logprob, s.no_speech_prob)
            for s in segments
        ]
        return " ".join(s.text for s in segs).strip(), segs, getattr(info, "language", language)


def is_multilingual(location: Path) -> bool | None:
    """Whether a CTranslate2 Whisper folder is multilingual, by CTranslate2's own rule (its vocabulary's size).

    Converters ship the vocabulary as vocabulary.json (a list) or, older ones,
    vocabulary.txt (one token a line); without either, CTranslate2 itself is
    asked (that loads the weights, so only as the last resort). None only when
    nothing can tell.
    """
    vocab = read_json(location / "vocabulary.json")
    if isinstance(vocab, list):
        return len(vocab) >= MULTILINGUAL_VOCAB
    try:  # split on "\n" only: a token may be "\r" or another break that str.splitlines would cut at
        lines = (location / "vocabulary.txt").read_text(encoding="utf-8").split("\n")
        return len(lines) - (lines[-1] == "") >= MULTILINGUAL_VOCAB
    except (OSError, UnicodeDecodeError):
        pass
    try:
        import ctranslate2

        return bool(ctranslate2.models.Whisper(str(location), device="cpu", compute_type="int8").is_multilingual)
    except (ImportError, RuntimeError, ValueError):
        return None
