"""Training from the command line (`deepmlf train`, `pretrain`, `study`, `demo`): the spec, the bars, the report.

`train_spec` parses train's options and hands them with the dataset to
models.training.resolution.resolve_run (spec + resume verdict), `pretrain_spec`
pretrain's; `train_with_progress` trains every seed under the epoch bars on
stdout; `run_and_report` adds the results table (or JSON).
The files are the run directory's, written by models.training.experiment.train_run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def train_spec(
    dataset: str,
    data_dir: Path | None,
    out: Path | None,
    resume: bool,
    *,
    model: str | None,
    preset: str | None,
    config: Path | None,
    model_overrides: dict[str, Any],
    train_overrides: dict[str, Any],
    seeds: list[int] | None,
    init_av: str | None,
    freeze_av: bool,
    scheme: str | None = None,
    quiet: bool = False,
):
    """(dataset, ResolvedRun) for `deepmlf train`: the strings parsed here, every decision by `resolve_run`.

    None means "not given"; `model_overrides` takes "mm_layers" as text (5..11, 3,5,7) and
    "lm_dropout" as on/off. Joins the process group when started by torchrun.
    """
    from deepmlf_cli.resolve import default_run_dir, init_distributed, load_data, run_options
    from models.config import parse_layer_list
    from models.errors import ConfigError
    from models.io import check_writable_dir
    from models.training.resolution import require_run, resolve_run

    if freeze_av and not init_av:
        raise ConfigError("--freeze-av needs --init-av RUN (a pretrained AV encoder to freeze)")
    if resume and out is None:
        raise ConfigError("--resume needs --out RUN_DIR (the run to continue)")
    lm_dropout, mm_layers = model_overrides.get("lm_dropout"), model_overrides.get("mm_layers")
    if lm_dropout not in (None, "on", "off"):
        raise ConfigError(f"--lm-dropout {lm_dropout}: choose on or off")
    model_overrides = {
        **model_overrides,
        "mm_layers": parse_layer_list(mm_layers) if mm_layers else None,
        "lm_dropout": None if lm_dropout is None else lm_dropout == "on",
    }
    options = run_options(model, preset, config, model_overrides, train_overrides, seeds, init_av, freeze_av)
    if resume:
        require_run(out)
    if out is not None:
        check_writable_dir(out)  # read-only, full or a file: one line before the data and the LM load
    init_distributed()
    data = load_data(dataset, data_dir, quiet, scheme=scheme)
    run_dir = out or default_run_dir(data, options.kind or "deepmlf")
    return data, resolve_run(options, data, run_dir, resume)


def pretrain_spec(
    dataset: str,
    data_dir: Path | None,
    out: Path | None,
    resume: bool = False,
    *,
    preset: str | None,
    config: Path | None,
    train_overrides: dict[str, Any],
    seeds: list[int] | None,
    quiet: bool = False,
):
    """(dataset, ResolvedRun) for `deepmlf pretrain`: kind "av" takes the preset's pretraining
    recipe, which `train_overrides` (None = not given) override."""
    from deepmlf_cli.resolve import default_run_dir, init_distributed, load_data, run_options
    from models.training.resolution import resolve_spec, spec_from_preset

    init_distributed()
    data = load_data(dataset, data_dir, quiet)
    spec, chosen = spec_from_preset(run_options("av", preset, config, {}, train_overrides, seeds), data)
    return data, resolve_spec(spec, data, out or default_run_dir(data, "pretrain"), resume, preset=chosen.name)


def train_with_progress(data, resolved, *, device: Any = "auto", quiet: bool = False) -> dict[str, Any]:
    """Train every seed of a ResolvedRun (models.training.experiment.train_run) with one epoch bar per seed."""
    import contextlib

    from deepmlf_cli.render import EpochProgress, make_progress
    from deepmlf_cli.resolve import is_main_process
    from models.evaluation.metrics import PRIMARY_METRICS
    from models.io import output_lock
    from models.training.experiment import train_run

    primary = PRIMARY_METRICS[data.scheme][0]
    # One writer per run directory (torchrun's ranks are one writer: rank 0 holds it).
    lock = output_lock(resolved.run_dir, "training run") if is_main_process() else contextlib.nullcontext()
    with lock, make_progress(quiet or not is_main_process()) as progress:
        return train_run(
            data,
            resolved.spec,
            resolved.run_dir,
            verdict=resolved.verdict,
            preset=resolved.preset,
            device=device,
            progress=lambda s: EpochProgress(f"seed {s}", progress, primary),
        )


def run_and_report(data, resolved, quiet: bool, as_json: bool, title: str, device: str = "auto") -> dict[str, Any]:
    """Train a ResolvedRun with progress bars, then print the results table (or JSON) on the main process.

    The device is resolved here, once, and handed down to training.
    """
    from deepmlf_cli.resolve import is_main_process
    from deepmlf_cli.views import show_note, show_run_results
    from models.devices import resolve_device, slow_bf16_note
    from models.training.resolution import Refused

    if isinstance(resolved.verdict, Refused):  # before any note: nothing will run
        raise resolved.verdict.error()
    torch_device = resolve_device(device)
    note = slow_bf16_note(resolved.spec.train.lm_dtype, torch_device)
    if note and is_main_process():
        show_note(note)
    results = train_with_progress(data, resolved, device=torch_device, quiet=quiet or as_json)
    if is_main_process():
        show_run_results(results, resolved.run_dir, title, as_json)
    return results
