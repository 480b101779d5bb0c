"""MMSA processed pickles (``unaligned_50.pkl`` and friends).

A dict ``{train, valid, test}`` of dicts holding ``raw_text``, ``audio`` (N,T_a,D_a),
``vision`` (N,T_v,D_v), ``audio_lengths``/``vision_lengths`` (optional),
``id``, ``regression_labels`` and, for SIMS, ``regression_labels_T/A/V``. Read only
from the user's own data paths.
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Mapping
from pathlib import Path

from models.data.checks import check_feature_dims, check_split
from models.data.types import SPLITS, UNIMODAL, MultimodalDataset, SplitData
from models.errors import DatasetError
from models.schemes import Scheme

_MMSA_REQUIRED = ("raw_text", "audio", "vision", "id", "regression_labels")


# --------------------------------------------------------------------------- #
# Loading
# --------------------------------------------------------------------------- #

_MMSA_KEYS = {
    "audio": "audio",
    "vision": "vision",
    "audio_lengths": "audio_lengths",
    "vision_lengths": "vision_lengths",
    "labels": "regression_labels",
    "labels_T": "regression_labels_T",
    "labels_A": "regression_labels_A",
    "labels_V": "regression_labels_V",
    "ids": "id",
    "texts": "raw_text",
}


def _mmsa_name(path: Path) -> str:
    # MMSA layout: <NAME>/Processed/<file>.pkl -> "name"; else the file stem.
    if path.parent.name.lower() == "processed" and path.parent.parent.name:
        return path.parent.parent.name.lower()
    return path.stem


def load_mmsa_pickle(path: Path, name: str | None) -> MultimodalDataset:
    # Unpickling can run arbitrary code. This is only ever called on a file the
    # user named (a path they gave, or a file in their own data dir), never on
    # anything downloaded or found by this program.
    try:
        with open(path, "rb") as handle:
            data = pickle.load(handle)
    except Exception as exc:  # a damaged pickle can fail in many ways; all mean "unreadable"
        raise DatasetError(f"{path}: not a readable MMSA pickle ({type(exc).__name__}: {exc})") from exc
    if not isinstance(data, dict):
        raise DatasetError(f"{path}: expected a dict of splits {list(SPLITS)}, found {type(data).__name__}")
    missing_splits = [s for s in SPLITS if s not in data]
    if missing_splits:
        raise DatasetError(
            f"{path}: missing split(s) {', '.join(missing_splits)}; found {', '.join(map(str, data)) or 'none'}"
        )
    splits: dict[str, SplitData] = {}
    report: dict[str, dict[str, int]] = {}
    for split_name in SPLITS:
        fields = data[split_name]
        where = f"{path} [{split_name}]"
        if not isinstance(fields, dict):
            raise DatasetError(f"{where}: expected a dict of arrays, found {type(fields).__name__}")
        missing = [k for k in _MMSA_REQUIRED if k not in fields]
        if missing:
            raise DatasetError(f"{where}: missing key(s) {', '.join(missing)}; found {', '.join(map(str, fields))}")
        splits[split_name], report[split_name] = check_split(
            fields, where, keys=_MMSA_KEYS, infer_lengths=True, copy=False
        )
    check_feature_dims(splits, str(path))
    name = name or _mmsa_name(path)
    # `deepmlf extract --format mmsa` records the scheme; MMSA's own files do not.
    recorded = data.get("scheme")
    if recorded is not None and Scheme.get(recorded) is None:
        raise DatasetError(f"{path}: 'scheme' is {recorded!r}, expected one of {Scheme.choices()}")
    features = _read_features(data.get(FEATURES_KEY), path)
    return MultimodalDataset(
        name=name,
        scheme=Scheme(recorded) if recorded is not None else Scheme.guess((s.labels for s in splits.values()), name),
        scheme_guessed=recorded is None,
        splits=splits,
        audio_features=features.get("audio_features"),
        vision_features=features.get("vision_features"),
        recipe=features.get("recipe"),
        source=str(path),
        cleaning_report=report,
        audio_rate_hz=features.get("audio_rate_hz"),
        vision_rate_hz=features.get("vision_rate_hz"),
    )


# What `deepmlf extract --format mmsa` knows about its features (the recipe that computes them from
# raw video, the column names, the frame rates), as one JSON str beside the splits: a run trained on
# the pickle can then predict on videos like one trained on the dataset folder. MMSA's files lack it.
FEATURES_KEY = "deepmlf_features"
_FEATURE_FIELDS = ("recipe", "audio_features", "vision_features", "audio_rate_hz", "vision_rate_hz")


def _read_features(text: object, path: Path) -> dict:
    if text is None:
        return {}
    try:
        features = json.loads(text) if isinstance(text, str) else None
    except ValueError:
        features = None
    if not isinstance(features, dict):
        raise DatasetError(f"{path}: {FEATURES_KEY!r} is not the JSON object `deepmlf extract --format mmsa` writes")
    return {k: features.get(k) for k in _FEATURE_FIELDS}


# --------------------------------------------------------------------------- #
# Saving (deepmlf extract --format mmsa)
# --------------------------------------------------------------------------- #


def save_mmsa_pickle(
    dataset: MultimodalDataset, path: Path, annotations: Mapping[str, list[str]] | None = None
) -> Path:
    """Write ``dataset`` as an MMSA processed pickle (the layout ``load_mmsa_pickle`` reads); return ``path``.

    No BERT ``text`` arrays: DeepMLF tokenises ``raw_text`` itself. ``scheme``
    rides beside the split keys as a plain str (MMSA readers index only the
    splits), so a reader scores the pickle as it was made instead of guessing.
    ``annotations``: per split, one string per clip (MMSA's ``annotations``).
    """
    import numpy as np

    from models.io import atomic_write

    pickled: dict[str, object] = {}
    for split_name in SPLITS:
        split = dataset.splits[split_name]
        notes = list((annotations or {}).get(split_name) or [""] * len(split))
        fields = {
            "raw_text": np.array(split.texts, dtype=object),
            "audio": split.audio,  # (N, T_a, D_a)
            "vision": split.vision,  # (N, T_v, D_v)
            "audio_lengths": split.audio_lengths,  # (N,)
            "vision_lengths": split.vision_lengths,  # (N,)
            "id": np.array(split.ids, dtype=object),
            "regression_labels": split.labels,  # (N,)
            "annotations": np.array(notes, dtype=object),
        }
        for m in UNIMODAL:
            values = getattr(split, f"labels_{m}")
            if values is not None:
                fields[f"regression_labels_{m}"] = values
        pickled[split_name] = fields
    pickled["scheme"] = Scheme(dataset.scheme).value  # a str: the pickle must load without deepmlf
    pickled[FEATURES_KEY] = json.dumps({k: getattr(dataset, k) for k in _FEATURE_FIELDS})
    return atomic_write(Path(path), lambda handle: pickle.dump(pickled, handle, protocol=4))
