"""The training recipe of DESIGN.md §3: AdamW groups, warmup + cosine, accumulation,
clipping, early stopping on validation L1, best state reloaded for test.

One `fit` loop serves DeepMLF, AV pretraining and the baselines: a model is
anything whose `forward(batch, compute_loss)` returns an `Output` with
`.prediction` and `.loss`, and that has `config` and `trainable_state_dict()`.

Resume: after every epoch the loop writes `state/` (weights, optimizer,
counters, RNG) atomically, so a kill loses at most the current epoch.
"""

from __future__ import annotations

import contextlib
import json
import math
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from models.batching import EncodedSplit, autocast_context, collate, length_bucketed_batches, predict_encoded
from models.checkpoint import atomic_write_text, read_checkpoint, save_checkpoint, split_extra
from models.errors import ConfigError
from models.metrics import compute_metrics


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings (DESIGN.md §3 "Optimisation")."""

    lr: float = 1e-4
    weight_decay: float = 0.1  # preset-dependent: 0.005 MOSEI base, 0.1 MOSEI large and SIMS, 0.001 MOSI
    beta1: float = 0.9
    beta2: float = 0.95
    batch_size: int = 32
    grad_accum: int = 8  # optimizer step every `grad_accum` batches
    max_epochs: int = 100
    patience: int = 10  # epochs without a better validation L1 before stopping
    warmup_epochs: float = 1.0
    min_lr: float = 1e-7  # cosine floor
    clip_norm: float = 5.0
    schedule: str = "cosine"  # "cosine" (DeepMLF) or "plateau" (AV pretraining: reduce on plateau)
    eval_batch_size: int = 64
    device: str = "auto"
    prefix_cache_gib: float = 2.0  # per-clip text states reused across epochs (DESIGN.md §7); 0 = off
    compile: bool = False  # torch.compile the MM blocks and the AV encoder

    def __post_init__(self) -> None:
        if self.schedule not in ("cosine", "plateau"):
            raise ConfigError(f"schedule={self.schedule!r}; choose cosine or plateau")
        for name in ("lr", "batch_size", "grad_accum", "max_epochs", "eval_batch_size"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name}={getattr(self, name)} must be > 0")
        if self.patience < 1:
            raise ConfigError(f"patience={self.patience} must be >= 1")
        if self.prefix_cache_gib < 0:
            raise ConfigError(f"prefix_cache_gib={self.prefix_cache_gib} must be >= 0 (0 turns the cache off)")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown training config keys {unknown}; valid keys: {sorted(known)}")
        return cls(**data)


class Callbacks(Protocol):
    """How the loop reports progress (the CLI draws bars; tests pass nothing)."""

    def on_epoch_start(self, epoch: int, n_batches: int) -> None: ...
    def on_batch(self, loss: float) -> None: ...
    def on_epoch_end(self, epoch: int, record: dict[str, Any]) -> None: ...


class _Silent:
    def on_epoch_start(self, epoch, n_batches): pass
    def on_batch(self, loss): pass
    def on_epoch_end(self, epoch, record): pass


def resolve_device(name: str) -> torch.device:
    """"auto" → CUDA when available (the local rank's GPU under torchrun), else CPU."""
    if name == "auto":
        if torch.cuda.is_available():
            rank = int(torch.distributed.get_rank()) if is_distributed() else 0
            return torch.device("cuda", rank % torch.cuda.device_count())
        return torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {name}: no CUDA device is visible here; use --device cpu or auto")
    return device


def is_distributed() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def rank_and_world() -> tuple[int, int]:
    if is_distributed():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def parameter_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups: weight matrices decay; biases, norms, gates and fusion tokens do not."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if p.ndim < 2 or name.endswith("bias") or "norm" in name or name == "fusion_tokens" or "ln_" in name:
            no_decay.append(p)
        else:
            decay.append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def cosine_lr(step: int, total_steps: int, warmup_steps: int, lr: float, min_lr: float) -> float:
    """Linear warmup to `lr`, then cosine decay to `min_lr` at `total_steps`."""
    if step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return min_lr + 0.5 * (lr - min_lr) * (1 + math.cos(math.pi * progress))


# --- resume state: tensors in safetensors, counters in JSON --------------------------------------

def _save_state(directory: Path, model, optimizer, counters: dict[str, Any]) -> None:
    from safetensors.torch import save_file

    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.trainable_state_dict().items()}
    opt_state = optimizer.state_dict()
    for pid, state in opt_state["state"].items():
        for key, value in state.items():
            tensors[f"optim.{pid}.{key}"] = torch.as_tensor(value).detach().cpu().contiguous()
    tensors["rng.torch"] = torch.get_rng_state()
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / "state.safetensors.tmp"
    save_file(tensors, str(tmp))
    tmp.replace(directory / "state.safetensors")
    counters = {**counters, "param_groups": [{k: v for k, v in g.items() if k != "params"} | {"params": g["params"]}
                                             for g in opt_state["param_groups"]]}
    # The JSON is written last: a state directory counts only once it names its epoch.
    atomic_write_text(directory / "state.json", json.dumps(counters, indent=1))


def _load_state(directory: Path, model, optimizer) -> dict[str, Any]:
    from safetensors.torch import load_file

    counters = json.loads((directory / "state.json").read_text())
    tensors = load_file(str(directory / "state.safetensors"))
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")}, strict=False)
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, pid, name = key.split(".", 2)
            state.setdefault(int(pid), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": counters.pop("param_groups")})
    torch.set_rng_state(tensors["rng.torch"])
    return counters


@dataclass
class FitResult:
    best_epoch: int
    best_valid: dict[str, float]
    history: list[dict[str, Any]] = field(default_factory=list)
    stopped_early: bool = False


def fit(model: torch.nn.Module, train: EncodedSplit, valid: EncodedSplit, config: TrainConfig, scheme: str,
        out_dir: Path, seed: int, extra_tensors: dict[str, torch.Tensor] | None = None,
        meta: dict[str, Any] | None = None, callbacks: Callbacks | None = None, resume: bool = False) -> FitResult:
    """Train `model` with early stopping on validation L1; the best state is saved to `out_dir/best`.

    Returns with the best state loaded into `model`. With `resume`, continues
    from `out_dir/state` if an earlier call left one.
    """
    callbacks = callbacks or _Silent()
    out_dir = Path(out_dir)
    rank, world = rank_and_world()
    device = resolve_device(config.device)
    model.to(device)
    if hasattr(model, "configure_speed"):  # DeepMLF: caches and compilation that leave the math as it is
        model.configure_speed(config.prefix_cache_gib, device, config.compile)
    trainable = [p for p in model.parameters() if p.requires_grad]
    if not trainable:
        raise ConfigError("nothing in the model is trainable; check --freeze-av and the FFW mode")
    optimizer = torch.optim.AdamW(parameter_groups(model, config.weight_decay), lr=config.lr,
                                  betas=(config.beta1, config.beta2))
    plateau = (torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.5, patience=max(1, config.patience // 3))
               if config.schedule == "plateau" else None)
    ddp_model = model
    if is_distributed():
        from torch.nn.parallel import DistributedDataParallel

        ddp_model = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None,
                                            find_unused_parameters=True)

    batches_per_epoch = math.ceil(math.ceil(len(train) / config.batch_size) / world)
    steps_per_epoch = max(1, math.ceil(batches_per_epoch / config.grad_accum))
    total_steps = steps_per_epoch * config.max_epochs
    warmup_steps = max(1, int(round(config.warmup_epochs * steps_per_epoch)))
    counters = {"epoch": 0, "step": 0, "best_mae": float("inf"), "best_epoch": -1, "bad_epochs": 0,
                "history": [], "best_valid": {}}
    state_dir = out_dir / "state"
    if resume and (state_dir / "state.json").is_file():
        counters = _load_state(state_dir, model, optimizer)

    while counters["epoch"] < config.max_epochs and counters["bad_epochs"] < config.patience:
        epoch = counters["epoch"]
        rng = np.random.default_rng([seed, epoch])  # the same batches on every rank and on resume
        batches = length_bucketed_batches(train, config.batch_size, rng)
        batches = [b for b in batches if len(b) > 1]  # BatchNorm needs two clips
        batches = batches[rank::world]
        model.train()
        callbacks.on_epoch_start(epoch, len(batches))
        started, losses, term_sums = time.time(), [], {}
        text_cells = pad_cells = 0  # text positions processed, and how many of them were padding
        optimizer.zero_grad(set_to_none=True)
        for i, index in enumerate(batches):
            batch = collate(train, index).to(device)
            text_cells, pad_cells = text_cells + batch.text_valid.numel(), pad_cells + int((~batch.text_valid).sum())
            last_of_step = (i + 1) % config.grad_accum == 0 or i + 1 == len(batches)
            sync = ddp_model.no_sync() if (ddp_model is not model and not last_of_step) else contextlib.nullcontext()
            with sync:
                with autocast_context(device):
                    out = ddp_model(batch)
                loss = out.loss / config.grad_accum
                loss.backward()
            losses.append(float(out.loss.detach()))
            for k, v in out.terms.items():
                term_sums[k] = term_sums.get(k, 0.0) + v
            callbacks.on_batch(losses[-1])
            if last_of_step:
                if config.schedule == "cosine":
                    lr = cosine_lr(counters["step"], total_steps, warmup_steps, config.lr, config.min_lr)
                    for group in optimizer.param_groups:
                        group["lr"] = lr
                torch.nn.utils.clip_grad_norm_(trainable, config.clip_norm)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                counters["step"] += 1
        valid_pred = predict_encoded(model, valid, config.eval_batch_size, device)["prediction"]
        valid_metrics = compute_metrics(valid_pred, valid.labels, scheme)
        valid_mae = float(np.mean(np.abs(valid_pred - valid.labels)))  # the stopping criterion: plain L1
        if plateau is not None:
            plateau.step(valid_mae)
        record = {"epoch": epoch, "train_loss": float(np.mean(losses)) if losses else float("nan"),
                  "train_terms": {k: v / max(1, len(losses)) for k, v in term_sums.items()},
                  "valid_l1": valid_mae, "valid": valid_metrics, "lr": optimizer.param_groups[0]["lr"],
                  "seconds": round(time.time() - started, 2), "text_padding": round(pad_cells / max(1, text_cells), 4)}
        if getattr(model, "prefix_cache", None) is not None:
            record["prefix_cache"] = model.prefix_cache.stats()
        improved = valid_mae < counters["best_mae"]
        if improved:
            counters.update(best_mae=valid_mae, best_epoch=epoch, bad_epochs=0, best_valid=valid_metrics)
            if rank == 0:
                save_checkpoint(out_dir / "best", model, extra=extra_tensors,
                                meta={**(meta or {}), "seed": seed, "epoch": epoch, "valid": valid_metrics})
        else:
            counters["bad_epochs"] += 1
        record["best"] = improved
        counters["history"].append(record)
        counters["epoch"] = epoch + 1
        if rank == 0:
            _save_state(state_dir, model, optimizer, counters)
        callbacks.on_epoch_end(epoch, record)
    if is_distributed():
        torch.distributed.barrier()
    _, tensors, _ = read_checkpoint(out_dir / "best")
    weights, _ = split_extra(tensors)
    model.load_state_dict(weights, strict=False)
    return FitResult(counters["best_epoch"], counters["best_valid"], counters["history"],
                     stopped_early=counters["bad_epochs"] >= config.patience)
