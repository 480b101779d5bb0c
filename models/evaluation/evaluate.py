"""Evaluating saved checkpoints on a dataset split, exactly as training tested them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from models.checkpoint import read_checkpoint, split_extra
from models.config import ModelConfig
from models.data.batching import encode_split
from models.data.normalize import FeatureNormalizer
from models.data.types import MultimodalDataset, canonical_split
from models.errors import CheckpointError, DatasetError, ModelNotAvailableError
from models.evaluation.inference import predict_encoded
from models.evaluation.metrics import compute_metrics


@dataclass
class LoadedModel:
    """A checkpoint ready to predict: the model, its tokenizer and its feature normaliser."""

    model: torch.nn.Module
    tokenizer: object | None
    normalizer: FeatureNormalizer
    meta: dict
    directory: Path


def load_model(directory: Path, device: torch.device | str = "cpu", lm_cache: dict | None = None,
               lm: str | None = None) -> LoadedModel:
    """Rebuild any model kind a run saved (DeepMLF, AV encoder, baselines) in eval mode.

    lm_cache: a dict shared across calls (e.g. one per seed of a run) so the
    frozen LM, which checkpoints only name, is loaded once per LM name.
    lm: the frozen LM to load instead of the one the checkpoint names (a run
    moved to another machine, or an LM directory that moved); it must be the
    same model, only its place differs.
    """
    from models.nn.lm import load_causal_lm
    from models.nn.registry import build_model, needs_text

    config_dict, tensors, meta = read_checkpoint(directory)
    kind = meta.get("kind", "deepmlf")
    config = ModelConfig.from_dict(config_dict)
    if lm is not None:
        config = config.replace(lm=lm)
    hf_lm, tokenizer = None, None
    if needs_text(kind):
        # On CUDA the LM loads in the dtype training used (bf16 by default); on the CPU, where
        # autocast is off, in fp32.
        on_cuda = torch.device(device).type == "cuda"
        dtype = getattr(torch, meta.get("lm_dtype", "float32")) if on_cuda else torch.float32
        cache = lm_cache if lm_cache is not None else {}
        key = (config.lm, str(dtype))
        if key not in cache:
            try:
                cache[key] = load_causal_lm(config.lm, dtype=dtype)
            except ModelNotAvailableError as exc:
                if lm is not None:
                    raise
                raise ModelNotAvailableError(f"{exc} (the LM {directory} was trained with; if it moved, "
                                             f"pass its new place with --lm)") from None
        hf_lm, tokenizer = cache[key]
    model = build_model(kind, config, hf_lm)
    weights, extra = split_extra(tensors)
    expected = set(model.trainable_state_dict())
    missing, unexpected = expected - set(weights), set(weights) - expected
    if missing:
        raise CheckpointError(f"{directory}: missing tensors {sorted(missing)[:3]}; the checkpoint is incomplete")
    if unexpected:  # e.g. saved by an older model version: loading the rest would be another model
        raise CheckpointError(f"{directory}: tensors this model does not have {sorted(unexpected)[:3]}; the checkpoint "
                              f"is from another deepmlf model version: retrain it with this version")
    model.load_state_dict(weights, strict=False)
    normalizer = FeatureNormalizer.from_state_dict({k: v.numpy() for k, v in extra.items()})
    return LoadedModel(model.to(device).eval(), tokenizer, normalizer, meta, Path(directory))


def check_compatible(loaded: LoadedModel, dataset: MultimodalDataset) -> None:
    """Feature sizes of the dataset must be those the model was trained on."""
    cfg = loaded.model.config
    if (cfg.d_audio, cfg.d_vision) != (dataset.d_audio, dataset.d_vision):
        raise DatasetError(f"{dataset.source} has audio/vision features of size {dataset.d_audio}/{dataset.d_vision}, "
                           f"but the model in {loaded.directory} was trained on {cfg.d_audio}/{cfg.d_vision}; "
                           f"evaluate on the dataset it was trained on")


def evaluate_checkpoint(directory: Path, dataset: MultimodalDataset, split: str = "test", batch_size: int = 64,
                        device: torch.device | str = "cpu",
                        lm_cache: dict | None = None,
                        lm: str | None = None) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """(metrics, every head's predictions) of one checkpoint on one split; lm_cache and lm as in `load_model`.

    `split` may be any name of `models.data.types.SPLIT_ALIASES` ("validation", "dev", ...).
    """
    split = canonical_split(split)
    if split not in dataset.splits:
        raise DatasetError(f"{dataset.source} has no split {split!r}; choose one of {sorted(dataset.splits)}")
    if len(dataset.splits[split]) == 0:
        nonempty = [k for k, v in dataset.splits.items() if len(v)]
        raise DatasetError(f"the {split} split of {dataset.source} is empty; evaluate another with --split "
                           f"({', '.join(nonempty)})")
    loaded = load_model(directory, device, lm_cache, lm)
    check_compatible(loaded, dataset)
    encoded = encode_split(dataset.splits[split], loaded.tokenizer, loaded.model.config.max_text_tokens,
                           loaded.normalizer)
    predictions = predict_encoded(loaded.model, encoded, batch_size, torch.device(device))
    return compute_metrics(predictions["prediction"], encoded.labels, dataset.scheme), predictions
