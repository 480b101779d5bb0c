"""Audio extractors: the CH-SIMS librosa recipe and openSMILE's standard sets.

One small class per backend (AudioRecipe: feature names, rate, parameters,
version, extract) in AUDIO_BACKENDS, keyed by the AudioBackend enum.
`AudioExtractor` is what callers build: it picks the backend from the table
and does the decoding and resampling every backend shares.
"""

from __future__ import annotations

import warnings
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from .choices import AudioBackend
from .errors import ExtractionError
from .features import Features
from .media import load_audio

_OPENSMILE_RATE = 16000  # openSMILE's standard configs are defined for 16 kHz speech


def parse_audio_backend(value: AudioBackend | str) -> AudioBackend:
    """The audio extractor named by `value` (an AudioBackend or its string); a one-line ExtractionError otherwise."""
    try:
        return AudioBackend(value)
    except ValueError:
        choices = ", ".join(b.value for b in AudioBackend)
        raise ExtractionError(f"unknown audio extractor {value!r}; choose one of: {choices}") from None


class AudioRecipe(ABC):
    """One audio backend with fixed parameters: its feature names, frame rate, parameters and version, and `extract`.

    Built from the options every backend is given (validated here, one-line
    errors); `extract` receives mono float32 samples at `sample_rate`, never empty.
    """

    name: ClassVar[AudioBackend]
    # Bumped whenever the output changes for the same input, so a recipe recorded
    # at training time can refuse features from a different one.
    version: ClassVar[int] = 1
    reads_audio: ClassVar[bool] = True  # False: nothing is decoded for it

    def __init__(self, functionals: bool, sample_rate: int, hop_length: int, n_mfcc: int) -> None:
        if functionals:
            raise ExtractionError(
                f"functionals exist only for the openSMILE extractors (egemaps, compare), not {self.name.value}"
            )
        self.functionals = False
        self.sample_rate = int(sample_rate)

    @abstractmethod
    def params(self) -> dict:
        """The JSON-able parameters that, with the name and version, define the output exactly."""

    @property
    @abstractmethod
    def rate_hz(self) -> float:
        """Feature frames per second (0.0: one clip-level row, or no features)."""

    @abstractmethod
    def feature_names(self) -> list[str]:
        """Column names, known without running on a clip (needed for clips with no audio track)."""

    @abstractmethod
    def extract(self, samples: np.ndarray) -> Features:
        """Features of mono samples (N,) at `sample_rate`, N > 0."""


class LibrosaSims(AudioRecipe):
    """CH-SIMS / MMSA-FET's librosa recipe: 1 ZCR + n_mfcc MFCC + 12 CQT chroma per hop."""

    name = AudioBackend.librosa_sims

    def __init__(self, functionals: bool, sample_rate: int, hop_length: int, n_mfcc: int) -> None:
        super().__init__(functionals, sample_rate, hop_length, n_mfcc)
        self.hop_length = int(hop_length)
        self.n_mfcc = int(n_mfcc)

    def params(self) -> dict:
        return {"sample_rate": self.sample_rate, "hop_length": self.hop_length, "n_mfcc": self.n_mfcc, "n_chroma": 12}

    @property
    def rate_hz(self) -> float:
        return self.sample_rate / self.hop_length

    def feature_names(self) -> list[str]:
        return ["zcr"] + [f"mfcc_{i}" for i in range(self.n_mfcc)] + [f"chroma_{i}" for i in range(12)]

    def extract(self, samples: np.ndarray) -> Features:
        import librosa

        y, sr, hop = samples, self.sample_rate, self.hop_length
        with warnings.catch_warnings():
            # Clips shorter than one FFT window (a 1-frame video's 40 ms of audio)
            # are zero-padded by librosa; its warning says so and nothing more.
            warnings.simplefilter("ignore", UserWarning)
            zcr = librosa.feature.zero_crossing_rate(y, hop_length=hop)  # (1, T)
            mfcc = librosa.feature.mfcc(y=y, sr=sr, n_mfcc=self.n_mfcc, hop_length=hop)  # (20, T)
            chroma = librosa.feature.chroma_cqt(y=y, sr=sr, hop_length=hop, n_chroma=12)  # (12, T)
        t = min(zcr.shape[1], mfcc.shape[1], chroma.shape[1])
        values = np.concatenate([zcr[:, :t], mfcc[:, :t], chroma[:, :t]], axis=0).T  # (T, 33)
        times = librosa.frames_to_time(np.arange(t), sr=sr, hop_length=hop)  # frame centres (center=True)
        return Features(values, times, self.feature_names(), self.rate_hz)


class OpenSmileSet(AudioRecipe):
    """One of openSMILE's standard feature sets at 16 kHz: LLDs every 10 ms, or one row of functionals."""

    feature_set: ClassVar[str]  # the opensmile.FeatureSet member's name

    def __init__(self, functionals: bool, sample_rate: int, hop_length: int, n_mfcc: int) -> None:
        super().__init__(False, _OPENSMILE_RATE, hop_length, n_mfcc)  # its configs fix the rate
        self.functionals = bool(functionals)
        self._smile: Any = None  # built on first use: importing opensmile costs ~0.7 s

    def params(self) -> dict:
        return {"sample_rate": self.sample_rate, "functionals": self.functionals}

    @property
    def rate_hz(self) -> float:
        return 0.0 if self.functionals else 100.0  # openSMILE LLDs: 10 ms hop

    def feature_names(self) -> list[str]:
        return list(self._get_smile().feature_names)

    def _get_smile(self) -> Any:
        if self._smile is None:
            import opensmile

            level = (
                opensmile.FeatureLevel.Functionals if self.functionals else opensmile.FeatureLevel.LowLevelDescriptors
            )
            self._smile = opensmile.Smile(
                feature_set=getattr(opensmile.FeatureSet, self.feature_set), feature_level=level
            )
        return self._smile

    def extract(self, samples: np.ndarray) -> Features:
        smile = self._get_smile()
        y = samples
        # openSMILE needs at least one 60 ms window; pad very short clips with silence.
        if y.size < int(0.06 * self.sample_rate):
            y = np.pad(y, (0, int(0.06 * self.sample_rate) - y.size))
        df = smile.process_signal(y, self.sample_rate)
        values = df.to_numpy(np.float32)  # (T, D)
        if self.functionals:
            times = np.zeros(1)
        else:
            times = df.index.get_level_values("start").total_seconds().to_numpy()
        return Features(values, times, list(df.columns), self.rate_hz)


class EGeMAPS(OpenSmileSet):
    """openSMILE eGeMAPSv02: 25 LLDs at 100 Hz (88 functionals)."""

    name = AudioBackend.egemaps
    feature_set = "eGeMAPSv02"


class ComParE(OpenSmileSet):
    """openSMILE ComParE_2016: 65 LLDs at 100 Hz (6373 functionals)."""

    name = AudioBackend.compare
    feature_set = "ComParE_2016"


class NoAudio(AudioRecipe):
    """No audio features (the model does not read audio)."""

    name = AudioBackend.none
    reads_audio = False

    def params(self) -> dict:
        return {}

    @property
    def rate_hz(self) -> float:
        return 0.0

    def feature_names(self) -> list[str]:
        return []

    def extract(self, samples: np.ndarray) -> Features:
        return Features.empty([], 0.0, "audio extractor is 'none'")


# The audio backends, keyed by the enum: adding one is its class and its entry here.
AUDIO_BACKENDS: dict[AudioBackend, type[AudioRecipe]] = {c.name: c for c in (LibrosaSims, EGeMAPS, ComParE, NoAudio)}
AUDIO_VERSIONS = {name: cls.version for name, cls in AUDIO_BACKENDS.items()}


class AudioExtractor:
    """One audio recipe with fixed parameters: the backend from AUDIO_BACKENDS, plus decoding and resampling.

    backend:     an AudioBackend (or its string value)
    functionals: openSMILE only: one row of clip-level statistics instead of a per-frame sequence
    sample_rate: librosa only (openSMILE always runs at 16 kHz)
    hop_length:  librosa only, samples between frames (512 at 22050 Hz = 43.07 frames/s)
    """

    def __init__(
        self,
        backend: AudioBackend | str = AudioBackend.librosa_sims,
        functionals: bool = False,
        sample_rate: int = 22050,
        hop_length: int = 512,
        n_mfcc: int = 20,
    ) -> None:
        self.backend = parse_audio_backend(backend)
        if sample_rate <= 0 or hop_length <= 0 or n_mfcc <= 0:
            raise ExtractionError("audio sample_rate, hop_length and n_mfcc must be positive")
        self.impl = AUDIO_BACKENDS[self.backend](bool(functionals), int(sample_rate), int(hop_length), int(n_mfcc))
        self.functionals = self.impl.functionals
        self.sample_rate = self.impl.sample_rate

    # -- description ---------------------------------------------------------
    def params(self) -> dict:
        """The JSON-able parameters that, with the name and version, define the output exactly."""
        return self.impl.params()

    def spec(self) -> dict:
        """FeatureRecipe entry: extractor name, version, parameters."""
        return {"extractor": self.backend.value, "version": self.impl.version, "params": self.params()}

    @property
    def rate_hz(self) -> float:
        return self.impl.rate_hz

    def feature_names(self) -> list[str]:
        """Column names, known without running on a clip (needed for clips with no audio track)."""
        return self.impl.feature_names()

    # -- extraction ----------------------------------------------------------
    def extract(self, source: Path | np.ndarray, sample_rate: int | None = None) -> Features:
        """Features of a file (decoded at this extractor's rate) or of mono samples (N,) at `sample_rate`.

        A file with no audio track, or an empty signal, gives T == 0.
        """
        if not self.impl.reads_audio:
            return self.impl.extract(np.zeros(0, np.float32))
        if isinstance(source, np.ndarray):
            if sample_rate is None:
                raise ExtractionError("samples given without their sample_rate")
            samples = source.astype(np.float32).reshape(-1)
            if sample_rate != self.sample_rate:
                import librosa

                samples = librosa.resample(samples, orig_sr=sample_rate, target_sr=self.sample_rate)
        else:
            samples = load_audio(Path(source), self.sample_rate)
        if samples.size == 0:
            return Features.empty(self.feature_names(), self.rate_hz, "no audio track")
        return self.impl.extract(samples)
