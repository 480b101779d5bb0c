"""Training runs: several seeds in one call, each seed's best checkpoint kept, results saved.

    RUN_DIR/
      run.json                 resolved model + training config, dataset, seeds, kind
      seed_<S>/best/           checkpoint (config.json, model.safetensors, meta.json)
      seed_<S>/state/          resume state of the last finished epoch
      seed_<S>/history.json    per-epoch losses and validation metrics
      seed_<S>/metrics.json    test metrics of the best state (written last: marks the seed done)
      seed_<S>/predictions_test.csv
      results.json, results.csv  every seed's test row plus mean and std
      plots/*.png
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from models.batching import encode_split, predict_encoded
from models.checkpoint import atomic_write_text, read_checkpoint, split_extra
from models.config import ModelConfig
from models.data import FeatureNormalizer, MultimodalDataset
from models.errors import CheckpointError, ConfigError
from models.metrics import PRIMARY_METRICS, compute_metrics, summarize_seeds
from models.training import (Callbacks, TrainConfig, fit, is_distributed, rank_and_world, resolve_device,
                             resolve_lm_dtype, seed_everything)

RUN_FILE = "run.json"


def _build_deepmlf(config: ModelConfig, hf_lm):
    from models.deepmlf import DeepMLF

    return DeepMLF(config, hf_lm)


def _build_av(config: ModelConfig, hf_lm):
    from models.av_pretrain import AVPretrainModel

    return AVPretrainModel(config)


ALL_MODALITIES: frozenset[str] = frozenset({"text", "audio", "vision"})

# kind -> (builder(config, hf_lm), the modalities the model reads). Other model
# families (baselines) register themselves here.
MODEL_KINDS: dict[str, tuple[Callable[[ModelConfig, Any], torch.nn.Module], frozenset[str]]] = {
    "deepmlf": (_build_deepmlf, ALL_MODALITIES),
    "av": (_build_av, frozenset({"audio", "vision"})),
}


def build_model(kind: str, config: ModelConfig, hf_lm=None) -> torch.nn.Module:
    """A fresh model of `kind` on an already-loaded LM (None for kinds that read no text)."""
    if kind not in MODEL_KINDS:
        raise ConfigError(f"unknown model {kind!r}; choose one of: {', '.join(MODEL_KINDS)}")
    return MODEL_KINDS[kind][0](config, hf_lm)


def model_inputs(kind: str) -> frozenset[str]:
    """The modalities ("text", "audio", "vision") a model kind reads."""
    return MODEL_KINDS[kind][1]


def needs_text(kind: str) -> bool:
    """Whether a model kind reads text (and so needs its LM loaded)."""
    return "text" in model_inputs(kind)


@dataclass
class RunSpec:
    """Everything a run needs besides the data."""

    kind: str
    model: ModelConfig
    train: TrainConfig
    seeds: tuple[int, ...]
    init_av: str | None = None  # a pretraining run/checkpoint dir, or None/"random"
    freeze_av: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "model": self.model.to_dict(), "train": self.train.to_dict(),
                "seeds": list(self.seeds), "init_av": self.init_av, "freeze_av": self.freeze_av}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RunSpec":
        return cls(kind=data["kind"], model=ModelConfig.from_dict(data["model"]),
                   train=TrainConfig.from_dict(data["train"]), seeds=tuple(data["seeds"]),
                   init_av=data.get("init_av"), freeze_av=bool(data.get("freeze_av", False)))


def av_pretrain_spec(spec: RunSpec, lr: float | None) -> RunSpec:
    """Stage 1 of the curriculum from a run spec: the AV encoder alone, AdamW at the preset's AV
    learning rate, reduce-on-plateau, no warmup, no accumulation (`deepmlf pretrain`, demo, studies)."""
    import dataclasses

    train = dataclasses.replace(spec.train, schedule="plateau", warmup_epochs=0.0, grad_accum=1,
                                **({"lr": lr} if lr else {}))
    return dataclasses.replace(spec, kind="av", train=train, init_av=None, freeze_av=False)


def dataset_info(dataset: MultimodalDataset) -> dict[str, Any]:
    """What a run records about its data (so evaluate/predict can check and reproduce it)."""
    return {"name": dataset.name, "source": dataset.source, "scheme": dataset.scheme,
            "d_audio": dataset.d_audio, "d_vision": dataset.d_vision,
            "audio_features": dataset.audio_features, "vision_features": dataset.vision_features,
            "audio_rate_hz": dataset.audio_rate_hz, "vision_rate_hz": dataset.vision_rate_hz,
            "recipe": dataset.recipe, "splits": {k: len(v) for k, v in dataset.splits.items()}}


def find_checkpoint(path: Path, seed: int | None = None) -> Path:
    """A checkpoint directory from a run dir, a seed dir or a checkpoint dir itself."""
    path = Path(path)
    if (path / "config.json").is_file() and (path / "model.safetensors").is_file():
        return path
    if (path / "best").is_dir():
        return path / "best"
    seeds = sorted(path.glob("seed_*/best"))
    if seed is not None:
        seeds = [p for p in seeds if p.parent.name == f"seed_{seed}"]
    if not seeds:
        raise CheckpointError(f"{path} holds no checkpoint (no best/ or seed_*/best/); pass a run directory "
                              f"written by `deepmlf train` or `deepmlf pretrain`")
    return seeds[0]


def run_checkpoints(run_dir: Path) -> list[Path]:
    """Every seed's best checkpoint of a run (or the one checkpoint given)."""
    run_dir = Path(run_dir)
    if not run_dir.exists():
        raise CheckpointError(f"{run_dir} does not exist; pass a run directory written by `deepmlf train`")
    found = sorted(run_dir.glob("seed_*/best"))
    return found or [find_checkpoint(run_dir)]


def _write_predictions_csv(path: Path, ids: list[str], labels: np.ndarray, preds: dict[str, np.ndarray]) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["id", "label", "prediction", "text_head", "av_head", "fusion_head"])
    for i, clip in enumerate(ids):
        writer.writerow([clip, f"{labels[i]:.6g}"] + [f"{preds[k][i]:.6g}" for k in ("prediction", "text", "av", "fusion")])
    atomic_write_text(path, buffer.getvalue())


def summarize_run(rows: dict[int, dict[str, float]], scheme: str) -> dict[str, Any]:
    """Per-seed metric rows plus mean ± std over seeds."""
    summary = summarize_seeds(list(rows.values()))
    return {"scheme": scheme, "primary": list(PRIMARY_METRICS[scheme]),
            "seeds": {str(k): v for k, v in rows.items()},
            "mean": {k: m for k, (m, _) in summary.items()}, "std": {k: s for k, (_, s) in summary.items()}}


def write_results(run_dir: Path, results: dict[str, Any]) -> None:
    """results.json and results.csv (one row per seed, then mean and std)."""
    atomic_write_text(run_dir / "results.json", json.dumps(results, indent=2))
    names = list(results["mean"])
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["seed"] + names)
    for seed, row in results["seeds"].items():
        writer.writerow([seed] + [f"{row[n]:.6g}" for n in names])
    writer.writerow(["mean"] + [f"{results['mean'][n]:.6g}" for n in names])
    writer.writerow(["std"] + [f"{results['std'][n]:.6g}" for n in names])
    atomic_write_text(run_dir / "results.csv", buffer.getvalue())


def prepare_run_dir(run_dir: Path, spec: RunSpec, dataset: MultimodalDataset, resume: bool) -> RunSpec:
    """Create the run directory, or check that a resumed one belongs to the same run.

    Returns the spec to use (on resume: the saved one, so a resumed run
    cannot silently change its hyperparameters).
    """
    run_file = run_dir / RUN_FILE
    if run_file.is_file():
        if not resume:
            raise ConfigError(f"{run_dir} already holds a run; add --resume to continue it, or choose another --out")
        saved = json.loads(run_file.read_text())
        if saved["dataset"]["source"] != dataset.source:
            raise ConfigError(f"{run_dir} was trained on {saved['dataset']['source']}, not {dataset.source}; "
                              f"resume with the same --dataset")
        return RunSpec.from_dict(saved["spec"])
    if run_dir.exists() and any(run_dir.iterdir()):
        raise ConfigError(f"{run_dir} exists and is not a deepmlf run; choose another --out")
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_file, json.dumps({"spec": spec.to_dict(), "dataset": dataset_info(dataset)}, indent=2))
    return spec


def train_run(dataset: MultimodalDataset, spec: RunSpec, run_dir: Path, resume: bool = False,
              progress: Callable[[int], Callbacks] | None = None, hf_lm_and_tokenizer=None,
              on_seed_done: Callable[[int, dict[str, float]], None] | None = None) -> dict[str, Any]:
    """Train every seed of `spec` on `dataset`; returns the results dict (also saved in `run_dir`)."""
    from models.lm import load_causal_lm

    run_dir = Path(run_dir)
    rank, _ = rank_and_world()
    if rank == 0:
        spec = prepare_run_dir(run_dir, spec, dataset, resume)
    if is_distributed():
        # Only rank 0 creates (or checks) the run; the others take its spec.
        torch.distributed.barrier()
        if rank != 0:
            spec = RunSpec.from_dict(json.loads((run_dir / RUN_FILE).read_text())["spec"])
    config = spec.model.replace(d_audio=dataset.d_audio, d_vision=dataset.d_vision)
    normalizer = FeatureNormalizer.fit(dataset.splits["train"])
    extra = {k: torch.from_numpy(v) for k, v in normalizer.state_dict().items()}
    lm_dtype = resolve_lm_dtype(spec.train.lm_dtype, resolve_device(spec.train.device))
    hf_lm, tokenizer = ((hf_lm_and_tokenizer or load_causal_lm(config.lm, dtype=lm_dtype)) if needs_text(spec.kind)
                        else (None, None))
    # In place: the dataset's raw features become the normalised ones (held once; a MOSEI-sized
    # dataset is ~5 GB); `normalized_by` lets later runs on the same dataset object reuse them.
    encoded = {name: encode_split(split, tokenizer, config.max_text_tokens, normalizer, in_place=True)
               for name, split in dataset.splits.items()}
    meta = {"kind": spec.kind, "dataset": dataset_info(dataset)}
    av_weights = None  # Pre&Tune / Pre&Fro: one pretrained AV encoder for every seed
    if spec.init_av and spec.init_av != "random":
        av_weights = split_extra(read_checkpoint(find_checkpoint(Path(spec.init_av), seed=None))[1])[0]
    rows: dict[int, dict[str, float]] = {}
    for seed in spec.seeds:
        seed_dir = run_dir / f"seed_{seed}"
        if (seed_dir / "metrics.json").is_file():  # finished earlier: resume skips it
            rows[seed] = json.loads((seed_dir / "metrics.json").read_text())["test"]
            continue
        seed_everything(seed)
        model = build_model(spec.kind, config, hf_lm)
        if hasattr(model, "lm"):
            model.lm.checkpoint_layers = spec.train.checkpoint_layers
        if av_weights is not None:
            from models.av_pretrain import load_av_weights

            load_av_weights(model, av_weights, freeze=spec.freeze_av)
        result = fit(model, encoded["train"], encoded["valid"], spec.train, dataset.scheme, seed_dir, seed,
                     extra_tensors=extra, meta=meta, callbacks=progress(seed) if progress else None, resume=resume)
        device = resolve_device(spec.train.device)
        test_pred = predict_encoded(model, encoded["test"], spec.train.eval_batch_size, device)
        metrics = compute_metrics(test_pred["prediction"], encoded["test"].labels, dataset.scheme)
        rows[seed] = metrics
        if rank == 0:
            _write_predictions_csv(seed_dir / "predictions_test.csv", encoded["test"].ids, encoded["test"].labels,
                                   test_pred)
            atomic_write_text(seed_dir / "history.json", json.dumps(result.history, indent=1))
            _plot_seed(seed_dir, result.history, test_pred["prediction"], encoded["test"].labels, dataset.scheme)
            atomic_write_text(seed_dir / "metrics.json", json.dumps(
                {"test": metrics, "valid": result.best_valid, "best_epoch": result.best_epoch,
                 "epochs": len(result.history), "stopped_early": result.stopped_early}, indent=2))
        if on_seed_done:
            on_seed_done(seed, metrics)
        del model
    results = summarize_run(rows, dataset.scheme)
    if rank == 0:
        write_results(run_dir, results)
    return results


def _plot_seed(seed_dir: Path, history, predictions, labels, scheme) -> None:
    from models.plots import plot_confusions, plot_curves, plot_scatter

    plots = seed_dir / "plots"
    plot_curves(history, plots / "curves.png")
    plot_scatter(predictions, labels, scheme, plots / "scatter_test.png")
    plot_confusions(predictions, labels, scheme, plots / "confusion_test.png")


# The baselines (models/baselines.py) add their kinds to MODEL_KINDS on import;
# imported here, at the end, so every `models.runs` user sees them.
import models.baselines  # noqa: E402,F401
