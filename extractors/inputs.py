"""What to extract: a file, a folder of media, or the MMSA raw layout with a label file."""

from __future__ import annotations

import math
import re
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from .errors import ExtractionError
from .media import MEDIA_EXTENSIONS

LABEL_COLUMNS = ("video_id", "clip_id", "text", "label", "label_T", "label_A", "label_V", "annotation", "mode")
_SPLIT_ALIASES = {"train": "train", "valid": "valid", "val": "valid", "dev": "valid", "validation": "valid", "test": "test"}
KEY_SEP = "$_$"  # MMSA's id separator: "video_id$_$clip_id"


@dataclass
class ClipJob:
    """One clip to extract: a stable key, where it is, and what the label file says about it."""

    key: str
    path: Path | None  # None when the label file names a clip that does not exist
    text: str | None = None
    split: str | None = None
    labels: dict[str, float] = field(default_factory=dict)  # label, label_T, label_A, label_V
    annotation: str | None = None
    problem: str | None = None  # why this clip cannot be extracted (reported as its failure)


def discover_media(root: Path) -> list[ClipJob]:
    """Every media file under `root` (recursive), keyed by its path relative to `root` without extension."""
    root = Path(root)
    if root.is_file():
        return [ClipJob(key=root.stem, path=root)]
    if not root.is_dir():
        raise FileNotFoundError(f"input not found: {root}")
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in MEDIA_EXTENSIONS and not p.name.startswith("."))
    jobs, seen = [], {}
    for p in files:
        key = p.relative_to(root).with_suffix("").as_posix()
        if key in seen:  # clip.mp4 and clip.wav side by side: keep both, distinguishable
            key = p.relative_to(root).as_posix()
        seen[key] = p
        jobs.append(ClipJob(key=key, path=p))
    return jobs


_SAFE_ID = re.compile(r"[^/\\\x00]+")


def _check_id(value: str, column: str, row: int, labels: Path) -> str:
    """A path component from a label file: no separators, no '..', nothing absolute."""
    if not value or value in (".", "..") or not _SAFE_ID.fullmatch(value) or value.startswith("~"):
        raise ExtractionError(
            f"{labels} row {row}: {column} {value!r} is not a plain name (no '/', '\\', '..' or absolute paths); "
            "fix the label file: clips must live under the dataset's Raw/ folder"
        )
    return value


def _find_clip(roots: list[Path], video_id: str, clip_id: str) -> Path | None:
    for root in roots:
        folder = root / video_id
        for ext in (".mp4", ".avi", ".mkv", ".mov", ".webm", ".wav", ".m4a", ".flac", ".mp3"):
            candidate = folder / f"{clip_id}{ext}"
            if candidate.is_file():
                return candidate
    return None


def read_labels(labels: Path, media_root: Path | None = None) -> list[ClipJob]:
    """Jobs from an MMSA label.csv: `Raw/<video_id>/<clip_id>.mp4` next to it (or under `media_root`).

    Required columns: video_id, clip_id, label, mode. Optional: text, label_T,
    label_A, label_V, annotation. mode is train/valid/test (val/dev accepted).
    A clip named by the file but missing on disk becomes a failed job, not an
    error for the whole batch.
    """
    import pandas as pd

    labels = Path(labels)
    if not labels.is_file():
        raise FileNotFoundError(f"label file not found: {labels}")
    try:
        df = pd.read_csv(labels, dtype={"video_id": str, "clip_id": str, "text": str, "annotation": str, "mode": str}, keep_default_na=False)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        raise ExtractionError(f"{labels}: cannot read as CSV ({str(exc).splitlines()[0]}); it must be MMSA's label.csv") from None
    df.columns = [c.strip() for c in df.columns]
    missing = [c for c in ("video_id", "clip_id", "label", "mode") if c not in df.columns]
    if missing:
        raise ExtractionError(f"{labels}: missing column(s) {', '.join(missing)}; expected MMSA's {', '.join(LABEL_COLUMNS)}")
    roots: list[Path] = []
    for base in ([Path(media_root)] if media_root else []) + [labels.parent]:
        roots += [base / "Raw", base]
    jobs: list[ClipJob] = []
    seen: set[str] = set()
    for i, row in enumerate(df.to_dict("records"), start=2):  # row 1 is the header
        video_id = _check_id(str(row["video_id"]).strip(), "video_id", i, labels)
        clip_id = _check_id(str(row["clip_id"]).strip(), "clip_id", i, labels)
        key = f"{video_id}{KEY_SEP}{clip_id}"
        if key in seen:
            raise ExtractionError(f"{labels} row {i}: clip {key} is listed twice; remove the duplicate row")
        seen.add(key)
        split = _SPLIT_ALIASES.get(str(row["mode"]).strip().lower())
        if split is None:
            raise ExtractionError(f"{labels} row {i}: mode {row['mode']!r} is not train, valid or test")
        values = {}
        for col in ("label", "label_T", "label_A", "label_V"):
            if col in row and str(row[col]).strip() != "":
                try:
                    values[col] = float(row[col])
                except ValueError:
                    raise ExtractionError(f"{labels} row {i}: {col} {row[col]!r} is not a number") from None
                if not math.isfinite(values[col]):
                    raise ExtractionError(f"{labels} row {i}: {col} is not finite")
        if "label" not in values:
            raise ExtractionError(f"{labels} row {i}: empty label")
        path = _find_clip(roots, video_id, clip_id)
        text = str(row.get("text", "")).strip() or None
        jobs.append(
            ClipJob(
                key=key,
                path=path,
                text=text,
                split=split,
                labels=values,
                annotation=str(row.get("annotation", "")) or None,
                problem=None if path is not None else f"clip not found: expected Raw/{video_id}/{clip_id}.mp4 next to {labels.name}",
            )
        )
    if not jobs:
        raise ExtractionError(f"{labels}: no rows")
    return jobs


def find_label_file(folder: Path) -> Path | None:
    """MMSA's raw layout: `label.csv` beside a `Raw/` folder."""
    folder = Path(folder)
    if folder.is_dir() and (folder / "label.csv").is_file() and (folder / "Raw").is_dir():
        return folder / "label.csv"
    return None


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """'K/N' (1-based K, 1 <= K <= N) as (K, N); None for no sharding."""
    if text is None or text == "":
        return None
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not m or not (1 <= int(m.group(1)) <= int(m.group(2))):
        raise ExtractionError(f"--shard {text!r}: use K/N with 1 <= K <= N, e.g. 1/4 ... 4/4 (with a SLURM array: $((SLURM_ARRAY_TASK_ID+1))/N)")
    return int(m.group(1)), int(m.group(2))


def in_shard(key: str, shard: tuple[int, int] | None) -> bool:
    """Whether a clip belongs to shard K/N: by a stable hash of its key, so adding clips never moves others."""
    if shard is None:
        return True
    k, n = shard
    return zlib.crc32(key.encode("utf-8")) % n == k - 1
