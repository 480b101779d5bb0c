"""Others' media (issue 19): normal files made by ordinary tools are read, caches follow what changed.

Every clip is built here with PyAV the way ffmpeg or an editor writes it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from models.data.format import save_extracted

import media as tm

GIVEN = "given"  # transcript mode that never needs Whisper


@pytest.fixture(scope="module")
def recipe():
    from extractors.feature_recipe import build_recipe

    return build_recipe(transcript=GIVEN)


# --------------------------------------------------------------------------- item 1: tracks of different lengths
@pytest.mark.parametrize("suffix", [".mp4", ".mkv", ".mov"])
def test_a_shorter_audio_track_is_a_note_not_truncation(tmp_path, recipe, suffix):
    from extractors.media import load_audio, probe, sample_frames
    from extractors.pipeline import extract_clip

    path = tm.make_short_audio_clip(tmp_path / f"shortest{suffix}", seconds=4.0, audio_seconds=2.0, fps=10)
    info = probe(path)
    assert info.duration == pytest.approx(4.0, abs=0.1)
    assert info.audio_duration == pytest.approx(2.0, abs=0.15) and info.video_duration == pytest.approx(4.0, abs=0.1)
    assert len(load_audio(path)) / 16000 == pytest.approx(2.0, abs=0.1)  # the whole audio track, no error
    _, times = sample_frames(path, 5.0)
    assert times[-1] == pytest.approx(3.8)
    clip = extract_clip(path, recipe, transcript="hello")
    assert clip.info["duration"] == pytest.approx(4.0, abs=0.1)
    (note,) = clip.info["notes"]
    assert note.startswith("the audio track ends at 2.") and "before the clip's end" in note


def test_a_cut_file_is_still_truncated_against_its_own_track_length(tmp_path):
    from extractors.errors import MediaError
    from extractors.media import load_audio

    path = tm.make_cut_playable_mp4(tmp_path / "cut.mp4")
    with pytest.raises(MediaError, match=r"truncated: audio stops at .* of a declared 4\.0"):
        load_audio(path)


def test_extract_records_the_shorter_track(tmp_path, recipe):
    from extractors.batch import run_extract

    folder = tmp_path / "in"
    tm.make_short_audio_clip(folder / "a.mp4", seconds=3.0, audio_seconds=1.5, fps=10)
    tm.make_face_clip(folder / "b.mp4", 1.0, fps=10, audio="speech")
    summary = run_extract(folder, tmp_path / "out", recipe, allow_missing=True)
    assert summary.count("done") == 2 and not summary.failed
    meta = json.loads((tmp_path / "out" / "features" / "a.json").read_text())
    assert meta["notes"] and "audio track ends" in meta["notes"][0]
    assert any("clip a: the audio track ends" in n for n in summary.notes)


# --------------------------------------------------------------------------- item 8: caches follow the label text and the file
def _set_text(label_csv: Path, row: int, old: str, new: str) -> None:
    lines = label_csv.read_text().splitlines()
    assert old in lines[row - 1]
    lines[row - 1] = lines[row - 1].replace(old, new)
    label_csv.write_text("\n".join(lines) + "\n")


def test_rerun_redoes_a_fixed_transcript_and_a_replaced_file_only(tmp_path, recipe):
    import os

    from extractors.batch import run_extract

    root = tm.make_mmsa_corpus(tmp_path / "c", (2, 1, 1), seconds=0.4)
    out = tmp_path / "ds"
    first = run_extract(root, out, recipe, write_dataset=save_extracted)
    assert first.count("done") == 4
    feats = out / "features"
    audio_before = np.load(feats / "vid1$_$0003.npz")["audio"]

    _set_text(root / "label.csv", 4, "clip number 3", "the fixed transcript")  # row 4 is clip vid1/0003
    second = run_extract(root, out, recipe, write_dataset=save_extracted)
    assert second.count("skipped") == 3 and second.count("done") == 1
    meta = json.loads((feats / "vid1$_$0003.json").read_text())
    assert meta["text"] == "the fixed transcript" and meta["label_text"] == "the fixed transcript"
    np.testing.assert_array_equal(np.load(feats / "vid1$_$0003.npz")["audio"], audio_before)  # text only
    assert any("get their new text (the label file's text changed)" in n for n in second.notes)
    with np.load(out / "valid.npz") as npz:  # clip 3 is the valid one
        assert "the fixed transcript" in list(npz["texts"])

    clip = root / "Raw" / "vid0" / "0002.mp4"  # replaced by another recording under the same name
    tm.make_no_face_clip(clip, 1.5)
    third = run_extract(root, out, recipe, write_dataset=save_extracted, allow_missing=True)
    assert [r.key for r in third.results if r.status == "done"] == ["vid0$_$0002"] and third.count("skipped") == 3
    assert json.loads((feats / "vid0$_$0002.json").read_text())["frames_with_face"] == 0
    assert any("row 3 extracted again: the media file changed" in n for n in third.notes)

    st = clip.stat()  # touched (or copied without -p): same bytes, so nothing is redone
    os.utime(clip, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    fourth = run_extract(root, out, recipe, write_dataset=save_extracted, allow_missing=True)
    assert fourth.count("skipped") == 4


# --------------------------------------------------------------------------- item 17: the Whisper note
def test_whisper_note_lists_only_rows_really_transcribed(tmp_path):
    from extractors.batch import run_extract
    from extractors.feature_recipe import build_recipe

    from tiny_whisper import build_tiny_whisper

    whisper = build_tiny_whisper(tmp_path / "whisper")
    root = tm.make_mmsa_corpus(tmp_path / "c", (2, 1, 1), seconds=0.4)
    tm.make_silent_clip(root / "Raw" / "vid1" / "0001.mp4", 0.6)  # row 2: silence, nothing to transcribe
    tm.make_text_as_mp4(root / "Raw" / "vid1" / "0003.mp4")  # row 4: fails (not media)
    for row, i in ((2, 1), (3, 2), (4, 3)):
        _set_text(root / "label.csv", row, f"clip number {i}", "")
    recipe = build_recipe(face="none", whisper_model=str(whisper))
    summary = run_extract(root, tmp_path / "ds", recipe, write_dataset=save_extracted, allow_missing=True)
    by_key = {r.key: r for r in summary.results}
    assert by_key["vid1$_$0001"].text_source == "silence" and by_key["vid1$_$0003"].status == "failed"
    said = [n for n in summary.notes if "transcribed with Whisper" in n]
    if by_key["vid0$_$0002"].text_chars:  # the random tiny Whisper may say nothing even on speech
        assert said == [f"row 3 of label.csv has no text: transcribed with Whisper {whisper}"]
    else:
        assert said == []


# --------------------------------------------------------------------------- item 4: one extension list, any case
VIDEO_SUFFIXES = (".MP4", ".flv", ".m4v", ".mpg", ".ts", ".webm", ".Mov")


def test_label_mode_finds_every_video_extension_in_any_case(tmp_path):
    from extractors.batch import plan_jobs

    root = tmp_path / "c"
    rows = ["video_id,clip_id,text,label,mode"]
    for i, suffix in enumerate(VIDEO_SUFFIXES):
        tm.make_face_clip(root / "Raw" / "v1" / f"E{i}{suffix}", 0.4, fps=25, audio="speech")
        rows.append(f"v1,E{i},clip {i},0.5,train")
    tm.make_audio_only(root / "Raw" / "v1" / "E0.wav", 0.4)  # beside E0.MP4: the video wins
    (root / "label.csv").write_text("\n".join(rows) + "\n")
    jobs = plan_jobs(root)
    assert [j.path.name if j.path else j.problem for j in jobs] == [f"E{i}{s}" for i, s in enumerate(VIDEO_SUFFIXES)]
    folder_mode = plan_jobs(root / "Raw")
    assert {j.path.name for j in folder_mode} == {f"E{i}{s}" for i, s in enumerate(VIDEO_SUFFIXES)} | {"E0.wav"}


# --------------------------------------------------------------------------- item 12: labels beyond the scheme's range
def test_extract_refuses_labels_outside_the_schemes_range(tmp_path):
    from typer.testing import CliRunner

    from deepmlf_cli.app import app

    root = tm.make_mmsa_corpus(tmp_path / "c", (2, 1, 1), seconds=0.4)
    lines = (root / "label.csv").read_text().splitlines()
    lines[1] = "vid1,0001,clip number 1,5.0,5.0,0.2,-0.4,Neutral,train"
    lines[2] = "vid0,0002,clip number 2,-4.5,-0.4,0.2,-0.4,Neutral,train"
    (root / "label.csv").write_text("\n".join(lines) + "\n")
    runner = CliRunner()
    result = runner.invoke(app, ["extract", str(root), "--out", str(tmp_path / "ds"), "--face", "none", "-q"])
    assert result.exit_code != 0 and not (tmp_path / "ds" / "manifest.json").exists()
    assert "row 2, label: 5 is outside the label range [-3, 3]" in result.output
    assert "row 2, label_T: 5 is outside" in result.output and "row 3, label: -4.5 is outside" in result.output

    lines[1], lines[2] = "vid1,0001,clip number 1,0.8,0.8,0.2,-0.4,Neutral,train", "vid0,0002,x,2.0,0.2,0.2,0.2,N,train"
    (root / "label.csv").write_text("\n".join(lines) + "\n")
    result = runner.invoke(
        app, ["extract", str(root), "--out", str(tmp_path / "ds"), "--face", "none", "-q", "--scheme", "sims"]
    )
    assert result.exit_code != 0 and "row 3, label: 2 is outside the label range [-1, 1]" in result.output


def test_train_refuses_a_dataset_whose_labels_are_outside_its_scheme(tmp_path):
    from dataclasses import replace

    from models.data.format import save_dataset
    from models.data.load import load_dataset
    from models.data.sample import make_sample_dataset
    from models.data.types import with_scheme
    from models.errors import DatasetError
    from models.schemes import Scheme

    data = make_sample_dataset()
    data.splits["valid"].labels[1] = 30.0
    save_dataset(replace(data, scheme=Scheme.MOSI), tmp_path / "ds")
    with pytest.raises(DatasetError, match=r"\[valid\]: 1 label\(s\) outside the mosi range \[-3, 3\], e.g. 30 "):
        load_dataset(tmp_path / "ds")
    data.splits["valid"].labels[1] = 2.5  # fine for mosi; not for --scheme sims on a guessed scheme
    with pytest.raises(DatasetError, match=r"outside the sims range \[-1, 1\], e.g. 2.5"):
        with_scheme(replace(data, scheme=Scheme.MOSI, scheme_guessed=True), "sims")


# --------------------------------------------------------------------------- item 2: cover art is not video
@pytest.mark.parametrize("suffix", [".mp3", ".mp4"])
def test_cover_art_is_not_video(tmp_path, suffix):
    import av

    from extractors.batch import run_extract
    from extractors.feature_recipe import build_recipe
    from extractors.media import probe, sample_frames

    path = tm.make_cover_art_audio(tmp_path / "in" / f"song{suffix}", 1.5)
    with av.open(str(path)) as container:  # the file does hold a (still) video stream
        assert len(container.streams.video) == 1
    info = probe(path)
    assert info.has_audio and not info.has_video
    frames, _ = sample_frames(path, 5.0)
    assert len(frames) == 0
    summary = run_extract(tmp_path / "in", tmp_path / "out", build_recipe(transcript=GIVEN), allow_missing=True)
    assert summary.count("done") == 1, summary.failed
    (result,) = summary.results
    assert result.vision_frames == 0 and result.audio_frames > 0


def test_a_modality_the_recipe_does_not_read_is_never_decoded(tmp_path, monkeypatch):
    import extractors.pipeline
    from extractors.feature_recipe import build_recipe
    from extractors.pipeline import extract_clip

    path = tm.make_face_clip(tmp_path / "a.mp4", 0.5, fps=10, audio="speech")

    def refuse(*args, **kwargs):
        raise AssertionError("decoded a track the recipe does not read")

    monkeypatch.setattr(extractors.pipeline, "load_audio", refuse)
    clip = extract_clip(path, build_recipe(audio="none", transcript=GIVEN), transcript="hi")
    assert clip.audio.shape[0] == 0 and clip.vision.shape[0] > 0
    monkeypatch.undo()
    monkeypatch.setattr("extractors.face.sample_frames", refuse)
    clip = extract_clip(path, build_recipe(face="none", transcript=GIVEN), transcript="hi")
    assert clip.vision.shape[0] == 0 and clip.audio.shape[0] > 0


# --------------------------------------------------------------------------- item 15: label files from spreadsheets
@pytest.mark.parametrize(("encoding", "sep"), [("utf-16", ","), ("utf-8", ";"), ("utf-16", "\t"), ("utf-8-sig", ";")])
def test_label_file_in_utf16_or_with_semicolons_is_read(tmp_path, encoding, sep):
    from extractors.inputs import read_labels

    root = tm.make_mmsa_corpus(tmp_path / "c", (2, 1, 1), seconds=0.4)
    reference = read_labels(root / "label.csv")
    rows = [line.split(",") for line in (root / "label.csv").read_text().splitlines()]
    rows[1][2] = "déjà vu, encore"  # a text holding the other delimiter, quoted as spreadsheets quote it
    text = "\n".join(sep.join(f'"{c}"' if "," in c or ";" in c else c for c in r) for r in rows) + "\n"
    (root / "label.csv").write_bytes(text.encode(encoding))  # Python's utf-16 writes the BOM, as Excel does
    jobs = read_labels(root / "label.csv")
    assert [(j.key, j.labels, j.split, j.path) for j in jobs] == [(j.key, j.labels, j.split, j.path) for j in reference]
    assert jobs[0].text == "déjà vu, encore"


def test_label_file_in_another_encoding_says_so(tmp_path):
    from extractors.errors import ExtractionError
    from extractors.inputs import read_labels

    path = tmp_path / "label.csv"
    path.write_bytes("video_id,clip_id,text,label,mode\nv,c,déjà,0.5,train\n".encode("latin-1"))
    with pytest.raises(
        ExtractionError, match=r"label.csv: not UTF-8 text .*save it as CSV UTF-8 \(or UTF-16 with a byte-order mark\)"
    ):
        read_labels(path)


# --------------------------------------------------------------------------- item 3: rotation
def test_a_sideways_stored_clip_is_read_upright(tmp_path):
    from extractors.media import sample_frames

    path, upright = tm.make_rotated_clip(tmp_path / "portrait.mp4", 0.4, fps=10, size=(320, 240))
    frames, _ = sample_frames(path, 10.0)
    assert frames.shape == (4, 320, 240, 3)  # portrait, as a player shows it
    err_upright = np.abs(frames.astype(float) - upright.astype(float)).mean()
    sideways = np.rot90(upright, k=1, axes=(1, 2))
    assert sideways.shape != frames.shape or np.abs(frames.astype(float) - sideways.astype(float)).mean() > 20
    assert err_upright < 8  # only codec error left
    small, _ = sample_frames(path, 10.0, max_side=160)
    assert small.shape == (4, 160, 120, 3)
