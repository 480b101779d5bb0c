"""The extraction choices and defaults, in one place the CLI can import at start.

Standard library only (enum): `deepmlf_cli` builds its `--audio`, `--face`,
`--transcript`, `--whisper-backend` and `--format` options from these enums
and defaults instead of re-declaring them, and importing this module must stay
instant so `deepmlf --help` does (tests/test_feature_recipe.py checks that it
pulls in no numpy, torch, av or librosa). The extractors themselves import
the enums from here.
"""

from __future__ import annotations

import enum


class AudioBackend(str, enum.Enum):
    """Which audio recipe to run."""

    librosa_sims = "librosa_sims"  # CH-SIMS / MMSA-FET: 22050 Hz, 1 ZCR + 20 MFCC + 12 CQT chroma = 33
    egemaps = "egemaps"  # openSMILE eGeMAPSv02: 25 LLDs at 100 Hz (88 functionals)
    compare = "compare"  # openSMILE ComParE_2016: 65 LLDs at 100 Hz (6373 functionals)
    none = "none"  # no audio features


class FaceBackend(str, enum.Enum):
    """Which face recipe to run."""

    mediapipe = "mediapipe"  # offline: MediaPipe 0.10.21's bundled 478-point face mesh
    pyfeat = "pyfeat"  # py-feat: action units, emotions, pose, landmarks (needs its hub models)
    none = "none"  # no vision features


class TranscriptMode(str, enum.Enum):
    """Where a clip's text comes from."""

    auto = "auto"  # given text > sidecar > Whisper
    given = "given"  # given text > sidecar, else empty (never runs Whisper)
    whisper = "whisper"  # always Whisper (given text still wins: it is the label file's truth)
    none = "none"  # no text


class WhisperBackend(str, enum.Enum):
    """Which Whisper implementation transcribes."""

    transformers = "transformers"
    faster_whisper = "faster-whisper"
    openai_whisper = "openai-whisper"  # OpenAI's `whisper` package: a .pt checkpoint or a cached name


class TranscriptFormat(str, enum.Enum):
    """How `deepmlf transcribe` writes a transcript."""

    txt = "txt"
    srt = "srt"
    json = "json"


WHISPER_TASKS = ("transcribe", "translate")  # Whisper's own two tasks (translate: to English)

# Defaults of the default recipe (extractors.feature_recipe.default_recipe) and of the CLI options.
DEFAULT_AUDIO = AudioBackend.librosa_sims
DEFAULT_FACE = FaceBackend.mediapipe
DEFAULT_FPS = 5.0  # video frames sampled per second for the face extractor
DEFAULT_MAX_FACES = 4  # faces the detector may return per frame (the main one is kept)
DEFAULT_MAX_SIDE = 640  # frames downscaled to this longer side, pixels
DEFAULT_TRANSCRIPT = TranscriptMode.auto
DEFAULT_WHISPER_MODEL = "openai/whisper-small"
DEFAULT_WHISPER_BACKEND = WhisperBackend.transformers
DEFAULT_WHISPER_TASK = "transcribe"
