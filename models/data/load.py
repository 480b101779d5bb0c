"""Loading any dataset (MMSA pickle, deepmlf directory, the embedded sample) by name or path."""

from __future__ import annotations

from pathlib import Path

from models.data.format import MANIFEST, load_npz_dir
from models.data.locate import NAMED_DATASETS, SAMPLE_NAME, resolve_dataset
from models.data.mmsa import load_mmsa_pickle
from models.data.types import MultimodalDataset, check_label_range


def load_dataset(name_or_path: str | Path, data_dir: Path | None = None) -> MultimodalDataset:
    """Load, check and clean a dataset.

    ``name_or_path``: ``"sample"`` (the embedded synthetic dataset, generated in
    memory with its default seed), a named dataset (``mosi``, ``mosei``,
    ``sims``, ``simsv2``) under ``data_dir``, or a path to an MMSA ``.pkl`` or a
    deepmlf dataset directory. See ``resolve_dataset``.

    Raises:
        DatasetError: missing file, unreadable file or wrong schema; the message
            names the file, the split and the key. Labels beyond the scheme's
            range are an error too.
    """
    raw = str(name_or_path)
    if raw.lower() == SAMPLE_NAME and not (Path(raw) / MANIFEST).is_file():
        from models.data.sample import make_sample_dataset

        return make_sample_dataset()
    path = resolve_dataset(raw, data_dir)
    if path.is_dir():
        return check_label_range(load_npz_dir(path))
    name = raw.lower() if raw.lower() in NAMED_DATASETS else None
    return check_label_range(load_mmsa_pickle(path, name))
