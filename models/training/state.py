"""Resume state of a training run: model, optimizer, counters and RNGs of the last finished epoch."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from models.io import atomic_dir

# --- resume state: tensors in safetensors, counters in JSON --------------------------------------

def save_state(directory: Path, model, optimizer, counters: dict[str, Any]) -> None:
    from safetensors.torch import save_file

    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.trainable_state_dict().items()}
    opt_state = optimizer.state_dict()
    for pid, state in opt_state["state"].items():
        for key, value in state.items():
            tensors[f"optim.{pid}.{key}"] = torch.as_tensor(value).detach().cpu().contiguous()
    tensors["rng.torch"] = torch.get_rng_state()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        tensors["rng.cuda"] = torch.cuda.get_rng_state()  # dropout and SeqAug masks on the GPU draw from it
    counters = {**counters, "param_groups": [{k: v for k, v in g.items() if k != "params"} | {"params": g["params"]}
                                             for g in opt_state["param_groups"]]}
    # Both files swap in together: a state directory never pairs one epoch's
    # tensors with another epoch's counters, and counts once it names its epoch.
    with atomic_dir(Path(directory)) as tmp:
        save_file(tensors, str(tmp / "state.safetensors"))
        (tmp / "state.json").write_text(json.dumps(counters, indent=1), encoding="utf-8")


def load_state(directory: Path, model, optimizer) -> dict[str, Any]:
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
    return counters
