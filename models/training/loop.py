"""The training recipe of docs/recipe.md: AdamW groups, warmup + cosine, accumulation,
clipping, batching (models.data.batching.training_batches), early stopping on the validation
score, best state reloaded for test.

One `fit` loop serves DeepMLF, AV pretraining and the baselines: a model is
anything whose `forward(batch, compute_loss)` returns an `Output` with
`.prediction` and `.loss`, and that has `config` and `trainable_state_dict()`.

Resume: after every epoch the loop writes `state/` (weights, optimizer,
counters, RNG) atomically, so a kill loses at most the current epoch.
"""

from __future__ import annotations

import contextlib
import random
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel

from models.checkpoint import load_weights, read_checkpoint, save_checkpoint
from models.config import SELECTION_TOLERANCE, TrainConfig
from models.data.batching import EncodedSplit, collate, training_batches
from models.devices import autocast_context, model_autocast, resolve_device
from models.distributed import (
    broadcast_object,
    is_distributed,
    rank_and_world,
    shard_batches,
    sync_batchnorm_buffers,
)
from models.errors import ConfigError
from models.evaluation.inference import predict_encoded
from models.evaluation.metrics import compute_metrics
from models.run import BEST_DIR, STATE_DIR
from models.training.schedule import (
    accumulation_scale,
    clip_gradients,
    clipped_parameters,
    epoch_schedule,
    epochs_left,
    lr_at_step,
    micro_batches_per_epoch,
)
from models.training.state import FitCounters, load_state, save_state


class Callbacks(Protocol):
    """How the loop reports progress (the CLI draws bars; tests pass nothing)."""

    def on_epoch_start(self, epoch: int, n_batches: int) -> None: ...
    def on_batch(self, loss: float) -> None: ...
    def on_epoch_end(self, epoch: int, record: dict[str, Any]) -> None: ...


class _Silent:
    def on_epoch_start(self, epoch, n_batches):
        pass

    def on_batch(self, loss):
        pass

    def on_epoch_end(self, epoch, record):
        pass


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def parameter_groups(model: torch.nn.Module, weight_decay: float, groups: str = "non-bias") -> list[dict[str, Any]]:
    """AdamW groups as the reference trainer builds them: decay 0 only where the name contains "bias".

    LayerNorm weights, the gates and the fusion tokens are decayed like the
    weight matrices (the reference's rule, which the paper's numbers come from).
    `groups="all"` (TrainConfig.decay_groups): every trainable parameter decays, biases
    included (the reference's AV pretraining).
    """
    if groups == "all":
        return [{"params": [p for p in model.parameters() if p.requires_grad], "weight_decay": weight_decay}]
    decay: list[torch.nn.Parameter] = []
    no_decay: list[torch.nn.Parameter] = []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if "bias" in name else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


@dataclass
class FitResult:
    best_epoch: int
    best_valid: dict[str, float]
    history: list[dict[str, Any]] = field(default_factory=list)
    stopped_early: bool = False


def score_validation(
    pred: np.ndarray, labels: np.ndarray, scheme: str, epoch: int
) -> tuple[float, dict[str, float], int]:
    """(validation L1, metrics, number of non-finite predictions) of one epoch.

    A NaN/inf prediction makes the epoch a bad one (L1 NaN never improves, no
    metrics) with a warning, instead of crashing the metrics.
    """
    nonfinite = int((~np.isfinite(pred)).sum())
    if nonfinite:
        warnings.warn(
            f"epoch {epoch}: {nonfinite} of {len(pred)} validation predictions are NaN/inf; "
            f"the epoch counts as one without improvement",
            RuntimeWarning,
            stacklevel=2,
        )
        return float("nan"), {}, nonfinite
    # The stopping criterion: plain L1 on the validation split.
    return float(np.mean(np.abs(pred - labels))), compute_metrics(pred, labels, scheme), 0


def selection_score(pred: np.ndarray, labels: np.ndarray, batch_size: int, rule: str) -> float:
    """The number the best epoch is chosen by (lower is better; NaN never improves).

    "reference": the released trainer's validation loss, the mean over the split's batches
    (`batch_size` clips, in the split's order, the last one shorter) of each batch's mean L1,
    rounded to 4 decimals. "l1": plain L1 over all clips.
    """
    errors = np.abs(np.asarray(pred, np.float64) - np.asarray(labels, np.float64))  # (N,)
    if rule == "l1":
        return float(errors.mean())
    means = [errors[i : i + batch_size].mean() for i in range(0, len(errors), batch_size)]
    return round(float(np.mean(means)), 4)


def improves(score: float, best: float, rule: str) -> bool:
    """Whether `score` is a new best: lower by more than SELECTION_TOLERANCE under "reference", at all under "l1"."""
    return score < best - (SELECTION_TOLERANCE if rule == "reference" else 0.0)


def fit(
    model: torch.nn.Module,
    train: EncodedSplit,
    valid: EncodedSplit,
    config: TrainConfig,
    scheme: str,
    out_dir: Path,
    seed: int,
    extra_tensors: dict[str, torch.Tensor] | None = None,
    meta: dict[str, Any] | None = None,
    callbacks: Callbacks | None = None,
    resume: bool = False,
    device: torch.device | str = "auto",
) -> FitResult:
    """Train `model` with early stopping on the validation score (`selection_score`); the best state is
    saved to `out_dir/best`.

    Returns with the best state loaded into `model`. With `resume`, continues
    from `out_dir/state` if an earlier call left one.
    """
    callbacks = callbacks or _Silent()
    out_dir = Path(out_dir)
    rank, world = rank_and_world()
    device = resolve_device(device)  # a resolved torch.device passes through as it is
    model.to(device)
    autocast = model_autocast(model, device)  # bf16 autocast exactly with a bf16 LM (the preset's precision)
    configure_speed = getattr(model, "configure_speed", None)
    if callable(configure_speed):  # DeepMLF: caches and compilation that leave the math as it is
        configure_speed(config.prefix_cache_gib, device, config.compile)
    trainable = [p for p in model.parameters() if p.requires_grad]
    if not trainable:
        raise ConfigError("nothing in the model is trainable; check --freeze-av and the FFW mode")
    optimizer = torch.optim.AdamW(
        parameter_groups(model, config.weight_decay, config.decay_groups),
        lr=config.lr,
        betas=(config.beta1, config.beta2),
    )
    plateau = (
        torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, factor=config.plateau_factor, patience=config.plateau_patience
        )
        if config.schedule == "plateau"
        else None
    )
    clipped = clipped_parameters(model, config.clip_scope)
    loss_scale = accumulation_scale(config.clip_mode, config.grad_accum)
    ddp_model = model
    if is_distributed():
        ddp_model = DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None, find_unused_parameters=True
        )

    batches_per_epoch = micro_batches_per_epoch(len(train), config.batch_size, world)
    steps_per_epoch, warmup_steps, period_steps = epoch_schedule(
        len(train), config.batch_size, config.grad_accum, config.warmup_epochs, config.cosine_period_epochs, world
    )
    if steps_per_epoch < 1:
        raise ConfigError(
            f"{len(train)} training clips make {batches_per_epoch} batches of {config.batch_size} per "
            f"rank, fewer than grad_accum={config.grad_accum}: no optimizer step would run; "
            f"lower --grad-accum or --batch-size"
        )
    counters = FitCounters()
    state_dir = out_dir / STATE_DIR
    if resume and (state_dir / "state.json").is_file():
        counters = load_state(state_dir, model, optimizer)
        if plateau is not None and counters.plateau is not None:  # its best and bad-epoch count: cuts come on time
            plateau.load_state_dict(counters.plateau)

    while epochs_left(counters.epoch, counters.bad_epochs, config.patience, config.max_epochs):
        epoch = counters.epoch
        rng = np.random.default_rng([seed, epoch])  # the same batches on every rank and on resume
        # Every rank draws the whole epoch's list (one optimizer step = world × grad_accum of it) and
        # takes its share.
        cut, norms = training_batches(train, config.batch_size, world * config.grad_accum, rng, config.batching)
        plan = [(b, norm) for b, norm in zip(cut, norms) if len(b) > 1]  # BatchNorm needs two clips
        batches = shard_batches(plan, rank, world)  # the same count on every rank: no DDP hang
        model.train()
        callbacks.on_epoch_start(epoch, len(batches))
        started = time.time()
        losses: list[float] = []
        term_sums: dict[str, float] = {}
        text_cells = pad_cells = 0  # text positions processed, and how many of them were padding
        optimizer.zero_grad(set_to_none=True)
        for i, (index, norm) in enumerate(batches):
            batch = collate(train, index, norm).to(device)
            text_cells, pad_cells = text_cells + batch.text_valid.numel(), pad_cells + int((~batch.text_valid).sum())
            # No partial last step: the remainder batches' gradients are dropped by the next zero_grad.
            last_of_step = (i + 1) % config.grad_accum == 0
            # DDP syncs gradients on every backward unless told not to: only the step's last batch syncs.
            sync: contextlib.AbstractContextManager = contextlib.nullcontext()
            if isinstance(ddp_model, DistributedDataParallel) and not last_of_step:
                sync = ddp_model.no_sync()
            with sync:
                with autocast_context(device, autocast):
                    out = ddp_model(batch)
                loss = out.loss * loss_scale
                loss.backward()
            if config.clip_every == "micro-batch":  # the accumulated gradients so far (AV pretraining)
                clip_gradients(clipped, config.clip_mode, config.clip_threshold)
            losses.append(float(out.loss.detach()))
            for k, v in out.terms.items():
                term_sums[k] = term_sums.get(k, 0.0) + v
            callbacks.on_batch(losses[-1])
            if last_of_step:
                if config.schedule == "cosine":
                    lr = lr_at_step(counters.step, config.lr, config.min_lr, warmup_steps, period_steps)
                    for group in optimizer.param_groups:
                        group["lr"] = lr
                if config.clip_every == "step":
                    clip_gradients(clipped, config.clip_mode, config.clip_threshold)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                counters.step += 1
        sync_batchnorm_buffers(model)  # every rank evaluates rank 0's (the checkpointed) statistics
        valid_pred = predict_encoded(model, valid, config.eval_batch_size, device)["prediction"]
        valid_mae, valid_metrics, nonfinite = score_validation(valid_pred, valid.labels, scheme, epoch)
        score = (
            valid_mae if nonfinite else selection_score(valid_pred, valid.labels, config.batch_size, config.selection)
        )
        if plateau is not None:
            plateau.step(score)
        record = {
            "epoch": epoch,
            "train_loss": float(np.mean(losses)) if losses else float("nan"),
            "train_terms": {k: v / max(1, len(losses)) for k, v in term_sums.items()},
            "valid_l1": valid_mae,
            "valid": valid_metrics,
            "lr": optimizer.param_groups[0]["lr"],
            "valid_score": score,
            "seconds": round(time.time() - started, 2),
            "valid_nonfinite": nonfinite,
            "text_padding": round(pad_cells / max(1, text_cells), 4),
        }
        prefix_cache = getattr(model, "prefix_cache", None)
        if prefix_cache is not None:
            record["prefix_cache"] = prefix_cache.stats()
        improved = improves(score, counters.best_score, config.selection)
        if improved:
            counters.best_score, counters.best_epoch, counters.bad_epochs = score, epoch, 0
            counters.best_valid = valid_metrics
            if rank == 0:
                save_checkpoint(
                    out_dir / BEST_DIR,
                    model,
                    extra=extra_tensors,
                    meta={**(meta or {}), "seed": seed, "epoch": epoch, "valid": valid_metrics},
                )
        else:
            counters.bad_epochs += 1
        record["best"] = improved
        counters.history.append(record)
        counters.epoch = epoch + 1
        counters.plateau = plateau.state_dict() if plateau is not None else None
        counters = broadcast_object(counters)  # rank 0 decides best epoch and stopping for every rank
        if rank == 0:
            save_state(state_dir, model, optimizer, counters)
        callbacks.on_epoch_end(epoch, record)
    if is_distributed():
        torch.distributed.barrier()
    if counters.best_epoch < 0:
        raise ConfigError(
            "no epoch gave finite validation predictions (all NaN/inf): lower --lr, "
            "or check the features for extreme values"
        )
    load_weights(model, read_checkpoint(out_dir / BEST_DIR))
    return FitResult(
        counters.best_epoch, counters.best_valid, counters.history, stopped_early=counters.bad_epochs >= config.patience
    )
