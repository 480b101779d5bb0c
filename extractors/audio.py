"""Audio extractors: the CH-SIMS librosa recipe and openSMILE's standard sets.

Each extractor is built from plain parameters (validated once in `__init__`)
and has one method, `extract(path | samples) -> Features`.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from .choices import AudioBackend
from .errors import ExtractionError
from .features import Features
from .media import load_audio

# Versions bump whenever an extractor's output changes for the same input, so
# a recipe recorded at training time can refuse features from a different one.
AUDIO_VERSIONS = {AudioBackend.librosa_sims: 1, AudioBackend.egemaps: 1, AudioBackend.compare: 1, AudioBackend.none: 1}

_OPENSMILE_RATE = 16000  # openSMILE's standard configs are defined for 16 kHz speech


def parse_audio_backend(value: AudioBackend | str) -> AudioBackend:
    """The audio extractor named by `value` (an AudioBackend or its string); a one-line ExtractionError otherwise."""
    try:
        return AudioBackend(value)
    except ValueError:
        choices = ", ".join(b.value for b in AudioBackend)
        raise ExtractionError(f"unknown audio extractor {value!r}; choose one of: {choices}") from None


class AudioExtractor:
    """One audio recipe with fixed parameters.

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
        if functionals and self.backend not in (AudioBackend.egemaps, AudioBackend.compare):
            raise ExtractionError(f"functionals exist only for the openSMILE extractors (egemaps, compare), not {self.backend.value}")
        if sample_rate <= 0 or hop_length <= 0 or n_mfcc <= 0:
            raise ExtractionError("audio sample_rate, hop_length and n_mfcc must be positive")
        self.functionals = bool(functionals)
        self.sample_rate = int(sample_rate) if self.backend == AudioBackend.librosa_sims else _OPENSMILE_RATE
        self.hop_length = int(hop_length)
        self.n_mfcc = int(n_mfcc)
        self._smile = None  # built on first use: importing opensmile costs ~0.7 s

    # -- description ---------------------------------------------------------
    def params(self) -> dict:
        """The JSON-able parameters that, with the name and version, define the output exactly."""
        if self.backend == AudioBackend.librosa_sims:
            return {"sample_rate": self.sample_rate, "hop_length": self.hop_length, "n_mfcc": self.n_mfcc, "n_chroma": 12}
        if self.backend == AudioBackend.none:
            return {}
        return {"sample_rate": self.sample_rate, "functionals": self.functionals}

    def spec(self) -> dict:
        """FeatureRecipe entry: extractor name, version, parameters."""
        return {"extractor": self.backend.value, "version": AUDIO_VERSIONS[self.backend], "params": self.params()}

    @property
    def rate_hz(self) -> float:
        if self.backend == AudioBackend.librosa_sims:
            return self.sample_rate / self.hop_length
        if self.backend == AudioBackend.none or self.functionals:
            return 0.0
        return 100.0  # openSMILE LLDs: 10 ms hop

    def feature_names(self) -> list[str]:
        """Column names, known without running on a clip (needed for clips with no audio track)."""
        if self.backend == AudioBackend.librosa_sims:
            return ["zcr"] + [f"mfcc_{i}" for i in range(self.n_mfcc)] + [f"chroma_{i}" for i in range(12)]
        if self.backend == AudioBackend.none:
            return []
        return list(self._get_smile().feature_names)

    # -- extraction ----------------------------------------------------------
    def extract(self, source: Path | np.ndarray, sample_rate: int | None = None) -> Features:
        """Features of a file (decoded at this extractor's rate) or of mono samples (N,) at `sample_rate`.

        A file with no audio track, or an empty signal, gives T == 0.
        """
        if isinstance(source, np.ndarray):
            if sample_rate is None:
                raise ExtractionError("samples given without their sample_rate")
            samples = source.astype(np.float32).reshape(-1)
            if sample_rate != self.sample_rate:
                import librosa

                samples = librosa.resample(samples, orig_sr=sample_rate, target_sr=self.sample_rate)
        else:
            samples = load_audio(Path(source), self.sample_rate)
        if self.backend == AudioBackend.none:
            return Features.empty([], 0.0, "audio extractor is 'none'")
        if samples.size == 0:
            return Features.empty(self.feature_names(), self.rate_hz, "no audio track")
        if self.backend == AudioBackend.librosa_sims:
            return self._librosa(samples)
        return self._opensmile(samples)

    def _librosa(self, y: np.ndarray) -> Features:
        import librosa

        sr, hop = self.sample_rate, self.hop_length
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

    def _get_smile(self):
        if self._smile is None:
            import opensmile

            feature_set = opensmile.FeatureSet.eGeMAPSv02 if self.backend == AudioBackend.egemaps else opensmile.FeatureSet.ComParE_2016
            level = opensmile.FeatureLevel.Functionals if self.functionals else opensmile.FeatureLevel.LowLevelDescriptors
            self._smile = opensmile.Smile(feature_set=feature_set, feature_level=level)
        return self._smile

    def _opensmile(self, y: np.ndarray) -> Features:
        smile = self._get_smile()
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
