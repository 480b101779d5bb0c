"""OpenAI's `whisper` package (openai-whisper): a .pt checkpoint file, or a model name already in its cache.

Installed without triton (only its CUDA word timestamps use it, and word
timestamps are off). Its own audio loader runs the `ffmpeg` program, which
deepmlf does not require: it gets the 16 kHz float32 samples PyAV decodes.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ..choices import WhisperBackend
from ..errors import ExtractionError, ModelNotCachedError
from .base import MULTILINGUAL_VOCAB, WHISPER_RATE, Segment, TranscriberBackend, clip_segment


def cache_dir() -> Path:
    """Where openai-whisper keeps the checkpoints it downloaded (its own default: $XDG_CACHE_HOME/whisper)."""
    return Path(os.getenv("XDG_CACHE_HOME", Path("~/.cache").expanduser())) / "whisper"


class OpenAIWhisper(TranscriberBackend):
    """`whisper.transcribe` at temperature 0 only (no sampled fallback), fp32 on CPU, no word timestamps."""

    name = WhisperBackend.openai_whisper
    format = "openai-whisper"
    package = "openai-whisper"
    module = "whisper"
    describes = "openai-whisper (.pt checkpoint)"

    def parameters(self) -> dict[str, Any]:
        return {"device": "cpu", "fp16": False, "temperature": 0.0, "word_timestamps": False}

    def locate(self, model: str) -> Path:
        local = Path(model).expanduser()
        if local.exists():
            return local  # a folder is another backend's format: the caller's format check says which
        self.require_installed()
        import whisper

        if model in whisper._MODELS:  # a name: only its already-downloaded file, never a download
            cached = cache_dir() / os.path.basename(whisper._MODELS[model])
            if cached.is_file():
                return cached
            raise ModelNotCachedError(
                f"Whisper model {model} is not in openai-whisper's cache ({cached}); pass --whisper-model PATH.pt, "
                "or download it once where the network is reachable"
            )
        raise ModelNotCachedError(
            f"Whisper checkpoint {model} does not exist; pass --whisper-model PATH.pt or a cached name "
            f"({', '.join(whisper.available_models()[:6])}, …)"
        )

    def languages(self, location: Path) -> tuple[bool, frozenset[str] | None]:
        n_vocab = int(read_dims(location)["n_vocab"])
        if n_vocab < MULTILINGUAL_VOCAB:
            return True, frozenset({"en"})
        from whisper.tokenizer import LANGUAGES

        # openai-whisper's own count (Whisper.num_languages): the language tokens the vocabulary has room for
        return False, frozenset(list(LANGUAGES)[: n_vocab - 51765 - 1])

    def load(self, location: Path) -> Any:
        import whisper

        try:
            return whisper.load_model(str(location), device="cpu")
        except (RuntimeError, KeyError, TypeError, OSError) as exc:
            raise ExtractionError(
                f"{location}: not an openai-whisper checkpoint ({str(exc).splitlines()[0]})"
            ) from None

    def transcribe(
        self, impl: Any, samples: np.ndarray, language: str | None, task: str
    ) -> tuple[str, list[Segment], str | None]:
        import whisper

        # verbose=None: no prints and no progress bar (library code does not draw on the terminal)
        out = whisper.transcribe(impl, samples.astype(np.float32), language=language, task=task, temperature=0.0,
                                 fp16=False, verbose=None, word_timestamps=False)  # fmt: skip
        duration = samples.size / WHISPER_RATE
        segs = [
            Segment(
                *clip_segment(s["start"], s["end"], duration), s["text"].strip(), s["avg_logprob"], s["no_speech_prob"]
            )
            for s in out["segments"]
        ]
        return str(out["text"]).strip(), segs, out.get("language", language)


def read_dims(location: Path) -> dict:
    """The checkpoint's ModelDimensions fields, memory-mapped so the weights are not read."""
    import torch

    try:
        checkpoint = torch.load(location, map_location="cpu", weights_only=True, mmap=True)
        dims = checkpoint["dims"]
        int(dims["n_vocab"])
    except Exception as exc:  # a pickle, a truncated file, another format: all the same one line
        raise ExtractionError(
            f"{location}: not an openai-whisper checkpoint ({type(exc).__name__}); "
            'it must hold {"dims": ..., "model_state_dict": ...} as whisper.load_model reads'
        ) from None
    return dict(dims)
