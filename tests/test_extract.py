"""extractors/ and `deepmlf extract` on media built offline by tests/media.py."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from extractors.errors import ExtractionError, MediaError
from models.data.format import save_extracted  # the dataset format's one writer

import media as tm

GIVEN = "given"  # transcript mode that never needs Whisper


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    d = tmp_path_factory.mktemp("media")
    return {
        "face": tm.make_face_clip(d / "face.mp4", 2.0, fps=25, audio="speech"),
        "face30_stereo": tm.make_face_clip(
            d / "face30.mp4", 1.0, fps=30, audio_rate=44100, channels=2, size=(180, 320)
        ),
        "noface": tm.make_no_face_clip(d / "noface.mp4", 1.0),
        "half": tm.make_half_face_clip(d / "half.mp4", 2.0),
        "cut_playable": tm.make_cut_playable_mp4(d / "cut.mp4"),
        **tm.make_bad_inputs(d / "bad"),
    }


@pytest.fixture(scope="module")
def recipe():
    from extractors.feature_recipe import build_recipe

    return build_recipe(transcript=GIVEN)


# --------------------------------------------------------------------------- decoding
def test_decode_any_rate_and_layout(clips):
    from extractors.media import load_audio, probe, sample_frames

    info = probe(clips["face30_stereo"])
    assert info.has_audio and info.has_video and info.channels == 2 and info.sample_rate == 44100
    audio = load_audio(clips["face30_stereo"], 16000)
    assert audio.ndim == 1 and audio.dtype == np.float32
    assert abs(len(audio) / 16000 - 1.0) < 0.2  # AAC adds a little priming
    frames, times = sample_frames(clips["face30_stereo"], 5.0)
    assert frames.shape == (5, 180, 320, 3)
    np.testing.assert_allclose(times, np.arange(5) / 5.0)
    frames, times = sample_frames(clips["face"], 5.0, start=0.5, end=1.5)
    np.testing.assert_allclose(times, [0.5, 0.7, 0.9, 1.1, 1.3])


# --------------------------------------------------------------------------- audio
def test_librosa_sims_recipe(clips):
    from extractors.audio import AudioExtractor

    feats = AudioExtractor("librosa_sims").extract(clips["face"])
    assert feats.values.shape[1] == 33 and feats.values.dtype == np.float32
    assert feats.names[:2] == ["zcr", "mfcc_0"] and feats.names[-1] == "chroma_11"
    assert abs(feats.rate_hz - 22050 / 512) < 1e-9
    np.testing.assert_allclose(np.diff(feats.timestamps), 512 / 22050)
    assert abs(len(feats) - 2.0 * 22050 / 512) < 8
    assert np.isfinite(feats.values).all()


def test_opensmile_llds_and_functionals(clips):
    from extractors.audio import AudioExtractor

    lld = AudioExtractor("egemaps").extract(clips["face"])
    assert lld.values.shape[1] == 25 and lld.rate_hz == 100.0
    np.testing.assert_allclose(lld.timestamps[:3], [0.0, 0.01, 0.02])
    func = AudioExtractor("egemaps", functionals=True).extract(clips["face"])
    assert func.values.shape == (1, 88)
    with pytest.raises(ExtractionError, match="functionals"):
        AudioExtractor("librosa_sims", functionals=True)
    with pytest.raises(ExtractionError, match="choose one of"):
        AudioExtractor("covarep")


# --------------------------------------------------------------------------- face
def test_mediapipe_face_rows_and_no_face_frames(clips):
    from extractors.face import FaceExtractor, mediapipe_feature_names

    ex = FaceExtractor("mediapipe", fps=5)
    names = mediapipe_feature_names()
    face = ex.extract(clips["face"])
    assert face.values.shape == (10, len(names)) == (10, 181)
    assert face.present.all() and np.isfinite(face.values).all()
    yaw, pitch, roll = face.values[:, :3].T
    assert np.all(np.abs(yaw) < 30) and np.all(np.abs(roll) < 30)  # a roughly frontal, upright face

    none = ex.extract(clips["noface"])
    assert len(none) == 5 and not none.present.any()
    assert np.all(none.values == 0)  # kept in time, zeros, face_present = 0

    half = ex.extract(clips["half"])
    assert len(half) == 10
    assert half.present[:4].all() and not half.present[6:].any()
    assert np.all(half.values[~half.present, names.index("face_present")] == 0)


def test_main_face_is_large_and_persistent():
    from extractors.face import select_main_face

    big = np.array([0, 0, 100, 100.0])
    small = np.array([200, 0, 240, 40.0])
    flash = np.array([0, 150, 150, 300.0])  # largest, but in one frame only
    boxes = [[small, big], [big + 2, small], [small, flash], [big + 4, small]]
    assert select_main_face(boxes) == [1, 0, None, 0]
    assert select_main_face([[], []]) == [None, None]


# --------------------------------------------------------------------------- pipeline and bad inputs
def test_extract_clip_tracks_and_window(clips, recipe):
    from extractors.pipeline import extract_clip

    clip = extract_clip(clips["face"], recipe, transcript="hello world")
    assert clip.audio.shape[1] == 33 and clip.vision.shape == (10, 181)
    assert clip.text == "hello world" and clip.transcript.source == "given"
    win = extract_clip(clips["face"], recipe, start=1.0, end=2.0)
    np.testing.assert_allclose(win.vision_times, [0, 0.2, 0.4, 0.6, 0.8])
    np.testing.assert_allclose(win.vision, clip.vision[5:], atol=1e-5)  # static detection: same rows
    assert abs(win.audio.shape[0] - 22050 / 512) < 3


@pytest.mark.parametrize(
    "name, message",
    [
        ("empty", "empty file"),
        ("text", "not a media file"),
        ("truncated", "truncated"),
        ("cut_playable", "truncated: .* stops at"),
    ],
)
def test_unreadable_inputs_raise_one_clear_error(clips, recipe, name, message):
    from extractors.pipeline import extract_clip

    with pytest.raises(MediaError, match=message) as err:
        extract_clip(clips[name], recipe)
    assert str(clips[name]) in str(err.value) and "\n" not in str(err.value)


def test_missing_tracks_and_tiny_clips_are_explicit(clips, recipe):
    from extractors.pipeline import extract_clip

    audio_only = extract_clip(clips["audio_only"], recipe)
    assert audio_only.vision.shape == (0, 181) and audio_only.audio.shape[0] > 0
    assert audio_only.info["has_video"] is False
    video_only = extract_clip(clips["video_only"], recipe)
    assert video_only.audio.shape == (0, 33) and video_only.vision.shape == (10, 181)
    one = extract_clip(clips["one_frame"], recipe)
    assert one.vision.shape == (1, 181) and one.audio.shape[0] >= 1
    silent = extract_clip(clips["silent"], recipe)
    assert np.isfinite(silent.audio).all() and silent.audio.shape[0] > 0


def test_missing_modalities_are_named(clips, recipe):
    from extractors.errors import MissingModalityError
    from extractors.pipeline import extract_clip, missing_modalities, require_modalities

    def missing(name, text="some words"):
        return missing_modalities(extract_clip(clips[name], recipe).info, text)

    assert missing("face") == [] and missing("half") == [] and missing("one_frame") == []
    assert missing("audio_only") == ["no video track"]
    assert missing("video_only") == ["no audio track"]
    assert missing("silent") == ["silent audio track"]
    assert missing("noface") == ["no face in any frame"]
    assert missing("face", text="  ") == ["empty transcript"] and missing("face", text=None) == []
    info = extract_clip(clips["silent"], recipe).info
    with pytest.raises(
        MissingModalityError, match=r"silent\.mp4: silent audio track, empty transcript; .*--allow-missing to predict"
    ):
        require_modalities(clips["silent"], info, "", "predict")


def test_sidecar_and_given_text_precedence(tmp_path):
    from extractors.transcript import get_transcript, parse_subtitles, read_sidecar

    clip = tm.make_audio_only(tmp_path / "c.wav", 0.5)
    (tmp_path / "c.srt").write_text(
        "1\n00:00:00,000 --> 00:00:01,500\nhello <i>there</i>\n\n2\n00:00:01,500 --> 00:00:03,000\nworld\n"
    )
    t = get_transcript(clip, "auto")
    assert t.text == "hello there world" and t.source == "sidecar:c.srt"
    assert [(s.start, s.end) for s in t.segments] == [(0.0, 1.5), (1.5, 3.0)]
    assert get_transcript(clip, "auto", given="label text").source == "given"
    assert get_transcript(clip, "none", given="x").text == ""
    vtt = parse_subtitles("WEBVTT\n\n00:01.000 --> 00:02.500 align:start\nhi\n")
    assert vtt[0].start == 1.0 and vtt[0].end == 2.5 and vtt[0].text == "hi"
    (tmp_path / "d.txt").write_text("  plain\n text ")
    assert read_sidecar(tmp_path / "d.txt").text == "plain text"


def test_recipe_round_trip_and_validation(recipe):
    from extractors.feature_recipe import FeatureRecipe

    again = FeatureRecipe.from_dict(json.loads(json.dumps(recipe.to_dict())))
    assert again == recipe and again.feature_hash == recipe.feature_hash
    assert recipe.version_differences() == []
    assert recipe.audio.extractor == "librosa_sims" and recipe.face.fps == 5.0
    broken = recipe.to_dict()
    broken["audio"]["params"]["hop_length"] = 256
    broken["audio"]["version"] = 99
    with pytest.raises(ExtractionError, match="differs"):
        FeatureRecipe.from_dict(broken)


# --------------------------------------------------------------------------- datasets and the command
def _mmsa_corpus(root: Path, n_per_split=(3, 1, 1), scale=1.0) -> Path:
    return tm.make_mmsa_corpus(root, n_per_split, scale)


def _check_dataset_spec(out: Path, n: dict[str, int], scheme: str) -> None:
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["format"] == "deepmlf-dataset" and manifest["version"] == 1
    assert manifest["splits"] == n and manifest["scheme"] == scheme
    assert len(manifest["audio_features"]) == 33 and len(manifest["vision_features"]) == 181
    assert manifest["vision_rate_hz"] == 5.0 and abs(manifest["audio_rate_hz"] - 43.066) < 0.01
    assert manifest["recipe"]["audio"]["extractor"] == "librosa_sims"
    for split, count in n.items():
        with np.load(out / f"{split}.npz", allow_pickle=False) as z:
            assert z["audio"].dtype == np.float32 and z["audio"].shape[0] == count and z["audio"].shape[2] == 33
            assert z["vision"].dtype == np.float32 and z["vision"].shape[2] == 181
            assert z["audio_lengths"].dtype == np.int64 and z["vision_lengths"].dtype == np.int64
            assert z["labels"].dtype == np.float32 and z["labels"].shape == (count,)
            assert z["ids"].dtype.kind == "U" and z["texts"].dtype.kind == "U"
            assert all("$_$" in i for i in z["ids"])
            for k, length in enumerate(z["audio_lengths"]):
                assert np.all(z["audio"][k, length:] == 0)  # zero-padded at the end
            assert set(z.files) >= {"labels_T", "labels_A", "labels_V"}


def test_extract_command_builds_a_dataset_the_loader_reads(tmp_path):
    from typer.testing import CliRunner

    from deepmlf_cli.app import app

    root = _mmsa_corpus(tmp_path / "SIMS")
    out = tmp_path / "ds"
    result = CliRunner().invoke(app, ["extract", str(root), "--out", str(out), "--format", "mmsa", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["done"] == 5 and summary["failed"] == 0 and summary["kind"] == "dataset"
    _check_dataset_spec(out, {"train": 3, "valid": 1, "test": 1}, "sims")
    with np.load(out / "train.npz", allow_pickle=False) as z:
        assert list(z["texts"]) == ["clip number 1", "clip number 2", "clip number 3"]
    assert (out / "ds.pkl").is_file() and not (out / "errors.tsv").exists()
    from models.data.load import load_dataset

    ds = load_dataset(out)
    assert ds.scheme == "sims" and len(ds.splits["train"]) == 3 and ds.d_audio == 33 and ds.d_vision == 181
    mmsa = load_dataset(out / "ds.pkl")
    np.testing.assert_allclose(mmsa.splits["test"].labels, ds.splits["test"].labels)


def test_resume_sharding_and_scheme(tmp_path, recipe):
    from extractors.batch import run_extract
    from extractors.dataset import clip_filename

    root = _mmsa_corpus(tmp_path / "MOSI", (3, 2, 2), scale=3.0)
    out = tmp_path / "out"
    s1 = run_extract(root, out, recipe, shard=(1, 2))
    s2 = run_extract(root, out, recipe, shard=(2, 2))
    assert s1.kind == "shard" and not (out / "manifest.json").exists()
    assert s1.count("done") + s2.count("done") == 7 and s1.count("done") and s2.count("done")
    assert {r.key for r in s1.results}.isdisjoint({r.key for r in s2.results})
    full = run_extract(root, out, recipe, write_dataset=save_extracted)
    assert full.count("skipped") == 7 and full.count("done") == 0
    _check_dataset_spec(out, {"train": 3, "valid": 2, "test": 2}, "mosi")
    # A crash mid-clip leaves no .json: that clip alone is redone.
    victim = full.results[0].key
    (out / "features" / f"{clip_filename(victim)}.json").unlink()
    again = run_extract(root, out, recipe, scheme="sims", write_dataset=save_extracted)
    assert again.count("done") == 1 and again.count("skipped") == 6
    assert json.loads((out / "manifest.json").read_text())["scheme"] == "sims"
    assert not list(out.rglob("*.tmp"))


def test_only_the_recipes_modalities_are_required(clips):
    from extractors.feature_recipe import build_recipe
    from extractors.pipeline import extract_clip, missing_modalities

    assert build_recipe(transcript=GIVEN).modalities == {"audio", "vision", "text"}
    no_face = build_recipe(face="none", transcript="none")
    assert no_face.modalities == {"audio"}
    clip = extract_clip(clips["noface"], no_face)
    assert missing_modalities(clip.info, clip.text, no_face.modalities) == []
    no_audio = build_recipe(audio="none", transcript=GIVEN)
    clip = extract_clip(clips["silent"], no_audio, transcript="words")
    assert missing_modalities(clip.info, clip.text, no_audio.modalities) == []


@pytest.mark.slow
def test_bad_clips_never_stop_the_batch(tmp_path, clips):
    from typer.testing import CliRunner

    from deepmlf_cli.app import app

    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("empty", "text", "truncated", "audio_only", "video_only", "one_frame", "silent"):
        os.link(clips[name], folder / clips[name].name)
    (folder / "one_frame.txt").write_text("a sidecar transcript")
    (folder / "silent.txt").write_text("a sidecar transcript")
    out = tmp_path / "out"
    args = ["extract", str(folder), "--out", str(out), "-q", "--transcript", GIVEN, "--workers", "2"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    errors = (out / "errors.tsv").read_text().splitlines()[1:]
    reasons = dict(line.split("\t")[0::2] for line in errors)
    assert set(reasons) == {"empty", "text", "truncated", "audio_only", "video_only", "silent"}
    assert (
        "empty file" in reasons["empty"]
        and "not a media file" in reasons["text"]
        and "truncated" in reasons["truncated"]
    )
    assert (
        reasons["audio_only"].startswith("no video track, empty transcript;")
        and "--allow-missing" in reasons["audio_only"]
    )
    assert reasons["video_only"].startswith("no audio track, empty transcript;")
    assert reasons["silent"].startswith("silent audio track;")
    produced = sorted(p.stem for p in (out / "features").glob("*.npz"))
    assert produced == ["one_frame"]  # no partial output for failures
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["format"] == "deepmlf-features" and len(manifest["clips"]) == 1

    # --allow-missing keeps the readable clips that lack a modality (the resumed run adds only them)
    result = CliRunner().invoke(app, [*args, "--allow-missing"])
    assert result.exit_code == 1
    reasons = dict(line.split("\t")[0::2] for line in (out / "errors.tsv").read_text().splitlines()[1:])
    assert set(reasons) == {"empty", "text", "truncated"}
    produced = sorted(p.stem for p in (out / "features").glob("*.npz"))
    assert produced == ["audio_only", "one_frame", "silent", "video_only"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert len(manifest["clips"]) == 4 and {f["key"] for f in manifest["failed"]} == {"empty", "text", "truncated"}
    with np.load(out / "features" / "audio_only.npz", allow_pickle=False) as z:
        assert z["vision"].shape == (0, 181) and z["audio"].shape[1] == 33


def test_label_paths_cannot_escape_the_dataset(tmp_path):
    from extractors.batch import plan_jobs

    (tmp_path / "Raw").mkdir()
    (tmp_path / "label.csv").write_text("video_id,clip_id,text,label,mode\n../../etc,passwd,x,0.1,train\n")
    with pytest.raises(ExtractionError, match="not a plain name"):
        plan_jobs(tmp_path)
    (tmp_path / "label.csv").write_text("video_id,clip_id,text,label,mode\nv,c,x,0.1,holdout\n")
    with pytest.raises(ExtractionError, match="not train, valid or test"):
        plan_jobs(tmp_path)


def test_shard_option_parsing():
    from extractors.inputs import in_shard, parse_shard

    assert parse_shard("2/4") == (2, 4) and parse_shard(None) is None
    for bad in ("0/4", "5/4", "a/b", "3"):
        with pytest.raises(ExtractionError, match="K/N"):
            parse_shard(bad)
    keys = [f"clip{i}" for i in range(100)]
    parts = [[k for k in keys if in_shard(k, (s, 3))] for s in (1, 2, 3)]
    assert sorted(sum(parts, [])) == sorted(keys)


@pytest.mark.slow
def test_extracted_dataset_trains(tmp_path, tiny_gpt2):
    """The round trip the issue asks for: extract → `deepmlf train` on the result (tiny LM, 1 epoch)."""
    from typer.testing import CliRunner

    from deepmlf_cli.app import app

    root = _mmsa_corpus(tmp_path / "SIMS", (4, 2, 2))
    out = tmp_path / "ds"
    runner = CliRunner()
    assert runner.invoke(app, ["extract", str(root), "--out", str(out), "-q"]).exit_code == 0
    res = runner.invoke(app, ["train", "-d", str(out), "--preset", "sims", "--lm", str(tiny_gpt2), "--mm-layers", "1..3", "--n-fusion", "2",
                              "--epochs", "1", "--batch-size", "2", "--grad-accum", "1", "--out", str(tmp_path / "run"), "--json"])  # fmt: skip
    assert res.exit_code == 0, res.output
    # The run read the extracted features: the checkpoint's sizes are the dataset's (not the sims
    # preset's 33/709 MMSA sizes), and the reported test scores are those of the saved checkpoint.
    import math

    from models.checkpoint import read_checkpoint
    from models.data.load import load_dataset
    from models.evaluation.evaluate import evaluate_checkpoint

    results = json.loads(res.output)
    data = load_dataset(out)
    train = data.splits["train"]
    assert (len(train), len(data.splits["test"])) == (4, 2)
    best = tmp_path / "run" / "seed_0" / "best"
    config = read_checkpoint(best).config
    assert (config.d_audio, config.d_vision) == (train.audio.shape[-1], train.vision.shape[-1])
    assert (config.d_audio, config.d_vision) != (33, 709)
    test = results["seeds"]["0"]
    assert math.isfinite(test["MAE"])
    rescored, _ = evaluate_checkpoint(best, data, "test", lm=str(tiny_gpt2))
    assert rescored["MAE"] == pytest.approx(test["MAE"], abs=1e-4)


# --------------------------------------------------------------------------- issue 11
def test_clip_filenames_are_distinct_for_distinct_keys():
    from extractors.dataset import clip_filename

    keys = ["a b", "a_b", "a/b", "a__b", "a\\b", ".a", "a", "", "_", "x~y", "x_y", "é", "_" * 300, "_" * 301]
    names = [clip_filename(k) for k in keys]
    assert len(set(names)) == len(keys)
    assert clip_filename("vid0$_$0001") == "vid0$_$0001" and clip_filename("a_b") == "a_b"  # safe keys unchanged
    assert all("/" not in n and "\\" not in n and not n.startswith(".") and len(n.encode()) < 230 for n in names)


def test_ids_differing_in_unsafe_characters_keep_their_own_features(tmp_path):
    from extractors.batch import run_extract
    from extractors.feature_recipe import build_recipe

    recipe = build_recipe(face="none", transcript=GIVEN)
    root = tmp_path / "corpus"
    tm.make_audio_only(root / "Raw" / "v" / "a b.wav", 0.5)
    tm.make_audio_only(root / "Raw" / "v" / "a_b.wav", 1.5)
    (root / "label.csv").write_text("video_id,clip_id,text,label,mode\nv,a b,short,0.5,train\nv,a_b,long,-0.5,train\n")
    out = tmp_path / "ds"
    summary = run_extract(root, out, recipe, write_dataset=save_extracted)
    assert summary.count("done") == 2 and len(list((out / "features").glob("*.npz"))) == 2
    with np.load(out / "train.npz", allow_pickle=False) as z:
        rows = {
            str(i): (float(lab), int(n), str(t))
            for i, lab, n, t in zip(z["ids"], z["labels"], z["audio_lengths"], z["texts"])
        }
    assert rows["v$_$a b"][0] == 0.5 and rows["v$_$a b"][2] == "short"
    assert rows["v$_$a_b"][0] == -0.5 and rows["v$_$a_b"][2] == "long"
    assert rows["v$_$a_b"][1] > 2 * rows["v$_$a b"][1]  # each label sits with its own clip's features

    folder = tmp_path / "folder"
    tm.make_audio_only(folder / "y z.wav", 0.5)
    tm.make_audio_only(folder / "y_z.wav", 1.5)
    (folder / "y z.txt").write_text("one")
    (folder / "y_z.txt").write_text("two")
    summary = run_extract(folder, tmp_path / "feats", recipe)
    manifest = json.loads((tmp_path / "feats" / "manifest.json").read_text())
    files = {c["key"]: c["file"] for c in manifest["clips"]}
    assert set(files) == {"y z", "y_z"} and len(set(files.values())) == 2
    assert {c["key"]: c["text"] for c in manifest["clips"]} == {"y z": "one", "y_z": "two"}


def test_mmsa_pickle_records_the_scheme(tmp_path):
    import pickle

    from extractors.batch import run_extract
    from extractors.feature_recipe import build_recipe

    root = _mmsa_corpus(tmp_path / "SIMS", (1, 1, 1))  # labels in [-1, 1]: would be guessed as sims
    recipe = build_recipe(face="none", transcript=GIVEN)
    run_extract(root, tmp_path / "ds", recipe, mmsa=True, scheme="mosi", write_dataset=save_extracted)
    with open(tmp_path / "ds" / "ds.pkl", "rb") as fh:
        data = pickle.load(fh)
    assert data["scheme"] == "mosi" and {"train", "valid", "test"} <= set(data)
    run_extract(root, tmp_path / "ds", recipe, mmsa=True, write_dataset=save_extracted)
    with open(tmp_path / "ds" / "ds.pkl", "rb") as fh:
        assert pickle.load(fh)["scheme"] == "sims"


def test_label_file_errors_are_all_reported_at_once(tmp_path):
    from typer.testing import CliRunner

    from deepmlf_cli.app import app
    from extractors.batch import plan_jobs
    from extractors.inputs import LabelFileError

    (tmp_path / "Raw").mkdir()
    (tmp_path / "label.csv").write_text(
        "video_id,clip_id,text,label,mode\n"
        "v,1,fine,0.1,train\n"   # row 2: good
        "v,2,x,0.1,holdout\n"    # row 3: mode
        "v,3,x,abc,train\n"      # row 4: label not a number
        "v,4,x,,test\n"          # row 5: empty label
        "v,1,x,0.2,valid\n"      # row 6: duplicate of row 2
        "../x,5,x,0.1,train\n"   # row 7: id escapes
        "v,6,x,inf,dev\n"        # row 8: not finite
    )  # fmt: skip
    with pytest.raises(LabelFileError) as err:
        plan_jobs(tmp_path)
    assert [(row, col) for row, col, _ in err.value.problems] == [
        (3, "mode"),
        (4, "label"),
        (5, "label"),
        (6, "clip_id"),
        (7, "video_id"),
        (8, "label"),
    ]
    message = str(err.value)
    assert "6 bad rows" in message and "row 6, clip_id: clip v$_$1 is listed twice (also row 2)" in message
    assert "row 3, mode: 'holdout' is not train, valid or test" in message
    result = CliRunner().invoke(app, ["extract", str(tmp_path), "--out", str(tmp_path / "out"), "-q"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert all(f"row {r}," in result.output for r in (3, 4, 5, 6, 7, 8)) and "row 2," not in result.output


def test_empty_split_is_named_in_the_summary(tmp_path):
    from typer.testing import CliRunner

    from deepmlf_cli.app import app

    root = _mmsa_corpus(tmp_path / "c", (2, 1, 0))
    args = ["extract", str(root), "--out", str(tmp_path / "ds"), "--face", "none", "--transcript", GIVEN]
    result = CliRunner().invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["splits"] == {"train": 2, "valid": 1, "test": 0} and summary["empty_splits"] == ["test"]
    assert any("test split is empty" in n for n in summary["notes"])
    result = CliRunner().invoke(app, [*args, "-q"])
    assert result.exit_code == 0 and "the test split is empty (there will be no test metrics)" in result.output


def test_rows_without_text_fail_alone_when_whisper_is_missing(tmp_path, monkeypatch):
    from extractors.batch import run_extract
    from extractors.feature_recipe import build_recipe

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))  # the default Whisper is not cached
    root = _mmsa_corpus(tmp_path / "c", (2, 1, 1))
    lines = (root / "label.csv").read_text().splitlines()
    lines[3] = lines[3].replace("clip number 3", "")  # row 4: an empty text cell
    (root / "label.csv").write_text("\n".join(lines) + "\n")
    recipe = build_recipe(face="none")  # transcript auto: label text > sidecar > Whisper
    summary = run_extract(root, tmp_path / "ds", recipe, write_dataset=save_extracted)
    assert summary.count("done") == 3 and [r.key for r in summary.failed] == ["vid1$_$0003"]
    reason = summary.failed[0].reason
    assert "empty text in row 4" in reason and "not cached locally" in reason
    assert any(n.startswith("row 4 of label.csv has no text and needs Whisper") for n in summary.notes)
    assert summary.manifest["splits"] == {"train": 2, "valid": 0, "test": 1} and summary.empty_splits == ["valid"]

    for i in range(1, len(lines)):  # every row without text: nothing to extract, one line at once
        lines[i] = lines[i].replace(f"clip number {i}", "")
    (root / "label.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(
        ExtractionError, match=r"rows 2, 3, 4, 5 of label.csv have no text and need Whisper: .*not cached"
    ):
        run_extract(root, tmp_path / "ds2", recipe, write_dataset=save_extracted)
