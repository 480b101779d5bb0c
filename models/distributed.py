"""Several processes (torchrun) that stay in lock-step: nothing here may let one rank wait forever.

DDP hangs when ranks disagree on how many collectives they run. The training
loop therefore keeps three things identical on every rank:

* the number of forward/backward passes and gradient all-reduces per epoch
  (`shard_batches` pads the epoch's batch list by repeating batches, so every
  rank gets the same count and the same optimizer-step boundaries);
* every decision (best epoch, early stop): rank 0 decides, `broadcast_object`
  hands its answer to the others;
* the model state evaluation sees: `sync_batchnorm_buffers` copies rank 0's
  BatchNorm running statistics (the ones its checkpoint saves) to every rank.

Evaluation is split over the ranks and gathered (`gather_predictions`), so the
metrics are computed once on the full split. Outside torchrun every helper is
a no-op (world size 1).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, TypeVar

import numpy as np
import torch


def is_distributed() -> bool:
    """True inside an initialised process group (torchrun)."""
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def rank_and_world() -> tuple[int, int]:
    """(this process's rank, number of processes); (0, 1) outside torchrun."""
    if is_distributed():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def local_rank() -> int:
    """The rank among this machine's processes (torchrun's LOCAL_RANK): which GPU is ours."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def init_process_group() -> bool:
    """Join torchrun's process group: NCCL on CUDA (after `set_device(local_rank)`), gloo on CPU.

    Returns False (and does nothing) when not started by torchrun.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    if not is_distributed():
        if torch.cuda.is_available():
            # Before the group exists: NCCL binds each rank's communicator to the current device.
            torch.cuda.set_device(local_rank() % torch.cuda.device_count())
            torch.distributed.init_process_group("nccl")
        else:
            torch.distributed.init_process_group("gloo")
    return True


def broadcast_object(value: Any, src: int = 0) -> Any:
    """Rank `src`'s `value` on every rank (any picklable object); `value` itself outside torchrun."""
    if not is_distributed():
        return value
    holder = [value]
    torch.distributed.broadcast_object_list(holder, src=src)
    return holder[0]


T = TypeVar("T")  # a batch (index array), or a batch with its loss divisors


def shard_batches(batches: Sequence[T], rank: int, world: int) -> list[T]:
    """This rank's share of an epoch's batches: the same count on every rank.

    The list is padded at the end with its own first batches (which the
    shuffle made random) up to a multiple of `world`, then dealt round-robin,
    so every rank runs ceil(n / world) forward/backward passes and the
    gradient-accumulation boundaries (every k-th batch and the last) fall on
    the same iterations everywhere. Padding, not dropping: every clip is
    still seen each epoch; at most world − 1 batches are seen twice.
    """
    batches = list(batches)
    if world <= 1 or not batches:
        return batches
    per_rank = -(-len(batches) // world)  # ceil
    padded = [batches[i % len(batches)] for i in range(per_rank * world)]
    return padded[rank::world]


def gather_predictions(local: dict[str, np.ndarray], index: np.ndarray, n: int) -> dict[str, np.ndarray]:
    """Full-split arrays from every rank's share.

    local: name → (n,) array whose rows `index` this rank filled; returns
    name → (n,) with every rank's rows, identical on all ranks.
    """
    if not is_distributed():
        return local
    parts: list[Any] = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(parts, (index, {k: v[index] for k, v in local.items()}))
    out = {k: np.full(n, np.nan, dtype=v.dtype) for k, v in local.items()}
    for part_index, values in parts:
        for k, v in values.items():
            out[k][part_index] = v
    return out


def sync_batchnorm_buffers(model: torch.nn.Module, src: int = 0) -> None:
    """Copy rank `src`'s BatchNorm running statistics to every rank.

    In training each rank updates them on its own batches; rank 0's are the
    ones its checkpoint saves, so after this every rank evaluates exactly
    the model that `deepmlf evaluate` will load.
    """
    if not is_distributed():
        return
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm) and module.track_running_stats:
            for buffer in (module.running_mean, module.running_var, module.num_batches_tracked):
                if buffer is not None:
                    torch.distributed.broadcast(buffer.data, src=src)
