"""deepmlf's own dataset format (``docs/dataset-format.md``): a directory with
``manifest.json`` and one ``.npz`` per split, read without pickle. Its one reader and writer.

``deepmlf extract --labels`` writes through here too: ``extractors`` assembles the
arrays and manifest fields (``save_extracted``'s arguments) and the CLI hands
them over, since ``extractors`` and ``models`` never import each other.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from models.data.checks import check_feature_dims, check_split
from models.data.types import SPLITS, UNIMODAL, MultimodalDataset, SplitData
from models.errors import DatasetError
from models.io import atomic_dir, atomic_write
from models.schemes import Scheme

# The arrays of one ``<split>.npz`` (docs/dataset-format.md): the required ones, and every key by field name.
NPZ_REQUIRED = ("audio", "vision", "audio_lengths", "vision_lengths", "labels", "ids", "texts")
NPZ_KEYS = {
    "audio": "audio",
    "vision": "vision",
    "audio_lengths": "audio_lengths",
    "vision_lengths": "vision_lengths",
    "labels": "labels",
    "labels_T": "labels_T",
    "labels_A": "labels_A",
    "labels_V": "labels_V",
    "ids": "ids",
    "texts": "texts",
}

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
    if Scheme.get(scheme) is None:
        raise DatasetError(f"{path}: 'scheme' is {scheme!r}, expected one of {Scheme.choices()}")
    for key in ("audio_features", "vision_features"):
        value = manifest.get(key)
        if value is not None and not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
            raise DatasetError(f"{path}: '{key}' must be a list of feature names or null")
    if manifest.get("recipe") is not None and not isinstance(manifest["recipe"], dict):
        raise DatasetError(f"{path}: 'recipe' must be an object or null")
    return manifest


def load_npz_dir(directory: Path) -> MultimodalDataset:
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
        missing = [k for k in NPZ_REQUIRED if k not in fields]
        if missing:
            raise DatasetError(f"{path}: missing key(s) {', '.join(missing)}; found {', '.join(fields)}")
        splits[split_name], report[split_name] = check_split(
            fields, str(path), keys=NPZ_KEYS, infer_lengths=False, copy=False
        )
        expected_n = (manifest.get("splits") or {}).get(split_name)
        if expected_n is not None and expected_n != len(splits[split_name]):
            raise DatasetError(
                f"{path}: holds {len(splits[split_name])} clips but {MANIFEST} says {expected_n}; "
                "the files are from different writes, re-create the dataset"
            )
    check_feature_dims(splits, str(directory))
    for key, modality in (("audio_features", "audio"), ("vision_features", "vision")):
        names = manifest.get(key)
        dim = getattr(splits["train"], modality).shape[-1]
        if names is not None and len(names) != dim:
            raise DatasetError(
                f"{directory / MANIFEST}: '{key}' names {len(names)} features but the {modality} arrays have {dim}"
            )
    return MultimodalDataset(
        name=str(manifest.get("name") or directory.name),
        scheme=Scheme(manifest["scheme"]),
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
    if Scheme.get(dataset.scheme) is None:
        raise DatasetError(f"dataset {dataset.name!r}: scheme {dataset.scheme!r} is not one of {Scheme.choices()}")
    missing = [s for s in SPLITS if s not in dataset.splits]
    if missing:
        raise DatasetError(f"dataset {dataset.name!r}: missing split(s) {', '.join(missing)}")
    check_feature_dims(dataset.splits, f"dataset {dataset.name!r}")


def _split_arrays(split: SplitData) -> dict[str, np.ndarray]:
    arrays: dict[str, np.ndarray] = {
        "audio": np.ascontiguousarray(split.audio, dtype=np.float32),  # (N, T_a, D_a)
        "vision": np.ascontiguousarray(split.vision, dtype=np.float32),  # (N, T_v, D_v)
        "audio_lengths": np.asarray(split.audio_lengths, dtype=np.int64),  # (N,)
        "vision_lengths": np.asarray(split.vision_lengths, dtype=np.int64),  # (N,)
        "labels": np.asarray(split.labels, dtype=np.float32),  # (N,)
        # str dtype ('<U'), never object: the loader refuses pickled arrays.
        "ids": np.array(split.ids, dtype=str).reshape(-1),  # (N,)
        "texts": np.array(split.texts, dtype=str).reshape(-1),  # (N,)
    }
    for m in UNIMODAL:
        values = getattr(split, f"labels_{m}")
        if values is not None:
            arrays[f"labels_{m}"] = np.asarray(values, dtype=np.float32)
    return arrays


def dataset_manifest(dataset: MultimodalDataset, extra: Mapping[str, Any] | None = None) -> dict:
    """The ``manifest.json`` of ``dataset`` (``extra``: more keys after the format's own, e.g. extract's ``failed``)."""
    return {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "name": dataset.name,
        "scheme": Scheme(dataset.scheme).value,  # the plain string, whatever the caller held
        "splits": {name: len(dataset.splits[name]) for name in SPLITS},
        "audio_features": dataset.audio_features,
        "vision_features": dataset.vision_features,
        "audio_rate_hz": dataset.audio_rate_hz,
        "vision_rate_hz": dataset.vision_rate_hz,
        "recipe": dataset.recipe,
        **(extra or {}),
    }


def _write_npz(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    atomic_write(path, lambda handle: np.savez(handle, **arrays))


def _write_manifest(path: Path, manifest: dict) -> None:
    atomic_write(path, json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")


def save_dataset(
    dataset: MultimodalDataset, out_dir: Path, *, extra: Mapping[str, Any] | None = None, keep_other_files: bool = False
) -> Path:
    """Write ``dataset`` in the deepmlf format (docs/dataset-format.md); return ``out_dir``.

    By default the files are written to a temporary directory next to
    ``out_dir`` and swapped in, so a reader never sees half a dataset. An
    existing deepmlf dataset at ``out_dir`` is replaced; any other non-empty
    directory is refused.

    ``keep_other_files``: ``out_dir`` also holds files that are not the
    dataset's (``deepmlf extract`` keeps its per-clip ``features/`` and
    ``errors.tsv`` there, which a swap would throw away). The split files are
    then replaced one by one, each atomically, with ``manifest.json`` removed
    first and written last: a crash leaves no manifest, never one beside
    splits from another write. ``extra``: more manifest keys (see ``dataset_manifest``).
    """
    out_dir = Path(out_dir).expanduser()
    _check_for_save(dataset)
    if out_dir.exists():
        if not out_dir.is_dir():
            raise DatasetError(f"{out_dir}: exists and is not a directory; choose another output path")
        if not keep_other_files and any(out_dir.iterdir()) and not (out_dir / MANIFEST).is_file():
            raise DatasetError(
                f"{out_dir}: a non-empty directory that is not a deepmlf dataset; refusing to overwrite it"
            )
    manifest = dataset_manifest(dataset, extra)
    if keep_other_files:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / MANIFEST).unlink(missing_ok=True)  # the splits are about to change
        for name in SPLITS:
            _write_npz(out_dir / f"{name}.npz", _split_arrays(dataset.splits[name]))
        _write_manifest(out_dir / MANIFEST, manifest)
        return out_dir
    with atomic_dir(out_dir) as tmp:
        for name in SPLITS:
            _write_npz(tmp / f"{name}.npz", _split_arrays(dataset.splits[name]))
        _write_manifest(tmp / MANIFEST, manifest)
    return out_dir


# --------------------------------------------------------------------------- #
# Extracted datasets (deepmlf extract --labels)
# --------------------------------------------------------------------------- #


def dataset_from_arrays(
    splits: Mapping[str, Mapping[str, np.ndarray]],
    *,
    name: str,
    scheme: str | None = None,
    audio_features: list[str] | None = None,
    vision_features: list[str] | None = None,
    audio_rate_hz: float | None = None,
    vision_rate_hz: float | None = None,
    recipe: dict | None = None,
    source: str = "",
) -> MultimodalDataset:
    """A dataset from arrays named as in a ``<split>.npz``, checked as the reader checks a file.

    ``splits``: train/valid/test, each with ``audio`` (N,T_a,D_a), ``vision``
    (N,T_v,D_v), ``audio_lengths``/``vision_lengths`` (N,), ``labels`` (N,),
    ``ids``, ``texts`` and optionally ``labels_T/A/V``. The arrays are used as
    they are (not copied). ``scheme`` None: guessed from the labels
    (``Scheme.guess``).
    """
    missing = [s for s in SPLITS if s not in splits]
    if missing:
        raise DatasetError(f"dataset {name!r}: missing split(s) {', '.join(missing)}")
    built: dict[str, SplitData] = {}
    report: dict[str, dict[str, int]] = {}
    for split_name in SPLITS:
        fields = splits[split_name]
        where = f"dataset {name!r} [{split_name}]"
        absent = [k for k in NPZ_REQUIRED if k not in fields]
        if absent:
            raise DatasetError(f"{where}: missing key(s) {', '.join(absent)}; found {', '.join(fields)}")
        built[split_name], report[split_name] = check_split(
            fields, where, keys=NPZ_KEYS, infer_lengths=False, copy=False
        )
    check_feature_dims(built, f"dataset {name!r}")
    chosen = Scheme.parse(scheme) if scheme is not None else Scheme.guess(s.labels for s in built.values())
    return MultimodalDataset(
        name=name,
        scheme=chosen,
        splits=built,
        audio_features=audio_features,
        vision_features=vision_features,
        recipe=recipe,
        source=source,
        audio_rate_hz=audio_rate_hz,
        vision_rate_hz=vision_rate_hz,
        cleaning_report=report,
    )


def save_extracted(
    out_dir: Path,
    splits: Mapping[str, Mapping[str, np.ndarray]],
    *,
    name: str | None = None,
    scheme: str | None = None,
    mmsa: bool = False,
    annotations: Mapping[str, list[str]] | None = None,
    extra: Mapping[str, Any] | None = None,
    **fields: Any,
) -> dict:
    """Write what ``extractors`` assembled as a dataset in ``out_dir``, beside its per-clip files; return the manifest.

    ``splits`` and ``fields`` (``audio_features``, ``vision_features``,
    ``audio_rate_hz``, ``vision_rate_hz``, ``recipe``) as ``dataset_from_arrays``
    takes them; ``name`` defaults to the folder's name and ``scheme`` to a guess
    from the labels. With ``mmsa``, ``<out_dir>/<name>.pkl`` in MMSA's layout
    too (``annotations``: each split's per-clip annotation strings).
    """
    out_dir = Path(out_dir)
    name = name or out_dir.name
    dataset = dataset_from_arrays(splits, name=name, scheme=scheme, source=str(out_dir), **fields)
    save_dataset(dataset, out_dir, extra=extra, keep_other_files=True)
    if mmsa:
        from models.data.mmsa import save_mmsa_pickle

        save_mmsa_pickle(dataset, out_dir / f"{name}.pkl", annotations)
    return dataset_manifest(dataset, extra)


def build_split(arrays: Mapping[str, Any], where: str = "split") -> tuple[SplitData, dict[str, int]]:
    """Check and clean arrays named as in a deepmlf ``<split>.npz``; return the split and cleaning counts.

    ``arrays`` needs ``audio``, ``vision``, ``audio_lengths``, ``vision_lengths``,
    ``labels``, ``ids``, ``texts`` (``labels_T/A/V`` optional). The feature
    arrays are copied; non-finite values become 0 and are counted in the
    returned ``{"audio": n, "vision": n}``. ``where`` prefixes error messages.
    """
    missing = [k for k in NPZ_REQUIRED if k not in arrays]
    if missing:
        raise DatasetError(f"{where}: missing key(s) {', '.join(missing)}; found {', '.join(arrays)}")
    return check_split(arrays, where, keys=NPZ_KEYS, infer_lengths=False)
