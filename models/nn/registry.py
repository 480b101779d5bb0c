"""Model kinds: the name a run records -> how to build it and which modalities it reads.

Built explicitly from the model modules (nothing registers itself at import time).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from models.config import AV_MODALITIES, MODALITIES, ModelConfig
from models.errors import ConfigError
from models.nn.baselines import BASELINES


def _build_deepmlf(config: ModelConfig, hf_lm):
    from models.nn.deepmlf import DeepMLF

    return DeepMLF(config, hf_lm)


def _build_av(config: ModelConfig, hf_lm):
    from models.nn.av_pretrain import AVPretrainModel

    return AVPretrainModel(config)


ALL_MODALITIES: frozenset[str] = frozenset(MODALITIES)

# kind -> (builder(config, hf_lm), the modalities the model reads). Every family is listed
# here: DeepMLF, its AV encoder (pretraining) and the baselines.
MODEL_KINDS: dict[str, tuple[Callable[[ModelConfig, Any], torch.nn.Module], frozenset[str]]] = {
    "deepmlf": (_build_deepmlf, ALL_MODALITIES),
    "av": (_build_av, frozenset(AV_MODALITIES)),
    **{kind: (cls, frozenset(cls.modalities)) for kind, cls in BASELINES.items()},
}


def model_kind(name: str) -> str:
    """The registered model kind `name` names, case-insensitively ("Early" → "early")."""
    kind = str(name).strip().lower()
    if kind not in MODEL_KINDS:
        raise ConfigError(f"unknown model {name!r}; choose one of: {', '.join(MODEL_KINDS)}")
    return kind


def build_model(kind: str, config: ModelConfig, hf_lm=None) -> torch.nn.Module:
    """A fresh model of `kind` on an already-loaded LM (None for kinds that read no text)."""
    return MODEL_KINDS[model_kind(kind)][0](config, hf_lm)


def model_inputs(kind: str) -> frozenset[str]:
    """The modalities ("text", "audio", "vision") a model kind reads."""
    return MODEL_KINDS[model_kind(kind)][1]


def needs_text(kind: str) -> bool:
    """Whether a model kind reads text (and so needs its LM loaded)."""
    return "text" in model_inputs(kind)
