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
from models.nn.registry import build_model, needs_text
from models.run import Run, RunSpec
from models.training.loop import Callbacks, fit, seed_everything
from models.training.resolution import Refused, Resume, Verdict, portable_source, resolve_spec


def av_pretrain_spec(spec: RunSpec, lr: float | None = None, preset=None) -> RunSpec:
    """Stage 1 of the curriculum from a DeepMLF run spec (demo, studies): the AV encoder alone.

    With `preset` (a models.config.Preset) the run takes its pretraining recipe
    (`preset.pretrain` TrainConfig fields, `preset.pretrain_model` model fields,
    e.g. the pool length); the spec's eval batch size and epoch cap stay.
    Without one: reduce-on-plateau, no warm-up, no accumulation on the spec's
    settings. `lr` overrides the learning rate either way.
    """

    lr_field: dict[str, Any] = {"lr": lr} if lr else {}
    if preset is not None:
        kept = {k: getattr(spec.train, k) for k in ("eval_batch_size", "max_epochs")}
        train = TrainConfig.from_dict({**spec.train.to_dict(), **preset.pretrain, **kept, **lr_field})
        model = spec.model.replace(**preset.pretrain_model)
    else:
        # The AV encoder is the whole model here, so clipping covers every parameter.
        train = dataclasses.replace(
            spec.train, schedule="plateau", warmup_epochs=0.0, grad_accum=1, clip_scope="all", **lr_field
        )
        model = spec.model
    return dataclasses.replace(spec, kind="av", model=model, train=train, init_av=None, freeze_av=False)


def dataset_info(dataset: MultimodalDataset) -> dict[str, Any]:
    """What a run records about its data (so evaluate/predict can check and reproduce it)."""
    return {
        "name": dataset.name,
        "source": portable_source(dataset.source),
        "scheme": dataset.scheme,
        "d_audio": dataset.d_audio,
        "d_vision": dataset.d_vision,
        "audio_features": dataset.audio_features,
        "vision_features": dataset.vision_features,
        "audio_rate_hz": dataset.audio_rate_hz,
        "vision_rate_hz": dataset.vision_rate_hz,
        "recipe": dataset.recipe,
        "splits": {k: len(v) for k, v in dataset.splits.items()},
        "fingerprint": dataset.fingerprint(),  # the same data at another path is recognised by it
        # split -> {"audio": n, "vision": n} non-finite values the loader set to 0
        "cleaned": dataset.cleaning_report,
    }


def _check_resumed_lm(run: Run, fingerprint: str, lm: str) -> None:
    """A resumed run goes on with the LM weights it started with (its folder may have moved)."""
    for checkpoint in run.checkpoints(required=False):
        meta_file = checkpoint / "meta.json"
        saved = json.loads(meta_file.read_text()).get("lm_fingerprint") if meta_file.is_file() else None
        if saved is not None and saved != fingerprint:
            raise CheckpointError(
                f"{checkpoint} was trained with LM weights {saved}, but {lm} "
                f"holds other weights ({fingerprint}); resume with the LM it was trained with"
            )


def check_splits(dataset: MultimodalDataset) -> None:
    """Training needs clips in train and valid (early stopping); an empty test split only skips testing."""
    for name, why in (("train", "nothing to learn from"), ("valid", "early stopping and the best state need it")):
        if name not in dataset.splits or len(dataset.splits[name]) == 0:
            sizes = ", ".join(f"{k} {len(v)}" for k, v in dataset.splits.items())
            raise ConfigError(
                f"{dataset.source}: the {name} split is empty ({sizes}); {why}. Re-extract with "
                f"clips in {name} (label.csv `mode` column)"
            )


def has_test_split(dataset: MultimodalDataset) -> bool:
    return "test" in dataset.splits and len(dataset.splits["test"]) > 0


NO_TEST_NOTE = "the test split is empty: no test metrics (the best validation state is saved)"


def small_train_note(dataset: MultimodalDataset, train: TrainConfig) -> str | None:
    """A note when the train split holds fewer clips than one batch: it trains, but on too little to mean much."""
    n = len(dataset.splits["train"])
    if n >= train.batch_size:
        return None
    return (
        f"the train split of {dataset.source} has only {n} clip(s), fewer than one batch ({train.batch_size}): "
        f"each epoch is a single small step and the scores say little; add clips to train "
        f"(label.csv `mode` column) or lower --batch-size"
    )


def train_run(
    dataset: MultimodalDataset,
    spec: RunSpec,
    run_dir: Path,
    resume: bool = False,
    progress: Callable[[int], Callbacks] | None = None,
    hf_lm_and_tokenizer=None,
    on_seed_done: Callable[[int, dict[str, float]], None] | None = None,
    device: torch.device | str = "auto",
    verdict: Verdict | None = None,
    preset: str | None = None,
) -> dict[str, Any]:
    """Train every seed of `spec` on `dataset` on `device`; returns the results dict (also saved in `run_dir`).

    `preset`: the name of the preset `spec` was built from, recorded in a new run's run.json.

    The device is not part of the spec: a run may resume on another one. With
    `verdict` (from `models.training.resolution.resolve_run`, whose spec is then
    prepared already) nothing is decided again here; without it the same rules
    are applied to `spec` and `resume`.

    Without a test split the seeds are trained and saved but not tested:
    their rows are empty and the results carry a note saying so.
    """
    from models.nn.lm import FrozenLM, load_causal_lm

    run_dir = Path(run_dir)
    run = Run(run_dir)
    rank, world = rank_and_world()
    check_splits(dataset)
    dataset.fingerprint()  # of the raw features: `encode_split` below z-scores them in place
    if verdict is None:  # a library caller's plain spec: resolved by the same function the CLI's goes through
        resolved = resolve_spec(spec, dataset, run_dir, resume)
        spec, verdict = resolved.spec, resolved.verdict
    if isinstance(verdict, Refused):
        raise verdict.error()
    resume = isinstance(verdict, Resume)
    config = spec.model  # prepared: the dataset's feature sizes are stamped
    scaling = FeatureNormalizer.fit if spec.train.feature_scaling == "zscore" else FeatureNormalizer.identity
    normalizer = scaling(dataset.splits["train"])
    extra = {k: torch.from_numpy(v) for k, v in normalizer.state_dict().items()}
    device = resolve_device(device)  # as it is when the caller resolved it
    lm_dtype = resolve_lm_dtype(spec.train.lm_dtype, device)
    hf_lm, tokenizer = (
        (hf_lm_and_tokenizer or load_causal_lm(config.lm, dtype=lm_dtype, revision=config.lm_revision))
        if needs_text(spec.kind)
        else (None, None)
    )
    # In place: the dataset's raw features become the normalised ones (held once; a MOSEI-sized
    # dataset is ~5 GB); `normalized_by` lets later runs on the same dataset object reuse them.
    encoded = {
        name: encode_split(split, tokenizer, config.max_text_tokens, normalizer, in_place=True)
        for name, split in dataset.splits.items()
        if len(split)
    }
    if spec.train.text_padding == "fixed":  # the reference's fixed-length text; the masks keep predictions the same
        encoded = {name: dataclasses.replace(split, pad_to=config.max_text_tokens) for name, split in encoded.items()}
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
        run.write_info(spec, dataset_info(dataset), world, preset)
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
        result = fit(
            model,
            encoded["train"],
            encoded["valid"],
            spec.train,
            dataset.scheme,
            seed_dir,
            seed,
            extra_tensors=extra,
            meta=meta,
            callbacks=progress(seed) if progress else None,
            resume=resume,
            device=device,
        )
        metrics: dict[str, float] = {}
        if tested:
            test_pred = predict_encoded(model, encoded["test"], spec.train.eval_batch_size, device)
            metrics = compute_metrics(test_pred["prediction"], encoded["test"].labels, dataset.scheme)
        rows[seed] = metrics
        if rank == 0:
            _plot_seed(
                seed_dir,
                result.history,
                test_pred["prediction"] if tested else None,
                encoded["test"].labels if tested else None,
                dataset.scheme,
            )
            run.write_seed(
                seed,
                result.history,
                {
                    "test": metrics,
                    "valid": result.best_valid,
                    "best_epoch": result.best_epoch,
                    "epochs": len(result.history),
                    "stopped_early": result.stopped_early,
                },
                (encoded["test"].ids, encoded["test"].labels, test_pred) if tested else None,
            )
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
