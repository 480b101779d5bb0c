"""Turning command-line choices into a dataset, a run spec and a process group.

Shared by `train`, `pretrain` and `study` so their options mean the same.
"""

from __future__ import annotations

import os
import tomllib
from datetime import datetime
from pathlib import Path
from typing import Any

from deepmlf_cli.render import stdout


def load_data(dataset: str, data_dir: Path | None, quiet: bool = False, scheme: str | None = None):
    """Load a dataset (with --scheme, if given) and say (once) how many non-finite values were cleaned."""
    from rich.markup import escape

    from models.data.load import load_dataset
    from models.data.types import with_scheme

    data = load_dataset(dataset, data_dir)
    if scheme is not None:
        data = with_scheme(data, scheme)
    if data.n_cleaned and not quiet:
        stdout.print(f"[yellow]note:[/] {escape(str(data.source))}: {data.n_cleaned} NaN/inf feature values set to 0")
    return data


def read_config_file(path: Path | None) -> dict[str, Any]:
    """A TOML file with optional `preset`, `[model]` and `[train]` tables."""
    from models.errors import ConfigError

    if path is None:
        return {}
    try:
        data = tomllib.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML ({exc}); fix the line it names") from None
    unknown = sorted(set(data) - {"preset", "model", "train"})
    if unknown:
        raise ConfigError(f"{path}: unknown top-level keys {unknown}; use preset, [model] and [train]")
    return data


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
    from models.config import DATASET_PRESETS, PRESETS
    from models.data.types import transcripts_are_cjk
    from models.errors import ConfigError
    from models.schemes import Scheme

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
    raise ConfigError(f"{dataset.source}: cannot choose a preset for a custom dataset with {what} and labels on "
                      f"the {dataset.scheme} scale; pass --preset: {choices}")


def resumed_spec(saved, kind: str | None, model_overrides: dict[str, Any], train_overrides: dict[str, Any],
                 seeds: list[int] | None, init_av: str | None, freeze_av: bool):
    """The saved spec of a run with the options given on the command line applied (None = not given).

    `train_run` then compares it with the saved one, so an option that
    differs from the run is reported instead of silently ignored.
    """
    import dataclasses

    model = saved.model.replace(**{k: v for k, v in model_overrides.items() if v is not None})
    train = dataclasses.replace(saved.train, **{k: v for k, v in train_overrides.items() if v is not None})
    return dataclasses.replace(saved, kind=kind or saved.kind, model=model, train=train,
                               seeds=tuple(seeds) if seeds else saved.seeds,
                               init_av=init_av if init_av is not None else saved.init_av,
                               freeze_av=freeze_av or saved.freeze_av)


def build_spec(kind: str, dataset, preset: str | None, config_file: Path | None, model_overrides: dict[str, Any],
               train_overrides: dict[str, Any], seeds: list[int] | None = None, init_av: str | None = None,
               freeze_av: bool = False):
    """Preset → config file → command-line overrides, validated into a RunSpec.

    The AV encoder alone (kind "av", `deepmlf pretrain`) takes the preset's
    pretraining recipe (`pretrain`, `pretrain_model`); every other kind its `train`.
    """
    from models.config import TrainConfig, get_preset
    from models.nn.registry import needs_text
    from models.run import RunSpec

    file_config = read_config_file(config_file)
    chosen = get_preset(resolve_preset_name(preset, file_config, dataset, needs_text(kind)))
    pretraining = kind == "av"
    model_fields = {**(chosen.pretrain_model if pretraining else {}), **file_config.get("model", {}),
                    **{k: v for k, v in model_overrides.items() if v is not None}}
    model_config = chosen.model_config(**model_fields).replace(d_audio=dataset.d_audio, d_vision=dataset.d_vision)
    train_fields = {**(chosen.pretrain if pretraining else chosen.train), **file_config.get("train", {}),
                    **{k: v for k, v in train_overrides.items() if v is not None}}
    train_config = TrainConfig.from_dict(train_fields)
    return RunSpec(kind=kind, model=model_config, train=train_config, seeds=tuple(seeds or [0]),
                   init_av=init_av, freeze_av=freeze_av), chosen


def default_run_dir(dataset, what: str) -> Path:
    """runs/<dataset>-<what>-<timestamp>: never overwrites an earlier run."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    run_dir = Path("runs") / f"{dataset.name}-{what}-{stamp}"
    from models.distributed import broadcast_object, is_distributed

    if is_distributed():  # ranks may reach this in different seconds: all take rank 0's folder
        run_dir = Path(broadcast_object(str(run_dir)))
    return run_dir


def init_distributed() -> bool:
    """Join the process group when started by torchrun (gloo on CPU; NCCL on CUDA, one GPU per local rank)."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    from models.distributed import init_process_group

    return init_process_group()


def is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0
