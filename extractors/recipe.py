"""Named, versioned extraction recipes.

A recipe is a JSON-able dict that says exactly how features were made:
extractor names, versions and parameters, the transcript policy, pooling, and
the library versions that ran. It is stored in every dataset manifest and
copied into every training run so `deepmlf predict` recomputes the same
features for a new clip (`extractors.pipeline.extract_clip(path, recipe)`).
"""

from __future__ import annotations

import copy
import hashlib
import json
from importlib import metadata

from .audio import AudioBackend, AudioExtractor
from .errors import ExtractionError
from .face import FaceBackend, FaceExtractor
from .transcript import DEFAULT_WHISPER_MODEL, TranscriptMode, WhisperBackend

RECIPE_FORMAT = 1
DEFAULT_RECIPE_NAME = "deepmlf-default-v1"
DEFAULT_FPS = 5.0

# Libraries whose versions can change the numbers; recorded, compared at predict time.
_LIBRARIES = ("numpy", "av", "librosa", "opensmile", "mediapipe", "opencv-contrib-python", "transformers", "torch", "faster-whisper", "py-feat")


def library_versions() -> dict[str, str]:
    """Installed versions of the libraries that feature values depend on (absent ones are left out)."""
    versions = {}
    for name in _LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def build_recipe(
    audio: AudioBackend | str = AudioBackend.librosa_sims,
    face: FaceBackend | str = FaceBackend.mediapipe,
    fps: float = DEFAULT_FPS,
    functionals: bool = False,
    transcript: TranscriptMode | str = TranscriptMode.auto,
    whisper_model: str = DEFAULT_WHISPER_MODEL,
    whisper_backend: WhisperBackend | str = WhisperBackend.transformers,
    language: str | None = None,
    task: str = "transcribe",
    max_faces: int = 4,
    max_side: int = 640,
) -> dict:
    """A complete recipe from the CLI's options; every value is validated by building the extractors."""
    audio_ex = AudioExtractor(audio, functionals=functionals)
    face_ex = FaceExtractor(face, fps=fps, max_faces=max_faces, max_side=max_side)
    try:
        mode = TranscriptMode(transcript)
        backend = WhisperBackend(whisper_backend)
    except ValueError as exc:
        raise ExtractionError(f"invalid transcript option: {exc}") from None
    if task not in ("transcribe", "translate"):
        raise ExtractionError(f"Whisper task must be transcribe or translate, not {task!r}")
    name = DEFAULT_RECIPE_NAME
    if (audio_ex.backend, face_ex.backend, face_ex.fps, functionals) != (AudioBackend.librosa_sims, FaceBackend.mediapipe, DEFAULT_FPS, False):
        name = f"custom-{audio_ex.backend.value}-{face_ex.backend.value}-v1"
    return {
        "format": RECIPE_FORMAT,
        "name": name,
        "audio": audio_ex.spec(),
        "face": face_ex.spec(),
        "transcript": {
            "mode": mode.value,
            "backend": backend.value,
            "model": whisper_model,
            "language": language or None,
            "task": task,
        },
        # Sequences are stored at their native rates (no time pooling): the models
        # pool to a fixed length themselves, length-aware.
        "pooling": {"audio": "none", "vision": "none"},
        "audio_rate_hz": audio_ex.rate_hz,
        "vision_rate_hz": face_ex.rate_hz,
        "libraries": library_versions(),
    }


def default_recipe() -> dict:
    """The default recipe: SIMS librosa audio (33-d), MediaPipe face at 5 fps, sidecar/labels text else Whisper."""
    return build_recipe()


def validate_recipe(recipe: dict) -> dict:
    """Check a recipe (e.g. read back from a manifest or checkpoint) and return a normalised copy."""
    if not isinstance(recipe, dict) or recipe.get("format") != RECIPE_FORMAT:
        raise ExtractionError(
            f"unsupported feature recipe (format {recipe.get('format') if isinstance(recipe, dict) else type(recipe).__name__}); "
            f"this version reads format {RECIPE_FORMAT}: re-extract the dataset with this deepmlf"
        )
    try:
        audio, face, text = recipe["audio"], recipe["face"], recipe["transcript"]
        rebuilt = build_recipe(
            audio=audio["extractor"],
            face=face["extractor"],
            fps=face.get("params", {}).get("fps", DEFAULT_FPS),
            functionals=audio.get("params", {}).get("functionals", False),
            transcript=text.get("mode", "auto"),
            whisper_model=text.get("model", DEFAULT_WHISPER_MODEL),
            whisper_backend=text.get("backend", "transformers"),
            language=text.get("language"),
            task=text.get("task", "transcribe"),
            max_faces=face.get("params", {}).get("max_faces", 4),
            max_side=face.get("params", {}).get("max_side", 640),
        )
    except (KeyError, TypeError) as exc:
        raise ExtractionError(f"malformed feature recipe (missing {exc}); re-extract the dataset") from None
    for part in ("audio", "face"):
        if rebuilt[part]["version"] != recipe[part].get("version") or rebuilt[part]["params"] != recipe[part].get("params"):
            raise ExtractionError(
                f"the recipe's {part} extractor {recipe[part].get('extractor')} v{recipe[part].get('version')} "
                f"{recipe[part].get('params')} differs from what this deepmlf computes "
                f"(v{rebuilt[part]['version']} {rebuilt[part]['params']}); use the deepmlf version that made the dataset"
            )
    rebuilt["libraries"] = dict(recipe.get("libraries", {}))
    rebuilt["name"] = recipe.get("name", rebuilt["name"])
    return rebuilt


def recipe_hash(recipe: dict) -> str:
    """Short hash of what defines the features (library versions excluded: they are checked, not keyed)."""
    core = {k: v for k, v in recipe.items() if k not in ("libraries", "name")}
    return hashlib.sha256(json.dumps(core, sort_keys=True).encode()).hexdigest()[:16]


def version_differences(recipe: dict) -> list[str]:
    """Libraries whose installed version differs from the recipe's: features may differ slightly."""
    now = library_versions()
    diffs = []
    for name, then in sorted(recipe.get("libraries", {}).items()):
        if now.get(name) != then:
            diffs.append(f"{name} {then} -> {now.get(name, 'not installed')}")
    return diffs


def with_transcript(recipe: dict, **changes) -> dict:
    """A copy of `recipe` with transcript settings changed (e.g. a local Whisper dir at predict time)."""
    out = copy.deepcopy(recipe)
    out["transcript"].update({k: v for k, v in changes.items() if v is not None})
    return out
