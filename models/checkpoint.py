"""Checkpoints: a directory with the resolved config (JSON) and the trainable tensors (safetensors).

    checkpoint/
      config.json        ModelConfig.to_dict()
      model.safetensors  DeepMLF.trainable_state_dict() (+ extra tensors, prefixed "extra.")
      meta.json          anything JSON-able the caller adds (dataset, normaliser, metrics, versions)

The frozen LM is referenced by `config.lm` (hub id or path), never copied.
Directories are written under a temporary name and renamed, so a crash never
leaves a half-written checkpoint behind. No pickles anywhere.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from models.config import ModelConfig
from models.errors import CheckpointError
from models.io import atomic_dir

EXTRA_PREFIX = "extra."


def save_checkpoint(directory: Path, model, extra: dict[str, torch.Tensor] | None = None,
                    meta: dict[str, Any] | None = None) -> Path:
    """Write `model` (a DeepMLF or any module with `config` and `trainable_state_dict`) atomically."""
    from safetensors.torch import save_file

    directory = Path(directory)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.trainable_state_dict().items()}
    for key, value in (extra or {}).items():
        tensors[EXTRA_PREFIX + key] = torch.as_tensor(value).detach().to("cpu").contiguous()
    with atomic_dir(directory) as tmp:  # its files get shareable modes (safetensors writes 0600)
        save_file(tensors, str(tmp / "model.safetensors"))
        (tmp / "config.json").write_text(json.dumps(model.config.to_dict(), indent=2) + "\n", encoding="utf-8")
        (tmp / "meta.json").write_text(json.dumps(meta or {}, indent=2, default=str) + "\n", encoding="utf-8")
    return directory


def read_checkpoint(directory: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor], dict[str, Any]]:
    """(config dict, tensors, meta) of a checkpoint directory, with clear errors when parts are missing."""
    from safetensors.torch import load_file

    directory = Path(directory)
    missing = [n for n in ("config.json", "model.safetensors") if not (directory / n).is_file()]
    if missing:
        raise CheckpointError(f"{directory} is not a deepmlf checkpoint (missing {', '.join(missing)}); "
                              f"pass a checkpoint directory written by `deepmlf train` or `deepmlf pretrain`")
    try:
        config = json.loads((directory / "config.json").read_text())
        meta = json.loads((directory / "meta.json").read_text()) if (directory / "meta.json").is_file() else {}
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{directory}: corrupt JSON ({exc}); retrain or restore the checkpoint") from None
    tensors = load_file(str(directory / "model.safetensors"))
    return config, tensors, meta


def split_extra(tensors: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Separate model tensors from the caller's extra tensors."""
    model = {k: v for k, v in tensors.items() if not k.startswith(EXTRA_PREFIX)}
    extra = {k[len(EXTRA_PREFIX):]: v for k, v in tensors.items() if k.startswith(EXTRA_PREFIX)}
    return model, extra


def load_deepmlf(directory: Path, device: str | torch.device = "cpu", lm: str | None = None):
    """Rebuild a DeepMLF checkpoint: returns (model in eval mode, tokenizer, extra tensors, meta).

    `lm` overrides where the frozen LM is loaded from (e.g. the same model in
    another directory); the config's own reference is used otherwise.
    """
    from models.nn.deepmlf import DeepMLF

    config_dict, tensors, meta = read_checkpoint(directory)
    config = ModelConfig.from_dict(config_dict)
    if lm is not None:
        config = config.replace(lm=lm)
    model, tokenizer = DeepMLF.from_config(config)
    weights, extra = split_extra(tensors)
    expected = set(model.trainable_state_dict())
    missing, unexpected = expected - set(weights), set(weights) - expected
    if missing or unexpected:
        raise CheckpointError(f"{directory}: tensors do not match the config (missing {sorted(missing)[:3]}, "
                              f"unexpected {sorted(unexpected)[:3]}); the checkpoint is from another model version")
    model.load_state_dict(weights, strict=False)
    return model.to(device).eval(), tokenizer, extra, meta
