"""Finding datasets by name or path.

Named datasets are looked up under a data directory: ``--data-dir``, else
``$DEEPMLF_DATA_DIR``, else ``$XDG_DATA_HOME/deepmlf/datasets`` (default
``~/.local/share/deepmlf/datasets``), in MMSA's own layout
(``MOSI/Processed/unaligned_50.pkl``, as MMSA's ``featurePath`` names them).
"""

from __future__ import annotations

import os
from pathlib import Path

from models.data.format import MANIFEST
from models.errors import DatasetError

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

# The name that loads the embedded synthetic dataset (models.data.sample).
SAMPLE_NAME = "sample"


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
