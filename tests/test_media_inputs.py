"""Others' media (issue 19): normal files made by ordinary tools are read, caches follow what changed.

Every clip is built here with PyAV the way ffmpeg or an editor writes it.
"""

from __future__ import annotations

import json

import pytest

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
