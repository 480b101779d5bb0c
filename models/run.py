"""A run directory: the one place that knows its layout.

    RUN_DIR/
      run.json                 the spec (kind, model + training config, seeds), the dataset, the process count
      seed_<S>/best/           checkpoint (config.json, model.safetensors, meta.json: models.checkpoint)
      seed_<S>/state/          resume state of the last finished epoch (models.training.state)
      seed_<S>/history.json    per-epoch losses and validation metrics
      seed_<S>/metrics.json    test metrics of the best state (written last: marks the seed done)
      seed_<S>/predictions_test.csv
      seed_<S>/plots/*.png
      results.json, results.csv  every seed's test row plus mean and std

`deepmlf train` and `pretrain` write it (models.training.experiment); evaluate,
compare, study, demo and predict read it; all of them through `Run`.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from models.config import ModelConfig, TrainConfig
from models.errors import CheckpointError, ConfigError
from models.io import atomic_write_text

RUN_FILE = "run.json"
RESULTS_FILE = "results.json"
CHECKPOINT_FILES = ("config.json", "model.safetensors")
PREDICTIONS_FILE = "predictions_test.csv"
BEST_DIR = "best"  # in a seed directory: the checkpoint of the best validation epoch
STATE_DIR = "state"  # in a seed directory: the resume state of the last finished epoch


@dataclass
class RunSpec:
    """Everything a run needs besides the data and the device it runs on."""

    kind: str
    model: ModelConfig
    train: TrainConfig
    seeds: tuple[int, ...]
    init_av: str | None = None  # a pretraining run/checkpoint dir, or None/"random"
    freeze_av: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "model": self.model.to_dict(),
            "train": self.train.to_dict(),
            "seeds": list(self.seeds),
            "init_av": self.init_av,
            "freeze_av": self.freeze_av,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunSpec:
        return cls(
            kind=data["kind"],
            model=ModelConfig.from_dict(data["model"]),
            train=TrainConfig.from_dict(data["train"]),
            seeds=tuple(data["seeds"]),
            init_av=data.get("init_av"),
            freeze_av=bool(data.get("freeze_av", False)),
        )


def is_checkpoint(path: Path) -> bool:
    """Whether `path` is a checkpoint directory itself (models.checkpoint writes them)."""
    return all((Path(path) / name).is_file() for name in CHECKPOINT_FILES)


class Run:
    """The run directory at `path`: its spec, dataset, results, seeds and checkpoints.

    Reading never creates anything; the `write_*` methods write atomically.
    """

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r})"

    # ------------------------------------------------------------------ finding runs
    @classmethod
    def latest(cls, root: Path | str) -> Run:
        """The run under `root` (searched recursively) with the newest run.json that holds a checkpoint."""
        root = Path(root)
        found = sorted(root.rglob(RUN_FILE), key=lambda p: p.stat().st_mtime, reverse=True) if root.is_dir() else []
        for run_file in found:
            run = cls(run_file.parent)
            if run.checkpoints(required=False):
                return run
        raise CheckpointError(
            f"no trained model found under {root}/ (no {RUN_FILE} with a checkpoint); train one "
            f"with `deepmlf train --dataset DIR` (or run `make demo`), or pass --model RUN_DIR"
        )

    @classmethod
    def find_upwards(cls, path: Path | str) -> Run | None:
        """The run holding `path` (a run, seed or checkpoint directory): the nearest run.json upwards."""
        path = Path(path)
        for directory in (path, *path.parents):
            if (directory / RUN_FILE).is_file():
                return cls(directory)
        return None

    # ------------------------------------------------------------------ run.json
    @property
    def run_file(self) -> Path:
        return self.path / RUN_FILE

    def exists(self) -> bool:
        """Whether a run was started here (run.json is written once training starts)."""
        return self.run_file.is_file()

    def info(self) -> dict[str, Any]:
        """run.json as written: {"spec", "dataset", "world_size"} and, when the run came from one, "preset"
        (its name); a plain error when it is missing or corrupt."""
        if not self.exists():
            raise ConfigError(f"{self.path} holds no run (no {RUN_FILE}); pass a directory written by `deepmlf train`")
        try:
            info = json.loads(self.run_file.read_text())
        except json.JSONDecodeError as exc:
            raise CheckpointError(f"{self.run_file} is not a deepmlf run file ({exc}); choose another run") from None
        if not isinstance(info, dict) or "spec" not in info:
            raise CheckpointError(f"{self.run_file} is not a deepmlf run file (no spec); choose another run")
        return info

    def spec(self) -> RunSpec:
        """The spec saved in run.json; a plain error when there is none or another deepmlf version wrote it."""
        if not self.exists():
            raise ConfigError(f"{self.path} holds no run to resume (no {RUN_FILE}); run without --resume to start one")
        saved = self.info()["spec"]
        try:
            return RunSpec.from_dict(saved)
        except (ConfigError, KeyError, TypeError) as exc:
            # e.g. a run started by an older deepmlf, whose settings this version no longer has
            raise CheckpointError(
                f"{self.run_file} was written by another deepmlf version ({exc}); it cannot be "
                f"resumed: start a new run with another --out"
            ) from None

    def dataset(self) -> dict[str, Any]:
        """What the run recorded about its data (models.training.experiment.dataset_info); {} without run.json."""
        return dict(self.info().get("dataset", {})) if self.exists() else {}

    def world_size(self) -> int:
        """How many processes trained the run (it sets the steps per epoch, so the lr schedule)."""
        return int(self.info().get("world_size", 1))

    def write_info(self, spec: RunSpec, dataset: dict[str, Any], world_size: int, preset: str | None = None) -> None:
        """run.json: written once training really starts (the model is built, the data encoded).

        `preset`: the name of the preset the spec was built from (provenance only: the spec holds
        every setting, so it is not read back to train).
        """
        self.path.mkdir(parents=True, exist_ok=True)
        info: dict[str, Any] = {"spec": spec.to_dict(), "dataset": dataset, "world_size": world_size}
        if preset is not None:
            info["preset"] = preset
        atomic_write_text(self.run_file, json.dumps(info, indent=2))

    # ------------------------------------------------------------------ seeds
    def seed_dir(self, seed: int | str) -> Path:
        return self.path / f"seed_{seed}"

    def seed_done(self, seed: int | str) -> bool:
        """Whether the seed finished (its metrics.json is written last)."""
        return (self.seed_dir(seed) / "metrics.json").is_file()

    def seed_metrics(self, seed: int | str) -> dict[str, Any]:
        """A finished seed's metrics.json: {"test", "valid", "best_epoch", "epochs", "stopped_early"}."""
        return json.loads((self.seed_dir(seed) / "metrics.json").read_text())

    def seed_predictions(self, seed: int | str) -> Path | None:
        """A seed's saved test predictions (CSV), or None when the run saved none."""
        path = self.seed_dir(seed) / PREDICTIONS_FILE
        return path if path.is_file() else None

    def is_started(self) -> bool:
        """Whether the run holds trained work: a finished epoch (state/) or a finished seed."""
        return self.exists() and (
            any(self.path.glob(f"seed_*/{STATE_DIR}/state.json")) or any(self.path.glob("seed_*/metrics.json"))
        )

    def is_finished(self, spec: RunSpec | None = None) -> bool:
        """Whether every seed of the run (of `spec`, by default the saved one) is done."""
        spec = spec or self.spec()
        return all(self.seed_done(s) for s in spec.seeds)

    def write_seed(
        self,
        seed: int,
        history: list[dict[str, Any]],
        metrics: dict[str, Any],
        test: tuple[list[str], np.ndarray, dict[str, np.ndarray]] | None,
    ) -> None:
        """A finished seed's history, test predictions (ids, labels, every head) and metrics (last: marks it done)."""
        directory = self.seed_dir(seed)
        if test is not None:
            ids, labels, predictions = test
            buffer = io.StringIO()
            writer = csv.writer(buffer)
            writer.writerow(["id", "label", "prediction", "text_head", "av_head", "fusion_head"])
            for i, clip in enumerate(ids):
                writer.writerow(
                    [clip, f"{labels[i]:.6g}"]
                    + [f"{predictions[k][i]:.6g}" for k in ("prediction", "text", "av", "fusion")]
                )
            atomic_write_text(directory / PREDICTIONS_FILE, buffer.getvalue())
        atomic_write_text(directory / "history.json", json.dumps(history, indent=1))
        atomic_write_text(directory / "metrics.json", json.dumps(metrics, indent=2))

    # ------------------------------------------------------------------ checkpoints
    def checkpoints(self, required: bool = True) -> list[Path]:
        """Every seed's best checkpoint, in seed order (or the one checkpoint `path` is or holds)."""
        if not self.path.exists():
            if not required:
                return []
            raise CheckpointError(f"{self.path} does not exist; pass a run directory written by `deepmlf train`")
        found = sorted(p for p in self.path.glob(f"seed_*/{BEST_DIR}") if is_checkpoint(p))
        if found:
            return found
        if is_checkpoint(self.path):
            return [self.path]
        if is_checkpoint(self.path / BEST_DIR):
            return [self.path / BEST_DIR]
        if not required:
            return []
        raise CheckpointError(
            f"{self.path} holds no checkpoint (no best/ or seed_*/best/); pass a run directory "
            f"written by `deepmlf train` or `deepmlf pretrain`"
        )

    def best(self, seed: int | None = None) -> Path:
        """The best checkpoint of `seed` (default: the first seed), of a seed dir, or `path` itself."""
        found = self.checkpoints()
        if seed is not None:
            found = [p for p in found if p.parent.name == f"seed_{seed}"]
            if not found:
                raise CheckpointError(
                    f"{self.path} has no checkpoint for seed {seed}; seeds: "
                    f"{', '.join(checkpoint_seed(p) or '?' for p in self.checkpoints())}"
                )
        return found[0]

    # ------------------------------------------------------------------ results
    @property
    def results_file(self) -> Path:
        return self.path / RESULTS_FILE

    def results(self) -> dict[str, Any] | None:
        """results.json (every seed's test row, mean and std), or None while the run is not finished."""
        if not self.results_file.is_file():
            return None
        try:
            return json.loads(self.results_file.read_text())
        except json.JSONDecodeError as exc:
            raise CheckpointError(f"{self.results_file} is not a deepmlf results file ({exc})") from None

    def write_results(self, results: dict[str, Any]) -> None:
        """results.json and results.csv (one row per seed, then mean and std)."""
        atomic_write_text(self.results_file, json.dumps(results, indent=2))
        names = list(results["mean"])
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(["seed"] + names)
        for seed, row in results["seeds"].items():
            writer.writerow([seed] + [f"{row[n]:.6g}" for n in names])
        writer.writerow(["mean"] + [f"{results['mean'][n]:.6g}" for n in names])
        writer.writerow(["std"] + [f"{results['std'][n]:.6g}" for n in names])
        atomic_write_text(self.path / "results.csv", buffer.getvalue())


def checkpoint_seed(checkpoint: Path) -> str | None:
    """The seed a run's checkpoint belongs to ("3" for RUN/seed_3/best), None for a lone checkpoint."""
    parent = Path(checkpoint).parent.name
    return parent.removeprefix("seed_") if parent.startswith("seed_") else None
