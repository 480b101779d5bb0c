"""Embedding regularisers used in training: SeqAug and the alternatives the paper ablates.

They are called only from training-mode code paths; in eval mode nothing
here runs, so augmentation can never change a prediction.
"""

from __future__ import annotations

import torch

from models.config import Augmentation, ModelConfig, SeqAugMode


def permute_valid_positions(valid: torch.Tensor) -> torch.Tensor:
    """A random permutation per sample that maps valid steps onto valid steps.

    valid: (B, T) bool. Returns index (B, T) long with padding steps mapped to
    themselves, so padding never leaks into real steps (left or right padded).
    """
    B, T = valid.shape
    steps = torch.arange(T, device=valid.device, dtype=torch.float32).expand(B, T)
    # Sorting puts valid steps first (random order / original order), padding after.
    shuffled = torch.argsort(torch.where(valid, torch.rand(B, T, device=valid.device), 2.0 + steps), dim=1)
    ordered = torch.argsort(torch.where(valid, steps / T, 2.0 + steps), dim=1)
    perm = torch.empty_like(ordered)
    perm.scatter_(1, ordered, shuffled)
    return perm


def seq_aug(x: torch.Tensor, valid: torch.Tensor, p: float) -> torch.Tensor:
    """SeqAug: mix each sequence with a time-permuted copy of itself on a random subset of feature dims.

    x: (B, T, D); valid: (B, T) bool. A Bernoulli(p) mask over (B, D),
    constant in time, picks the dims taken from the permuted sequence:
    x' = (1 − s)·x + s·x[:, perm].
    """
    perm = permute_valid_positions(valid)  # (B, T)
    shuffled = torch.gather(x, 1, perm[..., None].expand_as(x))
    swap = torch.rand(x.shape[0], 1, x.shape[2], device=x.device) < p  # (B, 1, D)
    return torch.where(swap, shuffled, x)


def seq_aug_shared(x: torch.Tensor, p: float) -> torch.Tensor:
    """SeqAug as the reference applies it: one time permutation for the whole batch, over every
    (padded) position, and a Bernoulli(p) mask over (B, D), constant in time.

    x: (B, T, D) → (B, T, D); x' = (1 − s)·x + s·x[:, perm]. Padding takes part,
    as it does in the reference's fixed-length sequences.
    """
    if p <= 0:
        return x
    perm = torch.randperm(x.shape[1], device=x.device)  # (T,) shared by the batch
    swap = torch.rand(x.shape[0], 1, x.shape[2], device=x.device) < p  # (B, 1, D)
    return torch.where(swap, x[:, perm], x)


def uses_reference_seqaug(kind: Augmentation, mode: SeqAugMode) -> bool:
    """Whether an AV encoder applies SeqAug to the raw frames (reference) instead of after pooling."""
    return Augmentation(kind) is Augmentation.SEQAUG and SeqAugMode(mode) is SeqAugMode.REFERENCE


def augment_text(text: torch.Tensor, valid: torch.Tensor, config: ModelConfig, training: bool) -> torch.Tensor:
    """The text regulariser of one training batch: applied with probability `text_aug_apply`.

    text: (B, T, d) token embeddings before positions; valid: (B, T) bool.
    Returns `text` itself (the same tensor) when the batch is not augmented.
    SeqAug follows `config.seqaug_mode`: the reference's shared permutation over
    the padded positions, or a per-sample permutation of the real tokens.
    """
    if not training or config.text_aug is Augmentation.NONE or not torch.rand(()) < config.text_aug_apply:
        return text
    if uses_reference_seqaug(config.text_aug, config.seqaug_mode):
        return seq_aug_shared(text, config.text_aug_p)
    return augment_sequence(text, valid, config.text_aug, config.text_aug_p)


def augment_sequence(x: torch.Tensor, valid: torch.Tensor, kind: Augmentation, p: float) -> torch.Tensor:
    """Apply one regulariser to a padded (B, T, D) sequence; padding stays as it was."""
    if kind is Augmentation.NONE or p <= 0:
        return x
    if kind is Augmentation.SEQAUG:
        return seq_aug(x, valid, p)
    mask = valid[..., None].to(x.dtype)
    if kind is Augmentation.NOISE:
        # Gaussian noise scaled to the batch's feature spread (p sets its relative size).
        scale = x.detach().std(dim=(0, 1), keepdim=True)
        return x + p * scale * torch.randn_like(x) * mask
    if kind is Augmentation.DROPOUT:
        return torch.nn.functional.dropout(x, p=p, training=True)
    raise ValueError(f"unknown augmentation {kind}")
