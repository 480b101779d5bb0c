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


def build_spec(
    kind: str,
    dataset,
    preset: str | None,
    config_file: Path | None,
    model_overrides: dict[str, Any],
    train_overrides: dict[str, Any],
    seeds: list[int] | None = None,
    init_av: str | None = None,
    freeze_av: bool = False,
):
    """(RunSpec, Preset) from the options (None = not given) and a config file: the library's `spec_from_preset`."""
    from models.training.resolution import spec_from_preset

    return spec_from_preset(
        run_options(kind, preset, config_file, model_overrides, train_overrides, seeds, init_av, freeze_av), dataset
    )


def run_options(
    kind: str | None,
    preset: str | None,
    config_file: Path | None,
    model_overrides: dict[str, Any],
    train_overrides: dict[str, Any],
    seeds: list[int] | None = None,
    init_av: str | None = None,
    freeze_av: bool = False,
):
    """The parsed options as the library's RunOptions (the config file read here: it is command-line input)."""
    from models.training.resolution import RunOptions

    return RunOptions(
        kind=kind,
        preset=preset,
        file_config=read_config_file(config_file),
        model_overrides=model_overrides,
        train_overrides=train_overrides,
        seeds=tuple(seeds) if seeds else None,
        init_av=init_av,
        freeze_av=freeze_av,
    )


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
    """Rank 0 (or no process group): the process that prints. Asked the one way the library asks."""
    from models.distributed import rank_and_world

    return rank_and_world()[0] == 0
