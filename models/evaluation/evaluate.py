"""Evaluating saved checkpoints on a dataset split, exactly as training tested them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from models.checkpoint import LoadedModel, load_model
from models.data.batching import encode_split
from models.data.types import MultimodalDataset, canonical_split
from models.errors import DatasetError
from models.evaluation.inference import predict_encoded
from models.evaluation.metrics import compute_metrics, summarize_run


def check_compatible(loaded: LoadedModel, dataset: MultimodalDataset) -> None:
    """Feature sizes of the dataset must be those the model was trained on."""
    cfg = loaded.config
    if (cfg.d_audio, cfg.d_vision) != (dataset.d_audio, dataset.d_vision):
        raise DatasetError(
            f"{dataset.source} has audio/vision features of size {dataset.d_audio}/{dataset.d_vision}, "
            f"but the model in {loaded.directory} was trained on {cfg.d_audio}/{cfg.d_vision}; "
            f"evaluate on the dataset it was trained on"
        )


def evaluate_checkpoint(
    directory: Path,
    dataset: MultimodalDataset,
    split: str = "test",
    batch_size: int = 64,
    device: torch.device | str = "cpu",
    lm_cache: dict | None = None,
    lm: str | None = None,
    lm_mismatch_ok: bool = False,
) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """(metrics, every head's predictions) of one checkpoint on one split; lm_cache, lm and lm_mismatch_ok
    as in `load_model`.

    `split` may be any name of `models.data.types.SPLIT_ALIASES` ("validation", "dev", ...).
    """
    split = canonical_split(split)
    if split not in dataset.splits:
        raise DatasetError(f"{dataset.source} has no split {split!r}; choose one of {sorted(dataset.splits)}")
    if len(dataset.splits[split]) == 0:
        nonempty = [k for k, v in dataset.splits.items() if len(v)]
        raise DatasetError(
            f"the {split} split of {dataset.source} is empty; evaluate another with --split ({', '.join(nonempty)})"
        )
    loaded = load_model(directory, device, lm_cache, lm, lm_mismatch_ok)
    check_compatible(loaded, dataset)
    encoded = encode_split(dataset.splits[split], loaded.tokenizer, loaded.config.max_text_tokens, loaded.normalizer)
    predictions = predict_encoded(loaded.model, encoded, batch_size, torch.device(device))
    return compute_metrics(predictions["prediction"], encoded.labels, dataset.scheme), predictions


def evaluate_checkpoints(
    checkpoints: list[Path],
    dataset: MultimodalDataset,
    split: str = "test",
    device: torch.device | str = "cpu",
    lm: str | None = None,
    lm_mismatch_ok: bool = False,
) -> tuple[dict[int | str, dict[str, float]], dict[str, Any]]:
    """A run's checkpoints (`models.run.Run.checkpoints()`: one per seed) on one split, summarised.

    Returns (metrics per seed name, `models.evaluation.metrics.summarize_run` of them: per-seed rows and
    mean ± std over seeds). The seeds share one frozen LM, loaded once; `lm` as in `load_model`.
    """
    from models.run import checkpoint_seed

    rows: dict[int | str, dict[str, float]] = {}
    lm_cache: dict = {}
    for checkpoint in checkpoints:
        seed = checkpoint_seed(checkpoint) or "0"
        rows[seed], _ = evaluate_checkpoint(
            checkpoint, dataset, split, device=device, lm_cache=lm_cache, lm=lm, lm_mismatch_ok=lm_mismatch_ok
        )
    return rows, summarize_run(rows, dataset.scheme)
