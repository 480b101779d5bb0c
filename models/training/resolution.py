"""Resolving a run, once: parsed options + a dataset + a run directory → the spec to train and what resuming means.

`resolve_run` takes every decision a training run needs before any weight
loads, and hands the answers down as values:

- the preset (`resolve_preset_name`): --preset, the config file's, the named
  dataset's, or the transcripts' language;
- the spec (`spec_from_preset`, or `resumed_spec` on --resume: the run's own
  settings with the options given applied);
- `prepare_spec`: the model kind normalised, the dataset's feature sizes
  stamped, a local LM and --init-av made absolute, the hub snapshot pinned;
- `resume_verdict`: Fresh, Resume, or Refused with every changed setting.

`models.training.experiment.train_run` takes a `ResolvedRun` as it is; a
library caller that passes a plain spec gets it resolved by `resolve_spec`
there, so the rules exist once. The device is not part of a run (it may
resume on another one): the caller resolves it once (`models.devices.resolve_device`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from models.config import DATASET_PRESETS, PRESETS, Preset, TrainConfig, get_preset
from models.data.types import MultimodalDataset, transcripts_are_cjk
from models.distributed import rank_and_world
from models.errors import ConfigError
from models.io import LOCK_NAME
from models.nn.registry import model_kind, needs_text
from models.run import Run, RunSpec
from models.schemes import Scheme


@dataclass(frozen=True)
class RunOptions:
    """What the user asked for, parsed (None = not given). `file_config` is a config file's tables."""

    kind: str | None = None
    preset: str | None = None
    file_config: dict[str, Any] = field(default_factory=dict)
    model_overrides: dict[str, Any] = field(default_factory=dict)
    train_overrides: dict[str, Any] = field(default_factory=dict)
    seeds: tuple[int, ...] | None = None
    init_av: str | None = None
    freeze_av: bool = False

    def __post_init__(self) -> None:
        if self.kind is not None:  # the one place a model name is normalised ("Early" → "early")
            object.__setattr__(self, "kind", model_kind(self.kind))

    @property
    def names_a_recipe(self) -> bool:
        """Whether a preset or a config file was given (then a resumed run's settings are not the base)."""
        return self.preset is not None or bool(self.file_config)


@dataclass(frozen=True)
class Fresh:
    """A new run (or a rerun of a directory whose start failed before its first epoch)."""


@dataclass(frozen=True)
class Resume:
    """Continue the interrupted run in the directory with its own settings."""


@dataclass(frozen=True)
class Refused:
    """The directory cannot take this run; `reason` says why and what to do, `changes` lists each changed setting."""

    reason: str
    changes: tuple[str, ...] = ()

    def error(self) -> ConfigError:
        return ConfigError(self.reason)


Verdict = Fresh | Resume | Refused


@dataclass(frozen=True)
class ResolvedRun:
    """The spec to train (prepared: see `prepare_spec`) and what the run directory means for it."""

    spec: RunSpec
    run_dir: Path
    verdict: Verdict
    preset: str | None = None  # the preset the spec came from, recorded in run.json (None: unknown)

    @property
    def resumes(self) -> bool:
        """Whether training continues the directory's run (a Refused run raises before it trains)."""
        return isinstance(self.verdict, Resume)


# --------------------------------------------------------------------------- the spec
def resolve_preset_name(preset: str | None, file_config: dict[str, Any], dataset, reads_text: bool = True) -> str:
    """--preset, else the config file's, else the named dataset's own, else from the transcripts' language.

    A custom dataset's label range says which metrics score it, not which LM
    reads it: Chinese transcripts get `sims` (a Chinese GPT-2), other
    transcripts on MOSI's [-3, 3] scale get `mosei` (GPT-2); anything else
    (e.g. English on [-1, 1]) is refused with the choices, not guessed. A
    model that reads no text (`reads_text` False, e.g. AV pretraining) takes
    the same choice where the transcripts decide it (so `pretrain` and `train`
    agree), else the label range picks (sims for [-1, 1], else mosei).
    """
    if preset:
        return preset
    if "preset" in file_config:
        return file_config["preset"]
    if dataset.name.lower() in DATASET_PRESETS:
        return DATASET_PRESETS[dataset.name.lower()]
    cjk = transcripts_are_cjk(dataset)
    if cjk:
        return "sims"
    if cjk is not None and dataset.scheme == Scheme.MOSI:
        return "mosei"
    if not reads_text:  # no LM to choose: the label range picks the AV settings
        return "sims" if dataset.scheme == Scheme.SIMS else "mosei"
    what = "no transcripts" if cjk is None else "non-Chinese transcripts"
    choices = ", ".join(f"{name} ({p.description})" for name, p in PRESETS.items() if name != "sample")
    raise ConfigError(
        f"{dataset.source}: cannot choose a preset for a custom dataset with {what} and labels on "
        f"the {dataset.scheme} scale; pass --preset: {choices}"
    )


def _given(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


def spec_from_preset(options: RunOptions, dataset) -> tuple[RunSpec, Preset]:
    """Preset → config file → options, validated into a RunSpec (and the preset it came from).

    The AV encoder alone (kind "av", `deepmlf pretrain`) takes the preset's
    pretraining recipe (`pretrain`, `pretrain_model`); every other kind its `train`.
    """
    kind = options.kind or "deepmlf"
    chosen = get_preset(resolve_preset_name(options.preset, options.file_config, dataset, needs_text(kind)))
    pretraining = kind == "av"
    model_fields = {
        **(chosen.pretrain_model if pretraining else {}),
        **options.file_config.get("model", {}),
        **_given(options.model_overrides),
    }
    train_fields = {
        **(chosen.pretrain if pretraining else chosen.train),
        **options.file_config.get("train", {}),
        **_given(options.train_overrides),
    }
    # The dataset's feature sizes are stamped by `prepare_spec`, the one place that does it.
    spec = RunSpec(
        kind=kind,
        model=chosen.model_config(**model_fields),
        train=TrainConfig.from_dict(train_fields),
        seeds=tuple(options.seeds or (0,)),
        init_av=options.init_av,
        freeze_av=options.freeze_av,
    )
    return spec, chosen


def resumed_spec(saved: RunSpec, options: RunOptions) -> RunSpec:
    """The saved spec of a run with the options given applied (None = not given).

    `resume_verdict` then compares it with the saved one, so an option that
    differs from the run is reported instead of silently ignored.
    """
    model = saved.model.replace(**_given(options.model_overrides))
    train = dataclasses.replace(saved.train, **_given(options.train_overrides))
    return dataclasses.replace(
        saved,
        kind=options.kind or saved.kind,
        model=model,
        train=train,
        seeds=tuple(options.seeds) if options.seeds else saved.seeds,
        init_av=options.init_av if options.init_av is not None else saved.init_av,
        freeze_av=options.freeze_av or saved.freeze_av,
    )


def stamp_features(spec: RunSpec, dataset: MultimodalDataset) -> RunSpec:
    """The spec with the dataset's own feature sizes (a preset's are those of the MMSA files)."""
    return dataclasses.replace(spec, model=spec.model.replace(d_audio=dataset.d_audio, d_vision=dataset.d_vision))


def portable_source(source: str) -> str:
    """A dataset path made absolute (so evaluate works from any folder); other sources as they are."""
    path = Path(source).expanduser()
    return str(path.resolve()) if path.exists() else source


def portable_spec(spec: RunSpec) -> RunSpec:
    """The spec with a local LM directory and --init-av made absolute, so the run works from any folder."""
    lm = Path(spec.model.lm).expanduser()
    init_av = spec.init_av
    if init_av and init_av != "random" and Path(init_av).expanduser().exists():
        init_av = str(Path(init_av).expanduser().resolve())
    model = spec.model.replace(lm=str(lm.resolve())) if lm.is_dir() else spec.model
    return dataclasses.replace(spec, model=model, init_av=init_av)


def prepare_spec(spec: RunSpec, dataset: MultimodalDataset) -> RunSpec:
    """The spec as a run saves it: kind normalised, feature sizes stamped, paths absolute, hub snapshot pinned.

    Idempotent, so a spec that `resolve_run` prepared is left as it is.
    """
    from models.nn.lm import lm_revision

    spec = portable_spec(stamp_features(dataclasses.replace(spec, kind=model_kind(spec.kind)), dataset))
    if needs_text(spec.kind) and spec.model.lm_revision is None:
        # The hub snapshot it trains on, so evaluate/predict rebuild the same LM after the cache moves on.
        spec = dataclasses.replace(spec, model=spec.model.replace(lm_revision=lm_revision(spec.model.lm)))
    return spec


# --------------------------------------------------------------------------- resuming
# Options that may change between a run and its resume: where and how fast it runs, not what
# it computes (bf16 LM on a GPU, layer checkpointing, the prefix cache, compile).
RESUMABLE_CHANGES: frozenset[str] = frozenset(
    {"train.eval_batch_size", "train.lm_dtype", "train.checkpoint_layers", "train.prefix_cache_gib", "train.compile"}
)


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
    return [
        f"{key.split('.', 1)[-1]}: {old.get(key)!r} in the run, {new.get(key)!r} now"
        for key in sorted(set(old) | set(new))
        if key not in RESUMABLE_CHANGES and old.get(key) != new.get(key)
    ]


def resume_verdict(
    run_dir: Path, spec: RunSpec, dataset: MultimodalDataset, resume: bool, world: int
) -> tuple[RunSpec, Verdict]:
    """What `run_dir` means for `spec` (prepared), before anything is written: (the spec to train, the verdict).

    A run counts once an epoch has finished (`Run.is_started`): a directory whose
    start failed before that is replaced by a plain rerun (and by --resume,
    which has nothing to continue). A resumed run must be asked for with the
    settings it was started with: every difference is listed in the refusal.
    """
    run = Run(run_dir)
    if run.is_started():
        if not resume:
            return spec, Refused(f"{run_dir} already holds a run; add --resume to continue it, or choose another --out")
        saved_data = run.dataset()
        saved_source, source = saved_data.get("source"), portable_source(dataset.source)
        moved = None
        if saved_source != source:
            if saved_data.get("fingerprint") != dataset.fingerprint():
                return spec, Refused(
                    f"{run_dir} was trained on {saved_source}, not {dataset.source} (other "
                    f"content); resume with the same --dataset",
                    ("dataset",),
                )
            # The same data at another path: the run was copied or moved with it (a copied runs/demo).
            # Paths under the old folder (the LM, the AV encoder) move with it; the LM's weights are
            # checked by their fingerprint once loaded (`models.training.experiment.train_run`).
            moved = _moved_roots(str(saved_source), source)
        saved_world = run.world_size()
        if saved_world != world:
            return spec, Refused(
                f"{run_dir} was trained with {saved_world} process(es), not {world}: the steps per "
                f"epoch (and so the lr schedule) depend on it; resume with "
                f"torchrun --nproc_per_node {saved_world}"
                if saved_world > 1
                else f"{run_dir} was trained in one process, not {world}: the steps per epoch (and so "
                f"the lr schedule) depend on it; resume without torchrun",
                ("processes",),
            )
        saved = run.spec() if moved is None else _moved_spec(run.spec(), *moved)
        differences = tuple(spec_differences(saved, spec))
        if differences:
            if run.is_finished(saved) and any(d.startswith("max_epochs:") for d in differences):
                return spec, Refused(
                    f"{run_dir} is finished ({saved.train.max_epochs} epochs at most, every seed done) and "
                    f"--resume only continues an interrupted run: every seed has stopped (early stopping or the cap) "
                    f"and its best state is tested, so other settings ({'; '.join(differences)}) need a new run: "
                    f"choose another --out",
                    differences,
                )
            return spec, Refused(
                f"{run_dir} was started with other settings ({'; '.join(differences)}); "
                f"resume with the run's own settings, or choose another --out for new ones",
                differences,
            )
        return saved, Resume()
    if resume and not run.exists():
        run.spec()  # raises: there is no run to resume
    if not run.exists() and run_dir.exists() and any(p.name != LOCK_NAME for p in run_dir.iterdir()):
        return spec, Refused(f"{run_dir} exists and is not a deepmlf run; choose another --out")
    return spec, Fresh()


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


def require_run(run_dir: Path) -> None:
    """Raise unless `run_dir` holds a run to resume (asked before the data loads, so --resume fails fast)."""
    Run(run_dir).spec()


def resolve_run(
    options: RunOptions, dataset: MultimodalDataset, run_dir: Path, resume: bool = False, world: int | None = None
) -> ResolvedRun:
    """Every decision of a training run before weights load: the prepared spec and what resuming means.

    On --resume with neither a preset nor a config file, the run's own saved
    settings are the base (so a resume never falls back to the dataset's
    default preset); options given must then match them, or the verdict is
    Refused with each changed setting. `world` is the process count (it sets
    the steps per epoch, so a run resumes only with the same one); None asks
    the process group.
    """
    run = Run(run_dir)
    if resume and run.exists() and not options.names_a_recipe:
        spec, preset = resumed_spec(run.spec(), options), run.info().get("preset")
    else:
        spec, chosen = spec_from_preset(options, dataset)
        preset = chosen.name
    return resolve_spec(spec, dataset, run_dir, resume, world, preset)


def resolve_spec(
    spec: RunSpec,
    dataset: MultimodalDataset,
    run_dir: Path,
    resume: bool = False,
    world: int | None = None,
    preset: str | None = None,
) -> ResolvedRun:
    """`resolve_run` for a spec built elsewhere (the demo's, a study's): prepared, then judged against `run_dir`.

    `preset`: the name of the preset the spec was built from, carried to run.json.

    Under torchrun rank 0 judges the directory (its refusal stops the job);
    the other ranks take the run's saved spec when it resumes, so every rank
    trains the same settings without reading a directory rank 0 may be writing.
    """
    run_dir = Path(run_dir)
    rank, group_world = rank_and_world()
    spec = prepare_spec(spec, dataset)
    if rank != 0:
        run = Run(run_dir)
        if resume and run.is_started():
            return ResolvedRun(run.spec(), run_dir, Resume(), preset)
        return ResolvedRun(spec, run_dir, Fresh(), preset)
    spec, verdict = resume_verdict(run_dir, spec, dataset, resume, group_world if world is None else world)
    return ResolvedRun(spec, run_dir, verdict, preset)
