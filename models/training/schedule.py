"""The learning-rate schedule, gradient clipping and accumulation of the reference recipe, as pure functions.

`fit` (models.training.loop) calls these; they hold no state, so each can be
tested alone and a resumed run recomputes the same values from its counters.

Schedule (docs/recipe.md): a linear warm-up over the first epoch's optimizer
steps, then cosine annealing with warm restarts (PyTorch's
CosineAnnealingWarmRestarts with T_mult = 1), stepped per optimizer step, with
period T_0 = (E + 1)·steps_per_epoch − warmup_steps, E the reference's
`max_epochs`. The period is not a stopping point: training ends by early
stopping (or an optional cap).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import nn

from models.config import CLIP_MODES

# Parameters the reference leaves out of clipping in DeepMLF training: the AV encoder.
AV_PREFIX = "av_encoder."


def micro_batches_per_epoch(n_clips: int, batch_size: int, world: int = 1) -> int:
    """Forward/backward passes one rank runs an epoch: ceil(ceil(N / batch) / world) (no drop_last)."""
    return math.ceil(math.ceil(n_clips / batch_size) / world)


def optimizer_steps_per_epoch(micro_batches: int, grad_accum: int) -> int:
    """floor(micro-batches / grad_accum), as the reference trainer steps.

    The remainder micro-batches still run forward and backward (their
    BatchNorm running statistics update), but there is no partial last step:
    their gradients are discarded by the next epoch's zero_grad.
    """
    return micro_batches // grad_accum


def epoch_schedule(
    n_clips: int, batch_size: int, grad_accum: int, warmup_epochs: float, period_epochs: int, world: int = 1
) -> tuple[int, int, int]:
    """(optimizer steps per epoch, warm-up steps W, restart period T_0) of a training split of `n_clips`."""
    steps = optimizer_steps_per_epoch(micro_batches_per_epoch(n_clips, batch_size, world), grad_accum)
    warmup = warmup_steps_for(warmup_epochs, steps)
    return steps, warmup, restart_period_steps(period_epochs, steps, warmup)


def warmup_steps_for(warmup_epochs: float, steps_per_epoch: int) -> int:
    """Optimizer steps of the linear warm-up (0 when `warmup_epochs` is 0)."""
    return max(0, int(round(warmup_epochs * steps_per_epoch)))


def restart_period_steps(period_epochs: int, steps_per_epoch: int, warmup_steps: int) -> int:
    """T_0 of the warm restarts: (E + 1)·steps_per_epoch − warmup_steps, at least 1."""
    return max(1, (period_epochs + 1) * steps_per_epoch - warmup_steps)


def lr_at_step(step: int, lr: float, min_lr: float, warmup_steps: int, period_steps: int) -> float:
    """Learning rate of optimizer step `step` (0-based).

    Warm-up: lr·step/warmup_steps for step < warmup_steps, so the first
    optimizer step runs at lr 0 (the reference's linear warm-up). Then, with t = step − warmup_steps,
    min_lr + ½(lr − min_lr)(1 + cos(π·(t mod T_0)/T_0)): back at `lr` at every
    restart, never below `min_lr`.
    """
    if step < warmup_steps:
        return lr * step / warmup_steps
    t_cur = (step - warmup_steps) % period_steps
    return min_lr + 0.5 * (lr - min_lr) * (1.0 + math.cos(math.pi * t_cur / period_steps))


def accumulation_scale(clip_mode: str, grad_accum: int) -> float:
    """What each batch's loss is multiplied by before backward.

    Value clipping follows the reference: the accumulated batches' gradients are
    summed (scale 1). Norm clipping averages them (scale 1/grad_accum), as before.
    """
    return 1.0 if clip_mode == "value" else 1.0 / grad_accum


def clipped_parameters(model: nn.Module, scope: str) -> list[nn.Parameter]:
    """The trainable parameters that clipping touches: all, or all but the AV encoder ("non-av")."""
    return [
        p
        for name, p in model.named_parameters()
        if p.requires_grad and (scope == "all" or not name.startswith(AV_PREFIX))
    ]


def clip_gradients(parameters: Iterable[nn.Parameter], mode: str, threshold: float) -> None:
    """Clamp each gradient entry to ±threshold ("value") or rescale to a global norm ≤ threshold ("norm")."""
    parameters = [p for p in parameters if p.grad is not None]
    if not parameters:
        return
    if mode == "value":
        torch.nn.utils.clip_grad_value_(parameters, threshold)
    elif mode == "norm":
        torch.nn.utils.clip_grad_norm_(parameters, threshold)
    else:
        raise ValueError(f"unknown clip mode {mode!r}; choose one of: {', '.join(CLIP_MODES)}")


def epochs_left(epoch: int, bad_epochs: int, patience: int, max_epochs: int | None) -> bool:
    """Whether training goes on: patience not used up and the optional cap not reached."""
    return bad_epochs < patience and (max_epochs is None or epoch < max_epochs)
