"""Feature z-scoring with training-split statistics over the valid frames only."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from models.config import AV_MODALITIES
from models.data.checks import clean_non_finite
from models.data.types import SplitData
from models.errors import CheckpointError, DatasetError

# --------------------------------------------------------------------------- #
# Normalisation
# --------------------------------------------------------------------------- #

_MIN_STD = 1e-6  # features with a smaller spread are centred but not scaled


def _masked_moments(features: np.ndarray, lengths: np.ndarray, chunk: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std (ddof 0) per feature over valid frames: (N,T,D), (N,) -> (D,), (D,).

    Chunked with Chan's merge so MOSEI-sized arrays need no full masked copy and
    no E[x²]-E[x]² cancellation.
    """
    d = features.shape[-1]
    count = 0
    mean = np.zeros(d, dtype=np.float64)
    m2 = np.zeros(d, dtype=np.float64)
    t = features.shape[1]
    for start in range(0, features.shape[0], chunk):
        block = features[start : start + chunk]  # (B, T, D)
        mask = np.arange(t)[None, :] < lengths[start : start + chunk, None]  # (B, T)
        values = block[mask].astype(np.float64)  # (M, D)
        n_b = values.shape[0]
        if n_b == 0:
            continue
        mean_b = values.mean(axis=0)
        m2_b = ((values - mean_b) ** 2).sum(axis=0)
        delta = mean_b - mean
        total = count + n_b
        mean = mean + delta * (n_b / total)
        m2 = m2 + m2_b + delta**2 * (count * n_b / total)
        count = total
    if count == 0:
        return np.zeros(d, np.float32), np.ones(d, np.float32)
    std = np.sqrt(m2 / count)
    std = np.where(std < _MIN_STD, 1.0, std)
    return mean.astype(np.float32), std.astype(np.float32)


def _normalize(
    features: np.ndarray, lengths: np.ndarray | None, mean: np.ndarray, std: np.ndarray, what: str
) -> np.ndarray:
    if features.shape[-1] != mean.shape[0]:
        raise DatasetError(
            f"{what} has {features.shape[-1]} features per frame but the normalizer was fit on "
            f"{mean.shape[0]}; use features from the same recipe as the training data"
        )
    out = (features.astype(np.float32) - mean) / std  # (..., T, D)
    if lengths is not None:
        mask = np.arange(features.shape[-2]) < np.asarray(lengths)[..., None]  # (..., T)
        out *= mask[..., None]  # padding stays 0
    return out.astype(np.float32, copy=False)


def _normalize_split_array(
    features: np.ndarray,
    lengths: np.ndarray,
    mean: np.ndarray,
    std: np.ndarray,
    what: str,
    in_place: bool,
    undo: tuple[np.ndarray, np.ndarray] | None,
    chunk: int = 256,
) -> np.ndarray:
    """z-score (N, T, D) `features` block by block of clips: into a new array, or over `features` itself.

    `undo`: the (mean, std) the values already carry, taken off first. By
    blocks, so no full-size temporary exists besides the output.
    """
    if features.shape[-1] != mean.shape[0]:
        _normalize(features[:0], None, mean, std, what)  # raises the feature-size error
    own = in_place and features.dtype == np.float32 and features.flags.writeable
    out = features if own else np.empty(features.shape, dtype=np.float32)
    for start in range(0, features.shape[0], chunk):
        block = features[start : start + chunk]  # (B, T, D)
        if undo is not None:
            block = block * undo[1] + undo[0]
        out[start : start + chunk] = _normalize(block, lengths[start : start + chunk], mean, std, what)
    return out


@dataclass(eq=False)
class FeatureNormalizer:
    """Per-feature z-scoring of audio and vision with train-split statistics.

    Statistics come from valid frames only (padding excluded); applying keeps
    padding at 0. Saved in checkpoints through ``state_dict`` so ``predict``
    normalises new clips exactly as training did.
    """

    audio_mean: np.ndarray  # (D_a,) float32
    audio_std: np.ndarray  # (D_a,) float32, >= 1e-6 (1 where a feature is constant)
    vision_mean: np.ndarray  # (D_v,) float32
    vision_std: np.ndarray  # (D_v,) float32

    @classmethod
    def fit(cls, split: SplitData) -> FeatureNormalizer:
        """Statistics of ``split`` (the train split) over valid frames."""
        if split.normalized_by is not None:  # its raw values are gone; these are their statistics
            return split.normalized_by
        audio_mean, audio_std = _masked_moments(split.audio, split.audio_lengths)
        vision_mean, vision_std = _masked_moments(split.vision, split.vision_lengths)
        return cls(audio_mean, audio_std, vision_mean, vision_std)

    @classmethod
    def identity(cls, split: SplitData) -> FeatureNormalizer:
        """A normaliser that keeps ``split``'s raw values (mean 0, std 1): `feature_scaling = "none"`,
        as the reference feeds its features. Saved like any other, so predict does the same."""
        d_a, d_v = split.audio.shape[-1], split.vision.shape[-1]
        return cls(
            np.zeros(d_a, np.float32), np.ones(d_a, np.float32), np.zeros(d_v, np.float32), np.ones(d_v, np.float32)
        )

    def apply(self, split: SplitData, in_place: bool = False) -> SplitData:
        """``split`` with normalised features (valid frames only; padding 0).

        By default a copy. With ``in_place`` the split's own arrays are
        overwritten, so a MOSEI-sized dataset is held once, not raw plus
        normalised (training does this), and the split remembers this
        normaliser in ``normalized_by``: applying it again changes nothing,
        another normaliser first undoes it, ``fit`` returns it. The identity
        (raw values) is not remembered, so ``fit`` then computes statistics.
        """
        done = split.normalized_by
        if done.same_as(self) if done is not None else self.is_identity():  # nothing would change
            return split
        arrays: dict[str, np.ndarray] = {}
        for m, lengths in (("audio", split.audio_lengths), ("vision", split.vision_lengths)):
            undo = (getattr(done, f"{m}_mean"), getattr(done, f"{m}_std")) if done is not None else None
            arrays[m] = _normalize_split_array(
                getattr(split, m), lengths, getattr(self, f"{m}_mean"), getattr(self, f"{m}_std"), m, in_place, undo
            )
        remembered = None if self.is_identity() else self  # the identity leaves raw values: nothing to remember
        if in_place:
            split.audio, split.vision, split.normalized_by = arrays["audio"], arrays["vision"], remembered
            return split
        return replace(split, audio=arrays["audio"], vision=arrays["vision"], normalized_by=remembered)

    def is_identity(self) -> bool:
        """Mean 0 and std 1 everywhere: applying it keeps the raw values."""
        return all(not m.any() for m in (self.audio_mean, self.vision_mean)) and all(
            bool((s == 1).all()) for s in (self.audio_std, self.vision_std)
        )

    def same_as(self, other: FeatureNormalizer) -> bool:
        """The same statistics (so applying one after the other would change nothing)."""
        return all(np.array_equal(a, b) for a, b in zip(self.state_dict().values(), other.state_dict().values()))

    def apply_array(
        self,
        audio: np.ndarray | None,
        vision: np.ndarray | None,
        audio_lengths: np.ndarray | None = None,
        vision_lengths: np.ndarray | None = None,
    ) -> tuple[np.ndarray | None, np.ndarray | None]:
        """Normalise raw feature arrays, e.g. one clip at predict time.

        ``audio`` is (T_a, D_a) or (N, T_a, D_a), ``vision`` likewise; either may
        be None. Non-finite values are set to 0 first, as the loader does.
        Without lengths every frame counts as valid.
        """
        results: list[np.ndarray | None] = []
        for array, lengths, mean, std, what in (
            (audio, audio_lengths, self.audio_mean, self.audio_std, "audio"),
            (vision, vision_lengths, self.vision_mean, self.vision_std, "vision"),
        ):
            if array is None:
                results.append(None)
                continue
            values = np.array(array, dtype=np.float32)  # copy: cleaned in place
            if values.ndim not in (2, 3):
                raise DatasetError(f"{what} has shape {values.shape}; expected (T, D) or (N, T, D)")
            clean_non_finite(values)
            results.append(_normalize(values, lengths, mean, std, what))
        return results[0], results[1]

    def state_dict(self) -> dict[str, np.ndarray]:
        """Plain float32 arrays, ready for safetensors."""
        return {
            "audio_mean": np.ascontiguousarray(self.audio_mean, dtype=np.float32),
            "audio_std": np.ascontiguousarray(self.audio_std, dtype=np.float32),
            "vision_mean": np.ascontiguousarray(self.vision_mean, dtype=np.float32),
            "vision_std": np.ascontiguousarray(self.vision_std, dtype=np.float32),
        }

    @classmethod
    def from_state_dict(cls, state: Mapping[str, Any]) -> FeatureNormalizer:
        """Rebuild from ``state_dict()`` output (numpy arrays or CPU tensors)."""
        keys = ("audio_mean", "audio_std", "vision_mean", "vision_std")
        missing = [k for k in keys if k not in state]
        if missing:
            raise CheckpointError(
                f"normalizer state lacks {', '.join(missing)}; the checkpoint is incomplete, re-run training"
            )
        arrays = {k: np.asarray(state[k], dtype=np.float32).reshape(-1) for k in keys}
        for modality in AV_MODALITIES:
            mean, std = arrays[f"{modality}_mean"], arrays[f"{modality}_std"]
            if mean.shape != std.shape or not np.all(np.isfinite(mean)) or not np.all(std > 0):
                raise CheckpointError(
                    f"normalizer state for {modality} is inconsistent (mean {mean.shape}, std {std.shape}, "
                    "std must be positive and finite); the checkpoint is damaged, re-run training"
                )
        return cls(**arrays)
