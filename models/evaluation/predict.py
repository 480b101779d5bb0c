"""Sentiment of new clips from already-extracted features, exactly as evaluation scores a split.

This module never imports `extractors` (the two packages stay independent):
the caller extracts features with the recipe stored in the run, then hands the
arrays here. Clips go through `encode_split` → `predict_encoded`, the path
training and `deepmlf evaluate` use, so a clip's prediction equals the one
`evaluate` reports for the same features and text.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import overload

import numpy as np
import torch

from models.checkpoint import LoadedModel
from models.data.batching import encode_split
from models.data.checks import clean_non_finite
from models.data.types import SplitData
from models.errors import CheckpointError, DatasetError
from models.evaluation.inference import predict_encoded
from models.evaluation.metrics import POLARITY_NAMES, polarity_classes
from models.schemes import Scheme


@dataclass(eq=False)
class ClipInput:
    """One clip's raw (un-normalised) features and text, as the recipe's extractors produced them."""

    audio: np.ndarray  # (T_a, D_a) float32; T_a = 0 without an audio track
    vision: np.ndarray  # (T_v, D_v) float32; T_v = 0 without a video track
    text: str
    id: str = ""


# How the heads relate to the score (said in `predict --help` and its JSON schema): DeepMLF's
# score is its task head on [⟨z⟩ ‖ x_t,K ‖ ⟨x_f⟩] (the AV summary, the LM's last text state, the
# mean fusion token); the text, AV and fusion heads are linear heads trained on the same label,
# each reading one of those three inputs alone. They show what each path predicts by itself;
# the score is not their average. Baselines fill only the heads of the modality they read.


@overload
def clip_to_scale(value: float, scale: tuple[float, float]) -> float: ...


@overload
def clip_to_scale(value: float | None, scale: tuple[float, float]) -> float | None: ...


def clip_to_scale(value: float | None, scale: tuple[float, float]) -> float | None:
    """`value` limited to the label range (a regression head can overshoot it); None stays None."""
    return None if value is None else float(min(max(value, scale[0]), scale[1]))


@dataclass
class Prediction:
    """The model's verdict on one clip: the task head on the dataset's scale, and every auxiliary head.

    `score` and `heads` are clipped to `scale` (what a reader is shown);
    `raw_score` and `raw_heads` are the heads' outputs as they are (what
    `deepmlf evaluate` scores: MOSI/MOSEI metrics use unclipped values).
    """

    raw_score: float  # task head y_o, unclipped
    polarity: str  # negative / neutral / positive (the scheme's 3-class bins)
    raw_heads: dict[str, float | None] = field(default_factory=dict)  # text, av, fusion (None when the model has none)
    scale: tuple[float, float] = (-3.0, 3.0)

    @property
    def score(self) -> float:
        """The task head clipped to the label range."""
        return clip_to_scale(self.raw_score, self.scale)

    @property
    def heads(self) -> dict[str, float | None]:
        """The auxiliary heads clipped to the label range."""
        return {k: clip_to_scale(v, self.scale) for k, v in self.raw_heads.items()}

    def to_dict(self) -> dict:
        return {
            "score": self.score,
            "raw_score": self.raw_score,
            "polarity": self.polarity,
            "heads": self.heads,
            "raw_heads": dict(self.raw_heads),
            "scale": list(self.scale),
        }


def model_scheme(loaded: LoadedModel) -> Scheme:
    """The metric scheme of the data the model was trained on (sims or mosi)."""
    recorded = (loaded.meta.get("dataset") or {}).get("scheme", Scheme.MOSI)
    scheme = Scheme.get(recorded)
    if scheme is None:
        raise CheckpointError(f"{loaded.directory}: unknown scheme {recorded!r} in meta.json; re-run training")
    return scheme


def check_feature_sizes(loaded: LoadedModel, d_audio: int, d_vision: int) -> None:
    """The extracted feature sizes must be those the model was trained on."""
    cfg = loaded.config
    if (cfg.d_audio, cfg.d_vision) != (d_audio, d_vision):
        raise DatasetError(
            f"the features have audio/vision sizes {d_audio}/{d_vision}, but the model in {loaded.directory} "
            f"was trained on {cfg.d_audio}/{cfg.d_vision}; predict with the recipe stored in the run"
        )


def _stack(arrays: list[np.ndarray], dim: int, what: str) -> tuple[np.ndarray, np.ndarray]:
    """(N, T_max, D) zero-padded at the end (T_max >= 1) and lengths (N,), as the dataset writer pads."""
    for a in arrays:
        if a.ndim != 2 or a.shape[1] != dim:
            raise DatasetError(f"{what} features have shape {a.shape}; expected (T, {dim})")
    lengths = np.array([a.shape[0] for a in arrays], np.int64)
    out = np.zeros((len(arrays), max(1, int(lengths.max(initial=0))), dim), np.float32)
    for i, a in enumerate(arrays):
        out[i, : len(a)] = a
    return out, lengths


def predict_features(
    loaded: LoadedModel, clips: list[ClipInput], batch_size: int = 16, device: torch.device | str = "cpu"
) -> list[Prediction]:
    """Predictions for `clips`, in order; features are normalised with the checkpoint's statistics."""
    if not clips:
        return []
    cfg = loaded.config
    for clip in clips:
        check_feature_sizes(loaded, int(clip.audio.shape[-1]), int(clip.vision.shape[-1]))
    audio, audio_lengths = _stack([np.asarray(c.audio, np.float32) for c in clips], cfg.d_audio, "audio")
    vision, vision_lengths = _stack([np.asarray(c.vision, np.float32) for c in clips], cfg.d_vision, "vision")
    for array in (audio, vision):  # the function the dataset loader cleans with: non-finite values count as 0
        clean_non_finite(array)
    split = SplitData(
        ids=[c.id or str(i) for i, c in enumerate(clips)],
        texts=[c.text or "" for c in clips],
        audio=audio,
        vision=vision,
        audio_lengths=audio_lengths,
        vision_lengths=vision_lengths,
        labels=np.zeros(len(clips), np.float32),
    )
    encoded = encode_split(split, loaded.tokenizer, cfg.max_text_tokens, loaded.normalizer)
    heads = predict_encoded(loaded.model, encoded, batch_size, torch.device(device))
    scheme = model_scheme(loaded)
    classes = polarity_classes(heads["prediction"].astype(np.float64), scheme, 3)
    results = []
    for i in range(len(clips)):
        results.append(
            Prediction(
                raw_score=float(heads["prediction"][i]),
                polarity=POLARITY_NAMES[3][int(classes[i])],
                raw_heads={
                    k: (None if np.isnan(heads[k][i]) else float(heads[k][i])) for k in ("text", "av", "fusion")
                },
                scale=scheme.scale,
            )
        )
    return results
