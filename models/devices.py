"""Where and in what precision the model runs: the device, the frozen LM's dtype, bf16 autocast."""

from __future__ import annotations

from pathlib import Path

import torch

from models.distributed import is_distributed, local_rank
from models.errors import ConfigError


def resolve_device(name: str | torch.device) -> torch.device:
    """ "auto" → CUDA when available (the local rank's GPU under torchrun), else CPU.

    A torch.device is one resolved already (the CLI resolves --device once) and
    is returned as it is, so the layers it is handed down to decide nothing again.
    """
    if isinstance(name, torch.device):
        return name
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
    """--lm-dtype: "auto" → bf16 on CUDA, fp32 elsewhere; "bfloat16" also on the CPU.

    Each preset sets its default (TrainConfig.lm_dtype): "float32" where the reference's config has
    use_bf16 false (mosei, mosei-large, sims), "auto" where it is true (mosi) and for the sample.

    A bf16 LM runs under bf16 autocast (`autocast_context`), the trainable parts
    keeping fp32 master weights. On the CPU that is opt-in: it changes the
    numbers (fp32 is the reference's arithmetic), and it is fast only on CPUs
    with bf16 instructions (AVX512-BF16, AMX); elsewhere bf16 matmuls are emulated.
    """
    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return getattr(torch, name)


def autocast_context(device: torch.device, enabled: bool | None = None):
    """bf16 autocast: by default on CUDA only; `enabled=True` forces it on any device, False turns it off.

    Callers holding a model pass `enabled=model_autocast(model, device)`: a bf16
    LM on the CPU runs under CPU autocast. CPU bf16 autocast also runs the same
    mixed-precision code as a GPU, so tests catch dtype bugs on machines without one.
    """
    if enabled is None:
        enabled = device.type == "cuda"
    if enabled:
        return torch.autocast(device.type, dtype=torch.bfloat16)
    import contextlib

    return contextlib.nullcontext()


def model_autocast(model: torch.nn.Module, device: torch.device) -> bool:
    """The autocast setting a model computes under: bf16 autocast exactly when it holds bf16 weights
    (a bf16 frozen LM, which meets the fp32 trainable layers only under autocast), on any device.

    So the LM's dtype is the run's precision: an fp32 LM on CUDA trains and evaluates in fp32
    (the reference's use_bf16: false), a bf16 one under bf16 autocast (use_bf16: true).
    `device` is kept for the callers' symmetry with `autocast_context`.
    """
    return any(p.dtype == torch.bfloat16 for p in model.parameters())


def cpu_has_native_bf16(cpuinfo: str | None = None) -> bool | None:
    """Whether this CPU multiplies bf16 natively (x86 AVX512-BF16 or AMX-BF16, Arm BF16), from
    /proc/cpuinfo's flags; None where that file does not exist (not Linux)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return None
    return bool(set(cpuinfo.split()) & {"avx512_bf16", "amx_bf16", "bf16"})


def slow_bf16_note(lm_dtype: str, device: torch.device, cpuinfo: str | None = None) -> str | None:
    """A line for `--lm-dtype bfloat16` on a CPU without bf16 instructions (emulated: slower than fp32)."""
    if lm_dtype != "bfloat16" or device.type != "cpu" or cpu_has_native_bf16(cpuinfo) is not False:
        return None
    return (
        "--lm-dtype bfloat16 on a CPU without bf16 instructions (AVX512-BF16, AMX): bf16 is emulated "
        "here and slower than float32; use --lm-dtype auto"
    )
