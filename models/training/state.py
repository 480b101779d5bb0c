"""Resume state of a training run: model, optimizer, counters and RNGs of the last finished epoch."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from models.errors import ConfigError
from models.io import atomic_dir


@dataclass
class FitCounters:
    """Where a `fit` stands after its last finished epoch: what resume needs besides the tensors."""

    epoch: int = 0  # epochs finished (the next one to run)
    step: int = 0  # optimizer steps taken (the schedule's position)
    best_score: float = float("inf")  # the best validation selection score (models.training.loop.selection_score)
    best_epoch: int = -1  # -1 until an epoch gives finite validation predictions
    bad_epochs: int = 0  # epochs since the last new best (early stopping)
    history: list[dict[str, Any]] = field(default_factory=list)  # one record per finished epoch
    best_valid: dict[str, float] = field(default_factory=dict)  # the best epoch's validation metrics
    plateau: dict[str, Any] | None = None  # ReduceLROnPlateau's state (AV pretraining), else None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FitCounters:
        """From `to_dict()`; state files written before this class named the best score `best_mae`."""
        data = dict(data)
        if "best_mae" in data:
            data["best_score"] = data.pop("best_mae")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"resume state holds unknown counters {unknown}; start the run again without --resume")
        return cls(**data)


# --- resume state: tensors in safetensors, counters in JSON --------------------------------------


def save_state(directory: Path, model, optimizer, counters: FitCounters) -> None:
    from safetensors.torch import save_file

    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.trainable_state_dict().items()}
    opt_state = optimizer.state_dict()
    for pid, state in opt_state["state"].items():
        for key, value in state.items():
            tensors[f"optim.{pid}.{key}"] = torch.as_tensor(value).detach().cpu().contiguous()
    tensors["rng.torch"] = torch.get_rng_state()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        tensors["rng.cuda"] = torch.cuda.get_rng_state()  # dropout and SeqAug masks on the GPU draw from it
    saved = {
        **counters.to_dict(),
        "param_groups": [
            {k: v for k, v in g.items() if k != "params"} | {"params": g["params"]} for g in opt_state["param_groups"]
        ],
    }
    # Both files swap in together: a state directory never pairs one epoch's
    # tensors with another epoch's counters, and counts once it names its epoch.
    with atomic_dir(Path(directory)) as tmp:
        save_file(tensors, str(tmp / "state.safetensors"))
        (tmp / "state.json").write_text(json.dumps(saved, indent=1), encoding="utf-8")


def load_state(directory: Path, model, optimizer) -> FitCounters:
    """Load `save_state`'s tensors into `model` and `optimizer`, restore the RNGs; returns the counters."""
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
    if "rng.cuda" in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state(tensors["rng.cuda"])
    return FitCounters.from_dict(counters)
