"""The paper's studies (the ablations of docs/architecture.md): one DeepMLF run per variant, then a table and a plot.

    OUT/
      <variant>/        an ordinary run directory (models.training.experiment layout), one per row
      pretrain/         the AV pretraining run (av-init study only)
      study.json, study.csv   one row per variant: mean ± std over seeds of the primary metrics
      study.png         bar plot of the headline metric (± std)

Each study is a list of `Variant`s: a row name, ModelConfig and TrainConfig overrides and
the AV-encoder initialisation. Everything else comes from the base spec (preset,
config file, command line). Re-running the same command resumes: finished
variants are read back, unfinished ones continue.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from models.config import Augmentation, FFWMode, FusionInputs, Gating, ModelConfig, SeqAugMode
from models.errors import ConfigError
from models.evaluation.metrics import PRIMARY_METRICS
from models.io import atomic_write_text

PRETRAIN_DIR = "pretrain"


@dataclass(frozen=True)
class Variant:
    """One row of a study."""

    name: str
    model_overrides: dict[str, Any] = field(default_factory=dict)  # ModelConfig fields
    train_overrides: dict[str, Any] = field(default_factory=dict)  # TrainConfig fields
    init_av: str | None = None  # "pretrain" → this study's AV pretraining run; None → random
    freeze_av: bool = False


def depth_layer_sets(n_layers: int) -> list[tuple[int, ...]]:
    """MM blocks after the last k LM layers, for k in 1, 2, 3, 5, 7 … and all layers (within the LM)."""
    sizes = sorted({k for k in (1, 2, 3, 5, 7) if k < n_layers} | {n_layers})
    return [tuple(range(n_layers - k, n_layers)) for k in sizes]


def _depth(base: ModelConfig, n_layers: int) -> list[Variant]:
    return [
        Variant(f"layers {','.join(map(str, layers))}", {"mm_layers": layers}) for layers in depth_layer_sets(n_layers)
    ]


def _fusion_tokens(base: ModelConfig, n_layers: int) -> list[Variant]:
    return [Variant(f"{n} tokens", {"n_fusion": n}) for n in (1, 4, 8, 12, 20)]


def _av_init(base: ModelConfig, n_layers: int) -> list[Variant]:
    return [
        Variant("Pre&Tune", init_av="pretrain"),
        Variant("Pre&Fro", init_av="pretrain", freeze_av=True),
        Variant("Random&Tune"),
    ]


def _losses(base: ModelConfig, n_layers: int) -> list[Variant]:
    terms = {"lambda_lm": "L_lm", "lambda_f": "L_f", "lambda_av": "L_av", "lambda_t": "L_t"}
    rows = [Variant("all terms")]
    rows += [Variant(f"w/o {label}", {name: 0.0}) for name, label in terms.items() if getattr(base, name)]
    rows.append(Variant("task only", {name: 0.0 for name in terms}))
    return rows


def _augmentation(base: ModelConfig, n_layers: int) -> list[Variant]:
    # SeqAug twice: as the reference applies it, and per sample over the real steps only.
    seqaug = [
        Variant(f"seqaug ({m.value})", {"text_aug": "seqaug", "av_aug": "seqaug", "seqaug_mode": m.value})
        for m in (SeqAugMode.REFERENCE, SeqAugMode.PER_SAMPLE)
    ]
    return seqaug + [
        Variant(a.value, {"text_aug": a.value, "av_aug": a.value})
        for a in (Augmentation.NOISE, Augmentation.DROPOUT, Augmentation.NONE)
    ]


def _gating(base: ModelConfig, n_layers: int) -> list[Variant]:
    return [Variant(g.value, {"gating": g.value}) for g in (Gating.SIGMOID, Gating.TANH, Gating.NONE)]


def _fusion_inputs(base: ModelConfig, n_layers: int) -> list[Variant]:
    with_ffw = base.ffw_mode if base.ffw_mode is not FFWMode.NONE else FFWMode.FULL
    rows = []
    for ffw, suffix in ((with_ffw, "+ FFW"), (FFWMode.NONE, "no FFW")):
        for inputs, label in (
            (FusionInputs.FUSION, "fusion tokens"),
            (FusionInputs.TEXT, "text tokens"),
            (FusionInputs.BOTH, "both"),
        ):
            rows.append(Variant(f"{label} {suffix}", {"fusion_inputs": inputs.value, "ffw_mode": ffw.value}))
    return rows


def _deviations(base: ModelConfig, n_layers: int) -> list[Variant]:
    # docs/recipe.md's deliberate deviations that have a switch, each turned to the reference's way alone.
    # (The padding masks and the length-aware pooling have none: the reference's forms are not built.)
    return [
        Variant("ours"),
        Variant("attention-weight dropout off", {"mm_attention_dropout": False}),
        Variant("raw features (no z-scoring)", train_overrides={"feature_scaling": "none"}),
        Variant("fixed text padding", train_overrides={"text_padding": "fixed"}),
        Variant("shuffle batching", train_overrides={"batching": "shuffle"}),
    ]


STUDIES: dict[str, tuple[str, Callable[[ModelConfig, int], list[Variant]]]] = {
    "depth": ("Fusion depth: which LM layers get MM blocks", _depth),
    "fusion-tokens": ("Number of fusion tokens", _fusion_tokens),
    "av-init": ("AV-encoder initialisation", _av_init),
    "losses": ("Loss-term ablation", _losses),
    "augmentation": ("Embedding augmentation", _augmentation),
    "gating": ("Gating of the MM blocks", _gating),
    "fusion-inputs": ("Fusion-block inputs (queries) with and without FFW", _fusion_inputs),
    "lm-dropout": (
        "Frozen LM's dropout in training: on (reference) or off (text states cached per clip)",
        lambda base, n_layers: [
            Variant("dropout on", {"lm_dropout": True}),
            Variant("dropout off", {"lm_dropout": False}),
            Variant("dropout off, no text aug", {"lm_dropout": False, "text_aug": "none"}),
        ],
    ),
    "deviations": ("Our deliberate deviations from the reference, each undone alone", _deviations),
}


def study_variants(name: str, base: ModelConfig, n_layers: int) -> list[Variant]:
    if name not in STUDIES:
        raise ConfigError(f"unknown study {name!r}; choose one of: {', '.join(STUDIES)}")
    return STUDIES[name][1](base, n_layers)


def variant_dir_name(name: str) -> str:
    """A file-system-safe directory name for a row name ("Pre&Tune" → "pre-tune")."""
    cleaned = "".join(c if c.isalnum() else "-" for c in name.lower())
    return "-".join(filter(None, cleaned.split("-")))


def check_variant_layers(name: str, variants: list[Variant], base: ModelConfig, n_layers: int) -> None:
    """Every variant's MM layers must lie inside the LM; else one error, in the terms `deepmlf study` takes.

    (The LM's own check says "fix --mm-layers", a flag of `train` only: a study's layers come from
    its --preset or a --config file.)
    """
    for variant in variants:
        layers = base.replace(**variant.model_overrides).mm_layers
        bad = [i for i in layers if not 0 <= i < n_layers]
        if bad:
            raise ConfigError(
                f"study {name}, variant {variant.name}: MM layer(s) {bad} are outside {base.lm}, which has "
                f"{n_layers} layers (0..{n_layers - 1}); choose a --preset made for this LM, or set "
                f"mm_layers in the [model] table of a --config file"
            )


def _lm_layers(name: str) -> int:
    from models.nn.lm import load_lm_config

    config = load_lm_config(name)
    return int(getattr(config, "n_layer", None) or config.num_hidden_layers)


def run_study(
    name: str,
    dataset,
    base_spec,
    out_dir: Path,
    progress=None,
    on_variant=None,
    pretrain_lr: float | None = None,
    pretrain_preset=None,
    device: str = "auto",
) -> dict[str, Any]:
    """Train every variant of study `name` from `base_spec` (a deepmlf RunSpec); write and return the table.

    `progress(variant, seed)` gives training callbacks; `on_variant(name)` is
    called before each run starts. The av-init study pretrains the AV encoder
    with `pretrain_preset`'s pretraining recipe (a models.config.Preset; without
    one, reduce-on-plateau on the base spec's settings), at `pretrain_lr` if given.
    """
    from models.nn.lm import load_causal_lm
    from models.run import Run, RunSpec
    from models.training.experiment import av_pretrain_spec, train_run

    out_dir = Path(out_dir)
    base = base_spec.model
    n_layers = _lm_layers(base.lm)
    variants = study_variants(name, base, n_layers)
    check_variant_layers(name, variants, base, n_layers)  # before anything is trained or written
    out_dir.mkdir(parents=True, exist_ok=True)
    lm_and_tokenizer = load_causal_lm(base.lm)

    def run(variant_name: str, spec: RunSpec, run_dir: Path) -> dict[str, Any]:
        done = Run(run_dir).results()
        if done is not None:
            return done
        if on_variant:
            on_variant(variant_name)
        return train_run(
            dataset,
            spec,
            run_dir,
            resume=Run(run_dir).exists(),
            progress=(lambda s: progress(variant_name, s)) if progress else None,
            hf_lm_and_tokenizer=lm_and_tokenizer,
            device=device,
            preset=pretrain_preset.name if pretrain_preset is not None else None,  # each variant's base recipe
        )

    if any(v.init_av == "pretrain" for v in variants):
        run(
            "AV pretraining",
            av_pretrain_spec(dataclasses.replace(base_spec, model=base), pretrain_lr, pretrain_preset),
            out_dir / PRETRAIN_DIR,
        )
    rows = []
    for variant in variants:
        model = base.replace(**variant.model_overrides)
        init_av = str(out_dir / PRETRAIN_DIR) if variant.init_av == "pretrain" else None
        spec = RunSpec(
            kind="deepmlf",
            model=model,
            train=dataclasses.replace(base_spec.train, **variant.train_overrides),
            seeds=base_spec.seeds,
            init_av=init_av,
            freeze_av=variant.freeze_av,
        )
        directory = variant_dir_name(variant.name)
        results = run(variant.name, spec, out_dir / directory)
        rows.append(
            {
                "name": variant.name,
                "dir": directory,
                "model_overrides": _jsonable(variant.model_overrides),
                "train_overrides": _jsonable(variant.train_overrides),
                "init_av": variant.init_av or "random",
                "freeze_av": variant.freeze_av,
                "seeds": list(results["seeds"]),
                "mean": results["mean"],
                "std": results["std"],
            }
        )
    study = {
        "study": name,
        "title": STUDIES[name][0],
        "dataset": dataset.name,
        "scheme": dataset.scheme,
        "primary": list(PRIMARY_METRICS[dataset.scheme]),
        "rows": rows,
    }
    write_study(out_dir, study)
    return study


def _jsonable(overrides: dict[str, Any]) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in overrides.items()}


def study_csv(study: dict[str, Any]) -> str:
    """One line per variant: variant, then <metric>_mean and <metric>_std of the primary metrics."""
    metrics = study["primary"]
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["variant", "seeds"] + [f"{m}_{p}" for m in metrics for p in ("mean", "std")])
    for row in study["rows"]:
        values = []
        for m in metrics:
            values += [f"{row['mean'][m]:.6g}", f"{row['std'][m]:.6g}"]
        writer.writerow([row["name"], " ".join(row["seeds"])] + values)
    return buffer.getvalue()


def write_study(out_dir: Path, study: dict[str, Any]) -> None:
    atomic_write_text(out_dir / "study.json", json.dumps(study, indent=2))
    atomic_write_text(out_dir / "study.csv", study_csv(study))
    plot_study(study, out_dir / "study.png")


def plot_study(study: dict[str, Any], path: Path) -> Path:
    """Bar per variant of the headline metric, with the std over seeds as error bars."""
    from models.evaluation.plots import pyplot, save_figure

    plt = pyplot()
    metric = study["primary"][0]
    names = [r["name"] for r in study["rows"]]
    means = [r["mean"][metric] for r in study["rows"]]
    stds = [r["std"][metric] for r in study["rows"]]
    fig, ax = plt.subplots(figsize=(max(4.0, 1.1 * len(names) + 1.5), 3.5))
    bars = ax.bar(range(len(names)), means, yerr=stds, capsize=4, color="#4C72B0")
    ax.bar_label(bars, labels=[f"{m:.3f}" for m in means], padding=2, fontsize=8)
    ax.set_xticks(range(len(names)), names, rotation=20, ha="right")
    ax.set_ylabel(f"{metric} (test, mean ± std)")
    ax.set_title(f"{study['title']} — {study['dataset']}")
    save_figure(fig, path)
    return Path(path)
