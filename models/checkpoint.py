"""Checkpoints: a directory with the model's config (JSON) and its trainable tensors (safetensors).

    checkpoint/
      config.json        {"kind": the model kind, **ModelConfig.to_dict()} (the LM's id and hub revision)
      model.safetensors  the model's trainable_state_dict() (+ extra tensors, prefixed "extra.")
      meta.json          anything JSON-able the caller adds (dataset, metrics, LM dtype, epoch)

The frozen LM is referenced by `config.lm` (hub id or path) and its revision,
never copied. Directories are written under a temporary name and renamed, so a
crash never leaves a half-written checkpoint behind. No pickles anywhere.

This module is the one reader: `read_checkpoint` (the files), `load_weights`
(tensors into a model, refusing any that do not fit) and `load_model` (any
model kind, rebuilt with its LM, ready to predict).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import torch

from models.config import ModelConfig
from models.data.normalize import FeatureNormalizer
from models.errors import CheckpointError, ConfigError, ModelNotAvailableError
from models.io import atomic_dir
from models.nn.interface import SentimentModel

EXTRA_PREFIX = "extra."


def save_checkpoint(
    directory: Path, model, extra: dict[str, torch.Tensor] | None = None, meta: dict[str, Any] | None = None
) -> Path:
    """Write `model` (any model kind: it has `kind`, `config` and `trainable_state_dict`) atomically."""
    from safetensors.torch import save_file

    directory = Path(directory)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.trainable_state_dict().items()}
    for key, value in (extra or {}).items():
        tensors[EXTRA_PREFIX + key] = torch.as_tensor(value).detach().to("cpu").contiguous()
    with atomic_dir(directory) as tmp:  # its files get shareable modes (safetensors writes 0600)
        save_file(tensors, str(tmp / "model.safetensors"))
        config = {"kind": model.kind, **model.config.to_dict()}
        (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
        (tmp / "meta.json").write_text(json.dumps(meta or {}, indent=2, default=str) + "\n", encoding="utf-8")
    return directory


def lm_fingerprint(hf_lm: torch.nn.Module) -> str:
    """A short hash of a language model's weights, the same whatever dtype it was loaded in.

    Cheap: the names and shapes of every parameter and the first 4096 values
    of the first, middle and last one. The values are rounded to bfloat16
    first, so an LM trained in bf16 on CUDA and evaluated in fp32 on a CPU
    gives the same fingerprint, while other weights (a fine-tune, a random
    init, another checkpoint of the same architecture) give another.
    """
    import hashlib

    named = sorted((name, p) for name, p in hf_lm.named_parameters())
    digest = hashlib.sha256()
    for name, p in named:
        digest.update(f"{name}:{tuple(p.shape)};".encode())
    for _, p in (named[0], named[len(named) // 2], named[-1]) if named else ():
        sample = p.detach().flatten()[:4096].to("cpu", torch.bfloat16).view(torch.int16)
        digest.update(sample.numpy().tobytes())
    return digest.hexdigest()[:16]


LM_MISMATCH_OK = "--lm-mismatch ok"


@dataclass
class Checkpoint:
    """What a checkpoint directory holds."""

    directory: Path
    kind: str
    config: ModelConfig
    weights: dict[str, torch.Tensor]  # the model's trainable tensors
    extra: dict[str, torch.Tensor]  # the caller's extra tensors (the feature normaliser's statistics)
    meta: dict[str, Any]


def read_checkpoint(directory: Path) -> Checkpoint:
    """The files of a checkpoint directory, with clear errors when parts are missing or corrupt."""
    from safetensors.torch import load_file

    directory = Path(directory)
    missing = [n for n in ("config.json", "model.safetensors") if not (directory / n).is_file()]
    if missing:
        raise CheckpointError(
            f"{directory} is not a deepmlf checkpoint (missing {', '.join(missing)}); "
            f"pass a checkpoint directory written by `deepmlf train` or `deepmlf pretrain`"
        )
    try:
        config = json.loads((directory / "config.json").read_text())
        meta = json.loads((directory / "meta.json").read_text()) if (directory / "meta.json").is_file() else {}
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{directory}: corrupt JSON ({exc}); retrain or restore the checkpoint") from None
    kind = config.pop("kind", None) or meta.get("kind", "deepmlf")  # older checkpoints kept it in meta.json
    try:
        model_config = ModelConfig.from_dict(config)
    except (ConfigError, TypeError) as exc:
        raise CheckpointError(
            f"{directory} was written by another deepmlf model version ({exc}); retrain it with this version"
        ) from None
    tensors = load_file(str(directory / "model.safetensors"))
    weights = {k: v for k, v in tensors.items() if not k.startswith(EXTRA_PREFIX)}
    extra = {k[len(EXTRA_PREFIX) :]: v for k, v in tensors.items() if k.startswith(EXTRA_PREFIX)}
    return Checkpoint(directory, kind, model_config, weights, extra, meta)


def load_weights(model: torch.nn.Module, checkpoint: Checkpoint) -> None:
    """Load a checkpoint's tensors into `model`: every trainable tensor present, none it does not have."""
    # Every model kind is an nn.Module and a SentimentModel (load_state_dict is the Module's).
    expected = set(cast(SentimentModel, model).trainable_state_dict())
    missing, unexpected = expected - set(checkpoint.weights), set(checkpoint.weights) - expected
    if missing:
        raise CheckpointError(
            f"{checkpoint.directory}: missing tensors {sorted(missing)[:3]}; the checkpoint is incomplete"
        )
    if unexpected:  # e.g. saved by an older model version: loading the rest would be another model
        raise CheckpointError(
            f"{checkpoint.directory}: tensors this model does not have {sorted(unexpected)[:3]}; "
            f"the checkpoint is from another deepmlf model version: retrain it with this version"
        )
    model.load_state_dict(checkpoint.weights, strict=False)  # the frozen LM's weights are not in it


@dataclass
class LoadedModel:
    """A checkpoint ready to predict: the model, its tokenizer and its feature normaliser."""

    model: torch.nn.Module
    tokenizer: object | None
    normalizer: FeatureNormalizer
    meta: dict
    directory: Path
    config: ModelConfig  # the config the model was built from (the checkpoint's, with `lm` in its place when given)
    notes: list[str] = field(default_factory=list)  # what the caller should tell the user (an unchecked LM)


def load_model(
    directory: Path,
    device: torch.device | str = "cpu",
    lm_cache: dict | None = None,
    lm: str | None = None,
    lm_mismatch_ok: bool = False,
) -> LoadedModel:
    """Rebuild any model kind a run saved (DeepMLF, AV encoder, baselines) in eval mode.

    lm_cache: a dict shared across calls (e.g. one per seed of a run) so the
    frozen LM, which checkpoints only name, is loaded once per LM name.
    lm: the frozen LM to load instead of the one the checkpoint names (a run
    moved to another machine, or an LM directory that moved); it must be the
    same model, only its place differs: its weights' fingerprint (`lm_fingerprint`,
    recorded at training) must match the checkpoint's, else CheckpointError,
    unless `lm_mismatch_ok`. Checkpoints older than the fingerprint load with a note.
    """
    from models.nn.lm import load_causal_lm
    from models.nn.registry import build_model, needs_text

    checkpoint = read_checkpoint(directory)
    config = checkpoint.config if lm is None else checkpoint.config.replace(lm=lm)
    hf_lm, tokenizer = None, None
    notes: list[str] = []
    if needs_text(checkpoint.kind):
        # On CUDA the LM loads in the dtype training used (the preset's precision); on the CPU, where
        # autocast is off, in fp32.
        on_cuda = torch.device(device).type == "cuda"
        dtype = getattr(torch, checkpoint.meta.get("lm_dtype", "float32")) if on_cuda else torch.float32
        cache = lm_cache if lm_cache is not None else {}
        key = (config.lm, config.lm_revision, str(dtype))
        if key not in cache:
            try:
                cache[key] = load_causal_lm(config.lm, dtype=dtype, revision=config.lm_revision)
            except ModelNotAvailableError as exc:
                if lm is not None:
                    raise
                raise ModelNotAvailableError(
                    f"{exc} (the LM {directory} was trained with; if it moved, pass its new place with --lm)"
                ) from None
        hf_lm, tokenizer = cache[key]
        saved = checkpoint.meta.get("lm_fingerprint")
        if saved is None:
            notes.append(
                f"{directory} does not record its LM's fingerprint (trained by an older deepmlf): "
                f"{config.lm} is used unchecked"
            )
        elif not lm_mismatch_ok:
            fingerprint_key = ("fingerprint",) + key  # hashed once per LM, like the LM itself
            if fingerprint_key not in cache:
                cache[fingerprint_key] = lm_fingerprint(hf_lm)
            now = cache[fingerprint_key]
            if now != saved:
                raise CheckpointError(
                    f"{directory} was trained with {checkpoint.config.lm} (weights {saved}), but {config.lm} has "
                    f"other weights ({now}): same architecture, another model, so its scores would be wrong; "
                    f"pass the LM it was trained with, or {LM_MISMATCH_OK} to use this one anyway"
                )
    model = build_model(checkpoint.kind, config, hf_lm)
    load_weights(model, checkpoint)
    normalizer = FeatureNormalizer.from_state_dict({k: v.numpy() for k, v in checkpoint.extra.items()})
    return LoadedModel(model.to(device).eval(), tokenizer, normalizer, checkpoint.meta, Path(directory), config, notes)
