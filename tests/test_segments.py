"""predict --segment's pieces on their own: cutting a clip (extractors.segments), scoring its segments and the
timeline plot (models.evaluation.timeline)."""

from __future__ import annotations

import pytest

import media as tm


# --------------------------------------------------------------------------- extractors.segments
def test_fixed_windows_cover_the_clip_and_a_short_tail_joins_the_last_window():
    from extractors.segments import fixed_windows

    assert fixed_windows(2.5, 1.0) == [(0.0, 1.0), (1.0, 2.0), (2.0, 2.5)]  # a 0.5 s tail (>= window/4) stays
    assert fixed_windows(2.2, 1.0) == [(0.0, 1.0), (1.0, 2.2)]  # a 0.2 s tail (< window/4) joins
    assert fixed_windows(0.4, 1.0) == [(0.0, 0.4)]  # shorter than one window: one segment
    assert fixed_windows(3.0, 1.0) == [(0.0, 1.0), (1.0, 2.0), (2.0, 3.0)]
    assert fixed_windows(0.0, 1.0) == []


def test_utterances_are_clipped_to_the_clip_slivers_dropped_else_windows():
    from extractors.segments import Span, utterance_spans
    from extractors.transcript import Segment, Transcript

    timed = Transcript(
        "a b c d",
        "sidecar:x.srt",
        [Segment(-0.2, 1.2, "a"), Segment(1.2, 5.0, "b"), Segment(2.98, 3.4, "c"), Segment(3.5, 4.0, "d")],
    )
    # before 0 and past the end are cut; "c" keeps 0.02 s (a sliver) and "d" starts after the end
    assert utterance_spans(timed, 3.0, 1.0) == [Span(0.0, 1.2, "a"), Span(1.2, 3.0, "b")]
    untimed = Transcript("words without times", "sidecar:x.txt")
    assert utterance_spans(untimed, 2.5, 1.0) == [Span(0.0, 1.0, ""), Span(1.0, 2.0, ""), Span(2.0, 2.5, "")]


def test_segment_clip_takes_subtitles_and_a_given_text_has_no_times(tmp_path):
    from extractors.feature_recipe import default_recipe
    from extractors.segments import segment_clip

    clip = tmp_path / "talk.mp4"  # the transcript's rules only look next to it: no media needed
    (tmp_path / "talk.srt").write_text(
        "1\n00:00:00,000 --> 00:00:01,500\nfirst\n\n2\n00:00:01,500 --> 00:00:04,000\nsecond\n"
    )
    recipe = default_recipe().with_transcript(mode="given")
    spans, full = segment_clip(clip, recipe, None, 3.0, True, 10.0)
    assert [tuple(s) for s in spans] == [(0.0, 1.5, "first"), (1.5, 3.0, "second")]
    assert full.source.startswith("sidecar:") and full.text == "first second"
    spans, full = segment_clip(clip, recipe, "  typed   words ", 3.0, True, 2.0)
    assert [tuple(s) for s in spans] == [(0.0, 2.0, ""), (2.0, 3.0, "")] and (full.text, full.source) == (
        "typed words",
        "given",
    )


def test_each_segment_is_extracted_on_its_own_window_without_the_clips_transcript(tmp_path):
    from extractors.feature_recipe import build_recipe
    from extractors.pipeline import extract_clip
    from extractors.segments import Span, extract_segments

    clip = tm.make_face_clip(tmp_path / "long.mp4", 2.0, fps=10, audio="speech")
    clip.with_suffix(".txt").write_text("the whole clip's words")
    recipe = build_recipe(face="none", transcript="given")
    spans = [Span(0.0, 0.5, "one"), Span(0.5, 2.0, "two")]
    feats = extract_segments(clip, recipe, spans)
    assert [f.info["duration"] for f in feats] == pytest.approx([0.5, 1.5], abs=0.05)
    assert [f.text for f in feats] == ["", ""]  # the segment's text is its span's, never the sidecar's
    whole = extract_clip(clip, recipe)
    assert whole.text == "the whole clip's words"
    # frames are counted per window: the two windows together hold about the whole clip's audio frames
    assert sum(len(f.audio) for f in feats) == pytest.approx(len(whole.audio), abs=3)


# --------------------------------------------------------------------------- models.evaluation.timeline
def _pred(raw: float, text: float | None = None, av: float | None = None, scale=(-1.0, 1.0)):
    from models.evaluation.predict import Prediction

    return Prediction(
        raw_score=raw, polarity="neutral", raw_heads={"text": text, "av": av, "fusion": None}, scale=scale
    )


def test_the_clip_verdict_is_the_duration_weighted_mean_of_raw_heads():
    from models.evaluation.timeline import clip_verdict, weighted_mean

    spans = [(0.0, 1.0, "a"), (1.0, 4.0, "b")]  # 1 s and 3 s
    verdict = clip_verdict(spans, [_pred(1.0, text=0.2), _pred(-1.0, text=None, av=0.4)])
    assert verdict.raw_score == pytest.approx((1.0 * 1 - 1.0 * 3) / 4)  # -0.5
    assert verdict.polarity == "negative" and verdict.scale == (-1.0, 1.0)
    # a head only some segments have is their mean; one none has stays None
    assert verdict.raw_heads == {"text": pytest.approx(0.2), "av": pytest.approx(0.4), "fusion": None}
    # raw values are averaged, then clipped: a segment overshooting the scale moves the mean
    over = clip_verdict([(0.0, 1.0, ""), (1.0, 2.0, "")], [_pred(3.0), _pred(-0.5)])
    assert over.raw_score == pytest.approx(1.25) and over.score == 1.0 and over.polarity == "positive"
    mosi = clip_verdict([(0.0, 2.0, "")], [_pred(0.05, scale=(-3.0, 3.0))])
    assert mosi.polarity == "positive" and mosi.scale == (-3.0, 3.0)  # MOSI bins: > 0 is positive
    assert weighted_mean([None, None], [1.0, 2.0]) is None


def test_segment_rows_round_bounds_and_clip_scores():
    from models.evaluation.timeline import segment_rows

    rows = segment_rows([(0.12345, 1.98765, "hi")], [_pred(1.4, text=-2.0)])
    assert rows == [
        {
            "start": 0.123,
            "end": 1.988,
            "text": "hi",
            "score": 1.0,
            "raw_score": 1.4,
            "polarity": "neutral",
            "heads": {"text": -1.0, "av": None, "fusion": None},
            "raw_heads": {"text": -2.0, "av": None, "fusion": None},
        }
    ]


def test_timeline_plot_is_a_png_written_whole(tmp_path):
    from models.evaluation.timeline import plot_timeline, segment_rows

    spans = [(0.0, 1.0, "a"), (1.0, 2.5, "b")]
    rows = segment_rows(spans, [_pred(0.6), _pred(-0.3)])
    rows[0]["polarity"], rows[1]["polarity"] = "positive", "negative"
    path = plot_timeline(rows, (-1.0, 1.0), tmp_path / "plots" / "clip.timeline.png", title="clip")
    assert path.read_bytes()[:4] == b"\x89PNG"
    assert [p.name for p in path.parent.iterdir()] == ["clip.timeline.png"]  # no temporary file left
