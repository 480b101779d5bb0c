"""A long clip's sentiment over time: each segment's scores, the clip's duration-weighted verdict, the plot.

Segments arrive as plain (start, end, text) triples (the caller cuts the clip;
this package never imports `extractors`) with one `Prediction` each.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from models.evaluation.metrics import POLARITY_NAMES, polarity_classes
from models.evaluation.plots import pyplot, save_figure
from models.evaluation.predict import Prediction
from models.schemes import Scheme

POLARITY_COLOURS = {"negative": "tab:red", "neutral": "tab:gray", "positive": "tab:green"}


def _scheme_of(scale) -> Scheme:
    return Scheme.SIMS if tuple(scale) == Scheme.SIMS.scale else Scheme.MOSI


def weighted_mean(values: Sequence[float | None], weights: Sequence[float]) -> float | None:
    """Mean of the values that are not None, weighted; None when every value is None."""
    present = [(v, w) for v, w in zip(values, weights) if v is not None]
    return sum(v * w for v, w in present) / sum(w for _, w in present) if present else None


def segment_rows(spans: Sequence[tuple[float, float, str]], preds: Sequence[Prediction]) -> list[dict]:
    """One row per segment: its bounds (ms precision), text and every head, clipped and raw."""
    return [
        {
            "start": round(s, 3),
            "end": round(e, 3),
            "text": t,
            "score": p.score,
            "raw_score": p.raw_score,
            "polarity": p.polarity,
            "heads": p.heads,
            "raw_heads": p.raw_heads,
        }
        for (s, e, t), p in zip(spans, preds)
    ]


def clip_verdict(spans: Sequence[tuple[float, float, str]], preds: Sequence[Prediction]) -> Prediction:
    """The whole clip's prediction: the duration-weighted mean of the segments' raw heads.

    Raw (unclipped) values are averaged, then clipped for display as any
    prediction is; the polarity is that of the mean raw score. A head that
    no segment has (None) stays None.
    """
    weights = [max(e - s, 1e-6) for s, e, _ in spans]
    raw_score = weighted_mean([p.raw_score for p in preds], weights)
    if raw_score is None:  # every segment has a raw score: only no segments at all gives None
        raise ValueError("clip_verdict needs at least one segment")
    scale = preds[0].scale
    polarity = POLARITY_NAMES[3][int(polarity_classes([raw_score], _scheme_of(scale), 3)[0])]
    raw_heads = {k: weighted_mean([p.raw_heads[k] for p in preds], weights) for k in ("text", "av", "fusion")}
    return Prediction(raw_score=raw_score, polarity=polarity, raw_heads=raw_heads, scale=scale)


def plot_timeline(segments: list[dict], scale, path: Path, title: str = "") -> Path:
    """Sentiment over time: one step per segment, neutral band shaded; written via a temporary name."""
    fig, ax = pyplot().subplots(figsize=(9, 3))
    for seg in segments:
        ax.hlines(seg["score"], seg["start"], seg["end"], colors=POLARITY_COLOURS[seg["polarity"]], linewidth=3)
    xs = [(s["start"] + s["end"]) / 2 for s in segments]
    ax.plot(xs, [s["score"] for s in segments], color="black", linewidth=0.8, alpha=0.5)
    band = _scheme_of(scale).neutral_band
    ax.axhspan(-band, band, color="gray", alpha=0.15) if band else ax.axhline(0, color="gray", linewidth=0.8)
    ax.set_ylim(scale[0] * 1.05, scale[1] * 1.05)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("sentiment")
    ax.set_title(title)
    save_figure(fig, path, dpi=100)
    return path
