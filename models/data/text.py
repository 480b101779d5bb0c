"""Tokenise transcripts once (at dataset load) and collate them left-padded."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def fallback_token_id(tokenizer) -> int:
    """The token that stands in for an empty transcript (and pads): EOS, else BOS, else PAD, else 0."""
    for name in ("eos_token_id", "bos_token_id", "pad_token_id"):
        value = getattr(tokenizer, name, None)
        if value is not None:
            return int(value)
    return 0


def tokenize_texts(tokenizer, texts: Sequence[str], max_tokens: int) -> list[list[int]]:
    """Token ids per transcript, cut to `max_tokens`.

    An empty transcript becomes one EOS token, so every clip has a last real
    text token for the text head to read.
    """
    encoded = tokenizer(list(texts), add_special_tokens=True, truncation=True, max_length=max_tokens)["input_ids"]
    stand_in = fallback_token_id(tokenizer)
    return [ids if ids else [stand_in] for ids in encoded]


def collate_text(
    token_ids: Sequence[Sequence[int]], pad_id: int, min_length: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-pad to the longest in the batch (or `min_length`) → ids (B, T) long, valid (B, T) bool."""
    T = max(min_length, max(len(ids) for ids in token_ids))
    ids = torch.full((len(token_ids), T), pad_id, dtype=torch.long)
    valid = torch.zeros((len(token_ids), T), dtype=torch.bool)
    for row, seq in enumerate(token_ids):
        if seq:
            ids[row, T - len(seq) :] = torch.as_tensor(seq, dtype=torch.long)
            valid[row, T - len(seq) :] = True
    return ids, valid
