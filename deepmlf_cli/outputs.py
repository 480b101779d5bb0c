"""Files the batch commands write besides their datasets: prediction CSVs, --segment timelines, transcripts.

Every file is written under a temporary name, then renamed: a crash never leaves half a file.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

CSV_COLUMNS = (
    "path",
    "start",
    "end",
    "score",
    "polarity",
    "text_head",
    "av_head",
    "fusion_head",
    "transcript",
    "error",
)


def _csv_row(item: dict, start, end) -> dict:
    heads = item.get("heads") or {}
    return {
        "start": start,
        "end": end,
        "score": item.get("score"),
        "polarity": item.get("polarity"),
        "text_head": heads.get("text"),
        "av_head": heads.get("av"),
        "fusion_head": heads.get("fusion"),
        "transcript": item.get("transcript", item.get("text")),
        "error": item.get("error"),
    }


def write_csv(path: Path, rows: list[dict]) -> None:
    """`rows` as a CSV of CSV_COLUMNS (None as an empty cell), written atomically."""
    from models.io import atomic_write_text

    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS)
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in CSV_COLUMNS})
    atomic_write_text(Path(path), buffer.getvalue())


def report_rows(report) -> list[dict]:
    """CSV rows of a PredictReport: one per clip, or one per segment with --segment."""
    rows = []
    for r in report.results:
        if r.get("segments"):
            rows.extend({"path": r["path"], **_csv_row(s, s["start"], s["end"])} for s in r["segments"])
        else:
            rows.append({"path": r["path"], **_csv_row(r, 0.0 if r["status"] == "ok" else None, r["duration"])})
    return rows


def timeline_saver(out_dir: Path):
    """predict's `save` hook: each --segment result's timeline CSV and PNG in `out_dir`, paths added to the result."""
    from extractors.dataset import clip_filename
    from models.evaluation.timeline import plot_timeline

    def save(result: dict) -> None:
        stem = clip_filename(result["key"])
        timeline_csv = Path(out_dir) / f"{stem}.timeline.csv"
        plot = Path(out_dir) / f"{stem}.timeline.png"
        segments = result["segments"]
        write_csv(
            timeline_csv, [{"path": result["path"], **_csv_row(seg, seg["start"], seg["end"])} for seg in segments]
        )
        plot_timeline(segments, result["scale"], plot, title=str(Path(result["path"]).name))
        result.update(timeline_csv=str(timeline_csv), plot=str(plot))

    return save


def transcript_writer(out: Path, extension: str):
    """transcribe's `write` hook: a clip's rendered transcript as OUT/<clip>.<extension>; returns the file."""
    from extractors.dataset import clip_filename, write_text
    from models.io import check_writable_dir

    check_writable_dir(out)  # read-only or a file: one line before Whisper loads

    def write(key: str, rendered: str) -> Path:
        target = out / f"{clip_filename(key)}.{extension}"
        write_text(target, rendered)
        return target

    return write
