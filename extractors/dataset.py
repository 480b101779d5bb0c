"""On-disk outputs of extraction: per-clip feature files, the features manifest, and a dataset's arrays.

Every file is written atomically: to a temporary file in the same folder,
then `os.replace`. A per-clip `.json` is written after its `.npz` and marks
the clip as done (what resume looks for).

The dataset of docs/dataset-format.md is not written here: `assemble_dataset`
gathers its arrays and manifest fields, and `models.data.format.save_extracted`
(the format's one writer, handed over by the CLI: `models` and `extractors`
never import each other) writes them.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
from pathlib import Path

import numpy as np

from .errors import ExtractionError
from .inputs import ClipJob
from .pipeline import ClipFeatures

FEATURES_FORMAT = "deepmlf-features"
FEATURES_VERSION = 1
SPLITS = ("train", "valid", "test")  # the label file's modes (inputs._SPLIT_ALIASES values)


# ---------------------------------------------------------------------------
# atomic writes (extractors' own: it cannot use models.io)
def _atomic_write(path: Path, write) -> None:
    """Call write(file_object) on a temp file next to `path`, then rename it into place.

    The temp file is created with mode 0666 and O_EXCL, so the kernel applies
    the umask exactly as a plain open() would (colleagues can read a shared
    output) and no other writer's temp file is ever reused.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        tmp = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
            break
        except FileExistsError:  # another writer drew the same name: draw again
            continue
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_json(path: Path, obj) -> None:
    """Atomically write `obj` as pretty UTF-8 JSON."""
    _atomic_write(path, lambda fh: fh.write(json.dumps(obj, indent=2, ensure_ascii=False).encode("utf-8")))


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Atomically write arrays to an uncompressed .npz (no object arrays: loadable with allow_pickle=False)."""
    for name, arr in arrays.items():
        if np.asarray(arr).dtype == object:
            raise TypeError(f"array {name} has dtype object; it would need pickle")
    _atomic_write(path, lambda fh: np.savez(fh, **arrays))


def write_text(path: Path, text: str) -> None:
    """Atomically write `text` as UTF-8."""
    _atomic_write(path, lambda fh: fh.write(text.encode("utf-8")))


# ---------------------------------------------------------------------------
# per-clip features
_MAX_NAME_BYTES = 200  # file systems allow 255 bytes; leave room for suffixes and temp names


def clip_filename(key: str) -> str:
    """A file name for a clip key, distinct for distinct keys.

    A key that is already a safe name is used as is. Otherwise separators and
    unsafe characters become '__'/'_' and a hash of the key is appended after
    a '~' (a character no safe key holds), so `a b` and `a_b`, or `a/b` and
    `a__b`, never share a feature file. The key itself is stored in the .json.
    """
    name = key.replace("/", "__").replace("\\", "__")
    name = re.sub(r"[^\w.$\-]", "_", name).lstrip(".")
    if name == key and name and len(name.encode("utf-8")) <= _MAX_NAME_BYTES:
        return name
    digest = hashlib.sha1(key.encode("utf-8")).hexdigest()[:12]
    while len(name.encode("utf-8")) > _MAX_NAME_BYTES:
        name = name[:-1]
    return f"{name or '_'}~{digest}"


def save_clip(features_dir: Path, job: ClipJob, clip: ClipFeatures, rhash: str) -> dict:
    """Write `<key>.npz` (arrays) then `<key>.json` (metadata, the done-marker); returns the metadata."""
    stem = clip_filename(job.key)
    write_npz(
        Path(features_dir) / f"{stem}.npz",
        {
            "audio": clip.audio.astype(np.float32),  # (T_a, D_a)
            "audio_times": clip.audio_times.astype(np.float64),  # (T_a,)
            "vision": clip.vision.astype(np.float32),  # (T_v, D_v)
            "vision_times": clip.vision_times.astype(np.float64),  # (T_v,)
            "vision_present": clip.vision_present.astype(bool),  # (T_v,)
            "audio_names": np.array(clip.audio_names, dtype=str),
            "vision_names": np.array(clip.vision_names, dtype=str),
        },
    )
    meta = {
        "key": job.key,
        "path": str(job.path),
        "recipe_hash": rhash,
        "text": clip.text,
        "transcript": clip.transcript.to_dict(),
        "audio_rate_hz": clip.audio_rate_hz,
        "vision_rate_hz": clip.vision_rate_hz,
        **clip.info,
    }
    write_json(Path(features_dir) / f"{stem}.json", meta)
    return meta


def _content_hash(path: Path) -> str:
    """sha256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def media_identity(path: Path) -> dict | None:
    """What identifies a clip's media file: size, mtime (ns) and a content hash; None when it cannot be read."""
    try:
        st = Path(path).stat()
        return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": _content_hash(Path(path))}
    except OSError:
        return None


def same_media(recorded: dict | None, path: Path | None) -> bool:
    """Whether `path` is the file whose identity was `recorded` (features made before it was replaced are stale).

    Same size and mtime: the same file, no read. Same size, other mtime (a
    copy, a `touch`): the content hash decides. Nothing recorded (features of
    an older version): not known to be the same, so redone.
    """
    if not recorded or path is None:
        return False
    try:
        st = Path(path).stat()
    except OSError:
        return False
    if st.st_size != recorded.get("size"):
        return False
    if st.st_mtime_ns == recorded.get("mtime_ns"):
        return True
    try:
        return _content_hash(Path(path)) == recorded.get("sha256")
    except OSError:
        return False


def clip_done(features_dir: Path, key: str, rhash: str) -> dict | None:
    """The metadata of a finished clip made with the same recipe, else None (to be (re)done)."""
    stem = clip_filename(key)
    meta_path, npz_path = Path(features_dir) / f"{stem}.json", Path(features_dir) / f"{stem}.npz"
    if not (meta_path.is_file() and npz_path.is_file()):
        return None
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    return meta if meta.get("recipe_hash") == rhash and meta.get("key") == key else None


def load_clip(features_dir: Path, key: str) -> tuple[dict[str, np.ndarray], dict]:
    """Arrays and metadata of one per-clip feature file."""
    stem = clip_filename(key)
    with np.load(Path(features_dir) / f"{stem}.npz", allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    meta = json.loads((Path(features_dir) / f"{stem}.json").read_text(encoding="utf-8"))
    if meta.get("key") != key:  # never hand one clip's features to another clip's label
        raise ExtractionError(
            f"{Path(features_dir) / stem}.json holds clip {meta.get('key')!r}, not {key!r}; "
            "delete the features/ folder and extract again"
        )
    return arrays, meta


# ---------------------------------------------------------------------------
# datasets
def _pad(seqs: list[np.ndarray], dim: int) -> tuple[np.ndarray, np.ndarray]:
    """Stack (T_i, D) sequences into (N, T_max, D) zero-padded at the end, and their lengths (N,)."""
    lengths = np.array([len(s) for s in seqs], np.int64)
    t_max = int(lengths.max()) if len(seqs) else 0
    out = np.zeros((len(seqs), t_max, dim), np.float32)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = s
    return out, lengths


def assemble_dataset(jobs: list[ClipJob], features_dir: Path, recipe: dict) -> dict:
    """The arrays and manifest fields of a dataset of finished clips (nothing is written).

    jobs: the labelled clips to include (each with a split); their per-clip
    files must exist in `features_dir`. Returns the keyword arguments of
    `models.data.format.save_extracted`: `splits` (per split, arrays named as
    in a dataset's `<split>.npz`), `annotations` (per split, one string per
    clip, for `--format mmsa`), `audio_features`, `vision_features`,
    `audio_rate_hz`, `vision_rate_hz` and `recipe`.
    """
    per_split: dict[str, list[tuple[ClipJob, dict, dict]]] = {s: [] for s in SPLITS}
    audio_names = vision_names = None
    for job in jobs:
        if job.split is None:
            raise ExtractionError(f"{job.key}: no split (the label file's mode column); it cannot go into a dataset")
        arrays, meta = load_clip(features_dir, job.key)
        per_split[job.split].append((job, arrays, meta))
        audio_names = audio_names or [str(x) for x in arrays["audio_names"]]
        vision_names = vision_names or [str(x) for x in arrays["vision_names"]]
    if audio_names is None or vision_names is None:
        raise ExtractionError(f"{features_dir}: no clip was extracted, so there is no dataset to write")
    has_unimodal = all(all(k in j.labels for k in ("label_T", "label_A", "label_V")) for j in jobs)
    splits, annotations = {}, {}
    for split, rows in per_split.items():
        audio, a_len = _pad([r[1]["audio"] for r in rows], len(audio_names))  # (N, T_a, D_a), (N,)
        vision, v_len = _pad([r[1]["vision"] for r in rows], len(vision_names))  # (N, T_v, D_v), (N,)
        arrays = {
            "audio": audio,
            "vision": vision,
            "audio_lengths": a_len,
            "vision_lengths": v_len,
            "labels": np.array([r[0].labels["label"] for r in rows], np.float32),  # (N,)
            "ids": np.array([r[0].key for r in rows], dtype=str).astype("<U") if rows else np.zeros(0, "<U1"),
            "texts": np.array([r[2]["text"] for r in rows], dtype=str) if rows else np.zeros(0, "<U1"),
        }
        if has_unimodal:
            for col in ("label_T", "label_A", "label_V"):
                arrays[f"labels_{col[-1]}"] = np.array([r[0].labels[col] for r in rows], np.float32)  # (N,)
        splits[split] = arrays
        annotations[split] = [r[0].annotation or "" for r in rows]
        rows.clear()  # the unpadded per-clip arrays are no longer needed
    return {
        "splits": splits,
        "annotations": annotations,
        "audio_features": audio_names,
        "vision_features": vision_names,
        "audio_rate_hz": float(recipe.get("audio_rate_hz", 0.0)),
        "vision_rate_hz": float(recipe.get("vision_rate_hz", 0.0)),
        "recipe": recipe,
    }


def write_features_manifest(
    out: Path,
    jobs_meta: list[dict],
    recipe: dict,
    audio_names: list[str],
    vision_names: list[str],
    extra: dict | None = None,
) -> dict:
    """Manifest of an unlabelled run: per-clip files under `features/`, no splits."""
    manifest = {
        "format": FEATURES_FORMAT,
        "version": FEATURES_VERSION,
        "name": Path(out).name,
        "clips": [
            {
                "key": m["key"],
                "file": f"features/{clip_filename(m['key'])}.npz",
                "path": m.get("path"),
                "audio_frames": m.get("audio_frames"),
                "vision_frames": m.get("vision_frames"),
                "duration": m.get("duration"),
                "text": m.get("text", ""),
            }
            for m in jobs_meta
        ],
        "audio_features": audio_names,
        "vision_features": vision_names,
        "audio_rate_hz": float(recipe.get("audio_rate_hz", 0.0)),
        "vision_rate_hz": float(recipe.get("vision_rate_hz", 0.0)),
        "recipe": recipe,
        **(extra or {}),
    }
    write_json(Path(out) / "manifest.json", manifest)
    return manifest
