"""The feature recipe as an object (extractors/feature_recipe.py) and the stdlib-only choices the CLI imports.

(tests/test_recipe.py is about the training recipes of the presets.)
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

from extractors.errors import ExtractionError
from extractors.feature_recipe import AudioSpec, FaceSpec, FeatureRecipe, build_recipe
from extractors.transcript import TranscriptPolicy

ROOT = Path(__file__).resolve().parents[1]

# A format-1 recipe exactly as manifests and runs written before the FeatureRecipe object store it.
STORED = {
    "format": 1,
    "name": "deepmlf-default-v1",
    "audio": {
        "extractor": "librosa_sims",
        "version": 1,
        "params": {"sample_rate": 22050, "hop_length": 512, "n_mfcc": 20, "n_chroma": 12},
    },
    "face": {
        "extractor": "mediapipe",
        "version": 1,
        "params": {
            "fps": 5.0,
            "max_faces": 4,
            "max_side": 640,
            "min_detection_confidence": 0.5,
            "static_image_mode": True,
        },
    },
    "transcript": {
        "mode": "auto",
        "backend": "transformers",
        "model": "openai/whisper-small",
        "language": None,
        "task": "transcribe",
    },
    "pooling": {"audio": "none", "vision": "none"},
    "audio_rate_hz": 43.06640625,
    "vision_rate_hz": 5.0,
    "libraries": {"numpy": "1.26.4", "av": "18.1.0", "librosa": "0.11.0"},
}
# The feature hash of STORED: per-clip files are keyed by it, so a change re-extracts every dataset.
STORED_FEATURE_HASH = "1b5a1681c620e30f"


def _stored() -> dict:
    return json.loads(json.dumps(STORED))


# --------------------------------------------------------------------------- JSON
def test_a_stored_recipe_reads_back_to_the_same_json():
    recipe = FeatureRecipe.from_dict(_stored())
    assert recipe.to_dict() == STORED
    assert list(recipe.to_dict()) == list(STORED)  # same key order: manifests diff cleanly
    assert recipe.audio == AudioSpec("librosa_sims") and recipe.face == FaceSpec("mediapipe", fps=5.0)
    assert recipe.transcript == TranscriptPolicy()
    assert dict(recipe.libraries) == STORED["libraries"] and recipe.name == "deepmlf-default-v1"


def test_built_recipes_round_trip_through_json():
    for recipe in (
        build_recipe(),
        build_recipe(
            audio="egemaps",
            functionals=True,
            face="none",
            transcript="given",
            language="zh",
            task="translate",
            whisper_backend="faster-whisper",
            whisper_model="/models/ct2",
        ),
        build_recipe(audio="none", fps=2.5, max_faces=2, max_side=320),
    ):
        again = FeatureRecipe.from_dict(json.loads(json.dumps(recipe.to_dict())))
        assert again == recipe and again.to_dict() == recipe.to_dict()
    assert build_recipe(audio="egemaps", face="none").name == "custom-egemaps-none-v1"
    assert build_recipe(fps=5.0).name == "deepmlf-default-v1"


def test_the_recipe_is_frozen():
    recipe = build_recipe()
    with pytest.raises(dataclasses.FrozenInstanceError):
        recipe.name = "other"
    with pytest.raises(dataclasses.FrozenInstanceError):
        recipe.face.fps = 10.0
    assert hash(recipe) == hash(FeatureRecipe.from_dict(recipe.to_dict()))


# --------------------------------------------------------------------------- validation
def _with(path: str, value):
    d = _stored()
    *parents, last = path.split(".")
    node = d
    for p in parents:
        node = node[p]
    if value is _DELETE:
        del node[last]
    else:
        node[last] = value
    return d


_DELETE = object()


@pytest.mark.parametrize(
    "change, message",
    [
        (("format", 2), r"unsupported feature recipe \(format 2\).*re-extract the dataset"),
        (("audio", _DELETE), r"malformed feature recipe \(missing 'audio'\); re-extract"),
        (
            ("audio.extractor", "wav2vec"),
            r"unknown audio extractor 'wav2vec'; choose one of: librosa_sims, egemaps, compare, none",
        ),
        (("face.extractor", "openface"), r"unknown face extractor 'openface'; choose one of: mediapipe, pyfeat, none"),
        (("face.params.fps", 0), r"--fps must be in \(0, 60\]"),
        (("transcript.mode", "always"), r"unknown transcript mode 'always'; choose one of: auto, given, whisper, none"),
        (
            ("transcript.backend", "whisper.cpp"),
            r"unknown Whisper backend 'whisper.cpp'; choose one of: transformers, faster-whisper",
        ),
        (("transcript.task", "summarise"), r"Whisper task must be transcribe or translate, not 'summarise'"),
        (("transcript.language", "zh-CN!"), r"invalid --language 'zh-CN!'; use an ISO code such as zh or en"),
        (("transcript.model", ""), r"Whisper model must be a hub id or a model folder, not ''; check --whisper-model"),
        (
            ("audio.version", 99),
            r"the recipe's audio extractor librosa_sims v99 .* differs from what this deepmlf computes "
            r"\(v1 .*\); use the deepmlf version that made the dataset",
        ),
        (("face.params.static_image_mode", False), r"the recipe's face extractor mediapipe v1 .* differs"),
        (("libraries", None), r"malformed feature recipe \(.*\); re-extract the dataset"),
    ],
)
def test_a_bad_recipe_fails_with_one_line_naming_the_field_and_the_fix(change, message):
    with pytest.raises(ExtractionError, match=message) as info:
        FeatureRecipe.from_dict(_with(*change))
    assert "\n" not in str(info.value)


def test_not_a_recipe_at_all():
    with pytest.raises(ExtractionError, match=r"unsupported feature recipe \(format list\)"):
        FeatureRecipe.from_dict([])


def test_built_recipes_are_validated_on_construction():
    with pytest.raises(ExtractionError, match="functionals exist only for the openSMILE extractors"):
        build_recipe(functionals=True)
    with pytest.raises(ExtractionError, match="unknown transcript mode"):
        build_recipe(transcript="sometimes")
    with pytest.raises(ExtractionError, match="unknown face extractor"):
        FaceSpec("dlib")


# --------------------------------------------------------------------------- hashes
def test_the_feature_hash_is_stable():
    recipe = FeatureRecipe.from_dict(_stored())
    assert recipe.feature_hash == STORED_FEATURE_HASH
    assert build_recipe().feature_hash == STORED_FEATURE_HASH  # the default recipe, whatever is installed


def test_the_transcript_policy_name_and_libraries_leave_the_feature_hash_alone():
    recipe = build_recipe()
    same = [
        recipe.with_transcript(mode="none"),
        recipe.with_transcript(
            model="/models/other-whisper", backend="faster-whisper", language="en", task="translate"
        ),
        dataclasses.replace(recipe, libraries={"numpy": "0.1"}, name="mine"),
    ]
    for other in same:
        assert other.feature_hash == recipe.feature_hash
    assert recipe.with_transcript(mode="none").transcript.hash != recipe.transcript.hash
    changed = [
        build_recipe(fps=10.0),
        build_recipe(audio="egemaps"),
        build_recipe(face="none"),
        build_recipe(max_side=320),
    ]
    assert len({r.feature_hash for r in changed} | {recipe.feature_hash}) == len(changed) + 1


# --------------------------------------------------------------------------- transcript policy
def test_needs_whisper_follows_the_transcript_precedence(tmp_path):
    bare, captioned = tmp_path / "bare.mp4", tmp_path / "captioned.mp4"
    bare.touch()
    captioned.touch()
    (tmp_path / "captioned.srt").write_text("1\n00:00:00,000 --> 00:00:01,000\nhi\n")
    auto = build_recipe()
    assert auto.needs_whisper(bare) and not auto.needs_whisper(captioned)
    assert not auto.needs_whisper(bare, "label text") and auto.needs_whisper(bare, "   ")  # blank text is no text
    assert not auto.needs_whisper(None)  # a label row whose clip does not exist
    whisper = auto.with_transcript(mode="whisper")
    assert whisper.needs_whisper(captioned) and not whisper.needs_whisper(captioned, "label text")
    for mode in ("given", "none"):
        assert not auto.with_transcript(mode=mode).needs_whisper(bare)


def test_with_transcript_changes_only_the_text_settings():
    recipe = build_recipe(language="zh")
    local = recipe.with_transcript(model="/models/whisper", backend=None, language=None)  # None keeps the recipe's
    assert local.transcript.model == "/models/whisper" and local.transcript.language == "zh"
    assert local.transcript.backend == "transformers" and recipe.transcript.model == "openai/whisper-small"
    assert (local.audio, local.face, local.libraries, local.name) == (
        recipe.audio,
        recipe.face,
        recipe.libraries,
        recipe.name,
    )
    assert local.to_dict()["transcript"]["model"] == "/models/whisper"
    with pytest.raises(ExtractionError, match="unknown Whisper backend 'cpp'"):
        recipe.with_transcript(backend="cpp")
    with pytest.raises(TypeError, match="unknown transcript settings"):
        recipe.with_transcript(fps=10)


def test_modalities_drop_what_is_set_to_none():
    assert build_recipe().modalities == {"audio", "vision", "text"}
    assert build_recipe(face="none", transcript="none").modalities == {"audio"}
    assert build_recipe(audio="none").modalities == {"vision", "text"}


# --------------------------------------------------------------------------- resume
def test_a_new_transcript_policy_redoes_the_text_and_keeps_the_features(tmp_path):
    from extractors.batch import run_extract
    from extractors.synthetic import make_audio, write_media

    folder = tmp_path / "clips"
    for name, seconds in (("a", 0.5), ("b", 0.8)):
        write_media(folder / f"{name}.wav", None, audio=make_audio(seconds, "speech"))
        (folder / f"{name}.txt").write_text(f"clip {name} speaks")
    out = tmp_path / "feats"
    first = run_extract(folder, out, build_recipe(face="none", transcript="none"), allow_missing=True)
    assert first.count("done") == 2
    features = {p: p.stat().st_mtime_ns for p in (out / "features").glob("*.npz")}
    texts = {c["key"]: c["text"] for c in json.loads((out / "manifest.json").read_text())["clips"]}
    assert texts == {"a": "", "b": ""}

    second = run_extract(folder, out, build_recipe(face="none", transcript="given"))
    assert second.count("done") == 2 and not second.failed
    assert any("get a new transcript" in n for n in second.notes)
    assert {p: p.stat().st_mtime_ns for p in (out / "features").glob("*.npz")} == features  # not re-extracted
    manifest = json.loads((out / "manifest.json").read_text())
    assert {c["key"]: c["text"] for c in manifest["clips"]} == {"a": "clip a speaks", "b": "clip b speaks"}
    assert manifest["recipe"]["transcript"]["mode"] == "given"

    third = run_extract(folder, out, build_recipe(face="none", transcript="given"))
    assert third.count("skipped") == 2 and not any("new transcript" in n for n in third.notes)
    other_audio = run_extract(folder, out, build_recipe(audio="egemaps", face="none", transcript="given"))
    assert other_audio.count("done") == 2  # a feature change re-extracts
    assert len(json.loads((out / "manifest.json").read_text())["audio_features"]) == 25


# --------------------------------------------------------------------------- the CLI's imports
HEAVY = ("numpy", "torch", "av", "librosa", "transformers", "opensmile", "mediapipe", "cv2")


def _modules_after(statement: str) -> set[str]:
    """Top-level modules a fresh interpreter holds after `statement`, beyond what it starts with."""
    code = (
        "import sys; before = set(sys.modules); "
        + statement
        + "; print(' '.join(sorted({m.split('.')[0] for m in set(sys.modules) - before})))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)},
    )
    return set(done.stdout.split())


def test_the_choices_module_imports_only_the_standard_library():
    loaded = _modules_after("import extractors.choices")
    assert "extractors" in loaded
    assert loaded - {"extractors"} <= set(sys.stdlib_module_names), sorted(loaded - set(sys.stdlib_module_names))


def test_the_cli_starts_without_heavy_libraries():
    loaded = _modules_after("import deepmlf_cli.app")
    assert "typer" in loaded and not loaded & set(HEAVY), sorted(loaded & set(HEAVY))
