"""What to extract: a file, a folder of media, or the MMSA raw layout with a label file."""

from __future__ import annotations

import codecs
import io
import math
import re
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from .errors import ExtractionError, InputNotFoundError
from .media import MEDIA_EXTENSIONS, VIDEO_EXTENSIONS

LABEL_COLUMNS = ("video_id", "clip_id", "text", "label", "label_T", "label_A", "label_V", "annotation", "mode")
_SPLIT_ALIASES = {
    "train": "train",
    "valid": "valid",
    "val": "valid",
    "dev": "valid",
    "validation": "valid",
    "test": "test",
}
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
    row: int | None = None  # its row in the label file (1 = the header), for messages


def discover_media(root: Path) -> list[ClipJob]:
    """Every media file under `root` (recursive), keyed by its path relative to `root` without extension."""
    root = Path(root)
    if root.is_file():
        return [ClipJob(key=root.stem, path=root)]
    if not root.is_dir():
        raise InputNotFoundError(f"input not found: {root}; check the path")
    files = sorted(
        p
        for p in root.rglob("*")
        if p.is_file() and p.suffix.lower() in MEDIA_EXTENSIONS and not p.name.startswith(".")
    )
    jobs, seen = [], {}
    for p in files:
        key = p.relative_to(root).with_suffix("").as_posix()
        if key in seen:  # clip.mp4 and clip.wav side by side: keep both, distinguishable
            key = p.relative_to(root).as_posix()
        seen[key] = p
        jobs.append(ClipJob(key=key, path=p))
    return jobs


_SAFE_ID = re.compile(r"[^/\\\x00]+")
_MAX_LISTED_ROWS = 30  # a label file with thousands of bad rows: the first ones say what is wrong


def _id_problem(value: str) -> str | None:
    """Why a label-file id cannot be a path component (no separators, no '..', nothing absolute), else None."""
    if not value:
        return "is empty"
    if value in (".", "..") or not _SAFE_ID.fullmatch(value) or value.startswith("~"):
        return f"{value!r} is not a plain name (no '/', '\\', '..' or absolute paths; clips live under Raw/)"
    return None


class LabelFileError(ExtractionError):
    """A label file with bad rows; `problems` holds (row, column, why) for every one of them."""

    def __init__(self, labels: Path, problems: list[tuple[int, str, str]]) -> None:
        self.labels, self.problems = Path(labels), problems
        rows = sorted({row for row, _, _ in problems})
        lines = [f"  row {row}, {column}: {why}" for row, column, why in problems[:_MAX_LISTED_ROWS]]
        if len(problems) > _MAX_LISTED_ROWS:
            lines.append(f"  … and {len(problems) - _MAX_LISTED_ROWS} more")
        super().__init__(
            f"{labels}: {len(rows)} bad row{'s' if len(rows) != 1 else ''} (row 1 is the header); fix them and re-run:\n"
            + "\n".join(lines)
        )


def _media_by_stem(folder: Path, cache: dict[Path, dict[str, Path]]) -> dict[str, Path]:
    """A folder's media files by stem, listed once per folder; a video wins over an audio file of the same stem."""
    if folder not in cache:
        found: dict[str, Path] = {}
        if folder.is_dir():
            # Any case (.MP4 from a camera), the same extension list as folder mode; videos
            # sort first so clip.mp4 beside clip.wav gives the clip with both tracks.
            files = [p for p in folder.iterdir() if p.suffix.lower() in MEDIA_EXTENSIONS and p.is_file()]
            for p in sorted(files, key=lambda p: (p.suffix.lower() not in VIDEO_EXTENSIONS, p.name)):
                found.setdefault(p.stem, p)
        cache[folder] = found
    return cache[folder]


def _find_clip(roots: list[Path], video_id: str, clip_id: str, cache: dict[Path, dict[str, Path]]) -> Path | None:
    """`<root>/<video_id>/<clip_id>.<any media extension>` under the first root that has it."""
    for root in roots:
        found = _media_by_stem(root / video_id, cache).get(clip_id)
        if found is not None:
            return found
    return None


_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)  # UTF-32 LE starts like UTF-16 LE: first
_DELIMITERS = ",;\t"  # what spreadsheets save as "CSV" (a semicolon where the comma is the decimal mark)


def _read_label_text(labels: Path) -> tuple[str, str]:
    """A label file's text (UTF-8, or the encoding its BOM names: Excel's "Unicode text" is UTF-16) and its delimiter.

    The delimiter is the one of , ; tab that splits the header into the most
    known column names.
    """
    raw = labels.read_bytes()
    encoding = next((name for bom, name in _BOMS if raw.startswith(bom)), "utf-8")
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError as exc:
        raise ExtractionError(
            f"{labels}: not {encoding.upper()} text (byte {exc.start} is invalid); save it as CSV UTF-8 "
            "(or UTF-16 with a byte-order mark)"
        ) from None
    text = text.lstrip("\ufeff")
    header = text.split("\n", 1)[0]
    known = set(LABEL_COLUMNS)

    def score(sep: str) -> int:
        return sum(c.strip().strip('"') in known for c in header.split(sep))

    delimiter = max(_DELIMITERS, key=score)
    return text, delimiter


def read_labels(
    labels: Path, media_root: Path | None = None, label_range: tuple[float, float] | None = None
) -> list[ClipJob]:
    """Jobs from an MMSA label.csv: `Raw/<video_id>/<clip_id>.mp4` next to it (or under `media_root`).

    UTF-8 or UTF-16/32 with a BOM; comma, semicolon or tab separated.
    Required columns: video_id, clip_id, label, mode. Optional: text, label_T,
    label_A, label_V, annotation. mode is train/valid/test (val/dev accepted).
    A clip named by the file but missing on disk becomes a failed job, not an
    error for the whole batch. label_range (lo, hi): a label beyond it is a bad
    row (the metric scheme's scale; the caller knows the schemes).
    """
    import pandas as pd

    labels = Path(labels)
    if not labels.is_file():
        raise InputNotFoundError(f"label file not found: {labels}; check --labels")
    content, delimiter = _read_label_text(labels)
    try:
        df = pd.read_csv(
            io.StringIO(content),
            sep=delimiter,
            keep_default_na=False,
            dtype={"video_id": str, "clip_id": str, "text": str, "annotation": str, "mode": str},
        )
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise ExtractionError(
            f"{labels}: cannot read as CSV ({str(exc).splitlines()[0]}); it must be MMSA's label.csv"
        ) from None
    df.columns = [c.strip() for c in df.columns]
    missing = [c for c in ("video_id", "clip_id", "label", "mode") if c not in df.columns]
    if missing:
        raise ExtractionError(
            f"{labels}: missing column(s) {', '.join(missing)}; expected MMSA's {', '.join(LABEL_COLUMNS)}"
        )
    roots: list[Path] = []
    for base in ([Path(media_root)] if media_root else []) + [labels.parent]:
        roots += [base / "Raw", base]
    jobs: list[ClipJob] = []
    listings: dict[Path, dict[str, Path]] = {}
    seen: dict[str, int] = {}
    problems: list[tuple[int, str, str]] = []  # every bad row of the file, reported together
    for i, row in enumerate(df.to_dict("records"), start=2):  # row 1 is the header
        bad = len(problems)
        video_id, clip_id = str(row["video_id"]).strip(), str(row["clip_id"]).strip()
        for column, name in (("video_id", video_id), ("clip_id", clip_id)):
            why = _id_problem(name)
            if why:
                problems.append((i, column, why))
        key = f"{video_id}{KEY_SEP}{clip_id}"
        if len(problems) == bad and key in seen:
            problems.append((i, "clip_id", f"clip {key} is listed twice (also row {seen[key]}); remove one"))
        seen.setdefault(key, i)
        split = _SPLIT_ALIASES.get(str(row["mode"]).strip().lower())
        if split is None:
            problems.append((i, "mode", f"{row['mode']!r} is not train, valid or test"))
        values: dict[str, float] = {}
        for col in ("label", "label_T", "label_A", "label_V"):
            if col in row and str(row[col]).strip() != "":
                try:
                    value = float(row[col])
                except ValueError:
                    problems.append((i, col, f"{row[col]!r} is not a number"))
                    continue
                if not math.isfinite(value):
                    problems.append((i, col, f"{row[col]!r} is not finite"))
                    continue
                if label_range is not None and not label_range[0] - 1e-6 <= value <= label_range[1] + 1e-6:
                    lo, hi = label_range
                    problems.append(
                        (i, col, f"{value:g} is outside the label range [{lo:g}, {hi:g}] (--scheme chooses the range)")
                    )
                    continue
                values[col] = value
            elif col == "label":
                problems.append((i, col, "is empty"))
        if len(problems) > bad:
            continue
        path = _find_clip(roots, video_id, clip_id, listings)
        text = str(row.get("text", "")).strip() or None
        jobs.append(
            ClipJob(
                key=key,
                path=path,
                text=text,
                split=split,
                labels=values,
                annotation=str(row.get("annotation", "")) or None,
                problem=None
                if path is not None
                else f"clip not found: expected Raw/{video_id}/{clip_id}.mp4 (or another video/audio extension) next to {labels.name}",
                row=i,
            )
        )
    if problems:
        raise LabelFileError(labels, problems)
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
        raise ExtractionError(
            f"--shard {text!r}: use K/N with 1 <= K <= N, e.g. 1/4 ... 4/4 (with a SLURM array: $((SLURM_ARRAY_TASK_ID+1))/N)"
        )
    return int(m.group(1)), int(m.group(2))


def in_shard(key: str, shard: tuple[int, int] | None) -> bool:
    """Whether a clip belongs to shard K/N: by a stable hash of its key, so adding clips never moves others."""
    if shard is None:
        return True
    k, n = shard
    return zlib.crc32(key.encode("utf-8")) % n == k - 1
