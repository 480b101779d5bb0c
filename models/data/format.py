"""deepmlf's own dataset format (``docs/dataset-format.md``): a directory with
``manifest.json`` and one ``.npz`` per split, read without pickle. Its one reader and writer.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from models.data.checks import _NPZ_KEYS, _NPZ_REQUIRED, _build_split, _check_feature_dims
from models.data.types import _UNIMODAL, SPLITS, MultimodalDataset, SplitData
from models.errors import DatasetError
from models.evaluation.metrics import SCHEMES

FORMAT_NAME = "deepmlf-dataset"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"


def _read_manifest(directory: Path) -> dict:
    path = directory / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DatasetError(f"{path}: not readable JSON ({exc})") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
        found = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
        raise DatasetError(f"{path}: 'format' is {found!r}, expected {FORMAT_NAME!r}; not a deepmlf dataset")
    version = manifest.get("version")
    if not isinstance(version, int) or version < 1:
        raise DatasetError(f"{path}: 'version' is {version!r}, expected {FORMAT_VERSION}")
    if version > FORMAT_VERSION:
        raise DatasetError(
            f"{path}: dataset format version {version} is newer than this deepmlf reads "
            f"({FORMAT_VERSION}); upgrade deepmlf"
        )
    scheme = manifest.get("scheme")
    if scheme not in SCHEMES:
        raise DatasetError(f"{path}: 'scheme' is {scheme!r}, expected one of {', '.join(SCHEMES)}")
    for key in ("audio_features", "vision_features"):
        value = manifest.get(key)
        if value is not None and not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
            raise DatasetError(f"{path}: '{key}' must be a list of feature names or null")
    if manifest.get("recipe") is not None and not isinstance(manifest["recipe"], dict):
        raise DatasetError(f"{path}: 'recipe' must be an object or null")
    return manifest


def _load_npz_dir(directory: Path) -> MultimodalDataset:
    manifest = _read_manifest(directory)
    splits: dict[str, SplitData] = {}
    report: dict[str, dict[str, int]] = {}
    for split_name in SPLITS:
        path = directory / f"{split_name}.npz"
        if not path.is_file():
            raise DatasetError(f"{path}: missing split file; a dataset needs {', '.join(s + '.npz' for s in SPLITS)}")
        try:
            # allow_pickle=False: object arrays (which unpickle) are refused.
            with np.load(path, allow_pickle=False) as npz:
                fields = {key: npz[key] for key in npz.files}
        except (OSError, ValueError) as exc:
            raise DatasetError(f"{path}: not a readable .npz without pickled objects ({exc})") from exc
        missing = [k for k in _NPZ_REQUIRED if k not in fields]
        if missing:
            raise DatasetError(f"{path}: missing key(s) {', '.join(missing)}; found {', '.join(fields)}")
        splits[split_name], report[split_name] = _build_split(
            fields, str(path), keys=_NPZ_KEYS, infer_lengths=False, copy=False
        )
        expected_n = (manifest.get("splits") or {}).get(split_name)
        if expected_n is not None and expected_n != len(splits[split_name]):
            raise DatasetError(
                f"{path}: holds {len(splits[split_name])} clips but {MANIFEST} says {expected_n}; "
                "the files are from different writes, re-create the dataset"
            )
    _check_feature_dims(splits, str(directory))
    for key, modality in (("audio_features", "audio"), ("vision_features", "vision")):
        names = manifest.get(key)
        dim = getattr(splits["train"], modality).shape[-1]
        if names is not None and len(names) != dim:
            raise DatasetError(
                f"{directory / MANIFEST}: '{key}' names {len(names)} features but the {modality} arrays have {dim}"
            )
    return MultimodalDataset(
        name=str(manifest.get("name") or directory.name),
        scheme=manifest["scheme"],
        splits=splits,
        audio_features=manifest.get("audio_features"),
        vision_features=manifest.get("vision_features"),
        recipe=manifest.get("recipe"),
        source=str(directory),
        audio_rate_hz=manifest.get("audio_rate_hz"),
        vision_rate_hz=manifest.get("vision_rate_hz"),
        cleaning_report=report,
    )


# --------------------------------------------------------------------------- #
# Saving
# --------------------------------------------------------------------------- #


def _check_for_save(dataset: MultimodalDataset) -> None:
    if dataset.scheme not in SCHEMES:
        raise DatasetError(f"dataset {dataset.name!r}: scheme {dataset.scheme!r} is not one of {', '.join(SCHEMES)}")
    missing = [s for s in SPLITS if s not in dataset.splits]
    if missing:
        raise DatasetError(f"dataset {dataset.name!r}: missing split(s) {', '.join(missing)}")
    _check_feature_dims(dataset.splits, f"dataset {dataset.name!r}")


def _split_arrays(split: SplitData) -> dict[str, np.ndarray]:
    arrays = {
        "audio": np.ascontiguousarray(split.audio, dtype=np.float32),  # (N, T_a, D_a)
        "vision": np.ascontiguousarray(split.vision, dtype=np.float32),  # (N, T_v, D_v)
        "audio_lengths": np.asarray(split.audio_lengths, dtype=np.int64),  # (N,)
        "vision_lengths": np.asarray(split.vision_lengths, dtype=np.int64),  # (N,)
        "labels": np.asarray(split.labels, dtype=np.float32),  # (N,)
        # str dtype ('<U'), never object: the loader refuses pickled arrays.
        "ids": np.array(split.ids, dtype=str).reshape(-1),  # (N,)
        "texts": np.array(split.texts, dtype=str).reshape(-1),  # (N,)
    }
    for m in _UNIMODAL:
        values = getattr(split, f"labels_{m}")
        if values is not None:
            arrays[f"labels_{m}"] = np.asarray(values, dtype=np.float32)
    return arrays


def save_dataset(dataset: MultimodalDataset, out_dir: Path) -> Path:
    """Write ``dataset`` in the deepmlf format (docs/dataset-format.md); return ``out_dir``.

    The files are written to a temporary directory next to ``out_dir`` and
    renamed into place, so a reader never sees half a dataset. An existing
    deepmlf dataset at ``out_dir`` is replaced; any other non-empty directory
    is refused.
    """
    out_dir = Path(out_dir).expanduser()
    _check_for_save(dataset)
    if out_dir.exists():
        if not out_dir.is_dir():
            raise DatasetError(f"{out_dir}: exists and is not a directory; choose another output path")
        if any(out_dir.iterdir()) and not (out_dir / MANIFEST).is_file():
            raise DatasetError(
                f"{out_dir}: a non-empty directory that is not a deepmlf dataset; refusing to overwrite it"
            )
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    manifest = {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "name": dataset.name,
        "scheme": dataset.scheme,
        "splits": {name: len(dataset.splits[name]) for name in SPLITS},
        "audio_features": dataset.audio_features,
        "vision_features": dataset.vision_features,
        "audio_rate_hz": dataset.audio_rate_hz,
        "vision_rate_hz": dataset.vision_rate_hz,
        "recipe": dataset.recipe,
    }
    # A fresh directory per call in the same parent, so the final rename stays
    # on one file system and parallel writers never share a temp name.
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))
    try:
        from models.io import default_dir_mode

        os.chmod(tmp, default_dir_mode())  # mkdtemp makes 0700; a dataset is for sharing
        for name in SPLITS:
            np.savez(tmp / f"{name}.npz", **_split_arrays(dataset.splits[name]))
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        if out_dir.exists():
            # Move the old copy aside first: a rename cannot replace a non-empty directory.
            old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".old", dir=out_dir.parent))
            old.rmdir()
            out_dir.rename(old)
            tmp.rename(out_dir)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir
