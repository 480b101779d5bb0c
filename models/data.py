"""Multimodal sentiment datasets: MMSA pickles and deepmlf's own format.

Two sources, one in-memory form (``MultimodalDataset`` of three ``SplitData``):

* **MMSA processed pickles** (``unaligned_50.pkl`` and friends): a dict
  ``{train, valid, test}`` of dicts holding ``raw_text``, ``audio`` (N,T_a,D_a),
  ``vision`` (N,T_v,D_v), ``audio_lengths``/``vision_lengths`` (optional),
  ``id``, ``regression_labels`` and, for SIMS, ``regression_labels_T/A/V``.
* **deepmlf datasets** (``docs/dataset-format.md``): a directory with
  ``manifest.json`` and one ``.npz`` per split, read without pickle.

Every loaded split is checked (keys, ranks, lengths, feature sizes) and cleaned:
non-finite feature values (COVAREP audio holds ``-inf``, NaN occurs) become 0,
and the counts are kept in ``MultimodalDataset.cleaning_report``.

Named datasets are looked up under a data directory: ``--data-dir``, else
``$DEEPMLF_DATA_DIR``, else ``$XDG_DATA_HOME/deepmlf/datasets`` (default
``~/.local/share/deepmlf/datasets``), in MMSA's own layout
(``MOSI/Processed/unaligned_50.pkl``, as MMSA's ``featurePath`` names them).
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from models.errors import CheckpointError, DatasetError
from models.metrics import SCHEMES

SPLITS: tuple[str, ...] = ("train", "valid", "test")
# Names users give splits (MMSA's label.csv `mode`, other toolkits): every command accepts these.
# extractors keep the same table (the two packages never import each other).
SPLIT_ALIASES: dict[str, str] = {"train": "train", "valid": "valid", "val": "valid", "validation": "valid",
                                 "dev": "valid", "test": "test"}
FORMAT_NAME = "deepmlf-dataset"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
MMSA_DATASETS_URL = "https://github.com/thuiar/MMSA#datasets"

# Named datasets: paths relative to the data dir, the first is the standard
# MMSA location (MMSA config `featurePath`); later ones are names in circulation.
NAMED_DATASETS: dict[str, tuple[str, ...]] = {
    "mosi": ("MOSI/Processed/unaligned_50.pkl",),
    "mosei": ("MOSEI/Processed/unaligned_50.pkl",),
    "sims": ("SIMS/Processed/unaligned_39.pkl",),
    # CH-SIMS v2 is not in MMSA's config; its processed file circulates under both names.
    "simsv2": ("SIMSv2/Processed/unaligned.pkl", "SIMSv2/Processed/sims_unaligned.pkl"),
}

# The name that loads the embedded synthetic dataset (models.sample).
SAMPLE_NAME = "sample"

_MMSA_REQUIRED = ("raw_text", "audio", "vision", "id", "regression_labels")
_NPZ_REQUIRED = ("audio", "vision", "audio_lengths", "vision_lengths", "labels", "ids", "texts")
_UNIMODAL = ("T", "A", "V")


# --------------------------------------------------------------------------- #
# In-memory form
# --------------------------------------------------------------------------- #


# eq=False: these hold numpy arrays, which do not compare to a single bool.
@dataclass(eq=False)
class SplitData:
    """One split, cleaned: every feature value finite, padding zeros at the end."""

    ids: list[str]
    texts: list[str]
    audio: np.ndarray  # (N, T_a, D_a) float32, zero-padded at the end
    vision: np.ndarray  # (N, T_v, D_v) float32, zero-padded at the end
    audio_lengths: np.ndarray  # (N,) int64 valid audio frames (0 = no audio track)
    vision_lengths: np.ndarray  # (N,) int64 valid vision frames
    labels: np.ndarray  # (N,) float32 regression target
    labels_T: np.ndarray | None = None  # (N,) float32 unimodal labels (SIMS)
    labels_A: np.ndarray | None = None
    labels_V: np.ndarray | None = None
    # Set when the feature arrays were z-scored in place (training frees the raw copy): they then
    # hold normalised values and this is the normaliser that made them (see FeatureNormalizer.apply).
    normalized_by: "FeatureNormalizer | None" = None

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def subset(self, index) -> "SplitData":
        """A new split with the clips at ``index`` (int array, bool mask or slice)."""
        if isinstance(index, slice):
            positions = np.arange(len(self))[index]
        else:
            positions = np.asarray(index)
            if positions.dtype == bool:
                if positions.shape != (len(self),):
                    raise IndexError(f"boolean mask of shape {positions.shape} for a split of {len(self)} clips")
                positions = np.flatnonzero(positions)
            positions = positions.astype(np.int64).reshape(-1)  # (M,)

        def take(array: np.ndarray | None) -> np.ndarray | None:
            return None if array is None else array[positions]

        return SplitData(
            ids=[self.ids[i] for i in positions],
            texts=[self.texts[i] for i in positions],
            audio=self.audio[positions],
            vision=self.vision[positions],
            audio_lengths=self.audio_lengths[positions],
            vision_lengths=self.vision_lengths[positions],
            labels=self.labels[positions],
            labels_T=take(self.labels_T),
            labels_A=take(self.labels_A),
            labels_V=take(self.labels_V),
            normalized_by=self.normalized_by,
        )


@dataclass(eq=False)
class MultimodalDataset:
    """A dataset with train/valid/test splits and what is known about its features."""

    name: str
    scheme: str  # metric scheme: "mosi" (labels in [-3, 3]) or "sims" ([-1, 1])
    splits: dict[str, SplitData]  # "train", "valid", "test"
    audio_features: list[str] | None  # names of the D_a columns, when known
    vision_features: list[str] | None
    # Feature recipe from `deepmlf extract`; None for MMSA pickles, whose
    # features cannot be recomputed from raw video.
    recipe: dict | None
    source: str  # the file or directory it came from
    audio_rate_hz: float | None = None  # frames per second, when known
    vision_rate_hz: float | None = None
    # split -> {"audio": n, "vision": n}: non-finite feature values set to 0 on load.
    cleaning_report: dict[str, dict[str, int]] = field(default_factory=dict)
    # True when no file recorded the scheme and it was guessed from the name and labels.
    scheme_guessed: bool = False

    @property
    def d_audio(self) -> int:
        return int(self.splits["train"].audio.shape[-1])

    @property
    def d_vision(self) -> int:
        return int(self.splits["train"].vision.shape[-1])

    @property
    def n_cleaned(self) -> int:
        """How many non-finite feature values the loader set to 0, over all splits."""
        return sum(sum(counts.values()) for counts in self.cleaning_report.values())


def canonical_split(name: str) -> str:
    """"validation", "val", "dev" → "valid" (any case); an unknown name is an error listing the accepted ones."""
    key = str(name).strip().lower()
    if key not in SPLIT_ALIASES:
        raise DatasetError(f"unknown split {name!r}; use train, valid or test "
                           f"(also accepted: {', '.join(k for k in SPLIT_ALIASES if k not in SPLITS)})")
    return SPLIT_ALIASES[key]


def _is_cjk(char: str) -> bool:
    code = ord(char)
    # CJK ideographs (with extension A and compatibility), kana, hangul, CJK punctuation
    return (0x4E00 <= code <= 0x9FFF or 0x3400 <= code <= 0x4DBF or 0xF900 <= code <= 0xFAFF
            or 0x3040 <= code <= 0x30FF or 0xAC00 <= code <= 0xD7AF or 0x3000 <= code <= 0x303F)


def transcripts_are_cjk(dataset: MultimodalDataset, sample: int = 500) -> bool | None:
    """Whether most letters of the train transcripts are CJK (Chinese, Japanese, Korean); None without text."""
    texts = dataset.splits["train"].texts[:sample] if "train" in dataset.splits else []
    letters = [c for text in texts for c in text if c.isalpha()]
    if not letters:
        return None
    return sum(_is_cjk(c) for c in letters) > len(letters) / 2


def with_scheme(dataset: MultimodalDataset, scheme: str) -> MultimodalDataset:
    """The dataset scored with `scheme` (--scheme): sets a guessed scheme; a recorded one must agree."""
    if scheme not in SCHEMES:
        raise DatasetError(f"--scheme {scheme!r}: use one of {', '.join(SCHEMES)}")
    if scheme == dataset.scheme:
        return dataset
    if not dataset.scheme_guessed:
        raise DatasetError(f"{dataset.source} records scheme {dataset.scheme!r}, not {scheme!r}; drop --scheme "
                           f"(or re-create the dataset with the scheme you mean)")
    return replace(dataset, scheme=scheme, scheme_guessed=False)


# --------------------------------------------------------------------------- #
# Finding datasets
# --------------------------------------------------------------------------- #


def default_data_dir() -> Path:
    """``$DEEPMLF_DATA_DIR``, else ``$XDG_DATA_HOME/deepmlf/datasets`` (``~/.local/share`` by default)."""
    env = os.environ.get("DEEPMLF_DATA_DIR")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_DATA_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".local" / "share"
    return base / "deepmlf" / "datasets"


def _named_candidates(name: str, data_dir: Path) -> list[Path]:
    """Where a named dataset may lie under ``data_dir``, in order of preference."""
    relative = NAMED_DATASETS[name]
    candidates = [data_dir / rel for rel in relative]
    # A deepmlf-format copy (e.g. written by save_dataset) or a flat file.
    candidates.append(data_dir / name / MANIFEST)
    candidates.append(data_dir / f"{name}.pkl")
    all_basenames = [Path(rel).name for rels in NAMED_DATASETS.values() for rel in rels]
    for rel in relative:
        basename = Path(rel).name
        candidates.append(data_dir / name / basename)
        # The bare file name is only unambiguous when no other dataset shares it
        # (MOSI and MOSEI are both unaligned_50.pkl).
        if all_basenames.count(basename) == 1:
            candidates.append(data_dir / basename)
    return candidates


def _existing_dataset_path(path: Path) -> Path:
    """Validate a path the user gave: a .pkl file, a manifest.json or a dataset directory."""
    if path.is_dir():
        if (path / MANIFEST).is_file():
            return path
        raise DatasetError(
            f"{path}: a directory without {MANIFEST}; give a deepmlf dataset directory "
            "(written by `deepmlf extract --labels`) or an MMSA .pkl file"
        )
    if path.name == MANIFEST:
        return path.parent
    if path.suffix == ".pkl":
        return path
    raise DatasetError(
        f"{path}: not a dataset; give an MMSA .pkl file, a deepmlf dataset directory "
        f"(with {MANIFEST}) or one of the names {', '.join(sorted(NAMED_DATASETS))}"
    )


def resolve_dataset(name_or_path: str | Path, data_dir: Path | None = None) -> Path:
    """Turn a dataset name or path into the .pkl file or dataset directory to load.

    ``name_or_path`` is an existing path (MMSA ``.pkl``, deepmlf dataset
    directory or its ``manifest.json``), a named dataset (``mosi``, ``mosei``,
    ``sims``, ``simsv2``) looked up under ``data_dir`` (default:
    ``default_data_dir()``), or the name of a deepmlf dataset directory there.

    Raises:
        DatasetError: nothing found; the message names the expected file and
            where it is published.
    """
    raw = str(name_or_path)
    path = Path(raw).expanduser()
    root = Path(data_dir).expanduser() if data_dir is not None else default_data_dir()
    key = raw.lower()
    # A bare dataset name looks in the data dir first, so that an unrelated
    # folder called "mosi" in the working directory does not shadow it.
    if key in NAMED_DATASETS:
        for candidate in _named_candidates(key, root):
            if candidate.is_file():
                return candidate.parent if candidate.name == MANIFEST else candidate
        if (path / MANIFEST).is_file():
            return path
        expected = root / NAMED_DATASETS[key][0]
        raise DatasetError(
            f"dataset {key!r} not found: expected {expected} (set --data-dir or DEEPMLF_DATA_DIR "
            f"to the folder holding {NAMED_DATASETS[key][0].split('/')[0]}/); MMSA publishes the "
            f"processed features, see {MMSA_DATASETS_URL}"
        )
    if path.exists():
        return _existing_dataset_path(path)
    if "/" not in raw and "\\" not in raw and (root / raw / MANIFEST).is_file():
        return root / raw
    if path.suffix or "/" in raw:
        raise DatasetError(f"{path}: no such file or directory")
    raise DatasetError(
        f"unknown dataset {raw!r}: use one of {', '.join(list(NAMED_DATASETS) + [SAMPLE_NAME])}, "
        f"a dataset directory under {root}, or a path to a .pkl file or dataset directory"
    )


# --------------------------------------------------------------------------- #
# Checking and cleaning one split
# --------------------------------------------------------------------------- #


def _clean(array: np.ndarray, chunk: int = 256) -> int:
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
            f"{where}: '{key}'[{i}] = {lengths[i]} is outside 0..{t} (the padded length); "
            f"{bad.size} clip(s) affected"
        )
    return lengths


def _as_strings(value: Any, key: str, where: str) -> list[str]:
    try:
        items = list(value)
    except TypeError as exc:
        raise DatasetError(f"{where}: '{key}' is not a list of strings") from exc
    return ["" if item is None else str(item) for item in items]


def _build_split(
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
    report = {"audio": _clean(audio), "vision": _clean(vision)}
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
    for m in _UNIMODAL:
        key = keys.get(f"labels_{m}")
        if key and key in fields and fields[key] is not None:
            unimodal[m] = _as_labels(fields[key], key, where)

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


def build_split(arrays: Mapping[str, Any], where: str = "split") -> tuple[SplitData, dict[str, int]]:
    """Check and clean arrays named as in a deepmlf ``<split>.npz``; return the split and cleaning counts.

    ``arrays`` needs ``audio``, ``vision``, ``audio_lengths``, ``vision_lengths``,
    ``labels``, ``ids``, ``texts`` (``labels_T/A/V`` optional). The feature
    arrays are copied; non-finite values become 0 and are counted in the
    returned ``{"audio": n, "vision": n}``. ``where`` prefixes error messages.
    """
    missing = [k for k in _NPZ_REQUIRED if k not in arrays]
    if missing:
        raise DatasetError(f"{where}: missing key(s) {', '.join(missing)}; found {', '.join(arrays)}")
    return _build_split(arrays, where, keys=_NPZ_KEYS, infer_lengths=False)


def _check_feature_dims(splits: Mapping[str, SplitData], source: str) -> None:
    for modality in ("audio", "vision"):
        dims = {name: getattr(split, modality).shape[-1] for name, split in splits.items()}
        if len(set(dims.values())) > 1:
            detail = ", ".join(f"{name} {d}" for name, d in dims.items())
            raise DatasetError(
                f"{source}: {modality} feature size differs between splits ({detail}); "
                "all splits must come from the same feature recipe"
            )


def _guess_scheme(name: str, splits: Mapping[str, SplitData]) -> str:
    """SIMS-style ([-1, 1]) when the name says so or every label lies in [-1, 1]."""
    if "sims" in name.lower():
        return "sims"
    in_unit_range = all(
        len(split) == 0 or (float(split.labels.min()) >= -1.0 and float(split.labels.max()) <= 1.0)
        for split in splits.values()
    )
    return "sims" if in_unit_range else "mosi"


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
_NPZ_KEYS = {
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


def _mmsa_name(path: Path) -> str:
    # MMSA layout: <NAME>/Processed/<file>.pkl -> "name"; else the file stem.
    if path.parent.name.lower() == "processed" and path.parent.parent.name:
        return path.parent.parent.name.lower()
    return path.stem


def _load_mmsa_pickle(path: Path, name: str | None) -> MultimodalDataset:
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
            raise DatasetError(
                f"{where}: missing key(s) {', '.join(missing)}; found {', '.join(map(str, fields))}"
            )
        splits[split_name], report[split_name] = _build_split(
            fields, where, keys=_MMSA_KEYS, infer_lengths=True, copy=False
        )
    _check_feature_dims(splits, str(path))
    name = name or _mmsa_name(path)
    # `deepmlf extract --format mmsa` records the scheme; MMSA's own files do not.
    recorded = data.get("scheme")
    if recorded is not None and recorded not in SCHEMES:
        raise DatasetError(f"{path}: 'scheme' is {recorded!r}, expected one of {', '.join(SCHEMES)}")
    return MultimodalDataset(
        name=name,
        scheme=recorded or _guess_scheme(name, splits),
        scheme_guessed=recorded is None,
        splits=splits,
        audio_features=None,
        vision_features=None,
        recipe=None,
        source=str(path),
        cleaning_report=report,
    )


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


def load_dataset(name_or_path: str | Path, data_dir: Path | None = None) -> MultimodalDataset:
    """Load, check and clean a dataset.

    ``name_or_path``: ``"sample"`` (the embedded synthetic dataset, generated in
    memory with its default seed), a named dataset (``mosi``, ``mosei``,
    ``sims``, ``simsv2``) under ``data_dir``, or a path to an MMSA ``.pkl`` or a
    deepmlf dataset directory. See ``resolve_dataset``.

    Raises:
        DatasetError: missing file, unreadable file or wrong schema; the message
            names the file, the split and the key.
    """
    raw = str(name_or_path)
    if raw.lower() == SAMPLE_NAME and not (Path(raw) / MANIFEST).is_file():
        from models.sample import make_sample_dataset  # local: sample imports this module

        return make_sample_dataset()
    path = resolve_dataset(raw, data_dir)
    if path.is_dir():
        return _load_npz_dir(path)
    name = raw.lower() if raw.lower() in NAMED_DATASETS else None
    return _load_mmsa_pickle(path, name)


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
        from models.files import default_dir_mode

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


# --------------------------------------------------------------------------- #
# Normalisation
# --------------------------------------------------------------------------- #

_MIN_STD = 1e-6  # features with a smaller spread are centred but not scaled


def _masked_moments(features: np.ndarray, lengths: np.ndarray, chunk: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std (ddof 0) per feature over valid frames: (N,T,D), (N,) -> (D,), (D,).

    Chunked with Chan's merge so MOSEI-sized arrays need no full masked copy and
    no E[x²]-E[x]² cancellation.
    """
    d = features.shape[-1]
    count = 0
    mean = np.zeros(d, dtype=np.float64)
    m2 = np.zeros(d, dtype=np.float64)
    t = features.shape[1]
    for start in range(0, features.shape[0], chunk):
        block = features[start : start + chunk]  # (B, T, D)
        mask = np.arange(t)[None, :] < lengths[start : start + chunk, None]  # (B, T)
        values = block[mask].astype(np.float64)  # (M, D)
        n_b = values.shape[0]
        if n_b == 0:
            continue
        mean_b = values.mean(axis=0)
        m2_b = ((values - mean_b) ** 2).sum(axis=0)
        delta = mean_b - mean
        total = count + n_b
        mean = mean + delta * (n_b / total)
        m2 = m2 + m2_b + delta**2 * (count * n_b / total)
        count = total
    if count == 0:
        return np.zeros(d, np.float32), np.ones(d, np.float32)
    std = np.sqrt(m2 / count)
    std = np.where(std < _MIN_STD, 1.0, std)
    return mean.astype(np.float32), std.astype(np.float32)


def _normalize(features: np.ndarray, lengths: np.ndarray | None, mean: np.ndarray, std: np.ndarray, what: str) -> np.ndarray:
    if features.shape[-1] != mean.shape[0]:
        raise DatasetError(
            f"{what} has {features.shape[-1]} features per frame but the normalizer was fit on "
            f"{mean.shape[0]}; use features from the same recipe as the training data"
        )
    out = (features.astype(np.float32) - mean) / std  # (..., T, D)
    if lengths is not None:
        mask = np.arange(features.shape[-2]) < np.asarray(lengths)[..., None]  # (..., T)
        out *= mask[..., None]  # padding stays 0
    return out.astype(np.float32, copy=False)


def _normalize_split_array(features: np.ndarray, lengths: np.ndarray, mean: np.ndarray, std: np.ndarray, what: str,
                           in_place: bool, undo: tuple[np.ndarray, np.ndarray] | None,
                           chunk: int = 256) -> np.ndarray:
    """z-score (N, T, D) `features` block by block of clips: into a new array, or over `features` itself.

    `undo`: the (mean, std) the values already carry, taken off first. By
    blocks, so no full-size temporary exists besides the output.
    """
    if features.shape[-1] != mean.shape[0]:
        _normalize(features[:0], None, mean, std, what)  # raises the feature-size error
    own = in_place and features.dtype == np.float32 and features.flags.writeable
    out = features if own else np.empty(features.shape, dtype=np.float32)
    for start in range(0, features.shape[0], chunk):
        block = features[start : start + chunk]  # (B, T, D)
        if undo is not None:
            block = block * undo[1] + undo[0]
        out[start : start + chunk] = _normalize(block, lengths[start : start + chunk], mean, std, what)
    return out


@dataclass(eq=False)
class FeatureNormalizer:
    """Per-feature z-scoring of audio and vision with train-split statistics.

    Statistics come from valid frames only (padding excluded); applying keeps
    padding at 0. Saved in checkpoints through ``state_dict`` so ``predict``
    normalises new clips exactly as training did.
    """

    audio_mean: np.ndarray  # (D_a,) float32
    audio_std: np.ndarray  # (D_a,) float32, >= 1e-6 (1 where a feature is constant)
    vision_mean: np.ndarray  # (D_v,) float32
    vision_std: np.ndarray  # (D_v,) float32

    @classmethod
    def fit(cls, split: SplitData) -> "FeatureNormalizer":
        """Statistics of ``split`` (the train split) over valid frames."""
        if split.normalized_by is not None:  # its raw values are gone; these are their statistics
            return split.normalized_by
        audio_mean, audio_std = _masked_moments(split.audio, split.audio_lengths)
        vision_mean, vision_std = _masked_moments(split.vision, split.vision_lengths)
        return cls(audio_mean, audio_std, vision_mean, vision_std)

    def apply(self, split: SplitData, in_place: bool = False) -> SplitData:
        """``split`` with normalised features (valid frames only; padding 0).

        By default a copy. With ``in_place`` the split's own arrays are
        overwritten, so a MOSEI-sized dataset is held once, not raw plus
        normalised (training does this), and the split remembers this
        normaliser in ``normalized_by``: applying it again changes nothing,
        another normaliser first undoes it, ``fit`` returns it.
        """
        done = split.normalized_by
        if done is not None and done.same_as(self):
            return split
        arrays = {}
        for m, lengths in (("audio", split.audio_lengths), ("vision", split.vision_lengths)):
            undo = (getattr(done, f"{m}_mean"), getattr(done, f"{m}_std")) if done is not None else None
            arrays[m] = _normalize_split_array(getattr(split, m), lengths, getattr(self, f"{m}_mean"),
                                               getattr(self, f"{m}_std"), m, in_place, undo)
        if in_place:
            split.audio, split.vision, split.normalized_by = arrays["audio"], arrays["vision"], self
            return split
        return replace(split, **arrays, normalized_by=self)

    def same_as(self, other: "FeatureNormalizer") -> bool:
        """The same statistics (so applying one after the other would change nothing)."""
        return all(np.array_equal(a, b) for a, b in zip(self.state_dict().values(), other.state_dict().values()))

    def apply_array(
        self,
        audio: np.ndarray | None,
        vision: np.ndarray | None,
        audio_lengths: np.ndarray | None = None,
        vision_lengths: np.ndarray | None = None,
    ) -> tuple[np.ndarray | None, np.ndarray | None]:
        """Normalise raw feature arrays, e.g. one clip at predict time.

        ``audio`` is (T_a, D_a) or (N, T_a, D_a), ``vision`` likewise; either may
        be None. Non-finite values are set to 0 first, as the loader does.
        Without lengths every frame counts as valid.
        """
        results = []
        for array, lengths, mean, std, what in (
            (audio, audio_lengths, self.audio_mean, self.audio_std, "audio"),
            (vision, vision_lengths, self.vision_mean, self.vision_std, "vision"),
        ):
            if array is None:
                results.append(None)
                continue
            values = np.array(array, dtype=np.float32)  # copy: cleaned in place
            if values.ndim not in (2, 3):
                raise DatasetError(f"{what} has shape {values.shape}; expected (T, D) or (N, T, D)")
            _clean(values)
            results.append(_normalize(values, lengths, mean, std, what))
        return results[0], results[1]

    def state_dict(self) -> dict[str, np.ndarray]:
        """Plain float32 arrays, ready for safetensors."""
        return {
            "audio_mean": np.ascontiguousarray(self.audio_mean, dtype=np.float32),
            "audio_std": np.ascontiguousarray(self.audio_std, dtype=np.float32),
            "vision_mean": np.ascontiguousarray(self.vision_mean, dtype=np.float32),
            "vision_std": np.ascontiguousarray(self.vision_std, dtype=np.float32),
        }

    @classmethod
    def from_state_dict(cls, state: Mapping[str, Any]) -> "FeatureNormalizer":
        """Rebuild from ``state_dict()`` output (numpy arrays or CPU tensors)."""
        keys = ("audio_mean", "audio_std", "vision_mean", "vision_std")
        missing = [k for k in keys if k not in state]
        if missing:
            raise CheckpointError(
                f"normalizer state lacks {', '.join(missing)}; the checkpoint is incomplete, re-run training"
            )
        arrays = {k: np.asarray(state[k], dtype=np.float32).reshape(-1) for k in keys}
        for modality in ("audio", "vision"):
            mean, std = arrays[f"{modality}_mean"], arrays[f"{modality}_std"]
            if mean.shape != std.shape or not np.all(np.isfinite(mean)) or not np.all(std > 0):
                raise CheckpointError(
                    f"normalizer state for {modality} is inconsistent (mean {mean.shape}, std {std.shape}, "
                    "std must be positive and finite); the checkpoint is damaged, re-run training"
                )
        return cls(**arrays)
