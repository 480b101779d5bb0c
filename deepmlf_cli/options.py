"""Options shared by several commands, defined once so they mean the same everywhere."""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Annotated

import typer

from extractors import choices

JsonOutput = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON instead of tables.")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars; only the final result.")]
Debug = Annotated[bool, typer.Option("--debug", help="Show full tracebacks for errors.")]
Device = Annotated[str, typer.Option("--device", help="auto, cpu, cuda or cuda:N.")]
Seed = Annotated[list[int] | None, typer.Option("--seed", help="Random seed; repeat for several seeds.")]
Preset = Annotated[
    str | None,
    typer.Option(
        "--preset", help="Named config: mosei, mosei-large, sims, mosi or sample (default: from the dataset)."
    ),
]
LanguageModel = Annotated[
    str | None, typer.Option("--lm", help="Hugging Face hub id or local directory of a causal LM.")
]
LmMismatch = Annotated[
    str | None,
    typer.Option(
        "--lm-mismatch",
        help="ok: use an --lm whose weights differ from the ones the run was trained with (default: refuse it).",
    ),
]
DatasetArg = Annotated[
    str,
    typer.Option(
        "--dataset",
        "-d",
        help="mosi, mosei, sims, simsv2, a dataset directory from `deepmlf extract`, or an MMSA .pkl file.",
    ),
]
DataDir = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        help="Where named datasets live (default: $DEEPMLF_DATA_DIR, then ~/.local/share/deepmlf/datasets).",
    ),
]
Workers = Annotated[int, typer.Option("--workers", "-j", min=1, help="Worker processes.")]
AllowMissing = Annotated[
    bool,
    typer.Option(
        "--allow-missing",
        help="Keep clips with no audio track, silent audio, no face or an empty transcript (read as absent) instead of failing them.",
    ),
]
SchemeOption = Annotated[
    str | None,
    typer.Option(
        "--scheme",
        help="Metric scheme: mosi (MOSI/MOSEI, labels in [-3, 3]) or sims ([-1, 1]); default: the one the dataset records, else guessed from its labels.",
    ),
]


# --- training: train, pretrain and study -------------------------------------------------------
ConfigFile = Annotated[
    Path | None, typer.Option("--config", help="TOML file with preset, \\[model] and \\[train] tables.")
]
OutDir = Annotated[
    Path | None, typer.Option("--out", "-o", help="Run directory (default: runs/<dataset>-<model>-<time>).")
]
Resume = Annotated[
    bool,
    typer.Option(
        "--resume",
        help="Continue an interrupted run in --out, with the settings it was started with (options that differ are an error; --device may change).",
    ),
]
Epochs = Annotated[
    int | None,
    typer.Option(
        "--max-epochs",
        "--epochs",
        help="Cap on epochs (default: the preset's; none for the paper presets, which train until early stopping).",
    ),
]
BatchSize = Annotated[int | None, typer.Option("--batch-size", help="Clips per batch.")]
LearningRate = Annotated[float | None, typer.Option("--lr", help="Peak learning rate.")]
Patience = Annotated[
    int | None, typer.Option("--patience", help="Epochs without better validation L1 before stopping.")
]
# The kinds `train` offers (models.nn.registry.MODEL_KINDS, listed here so --help needs no torch import;
# tests check the two agree). "av" is `deepmlf pretrain`'s.
TRAIN_MODELS = ("deepmlf", "early", "late", "attention", "text", "audio", "vision")


class OutputFormat(str, enum.Enum):
    """extract --format: the dataset alone, or also an MMSA-compatible pickle."""

    deepmlf = "deepmlf"
    mmsa = "mmsa"


# --- transcripts: one definition for extract, transcribe and predict ---------------------------
# The choices and defaults come from extractors.choices (standard library only: CLI start stays fast).
DEFAULT_WHISPER_MODEL = choices.DEFAULT_WHISPER_MODEL
WhisperBackendChoice = choices.WhisperBackend

WhisperModelOption = Annotated[
    str | None,
    typer.Option(
        "--whisper-model",
        help="Whisper hub id (must be cached) or a local model folder; a faster-whisper (CTranslate2) folder needs "
        "--whisper-backend faster-whisper, a .pt checkpoint or cached name (tiny.en) --whisper-backend openai-whisper. "
        "predict: default the model's recipe.",
    ),
]
WhisperBackendOption = Annotated[
    WhisperBackendChoice | None,
    typer.Option(
        "--whisper-backend",
        help="transformers, faster-whisper (a CTranslate2 model folder) or openai-whisper (OpenAI's "
        "whisper package, a .pt checkpoint). predict: default the model's recipe.",
    ),
]
LanguageOption = Annotated[
    str | None,
    typer.Option(
        "--language",
        help="Spoken language for Whisper, e.g. zh for CH-SIMS or en, checked against the model's languages "
        "(default: detect; predict: the model's recipe).",
    ),
]
TranslateOption = Annotated[
    bool,
    typer.Option(
        "--translate",
        help="Whisper translates the speech to English instead of transcribing it (multilingual models only).",
    ),
]
