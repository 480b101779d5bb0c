"""Face and audio backends are small classes in a table keyed by their enum (issue 18 §2).

Adding a backend is its class and its table entry: the extractor callers build
dispatches through the table only, and each backend answers for its own
feature names, rate, parameters, version and extraction.
"""

from __future__ import annotations

import numpy as np
import pytest

from extractors.errors import ExtractionError


def test_every_audio_backend_is_one_class_in_the_table():
    from extractors.audio import AUDIO_BACKENDS, AUDIO_VERSIONS, AudioExtractor
    from extractors.choices import AudioBackend

    assert set(AUDIO_BACKENDS) == set(AudioBackend) and all(cls.name == b for b, cls in AUDIO_BACKENDS.items())
    assert AUDIO_VERSIONS == {b: 1 for b in AudioBackend}
    sims = AudioExtractor("librosa_sims")
    assert sims.spec() == {"extractor": "librosa_sims", "version": 1,
                           "params": {"sample_rate": 22050, "hop_length": 512, "n_mfcc": 20, "n_chroma": 12}}  # fmt: skip
    assert len(sims.feature_names()) == 33 and sims.rate_hz == pytest.approx(43.066, abs=1e-3)
    assert AudioExtractor("egemaps", functionals=True).spec()["params"] == {"sample_rate": 16000, "functionals": True}
    assert AudioExtractor("none").feature_names() == [] and AudioExtractor("none").rate_hz == 0.0
    with pytest.raises(
        ExtractionError, match="functionals exist only for the openSMILE extractors .* not librosa_sims"
    ):
        AudioExtractor("librosa_sims", functionals=True)


def test_a_new_audio_backend_is_its_class_and_its_entry(monkeypatch):
    """A backend registered in the table is what AudioExtractor runs: its names, rate, version, output."""
    from extractors import audio
    from extractors.choices import AudioBackend
    from extractors.features import Features

    class Loudness(audio.AudioRecipe):
        name = AudioBackend.librosa_sims  # stands in for a new enum member
        version = 7

        def params(self) -> dict:
            return {"sample_rate": self.sample_rate}

        @property
        def rate_hz(self) -> float:
            return 0.0

        def feature_names(self) -> list[str]:
            return ["rms"]

        def extract(self, samples: np.ndarray) -> Features:
            return Features(np.array([[float(np.sqrt(np.mean(samples**2)))]]), np.zeros(1), self.feature_names(), 0.0)

    monkeypatch.setitem(audio.AUDIO_BACKENDS, AudioBackend.librosa_sims, Loudness)
    ex = audio.AudioExtractor("librosa_sims", sample_rate=8000)
    assert ex.spec() == {"extractor": "librosa_sims", "version": 7, "params": {"sample_rate": 8000}}
    feats = ex.extract(np.full(800, 0.5, np.float32), 8000)
    assert feats.names == ["rms"] and feats.values[0, 0] == pytest.approx(0.5)
    assert ex.extract(np.zeros(0, np.float32), 8000).values.shape == (0, 1)  # the shared empty-signal rule


def test_every_face_backend_is_one_class_in_the_table():
    from extractors.choices import FaceBackend
    from extractors.face import FACE_BACKENDS, FACE_VERSIONS, FaceExtractor, mediapipe_feature_names

    assert set(FACE_BACKENDS) == set(FaceBackend) and all(cls.name == b for b, cls in FACE_BACKENDS.items())
    assert FACE_VERSIONS == {b: 1 for b in FaceBackend}
    mp = FaceExtractor("mediapipe", fps=5)
    assert mp.spec() == {"extractor": "mediapipe", "version": 1, "params": {
        "fps": 5.0, "max_faces": 4, "max_side": 640, "min_detection_confidence": 0.5, "static_image_mode": True}}  # fmt: skip
    assert mp.feature_names() == mediapipe_feature_names() and len(mp.feature_names()) == 181 and mp.rate_hz == 5.0
    assert len(FaceExtractor("pyfeat").feature_names()) == 20 + 7 + 3 + 136  # known without py-feat installed
    none = FaceExtractor("none")
    assert none.spec()["params"] == {} and none.rate_hz == 0.0
    assert none.extract("/no/such/clip.mp4").values.shape == (0, 0)  # reads no video at all
    with pytest.raises(ExtractionError, match=r"--fps must be in \(0, 60\]"):
        FaceExtractor("mediapipe", fps=0)


def test_a_new_face_backend_is_its_class_and_its_entry(monkeypatch, tmp_path):
    """A backend registered in the table gets the shared frame sampling and answers for its own output."""
    from extractors import face
    from extractors.choices import FaceBackend
    from extractors.features import Features

    import media as tm

    class Brightness(face.FaceRecipe):
        name = FaceBackend.pyfeat  # stands in for a new enum member
        version = 3

        def feature_names(self) -> list[str]:
            return ["brightness"]

        def extract(self, frames: np.ndarray, times: np.ndarray) -> Features:  # (T, H, W, 3), (T,)
            values = frames.reshape(len(frames), -1).mean(axis=1, keepdims=True).astype(np.float32) / 255  # (T, 1)
            return Features(values, times, self.feature_names(), self.fps)

    monkeypatch.setitem(face.FACE_BACKENDS, FaceBackend.pyfeat, Brightness)
    clip = tm.make_face_clip(tmp_path / "f.mp4", 1.0)
    ex = face.FaceExtractor("pyfeat", fps=4)
    assert ex.spec()["version"] == 3 and ex.rate_hz == 4.0
    feats = ex.extract(clip)
    assert feats.names == ["brightness"] and feats.values.shape == (4, 1) and 0 < feats.values.min() < 1
    no_video = ex.extract(tm.make_audio_only(tmp_path / "a.wav", 1.0))  # the shared rule: T == 0, its own names
    assert no_video.values.shape == (0, 1) and no_video.names == ["brightness"]
