"""Checking and cleaning one split: keys, ranks, lengths, feature sizes.

Non-finite feature values (COVAREP audio holds ``-inf``, NaN occurs) become 0, and
the counts are kept in ``MultimodalDataset.cleaning_report``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from models.config import AV_MODALITIES
from models.data.types import UNIMODAL, SplitData
from models.errors import DatasetError

# --------------------------------------------------------------------------- #
# Checking and cleaning one split
# --------------------------------------------------------------------------- #


def clean_non_finite(array: np.ndarray, chunk: int = 256) -> int:
    """Set non-finite values to 0 in place; return how many there were.

    By blocks of clips, so the boolean mask never costs a quarter of a MOSEI-sized array.
    """
    count = 0
    for start in range(0, max(1, array.shape[0]), chunk):
        block = array[start : start + chunk]  # a view: cleaned in place
        bad = ~np.isfinite(block)
        n_bad = int(np.count_nonzero(bad))
        if n_bad:
            block[bad] = 0.0
            count += n_bad
    return count


def _infer_lengths(features: np.ndarray) -> np.ndarray:
    """Valid frames per clip from trailing all-zero rows (at least 1): (N,T,D) -> (N,)."""
    nonzero_rows = np.any(features != 0, axis=2)  # (N, T)
    t = features.shape[1]
    # index of the last non-zero row + 1; clips that are all zeros get 1
    last = t - np.argmax(nonzero_rows[:, ::-1], axis=1)  # (N,)
    last = np.where(nonzero_rows.any(axis=1), last, 1)
    return np.minimum(last, t).astype(np.int64)


def _as_labels(value: Any, key: str, where: str) -> np.ndarray:
    try:
        labels = np.asarray(value, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise DatasetError(f"{where}: '{key}' is not numeric ({exc})") from exc
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]  # MMSA stores some labels as (N, 1)
    if labels.ndim != 1:
        raise DatasetError(f"{where}: '{key}' has shape {labels.shape}, expected (N,)")
    bad = np.flatnonzero(~np.isfinite(labels))
    if bad.size:
        raise DatasetError(
            f"{where}: '{key}' holds {bad.size} non-finite label(s), first at clip {int(bad[0])}; "
            "labels cannot be cleaned silently, fix or drop those clips"
        )
    return labels.copy()


def _as_features(value: Any, key: str, where: str, copy: bool) -> np.ndarray:
    try:
        # Cleaning writes into the array: copy what the caller still owns; arrays
        # fresh from a file are cleaned in place (MOSEI audio alone is ~2.4 GB).
        array = np.array(value, dtype=np.float32) if copy else np.asarray(value, dtype=np.float32)
        if not array.flags.writeable:
            array = array.copy()
    except (TypeError, ValueError) as exc:
        raise DatasetError(f"{where}: '{key}' is not a numeric array ({exc})") from exc
    if array.ndim != 3:
        raise DatasetError(
            f"{where}: '{key}' has shape {array.shape}, expected 3-D (clips, frames, features); "
            "aligned/word-level files are not supported, use the unaligned file"
        )
    return array


def _as_lengths(value: Any, key: str, where: str, t: int) -> np.ndarray:
    raw = np.asarray(value)
    if raw.ndim != 1 or not (np.issubdtype(raw.dtype, np.integer) or np.issubdtype(raw.dtype, np.floating)):
        raise DatasetError(f"{where}: '{key}' must be a 1-D array of frame counts, got {raw.dtype} {raw.shape}")
    if np.issubdtype(raw.dtype, np.floating) and not np.all(np.isfinite(raw) & (raw == np.round(raw))):
        raise DatasetError(f"{where}: '{key}' holds non-integer frame counts")
    lengths = raw.astype(np.int64)
    bad = np.flatnonzero((lengths < 0) | (lengths > t))
    if bad.size:
        i = int(bad[0])
        raise DatasetError(
            f"{where}: '{key}'[{i}] = {lengths[i]} is outside 0..{t} (the padded length); {bad.size} clip(s) affected"
        )
    return lengths


def _as_strings(value: Any, key: str, where: str) -> list[str]:
    try:
        items = list(value)
    except TypeError as exc:
        raise DatasetError(f"{where}: '{key}' is not a list of strings") from exc
    return ["" if item is None else str(item) for item in items]


def check_split(
    fields: Mapping[str, Any],
    where: str,
    *,
    keys: Mapping[str, str],
    infer_lengths: bool,
    copy: bool = True,
) -> tuple[SplitData, dict[str, int]]:
    """Check one split's arrays, clean them and build ``SplitData``.

    ``keys`` maps our field names to the source's key names (MMSA vs npz).
    """
    audio = _as_features(fields[keys["audio"]], keys["audio"], where, copy)
    vision = _as_features(fields[keys["vision"]], keys["vision"], where, copy)
    report = {"audio": clean_non_finite(audio), "vision": clean_non_finite(vision)}
    labels = _as_labels(fields[keys["labels"]], keys["labels"], where)
    ids = _as_strings(fields[keys["ids"]], keys["ids"], where)
    texts = _as_strings(fields[keys["texts"]], keys["texts"], where)

    lengths = {}
    for modality, array in (("audio", audio), ("vision", vision)):
        key = keys[f"{modality}_lengths"]
        if key in fields and fields[key] is not None:
            lengths[modality] = _as_lengths(fields[key], key, where, array.shape[1])
        elif infer_lengths:
            lengths[modality] = _infer_lengths(array)
        else:
            raise DatasetError(f"{where}: missing key '{key}'")

    unimodal = {}
    for m in UNIMODAL:
        label_key = keys.get(f"labels_{m}")
        if label_key and label_key in fields and fields[label_key] is not None:
            unimodal[m] = _as_labels(fields[label_key], label_key, where)

    n = labels.shape[0]
    counts = {
        keys["audio"]: audio.shape[0],
        keys["vision"]: vision.shape[0],
        keys["ids"]: len(ids),
        keys["texts"]: len(texts),
        keys["audio_lengths"]: lengths["audio"].shape[0],
        keys["vision_lengths"]: lengths["vision"].shape[0],
        **{keys[f"labels_{m}"]: arr.shape[0] for m, arr in unimodal.items()},
    }
    wrong = {k: v for k, v in counts.items() if v != n}
    if wrong:
        detail = ", ".join(f"{k} has {v}" for k, v in wrong.items())
        raise DatasetError(f"{where}: {keys['labels']} has {n} clips but {detail}; every array needs one row per clip")

    split = SplitData(
        ids=ids,
        texts=texts,
        audio=audio,
        vision=vision,
        audio_lengths=lengths["audio"],
        vision_lengths=lengths["vision"],
        labels=labels,
        labels_T=unimodal.get("T"),
        labels_A=unimodal.get("A"),
        labels_V=unimodal.get("V"),
    )
    return split, report


def check_feature_dims(splits: Mapping[str, SplitData], source: str) -> None:
    for modality in AV_MODALITIES:
        dims = {name: getattr(split, modality).shape[-1] for name, split in splits.items()}
        if len(set(dims.values())) > 1:
            detail = ", ".join(f"{name} {d}" for name, d in dims.items())
            raise DatasetError(
                f"{source}: {modality} feature size differs between splits ({detail}); "
                "all splits must come from the same feature recipe"
            )
