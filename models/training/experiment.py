"""Training runs: several seeds in one call, each seed's best checkpoint kept, results saved.

The run directory's layout is `models.run.Run`'s; this module decides what goes in it.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from models.checkpoint import lm_fingerprint, read_checkpoint
from models.config import TrainConfig
from models.data.batching import encode_split
from models.data.normalize import FeatureNormalizer
from models.data.types import MultimodalDataset
from models.devices import resolve_device, resolve_lm_dtype
from models.distributed import is_distributed, rank_and_world
from models.errors import CheckpointError, ConfigError
from models.evaluation.inference import predict_encoded
from models.evaluation.metrics import compute_metrics, summarize_run
from models.io import LOCK_NAME
from models.nn.registry import build_model, model_kind, needs_text
from models.run import Run, RunSpec
from models.training.loop import Callbacks, fit, seed_everything


def av_pretrain_spec(spec: RunSpec, lr: float | None = None, preset=None) -> RunSpec:
    """Stage 1 of the curriculum from a DeepMLF run spec (demo, studies): the AV encoder alone.

    With `preset` (a models.config.Preset) the run takes its pretraining recipe
    (`preset.pretrain` TrainConfig fields, `preset.pretrain_model` model fields,
    e.g. the pool length); the spec's eval batch size and epoch cap stay.
    Without one: reduce-on-plateau, no warm-up, no accumulation on the spec's
    settings. `lr` overrides the learning rate either way.
    """
    import dataclasses

    lr_field: dict[str, Any] = {"lr": lr} if lr else {}
    if preset is not None:
        kept = {k: getattr(spec.train, k) for k in ("eval_batch_size", "max_epochs")}
        train = TrainConfig.from_dict({**spec.train.to_dict(), **preset.pretrain, **kept, **lr_field})
        model = spec.model.replace(**preset.pretrain_model)
    else:
        # The AV encoder is the whole model here, so clipping covers every parameter.
        train = dataclasses.replace(spec.train, schedule="plateau", warmup_epochs=0.0, grad_accum=1,
                                    clip_scope="all", **lr_field)
        model = spec.model
    return dataclasses.replace(spec, kind="av", model=model, train=train, init_av=None, freeze_av=False)


def dataset_info(dataset: MultimodalDataset) -> dict[str, Any]:
    """What a run records about its data (so evaluate/predict can check and reproduce it)."""
    return {"name": dataset.name, "source": _portable_source(dataset.source), "scheme": dataset.scheme,
            "d_audio": dataset.d_audio, "d_vision": dataset.d_vision,
            "audio_features": dataset.audio_features, "vision_features": dataset.vision_features,
            "audio_rate_hz": dataset.audio_rate_hz, "vision_rate_hz": dataset.vision_rate_hz,
            "recipe": dataset.recipe, "splits": {k: len(v) for k, v in dataset.splits.items()},
            "fingerprint": dataset.fingerprint(),  # the same data at another path is recognised by it
            # split -> {"audio": n, "vision": n} non-finite values the loader set to 0
            "cleaned": dataset.cleaning_report}


def _portable_source(source: str) -> str:
    """A dataset path made absolute (so evaluate works from any folder); other sources as they are."""
    path = Path(source).expanduser()
    return str(path.resolve()) if path.exists() else source


# Options that may change between a run and its resume: where and how fast it runs, not what
# it computes (bf16 LM on a GPU, layer checkpointing, the prefix cache, compile).
RESUMABLE_CHANGES: frozenset[str] = frozenset({"train.eval_batch_size", "train.lm_dtype",
                                               "train.checkpoint_layers", "train.prefix_cache_gib",
                                               "train.compile"})


def portable_spec(spec: RunSpec) -> RunSpec:
    """The spec with a local LM directory made absolute, so the run works from any folder."""
    lm = Path(spec.model.lm).expanduser()
    init_av = spec.init_av
    if init_av and init_av != "random" and Path(init_av).expanduser().exists():
        init_av = str(Path(init_av).expanduser().resolve())
    model = spec.model.replace(lm=str(lm.resolve())) if lm.is_dir() else spec.model
    return dataclasses.replace(spec, model=model, init_av=init_av)


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = list(value) if isinstance(value, tuple) else value
    return flat


def spec_differences(saved: RunSpec, requested: RunSpec) -> list[str]:
    """'field: saved → requested' for every setting that differs (device-like ones excepted)."""
    old, new = _flatten(saved.to_dict()), _flatten(requested.to_dict())
    return [f"{key.split('.', 1)[-1]}: {old.get(key)!r} in the run, {new.get(key)!r} now"
            for key in sorted(set(old) | set(new))
            if key not in RESUMABLE_CHANGES and old.get(key) != new.get(key)]


def plan_run_dir(run_dir: Path, spec: RunSpec, dataset: MultimodalDataset, resume: bool) -> tuple[RunSpec, bool]:
    """Check `run_dir` before anything is written; return (the spec to train, whether it resumes).

    A run counts once an epoch has finished (`Run.is_started`): a directory whose
    start failed before that is replaced by a plain rerun (and by --resume,
    which has nothing to continue). A resumed run must be asked for with the
    settings it was started with: any difference is an error that lists them.
    """
    run = Run(run_dir)
    if run.is_started():
        if not resume:
            raise ConfigError(f"{run_dir} already holds a run; add --resume to continue it, or choose another --out")
        saved_data = run.dataset()
        saved_source, source = saved_data.get("source"), _portable_source(dataset.source)
        if saved_source != source:
            if saved_data.get("fingerprint") != dataset.fingerprint():
                raise ConfigError(f"{run_dir} was trained on {saved_source}, not {dataset.source} (other content); "
                                  f"resume with the same --dataset")
            # The same data at another path: the run was copied or moved with it (a copied runs/demo).
            # Paths under the old folder (the LM, the AV encoder) move with it; the LM's weights are
            # checked by their fingerprint once loaded (see `train_run`).
            moved = _moved_roots(str(saved_source), source)
        else:
            moved = None
        saved_world, world = run.world_size(), rank_and_world()[1]
        if saved_world != world:
            raise ConfigError(f"{run_dir} was trained with {saved_world} process(es), not {world}: the steps per "
                              f"epoch (and so the lr schedule) depend on it; resume with "
                              f"torchrun --nproc_per_node {saved_world}" if saved_world > 1 else
                              f"{run_dir} was trained in one process, not {world}: the steps per epoch (and so "
                              f"the lr schedule) depend on it; resume without torchrun")
        saved = run.spec() if moved is None else _moved_spec(run.spec(), *moved)
        differences = spec_differences(saved, spec)
        if differences:
            if run.is_finished(saved) and any(d.startswith("max_epochs:") for d in differences):
                raise ConfigError(
                    f"{run_dir} is finished ({saved.train.max_epochs} epochs at most, every seed done) and "
                    f"--resume only continues an interrupted run: every seed has stopped (early stopping or the cap) "
                    f"and its best state is tested, so other settings ({'; '.join(differences)}) need a new run: choose another --out")
            raise ConfigError(f"{run_dir} was started with other settings ({'; '.join(differences)}); "
                              f"resume with the run's own settings, or choose another --out for new ones")
        return saved, True
    if resume and not run.exists():
        run.spec()  # raises: there is no run to resume
    if not run.exists() and run_dir.exists() and any(p.name != LOCK_NAME for p in run_dir.iterdir()):
        raise ConfigError(f"{run_dir} exists and is not a deepmlf run; choose another --out")
    return spec, False


def _moved_roots(old: str, new: str) -> tuple[str, str]:
    """The folders a tree moved from and to, from one path in it at both places: their common tail
    dropped ("/old/runs/demo/sample", "/new/demo/sample" -> "/old/runs", "/new")."""
    old_parts, new_parts = list(Path(old).parts), list(Path(new).parts)
    while len(old_parts) > 1 and len(new_parts) > 1 and old_parts[-1] == new_parts[-1]:
        old_parts.pop()
        new_parts.pop()
    return str(Path(*old_parts)), str(Path(*new_parts))


def _moved_spec(spec: RunSpec, old_root: str, new_root: str) -> RunSpec:
    """`spec` with its local paths (the LM folder, the AV encoder run) under `old_root` moved under `new_root`."""
    def moved(path: str | None) -> str | None:
        if not path or not Path(path).is_absolute() or not Path(path).is_relative_to(old_root):
            return path
        return str(Path(new_root) / Path(path).relative_to(old_root))

    return dataclasses.replace(spec, model=spec.model.replace(lm=moved(spec.model.lm)), init_av=moved(spec.init_av))


def _check_resumed_lm(run: Run, fingerprint: str, lm: str) -> None:
    """A resumed run goes on with the LM weights it started with (its folder may have moved)."""
    for checkpoint in run.checkpoints(required=False):
        meta_file = checkpoint / "meta.json"
        saved = json.loads(meta_file.read_text()).get("lm_fingerprint") if meta_file.is_file() else None
        if saved is not None and saved != fingerprint:
            raise CheckpointError(f"{checkpoint} was trained with LM weights {saved}, but {lm} "
                                  f"holds other weights ({fingerprint}); resume with the LM it was trained with")


def check_splits(dataset: MultimodalDataset) -> None:
    """Training needs clips in train and valid (early stopping); an empty test split only skips testing."""
    for name, why in (("train", "nothing to learn from"), ("valid", "early stopping and the best state need it")):
        if name not in dataset.splits or len(dataset.splits[name]) == 0:
            sizes = ", ".join(f"{k} {len(v)}" for k, v in dataset.splits.items())
            raise ConfigError(f"{dataset.source}: the {name} split is empty ({sizes}); {why}. Re-extract with "
                              f"clips in {name} (label.csv `mode` column)")


def has_test_split(dataset: MultimodalDataset) -> bool:
    return "test" in dataset.splits and len(dataset.splits["test"]) > 0


NO_TEST_NOTE = "the test split is empty: no test metrics (the best validation state is saved)"


def small_train_note(dataset: MultimodalDataset, train: TrainConfig) -> str | None:
    """A note when the train split holds fewer clips than one batch: it trains, but on too little to mean much."""
    n = len(dataset.splits["train"])
    if n >= train.batch_size:
        return None
    return (f"the train split of {dataset.source} has only {n} clip(s), fewer than one batch ({train.batch_size}): "
            f"each epoch is a single small step and the scores say little; add clips to train "
            f"(label.csv `mode` column) or lower --batch-size")


def train_run(dataset: MultimodalDataset, spec: RunSpec, run_dir: Path, resume: bool = False,
              progress: Callable[[int], Callbacks] | None = None, hf_lm_and_tokenizer=None,
              on_seed_done: Callable[[int, dict[str, float]], None] | None = None,
              device: torch.device | str = "auto") -> dict[str, Any]:
    """Train every seed of `spec` on `dataset` on `device`; returns the results dict (also saved in `run_dir`).

    The device is not part of the spec: a run may resume on another one.

    Without a test split the seeds are trained and saved but not tested:
    their rows are empty and the results carry a note saying so.
    """
    from models.nn.lm import FrozenLM, lm_revision, load_causal_lm

    run_dir = Path(run_dir)
    run = Run(run_dir)
    rank, world = rank_and_world()
    check_splits(dataset)
    dataset.fingerprint()  # of the raw features: `encode_split` below z-scores them in place
    spec = portable_spec(dataclasses.replace(spec, kind=model_kind(spec.kind)))
    if needs_text(spec.kind) and spec.model.lm_revision is None:
        # The hub snapshot it trains on, so evaluate/predict rebuild the same LM after the cache moves on.
        spec = dataclasses.replace(spec, model=spec.model.replace(lm_revision=lm_revision(spec.model.lm)))
    if rank == 0:
        spec, resume = plan_run_dir(run_dir, spec, dataset, resume)
    elif resume and run.is_started():  # rank 0 checks; the others take the saved spec
        spec = run.spec()
    else:
        resume = False
    config = spec.model.replace(d_audio=dataset.d_audio, d_vision=dataset.d_vision)
    normalizer = FeatureNormalizer.fit(dataset.splits["train"])
    extra = {k: torch.from_numpy(v) for k, v in normalizer.state_dict().items()}
    device = resolve_device(str(device))
    lm_dtype = resolve_lm_dtype(spec.train.lm_dtype, device)
    hf_lm, tokenizer = ((hf_lm_and_tokenizer or load_causal_lm(config.lm, dtype=lm_dtype, revision=config.lm_revision)) if needs_text(spec.kind)
                        else (None, None))
    # In place: the dataset's raw features become the normalised ones (held once; a MOSEI-sized
    # dataset is ~5 GB); `normalized_by` lets later runs on the same dataset object reuse them.
    encoded = {name: encode_split(split, tokenizer, config.max_text_tokens, normalizer, in_place=True)
               for name, split in dataset.splits.items() if len(split)}
    # The LM dtype it trained with: `deepmlf evaluate` on CUDA loads the LM the same way, so it
    # reproduces the test metrics written here.
    meta = {"kind": spec.kind, "dataset": dataset_info(dataset), "lm_dtype": str(lm_dtype).removeprefix("torch.")}
    if hf_lm is not None:  # evaluate/predict refuse an LM with other weights under the same name or shape
        meta["lm_fingerprint"] = fingerprint = lm_fingerprint(hf_lm)
        if resume:
            _check_resumed_lm(run, fingerprint, config.lm)
    av_weights = None  # Pre&Tune / Pre&Fro: one pretrained AV encoder for every seed
    if spec.init_av and spec.init_av != "random":
        av_weights = read_checkpoint(Run(spec.init_av).best()).weights
    if rank == 0 and not resume:
        # The process count sets the steps per epoch, hence the warm-up and the restart period.
        run.write_info(spec, dataset_info(dataset), world)
    if is_distributed():
        torch.distributed.barrier()  # the run directory exists before any rank writes into it
    tested = has_test_split(dataset)
    rows: dict[int, dict[str, float]] = {}
    for seed in spec.seeds:
        seed_dir = run.seed_dir(seed)
        if run.seed_done(seed):  # finished earlier: resume skips it
            rows[seed] = run.seed_metrics(seed)["test"]
            continue
        seed_everything(seed)
        model = build_model(spec.kind, config, hf_lm)
        lm = getattr(model, "lm", None)  # DeepMLF and the baselines that read text have one
        if isinstance(lm, FrozenLM):
            lm.checkpoint_layers = spec.train.checkpoint_layers
        if av_weights is not None:
            from models.nn.av_pretrain import load_av_weights

            load_av_weights(model, av_weights, freeze=spec.freeze_av)
        result = fit(model, encoded["train"], encoded["valid"], spec.train, dataset.scheme, seed_dir, seed,
                     extra_tensors=extra, meta=meta, callbacks=progress(seed) if progress else None, resume=resume,
                     device=device)
        metrics: dict[str, float] = {}
        if tested:
            test_pred = predict_encoded(model, encoded["test"], spec.train.eval_batch_size, device)
            metrics = compute_metrics(test_pred["prediction"], encoded["test"].labels, dataset.scheme)
        rows[seed] = metrics
        if rank == 0:
            _plot_seed(seed_dir, result.history, test_pred["prediction"] if tested else None,
                       encoded["test"].labels if tested else None, dataset.scheme)
            run.write_seed(seed, result.history,
                           {"test": metrics, "valid": result.best_valid, "best_epoch": result.best_epoch,
                            "epochs": len(result.history), "stopped_early": result.stopped_early},
                           (encoded["test"].ids, encoded["test"].labels, test_pred) if tested else None)
        if on_seed_done:
            on_seed_done(seed, metrics)
        del model
    results = summarize_run(rows, dataset.scheme)
    results["cleaned"] = dataset.cleaning_report
    notes = [note for note in (small_train_note(dataset, spec.train), None if tested else NO_TEST_NOTE) if note]
    if notes:
        results["notes"] = notes
    if rank == 0:
        run.write_results(results)
    return results


def _plot_seed(seed_dir: Path, history, predictions, labels, scheme) -> None:
    from models.evaluation.plots import plot_confusions, plot_curves, plot_scatter

    plots = seed_dir / "plots"
    plot_curves(history, plots / "curves.png")
    if predictions is None:  # no test split
        return
    plot_scatter(predictions, labels, scheme, plots / "scatter_test.png")
    plot_confusions(predictions, labels, scheme, plots / "confusion_test.png")
