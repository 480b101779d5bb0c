"""Where and in what precision the model runs: the device, the frozen LM's dtype, bf16 autocast."""

from __future__ import annotations

import torch

from models.errors import ConfigError
from models.training.distributed import is_distributed, local_rank


def resolve_device(name: str) -> torch.device:
    """"auto" → CUDA when available (the local rank's GPU under torchrun), else CPU."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank() % torch.cuda.device_count())
        return torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {name}: no CUDA device is visible here; use --device cpu or auto")
    if device.type == "cuda" and is_distributed():
        # Under torchrun every rank takes its own GPU: "cuda" (or one fixed index) would put all on one.
        return torch.device("cuda", local_rank() % torch.cuda.device_count())
    return device




def resolve_lm_dtype(name: str, device: torch.device) -> torch.dtype:
    """--lm-dtype: "auto" → bf16 on CUDA (the frozen LM at half the memory; trainable parts stay fp32
    under bf16 autocast), fp32 elsewhere (CPU autocast is off, and CPU bf16 matmuls are slow)."""
    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if name == "bfloat16" and device.type != "cuda":
        # fp32 trainable layers meet bf16 LM activations only under autocast, which runs on CUDA.
        raise ConfigError(f"--lm-dtype bfloat16 needs a CUDA device (bf16 autocast), not {device}; "
                          f"use --lm-dtype float32 or auto on CPU")
    return getattr(torch, name)


def autocast_context(device: torch.device, enabled: bool | None = None):
    """bf16 autocast: by default on CUDA only; `enabled=True` forces it on any device, False turns it off.

    CPU bf16 autocast is slow, but it runs the same mixed-precision code as a
    GPU, so tests catch dtype bugs on machines without one.
    """
    if enabled is None:
        enabled = device.type == "cuda"
    if enabled:
        return torch.autocast(device.type, dtype=torch.bfloat16)
    import contextlib

    return contextlib.nullcontext()
