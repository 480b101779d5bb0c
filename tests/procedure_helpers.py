"""Small synthetic encoded splits for the procedure tests (no LM, no files)."""

from __future__ import annotations

import numpy as np

from models.data.batching import EncodedSplit


def tiny_split(n: int, seed: int = 0, max_tokens: int = 12) -> EncodedSplit:
    """`n` clips with random transcript lengths 1..max_tokens, 3 audio and 2 vision frames of width 2."""
    rng = np.random.default_rng(seed)
    tokens = [list(rng.integers(1, 50, size=int(rng.integers(1, max_tokens + 1)))) for _ in range(n)]
    audio = rng.normal(size=(n, 3, 2)).astype(np.float32)
    vision = rng.normal(size=(n, 2, 2)).astype(np.float32)
    return EncodedSplit(
        [f"c{i}" for i in range(n)],
        [[int(t) for t in ids] for ids in tokens],
        audio,
        np.full(n, 3),
        vision,
        np.full(n, 2),
        rng.normal(size=n).astype(np.float32),
        pad_id=0,
    )
