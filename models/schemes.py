"""The two metric schemes of the field: label scale, neutral band and class bins in one place.

* ``Scheme.MOSI`` (``"mosi"``): CMU-MOSI and CMU-MOSEI, labels in [-3, 3].
  Classes come from rounding (``np.round``, half to even) of the value clipped
  to ±(n-1)/2: 7 classes on [-3, 3], 5 on [-2, 2]; 2 classes split ``< 0`` /
  ``>= 0`` (Has0), 3 classes ``< 0`` / ``== 0`` / ``> 0``.
* ``Scheme.SIMS`` (``"sims"``): CH-SIMS, labels in [-1, 1] (step 0.2). Values
  are clipped to [-1, 1] first (MAE and Corr too), then binned with
  left-open, right-closed bins: 2 classes cut at 0 (0 is negative), 3 at
  ±0.1, 5 at -0.7/-0.1/0.1/0.7.

A ``Scheme`` is a ``str`` (``StrEnum``): run.json, results.json, dataset
manifests and checkpoint meta keep holding the plain strings "mosi" / "sims",
and ``Scheme.SIMS == "sims"``. Standard library only at import time (the CLI
uses it as an option type; ``--help`` stays fast); numpy is imported where
values are binned.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum
from typing import TYPE_CHECKING

from models.errors import ConfigError

if TYPE_CHECKING:
    import numpy as np


# MMSA's SIMS bin edges: (edges[i], edges[i+1]] is class i. The outer edges
# sit just past ±1 so that clipped values of exactly ±1 fall inside.
SIMS_EDGES: dict[int, tuple[float, ...]] = {
    2: (-1.01, 0.0, 1.01),
    3: (-1.01, -0.1, 0.1, 1.01),
    5: (-1.01, -0.7, -0.1, 0.1, 0.7, 1.01),
}
_MOSI_CLASSES = (2, 3, 5, 7)
# extract wrote labels through float32; a label of 1 must not read as "beyond [-1, 1]".
_UNIT_RANGE_TOLERANCE = 1e-6


class Scheme(StrEnum):
    """A metric scheme: how labels are scaled, clipped and cut into classes."""

    MOSI = "mosi"
    SIMS = "sims"

    def __repr__(self) -> str:
        # Messages format schemes with !r ("records scheme 'mosi'"): keep the plain string there.
        return repr(self.value)

    # ----------------------------------------------------------------- parsing
    @classmethod
    def choices(cls) -> str:
        """'mosi, sims': the accepted strings, for error messages."""
        return ", ".join(s.value for s in cls)

    @classmethod
    def get(cls, value: object) -> Scheme | None:
        """The scheme named by ``value`` (a Scheme or its string), or None for anything else."""
        if not isinstance(value, str):  # a Scheme is a str too
            return None
        try:
            return cls(value)
        except ValueError:
            return None

    @classmethod
    def parse(cls, value: object) -> Scheme:
        """The scheme named by ``value``; a ConfigError naming the accepted strings otherwise."""
        scheme = cls.get(value)
        if scheme is None:
            raise ConfigError(f"unknown metric scheme {value!r}: use one of {cls.choices()}")
        return scheme

    @classmethod
    def guess(cls, labels: Iterable, name: str | None = None) -> Scheme:
        """SIMS when ``name`` says so or every label lies in [-1, 1]; MOSI (the [-3, 3] scheme) otherwise.

        ``labels``: one array of labels per split (any may be empty). No labels
        at all guess SIMS (nothing lies outside [-1, 1]).
        """
        import numpy as np

        if name and "sims" in name.lower():
            return cls.SIMS
        bound = 1.0 + _UNIT_RANGE_TOLERANCE
        for values in labels:
            values = np.asarray(values, dtype=np.float64).reshape(-1)  # (N,)
            if values.size and float(np.max(np.abs(values))) > bound:
                return cls.MOSI
        return cls.SIMS

    # ------------------------------------------------------------------ ranges
    @classmethod
    def label_range(cls, scheme: object | None = None) -> tuple[float, float]:
        """The range labels must lie in: the scheme's scale; with no scheme (guessed from the labels later) the widest one."""
        if scheme is not None:
            return cls.parse(scheme).scale
        return min(s.scale[0] for s in cls), max(s.scale[1] for s in cls)

    def outside_scale(self, values) -> np.ndarray:
        """(K,) indices of the values beyond this scheme's scale (float32 rounding allowed)."""
        import numpy as np

        lo, hi = self.scale
        array = np.asarray(values, dtype=np.float64).reshape(-1)  # (N,)
        return np.flatnonzero((array < lo - _UNIT_RANGE_TOLERANCE) | (array > hi + _UNIT_RANGE_TOLERANCE))

    @property
    def scale(self) -> tuple[float, float]:
        """The label range: (-3, 3) for MOSI/MOSEI, (-1, 1) for SIMS."""
        return (-1.0, 1.0) if self is Scheme.SIMS else (-3.0, 3.0)

    @property
    def clips_before_scoring(self) -> bool:
        """SIMS clips predictions and truth to its scale before every metric (MAE, Corr too); MOSI never does."""
        return self is Scheme.SIMS

    @property
    def neutral_band(self) -> float:
        """Half-width of the neutral class: SIMS (-0.1, 0.1]; MOSI only exactly 0 (band 0)."""
        return 0.1 if self is Scheme.SIMS else 0.0

    # ----------------------------------------------------------------- classes
    @property
    def class_counts(self) -> tuple[int, ...]:
        """The numbers of classes this scheme bins into (its Acc-n metrics, and 3 for polarity)."""
        return tuple(SIMS_EDGES) if self is Scheme.SIMS else _MOSI_CLASSES

    @property
    def finest_classes(self) -> int:
        """The largest class count: 7 (MOSI Acc-7), 5 (SIMS Acc-5)."""
        return max(self.class_counts)

    def edges(self, n_classes: int) -> tuple[float, ...]:
        """SIMS bin edges for ``n_classes`` ((edges[i], edges[i+1]] is class i); MOSI rounds instead and has none."""
        if self is not Scheme.SIMS:
            raise ConfigError(f"scheme {self.value!r} has no bin edges: its classes come from rounding")
        self._check_classes(n_classes)
        return SIMS_EDGES[n_classes]

    def _check_classes(self, n_classes: int) -> None:
        if n_classes not in self.class_counts:
            counts = ", ".join(map(str, self.class_counts))
            raise ConfigError(f"{n_classes} classes is not a {self.value} binning: use {counts}")

    def classes(self, values, n_classes: int) -> np.ndarray:
        """(N,) int64 class index of each value, 0 the most negative; the rule every Acc-n uses.

        Values are compared in float32, as MMSA compares its float32 tensors
        (so ``0.1`` as an edge is ``float32(0.1)``).
        """
        import numpy as np

        self._check_classes(n_classes)
        array = np.asarray(values, dtype=np.float32).reshape(-1)  # (N,)
        if self is Scheme.SIMS:
            lo, hi = self.scale
            return bin_left_open(np.clip(array, lo, hi), SIMS_EDGES[n_classes])
        if n_classes == 2:
            return (array >= 0).astype(np.int64)  # Has0: zero counts as positive
        if n_classes == 3:
            return (np.sign(array) + 1).astype(np.int64)
        bound = (n_classes - 1) // 2
        return (np.round(np.clip(array, -bound, bound)) + bound).astype(np.int64)

    # ----------------------------------------------------------------- metrics
    @property
    def primary_metrics(self) -> tuple[str, ...]:
        """Metric keys in the order tables show them; the first is the headline number."""
        if self is Scheme.SIMS:
            return ("Mult_acc_2", "F1_score", "MAE", "Corr", "Mult_acc_3", "Mult_acc_5")
        return ("Non0_acc_2", "Non0_F1_score", "Has0_acc_2", "Has0_F1_score", "MAE", "Corr", "Mult_acc_5", "Mult_acc_7")


def bin_left_open(values: np.ndarray, edges: tuple[float, ...]) -> np.ndarray:
    """Class index of each value for left-open, right-closed bins (MMSA's SIMS loop); -1 outside them."""
    import numpy as np

    out = np.full(values.shape, -1, dtype=np.int64)  # (N,)
    for i in range(len(edges) - 1):
        # np.float32 edges: MMSA compares float32 tensors against Python floats,
        # which numpy evaluates in float32.
        lo, hi = np.float32(edges[i]), np.float32(edges[i + 1])
        out[(values > lo) & (values <= hi)] = i
    return out
