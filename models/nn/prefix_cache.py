"""Per-clip memory of the text's states below the first MM block (docs/architecture.md §10).

Below the first MM block nothing trainable touches the text tokens. With the
frozen LM's dropout off and no text augmentation on a batch, the text's
keys/values in those layers, and its hidden state entering the first MM
block, depend on the clip alone: computed once, they serve every epoch and
every evaluation pass. An entry is keyed by the clip's real token ids and
their positions, so the same transcript in any split, batch or padding finds
the same entry, and a change of positions can never reuse a stale one.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class PrefixEntry:
    """One clip's prefix states, real tokens only (n of them)."""

    kv: torch.Tensor  # (L, 2, H_kv, n, d_h): keys and values of the L layers below the first MM block
    hidden: torch.Tensor  # (n, d): text state entering the first MM block's layer

    @property
    def nbytes(self) -> int:
        return self.kv.numel() * self.kv.element_size() + self.hidden.numel() * self.hidden.element_size()


class PrefixCache:
    """Clip key → PrefixEntry, up to `budget_bytes`; clips past the budget are recomputed every time.

    `dtype` is the storage type (bf16 on GPU halves the memory; float32 on CPU
    keeps cached = recomputed exactly). Entries stay on the device they were
    computed on.
    """

    def __init__(self, budget_bytes: int, dtype: torch.dtype | None = None) -> None:
        self.budget_bytes = int(budget_bytes)
        self.dtype = dtype
        self.entries: dict[tuple, PrefixEntry] = {}
        self.bytes_held = 0
        self.hits = 0
        self.misses = 0
        self.refused = 0  # entries not stored because the budget was full

    @staticmethod
    def keys(text_ids: torch.Tensor, text_valid: torch.Tensor, positions: torch.Tensor) -> list[tuple]:
        """One key per row of a (B, T) batch: its real token ids and their positions."""
        ids, valid, pos = text_ids.tolist(), text_valid.tolist(), positions.tolist()
        return [
            (tuple(i for i, v in zip(r_ids, r_valid) if v), tuple(p for p, v in zip(r_pos, r_valid) if v))
            for r_ids, r_valid, r_pos in zip(ids, valid, pos)
        ]

    def get(self, key: tuple) -> PrefixEntry | None:
        entry = self.entries.get(key)
        if entry is None:
            self.misses += 1
        else:
            self.hits += 1
        return entry

    def put(self, key: tuple, entry: PrefixEntry) -> bool:
        """Store a copy of `entry` (in the storage dtype) if it fits the budget; returns whether it did."""
        if key in self.entries:
            return True
        if self.dtype is not None:
            entry = PrefixEntry(entry.kv.to(self.dtype), entry.hidden.to(self.dtype))
        size = entry.nbytes
        if self.bytes_held + size > self.budget_bytes:
            self.refused += 1
            return False
        # Clone: the batch tensors the entry was cut from must not stay alive through it.
        self.entries[key] = PrefixEntry(entry.kv.clone(), entry.hidden.clone())
        self.bytes_held += size
        return True

    def stats(self) -> dict[str, float | int]:
        """What the training log reports: size held, entries, hits and misses so far."""
        return {
            "mib": round(self.bytes_held / 2**20, 1),
            "entries": len(self.entries),
            "hits": self.hits,
            "misses": self.misses,
            "refused": self.refused,
        }
