"""The in-memory form of a dataset: ``MultimodalDataset`` of ``SplitData``, split names, schemes."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np

from models.errors import DatasetError
from models.schemes import Scheme

if TYPE_CHECKING:  # normalize imports this module
    from models.data.normalize import FeatureNormalizer


SPLITS: tuple[str, ...] = ("train", "valid", "test")
# Names users give splits (MMSA's label.csv `mode`, other toolkits): every command accepts these.
# extractors keep the same table (the two packages never import each other).
SPLIT_ALIASES: dict[str, str] = {
    "train": "train",
    "valid": "valid",
    "val": "valid",
    "validation": "valid",
    "dev": "valid",
    "test": "test",
}
UNIMODAL = ("T", "A", "V")


# --------------------------------------------------------------------------- #
# In-memory form
# --------------------------------------------------------------------------- #


# eq=False: these hold numpy arrays, which do not compare to a single bool.
@dataclass(eq=False)
class SplitData:
    """One split, cleaned: every feature value finite, padding zeros at the end."""

    ids: list[str]
    texts: list[str]
    audio: np.ndarray  # (N, T_a, D_a) float32, zero-padded at the end
    vision: np.ndarray  # (N, T_v, D_v) float32, zero-padded at the end
    audio_lengths: np.ndarray  # (N,) int64 valid audio frames (0 = no audio track)
    vision_lengths: np.ndarray  # (N,) int64 valid vision frames
    labels: np.ndarray  # (N,) float32 regression target
    labels_T: np.ndarray | None = None  # (N,) float32 unimodal labels (SIMS)
    labels_A: np.ndarray | None = None
    labels_V: np.ndarray | None = None
    # Set when the feature arrays were z-scored in place (training frees the raw copy): they then
    # hold normalised values and this is the normaliser that made them (see FeatureNormalizer.apply).
    normalized_by: FeatureNormalizer | None = None

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def subset(self, index) -> SplitData:
        """A new split with the clips at ``index`` (int array, bool mask or slice)."""
        if isinstance(index, slice):
            positions = np.arange(len(self))[index]
        else:
            positions = np.asarray(index)
            if positions.dtype == bool:
                if positions.shape != (len(self),):
                    raise IndexError(f"boolean mask of shape {positions.shape} for a split of {len(self)} clips")
                positions = np.flatnonzero(positions)
            positions = positions.astype(np.int64).reshape(-1)  # (M,)

        def take(array: np.ndarray | None) -> np.ndarray | None:
            return None if array is None else array[positions]

        return SplitData(
            ids=[self.ids[i] for i in positions],
            texts=[self.texts[i] for i in positions],
            audio=self.audio[positions],
            vision=self.vision[positions],
            audio_lengths=self.audio_lengths[positions],
            vision_lengths=self.vision_lengths[positions],
            labels=self.labels[positions],
            labels_T=take(self.labels_T),
            labels_A=take(self.labels_A),
            labels_V=take(self.labels_V),
            normalized_by=self.normalized_by,
        )


@dataclass(eq=False)
class MultimodalDataset:
    """A dataset with train/valid/test splits and what is known about its features."""

    name: str
    scheme: Scheme  # metric scheme: "mosi" (labels in [-3, 3]) or "sims" ([-1, 1]); a str
    splits: dict[str, SplitData]  # "train", "valid", "test"
    audio_features: list[str] | None  # names of the D_a columns, when known
    vision_features: list[str] | None
    # Feature recipe from `deepmlf extract` (also in its `--format mmsa` pickles); None for
    # MMSA's own pickles, whose features cannot be recomputed from raw video.
    recipe: dict | None
    source: str  # the file or directory it came from
    audio_rate_hz: float | None = None  # frames per second, when known
    vision_rate_hz: float | None = None
    # split -> {"audio": n, "vision": n}: non-finite feature values set to 0 on load.
    cleaning_report: dict[str, dict[str, int]] = field(default_factory=dict)
    # True when no file recorded the scheme and it was guessed from the name and labels.
    scheme_guessed: bool = False
    _fingerprint: str | None = field(default=None, repr=False)

    def fingerprint(self) -> str:
        """A short hash of the dataset's content, whatever its path: a run copied or moved with its data
        recognises the data as its own (`deepmlf train --resume`, `deepmlf demo` re-run elsewhere).

        Every clip's id, text, labels and lengths, each split's array shapes, the feature names and
        recipe, and up to 65536 evenly spaced values of each feature array. Computed once and kept:
        training z-scores the features in place afterwards (`SplitData.normalized_by`).
        """
        if self._fingerprint is None:
            import hashlib
            import json

            digest = hashlib.sha256(
                json.dumps(
                    [self.audio_features, self.vision_features, self.recipe], sort_keys=True, default=str
                ).encode()
            )
            for name in sorted(self.splits):
                split = self.splits[name]
                digest.update(json.dumps([name, split.ids, split.texts]).encode())
                for values in (
                    split.labels,
                    split.labels_T,
                    split.labels_A,
                    split.labels_V,
                    split.audio_lengths,
                    split.vision_lengths,
                ):
                    if values is not None:
                        digest.update(np.ascontiguousarray(values).tobytes())
                for features in (split.audio, split.vision):  # (N, T, D)
                    digest.update(str(features.shape).encode())
                    flat = features.reshape(-1)
                    digest.update(np.ascontiguousarray(flat[:: max(1, flat.size // 65536)]).tobytes())
            self._fingerprint = digest.hexdigest()[:16]
        return self._fingerprint

    @property
    def d_audio(self) -> int:
        return int(self.splits["train"].audio.shape[-1])

    @property
    def d_vision(self) -> int:
        return int(self.splits["train"].vision.shape[-1])

    @property
    def n_cleaned(self) -> int:
        """How many non-finite feature values the loader set to 0, over all splits."""
        return sum(sum(counts.values()) for counts in self.cleaning_report.values())


def canonical_split(name: str) -> str:
    """ "validation", "val", "dev" → "valid" (any case); an unknown name is an error listing the accepted ones."""
    key = str(name).strip().lower()
    if key not in SPLIT_ALIASES:
        raise DatasetError(
            f"unknown split {name!r}; use train, valid or test "
            f"(also accepted: {', '.join(k for k in SPLIT_ALIASES if k not in SPLITS)})"
        )
    return SPLIT_ALIASES[key]


def _is_cjk(char: str) -> bool:
    code = ord(char)
    # CJK ideographs (with extension A and compatibility), kana, hangul, CJK punctuation
    return (
        0x4E00 <= code <= 0x9FFF
        or 0x3400 <= code <= 0x4DBF
        or 0xF900 <= code <= 0xFAFF
        or 0x3040 <= code <= 0x30FF
        or 0xAC00 <= code <= 0xD7AF
        or 0x3000 <= code <= 0x303F
    )


def transcripts_are_cjk(dataset: MultimodalDataset, sample: int = 500) -> bool | None:
    """Whether most letters of the train transcripts are CJK (Chinese, Japanese, Korean); None without text."""
    texts = dataset.splits["train"].texts[:sample] if "train" in dataset.splits else []
    letters = [c for text in texts for c in text if c.isalpha()]
    if not letters:
        return None
    return sum(_is_cjk(c) for c in letters) > len(letters) / 2


def with_scheme(dataset: MultimodalDataset, scheme: str) -> MultimodalDataset:
    """The dataset scored with `scheme` (--scheme): sets a guessed scheme; a recorded one must agree."""
    if Scheme.get(scheme) is None:
        raise DatasetError(f"--scheme {scheme!r}: use one of {Scheme.choices()}")
    scheme = Scheme(scheme)
    if scheme == dataset.scheme:
        return dataset
    if not dataset.scheme_guessed:
        raise DatasetError(
            f"{dataset.source} records scheme {dataset.scheme!r}, not {scheme!r}; drop --scheme "
            f"(or re-create the dataset with the scheme you mean)"
        )
    return check_label_range(replace(dataset, scheme=scheme, scheme_guessed=False))


def check_label_range(dataset: MultimodalDataset) -> MultimodalDataset:
    """The dataset, unless a split holds labels beyond its scheme's scale (a DatasetError naming them and the fix)."""
    lo, hi = dataset.scheme.scale
    for name, split in dataset.splits.items():
        bad = dataset.scheme.outside_scale(split.labels)
        if bad.size:
            i = int(bad[0])
            example = (
                f"{float(split.labels[i]):g} (clip {split.ids[i]})"
                if len(split.ids) > i
                else f"{float(split.labels[i]):g}"
            )
            raise DatasetError(
                f"{dataset.source or dataset.name} [{name}]: {bad.size} label(s) outside the {dataset.scheme.value} "
                f"range [{lo:g}, {hi:g}], e.g. {example}; fix the labels, or choose another scheme with --scheme"
            )
    return dataset
