"""The one value every extractor returns: values, timestamps and names together."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Features:
    """A time series of feature vectors from one extractor on one clip.

    values:     (T, D) float32, finite (NaN/inf are replaced by 0 and counted)
    timestamps: (T,) float64, seconds from the clip start (frame centres for audio, grid times for video)
    names:      D column names
    rate_hz:    nominal frames per second of the sequence (0 for one-row functionals)
    present:    (T,) bool, False where the frame has no measurement (e.g. no face); all True for audio
    nonfinite:  how many NaN/inf values were replaced by 0
    """

    values: np.ndarray
    timestamps: np.ndarray
    names: list[str]
    rate_hz: float
    present: np.ndarray | None = None
    nonfinite: int = 0
    info: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.values = np.asarray(self.values, np.float32).reshape(len(self.timestamps), len(self.names))
        self.timestamps = np.asarray(self.timestamps, np.float64)
        if self.present is None:
            self.present = np.ones(len(self.timestamps), bool)
        bad = ~np.isfinite(self.values)
        if bad.any():
            # Silence and degenerate frames give -inf log energies or 0/0 chroma; the
            # models treat 0 as "no information", so clean here, once, and count it.
            self.nonfinite += int(bad.sum())
            self.values = np.where(bad, np.float32(0), self.values)

    @property
    def dim(self) -> int:
        return len(self.names)

    def __len__(self) -> int:
        return len(self.timestamps)

    @classmethod
    def empty(cls, names: list[str], rate_hz: float, reason: str) -> Features:
        """A zero-length sequence (T = 0) for a missing track, with the reason recorded."""
        return cls(np.zeros((0, len(names)), np.float32), np.zeros(0), list(names), rate_hz, info={"empty": reason})
