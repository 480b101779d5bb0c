"""`deepmlf study NAME`: one of the paper's studies (models.training.studies) under the epoch bars on stdout."""

from __future__ import annotations

from pathlib import Path
from typing import Any

STUDY_NAMES = "depth, fusion-tokens, av-init, losses, augmentation, gating, fusion-inputs, lm-dropout, deviations"


def study_with_progress(
    name: str,
    dataset: str,
    data_dir: Path | None,
    out: Path | None,
    *,
    preset: str | None,
    config: Path | None,
    lm: str | None,
    epochs: int | None,
    seeds: list[int] | None,
    device: str = "auto",
    quiet: bool = False,
) -> tuple[Any, dict[str, Any], Path]:
    """(dataset, the study's result, its directory): every variant trained like `deepmlf train`, resumable."""
    import os

    from deepmlf_cli.render import EpochProgress, make_progress, stdout
    from deepmlf_cli.resolve import build_spec, default_run_dir, load_data
    from models.errors import ConfigError
    from models.evaluation.metrics import PRIMARY_METRICS
    from models.io import check_writable_dir, output_lock
    from models.training.studies import STUDIES, run_study

    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ConfigError(
            "deepmlf study runs in one process; start it without torchrun (train a single "
            "variant with `torchrun ... train` for several GPUs)"
        )
    if name not in STUDIES:
        raise ConfigError(f"unknown study {name!r}; choose one of: {STUDY_NAMES}")
    if out is not None:
        check_writable_dir(out)  # read-only, full or a file: one line before the data and the LM load
    data = load_data(dataset, data_dir, quiet)
    spec, chosen = build_spec("deepmlf", data, preset, config, {"lm": lm}, {"max_epochs": epochs}, seeds)
    out_dir = out or default_run_dir(data, f"study-{name}")
    primary = PRIMARY_METRICS[data.scheme][0]
    with output_lock(out_dir, "study"), make_progress(quiet) as progress:
        result = run_study(
            name,
            data,
            spec,
            out_dir,
            pretrain_preset=chosen,
            device=device,
            progress=lambda variant, s: EpochProgress(f"{variant} · seed {s}", progress, primary),
            # a heading naming what it heads ("study gating · variant sigmoid"), not a bare word
            on_variant=None if quiet else (lambda v: stdout.print(f"[bold]study {name} · variant {v}[/]")),
        )
    return data, result, out_dir
