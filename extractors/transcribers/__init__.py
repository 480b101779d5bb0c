"""The Whisper backends, one small class each, looked up by the `WhisperBackend` enum.

Adding a backend is its own file here plus one entry in BACKENDS; nothing
else in the package names a backend.
"""

from __future__ import annotations

from ..choices import WhisperBackend
from .base import TranscriberBackend
from .faster_whisper import FasterWhisper
from .openai_whisper import OpenAIWhisper
from .transformers_whisper import TransformersWhisper

BACKENDS: dict[WhisperBackend, TranscriberBackend] = {
    b.name: b for b in (TransformersWhisper(), FasterWhisper(), OpenAIWhisper())
}


def backend_for_format(fmt: str | None) -> TranscriberBackend | None:
    """The backend that loads models of format `fmt` (see base.model_format), if any."""
    return next((b for b in BACKENDS.values() if b.format == fmt), None)
