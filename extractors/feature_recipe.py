"""Named, versioned extraction recipes.

A `FeatureRecipe` says exactly how features were made: the audio and face extractors
(name, version, parameters), the transcript policy, and the library versions
that ran. It is a frozen object, validated once when it is built
(`build_recipe` from the CLI's options, `FeatureRecipe.from_dict` from a manifest or a
run); the code reads it through attributes. Its JSON form (`to_dict`) is what
every dataset manifest stores and every training run copies, so `deepmlf
predict` recomputes the same features for a new clip
(`extractors.pipeline.extract_clip(path, FeatureRecipe.from_dict(stored))`).

`feature_hash` keys the per-clip feature files: it covers what changes the
audio and face numbers and leaves out the transcript policy, so switching the
Whisper model re-transcribes clips without re-extracting their features.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from functools import cached_property
from importlib import metadata

from .audio import AUDIO_VERSIONS, AudioBackend, AudioExtractor, parse_audio_backend
from .choices import (
    DEFAULT_AUDIO,
    DEFAULT_FACE,
    DEFAULT_FPS,
    DEFAULT_MAX_FACES,
    DEFAULT_MAX_SIDE,
    DEFAULT_TRANSCRIPT,
    DEFAULT_WHISPER_BACKEND,
    DEFAULT_WHISPER_MODEL,
    DEFAULT_WHISPER_TASK,
    TranscriptMode,
    WhisperBackend,
)
from .errors import ExtractionError
from .face import FACE_VERSIONS, FaceBackend, FaceExtractor, parse_face_backend
from .transcribers import BACKENDS
from .transcript import TranscriptPolicy, parse_transcript_mode, parse_whisper_backend

RECIPE_FORMAT = 1
DEFAULT_RECIPE_NAME = "deepmlf-default-v1"
# Sequences are stored at their native rates (no time pooling): the models
# pool to a fixed length themselves, length-aware.
POOLING = {"audio": "none", "vision": "none"}

# Libraries whose versions can change the numbers; recorded, compared at predict time.
# The Whisper backends' packages come from their table, so a new backend's version is recorded too.
_LIBRARIES = tuple(
    dict.fromkeys(
        ("numpy", "av", "librosa", "opensmile", "mediapipe", "opencv-contrib-python", "torch", "py-feat")
        + tuple(b.package for b in BACKENDS.values())
    )
)


def library_versions() -> dict[str, str]:
    """Installed versions of the libraries that feature values depend on (absent ones are left out)."""
    versions = {}
    for name in _LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


@dataclass(frozen=True)
class AudioSpec:
    """The audio extractor of a recipe; construction builds the extractor once to validate the choice."""

    extractor: AudioBackend = DEFAULT_AUDIO
    functionals: bool = False  # openSMILE only: one row of clip-level statistics per clip

    def __post_init__(self) -> None:
        built = AudioExtractor(self.extractor, functionals=bool(self.functionals))  # raises the one-line errors
        object.__setattr__(self, "extractor", built.backend)
        object.__setattr__(self, "functionals", built.functionals)

    def build(self) -> AudioExtractor:
        """A fresh extractor with exactly these settings."""
        return AudioExtractor(self.extractor, functionals=self.functionals)

    @property
    def version(self) -> int:
        return AUDIO_VERSIONS[self.extractor]

    @property
    def rate_hz(self) -> float:
        """Frames per second of the stored sequence (0 for functionals and for no audio)."""
        return self.build().rate_hz

    def to_dict(self) -> dict:
        """FeatureRecipe entry: extractor name, version, parameters (as this deepmlf computes them)."""
        return self.build().spec()


@dataclass(frozen=True)
class FaceSpec:
    """The face extractor of a recipe; construction builds the extractor once to validate the choice."""

    extractor: FaceBackend = DEFAULT_FACE
    fps: float = DEFAULT_FPS  # frames sampled per second of video (the vision sequence rate)
    max_faces: int = DEFAULT_MAX_FACES
    max_side: int = DEFAULT_MAX_SIDE

    def __post_init__(self) -> None:
        built = FaceExtractor(self.extractor, fps=self.fps, max_faces=self.max_faces, max_side=self.max_side)
        for name, value in (
            ("extractor", built.backend),
            ("fps", built.fps),
            ("max_faces", built.max_faces),
            ("max_side", built.max_side),
        ):
            object.__setattr__(self, name, value)

    def build(self) -> FaceExtractor:
        """A fresh extractor with exactly these settings (its models load on first use)."""
        return FaceExtractor(self.extractor, fps=self.fps, max_faces=self.max_faces, max_side=self.max_side)

    @property
    def version(self) -> int:
        return FACE_VERSIONS[self.extractor]

    @property
    def rate_hz(self) -> float:
        return 0.0 if self.extractor == FaceBackend.none else self.fps

    def to_dict(self) -> dict:
        """FeatureRecipe entry: extractor name, version, parameters (as this deepmlf computes them)."""
        return self.build().spec()


def _default_name(audio: AudioSpec, face: FaceSpec) -> str:
    if (audio.extractor, audio.functionals, face.extractor, face.fps) == (
        AudioBackend.librosa_sims,
        False,
        FaceBackend.mediapipe,
        DEFAULT_FPS,
    ):
        return DEFAULT_RECIPE_NAME
    return f"custom-{audio.extractor.value}-{face.extractor.value}-v1"


@dataclass(frozen=True)
class FeatureRecipe:
    """How features are made: audio, face, transcript policy, and the library versions that made them.

    Frozen and validated on construction; `from_dict`/`to_dict` convert to and
    from the JSON that manifests and runs store (unchanged from format 1).
    """

    audio: AudioSpec = AudioSpec()
    face: FaceSpec = FaceSpec()
    transcript: TranscriptPolicy = TranscriptPolicy()
    # (name, version) pairs (a dict is accepted): recorded and compared at predict time, never hashed
    libraries: tuple[tuple[str, str], ...] = ()
    name: str | None = None  # None: deepmlf-default-v1, or custom-<audio>-<face>-v1

    def __post_init__(self) -> None:
        libraries = self.libraries.items() if isinstance(self.libraries, dict) else self.libraries
        object.__setattr__(self, "libraries", tuple((str(k), str(v)) for k, v in libraries))
        if self.name is None:
            object.__setattr__(self, "name", _default_name(self.audio, self.face))

    # -- JSON ------------------------------------------------------------------
    @classmethod
    def from_dict(cls, recipe: dict) -> FeatureRecipe:
        """Read and validate a stored recipe (a manifest's or a run's); one-line ExtractionError when it is unusable."""
        if not isinstance(recipe, dict) or recipe.get("format") != RECIPE_FORMAT:
            raise ExtractionError(
                f"unsupported feature recipe (format {recipe.get('format') if isinstance(recipe, dict) else type(recipe).__name__}); "
                f"this version reads format {RECIPE_FORMAT}: re-extract the dataset with this deepmlf"
            )
        try:
            audio, face, text = recipe["audio"], recipe["face"], recipe["transcript"]
            face_params = face.get("params", {})
            built = cls(
                audio=AudioSpec(audio["extractor"], functionals=audio.get("params", {}).get("functionals", False)),
                face=FaceSpec(
                    face["extractor"],
                    fps=face_params.get("fps", DEFAULT_FPS),
                    max_faces=face_params.get("max_faces", DEFAULT_MAX_FACES),
                    max_side=face_params.get("max_side", DEFAULT_MAX_SIDE),
                ),
                transcript=TranscriptPolicy.from_dict(text),
                libraries=tuple(dict(recipe.get("libraries", {})).items()),
                name=recipe.get("name"),
            )
        except KeyError as exc:
            raise ExtractionError(f"malformed feature recipe (missing {exc}); re-extract the dataset") from None
        except (TypeError, AttributeError, ValueError) as exc:
            raise ExtractionError(f"malformed feature recipe ({exc}); re-extract the dataset") from None
        for part, spec in (("audio", built.audio), ("face", built.face)):
            stored, now = recipe[part], spec.to_dict()
            if now["version"] != stored.get("version") or now["params"] != stored.get("params"):
                raise ExtractionError(
                    f"the recipe's {part} extractor {stored.get('extractor')} v{stored.get('version')} "
                    f"{stored.get('params')} differs from what this deepmlf computes "
                    f"(v{now['version']} {now['params']}); use the deepmlf version that made the dataset"
                )
        return built

    def to_dict(self) -> dict:
        """The JSON form stored in manifests and runs (format 1, the same keys as ever)."""
        return {
            "format": RECIPE_FORMAT,
            "name": self.name,
            "audio": self.audio.to_dict(),
            "face": self.face.to_dict(),
            "transcript": self.transcript.to_dict(),
            "pooling": dict(POOLING),
            "audio_rate_hz": self.audio.rate_hz,
            "vision_rate_hz": self.face.rate_hz,
            "libraries": dict(self.libraries),
        }

    # -- what the recipe says ----------------------------------------------------
    @cached_property
    def feature_hash(self) -> str:
        """Short hash of what defines the audio and face features.

        Left out: the name, the library versions (checked, not keyed) and the
        transcript policy (a clip's text is redone on its own when that changes).
        """
        core = {k: v for k, v in self.to_dict().items() if k not in ("name", "libraries", "transcript")}
        return hashlib.sha256(json.dumps(core, sort_keys=True).encode()).hexdigest()[:16]

    @property
    def modalities(self) -> frozenset[str]:
        """The modalities this recipe extracts: an extractor or transcript mode set to 'none' drops one."""
        dropped = {
            "audio": self.audio.extractor == AudioBackend.none,
            "vision": self.face.extractor == FaceBackend.none,
            "text": self.transcript.mode == TranscriptMode.none,
        }
        return frozenset(m for m, gone in dropped.items() if not gone)

    def needs_whisper(self, path, given: str | None = None) -> bool:
        """Whether the clip at `path` gets its text from Whisper under this recipe (see TranscriptPolicy.needs_whisper)."""
        return self.transcript.needs_whisper(path, given)

    def with_transcript(self, **changes) -> FeatureRecipe:
        """A copy with transcript settings changed (keys mode, backend, model, language, task; None keeps a value).

        E.g. a local Whisper folder at predict time: audio and face stay exactly as trained.
        """
        unknown = set(changes) - {f.name for f in dataclasses.fields(TranscriptPolicy)}
        if unknown:
            raise TypeError(f"unknown transcript settings: {sorted(unknown)}")
        policy = dataclasses.replace(self.transcript, **{k: v for k, v in changes.items() if v is not None})
        return dataclasses.replace(self, transcript=policy)

    def version_differences(self) -> list[str]:
        """Libraries whose installed version differs from the recipe's: features may differ slightly."""
        now = library_versions()
        return [
            f"{name} {then} -> {now.get(name, 'not installed')}"
            for name, then in sorted(self.libraries)
            if now.get(name) != then
        ]


def build_recipe(
    audio: AudioBackend | str = DEFAULT_AUDIO,
    face: FaceBackend | str = DEFAULT_FACE,
    fps: float = DEFAULT_FPS,
    functionals: bool = False,
    transcript: TranscriptMode | str = DEFAULT_TRANSCRIPT,
    whisper_model: str = DEFAULT_WHISPER_MODEL,
    whisper_backend: WhisperBackend | str = DEFAULT_WHISPER_BACKEND,
    language: str | None = None,
    task: str = DEFAULT_WHISPER_TASK,
    max_faces: int = DEFAULT_MAX_FACES,
    max_side: int = DEFAULT_MAX_SIDE,
) -> FeatureRecipe:
    """A complete recipe from the CLI's options, with the installed library versions; every value is validated."""
    return FeatureRecipe(
        audio=AudioSpec(parse_audio_backend(audio), functionals=functionals),
        face=FaceSpec(parse_face_backend(face), fps=fps, max_faces=max_faces, max_side=max_side),
        transcript=TranscriptPolicy(
            mode=parse_transcript_mode(transcript),
            backend=parse_whisper_backend(whisper_backend),
            model=whisper_model,
            language=language,
            task=task,
        ),
        libraries=tuple(library_versions().items()),
    )


def default_recipe() -> FeatureRecipe:
    """The default recipe: SIMS librosa audio (33-d), MediaPipe face at 5 fps, sidecar/labels text else Whisper."""
    return build_recipe()
