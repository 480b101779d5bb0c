"""The audio-visual encoder: raw audio and vision sequences → one 30-d context sequence z.

Per modality: length-aware pooling to a shared time grid, optional BatchNorm
(after the pooling, as the reference, or on the raw frames), Linear(D→d_av)·√d_av,
sinusoidal positions (fairseq's, as the reference, or Vaswani's), a pre-LN
transformer encoder (no final LayerNorm of its own, as the reference). Then the
Fusion FFW over cat(z_a, z_v) and a LayerNorm.

SeqAug (training only) runs where `seqaug_mode` says: the reference's, on the
raw frames before BatchNorm and pooling with one permutation per batch; or
per sample over the pooled valid steps.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from models.config import AV_MODALITIES, Augmentation, AVBatchNormAt, AVPositions, SeqAugMode
from models.nn.augment import augment_sequence, seq_aug_shared, uses_reference_seqaug


def lengths_to_mask(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """(B,) lengths → (B, max_len) bool, True on valid steps."""
    return torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]


def pooled_lengths(audio_lengths: torch.Tensor, vision_lengths: torch.Tensor, pool_len: int) -> torch.Tensor:
    """Steps each clip gets on the shared grid: min(pool_len, longest modality), at least 1.

    It depends on the clip alone (never on the batch), so a clip gives the same
    output alone or in a batch.
    """
    return torch.clamp(torch.maximum(audio_lengths, vision_lengths), min=1, max=pool_len)


def pool_to_grid(x: torch.Tensor, lengths: torch.Tensor, n_steps: torch.Tensor, pool_len: int) -> torch.Tensor:
    """Contiguous, length-aware average pooling of a padded sequence onto `n_steps` steps.

    x: (B, T, D) zero-padded; lengths: (B,) valid frames; n_steps: (B,) output
    steps per clip (≤ pool_len). Step k of clip b averages frames
    [⌊k·L/n⌋, max(⌊k·L/n⌋+1, ⌊(k+1)·L/n⌋)), so a clip shorter than its grid
    repeats frames and a longer one averages them; padding is never read.
    A clip with L = 0 (no such track) pools to zeros. Returns (B, pool_len, D),
    zero beyond n_steps.
    """
    B, T, _ = x.shape
    L = lengths.clamp(min=0).to(torch.float64)[:, None, None]  # (B, 1, 1)
    n = n_steps.to(torch.float64)[:, None, None]  # (B, 1, 1)
    k = torch.arange(pool_len, device=x.device, dtype=torch.float64)[None, :, None]  # (1, P, 1)
    start = torch.floor(k * L / n)
    end = torch.maximum(start + 1, torch.floor((k + 1) * L / n))
    t = torch.arange(T, device=x.device, dtype=torch.float64)[None, None, :]  # (1, 1, T)
    inside = (t >= start) & (t < end) & (t < L) & (k < n)  # (B, P, T)
    weights = inside.to(x.dtype)
    weights = weights / weights.sum(-1, keepdim=True).clamp(min=1.0)
    return weights @ x  # (B, P, D)


def sinusoidal_positions(length: int, dim: int, device=None) -> torch.Tensor:
    """(length, dim) fixed sine/cosine positions (Vaswani et al.), odd dims allowed."""
    position = torch.arange(length, device=device, dtype=torch.float32)[:, None]
    div = torch.exp(torch.arange(0, dim, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(length, dim, device=device)
    table[:, 0::2] = torch.sin(position * div)
    table[:, 1::2] = torch.cos(position * div)[:, : dim // 2]
    return table


def fairseq_sinusoid_table(n_positions: int, dim: int, padding_idx: int = 0) -> torch.Tensor:
    """(n_positions, dim) fairseq's sinusoidal table: [sin | cos] halves, row `padding_idx` zero.

    Frequencies are 10000^(-i/(h-1)) for i < h = dim // 2; an odd dim gets a zero last column.
    """
    half = dim // 2
    step = math.log(10000.0) / max(half - 1, 1)
    freqs = torch.exp(torch.arange(half, dtype=torch.float32) * -step)  # (h,)
    args = torch.arange(n_positions, dtype=torch.float32)[:, None] * freqs[None, :]  # (N, h)
    table = torch.cat([torch.sin(args), torch.cos(args)], dim=1)  # (N, 2h)
    if dim % 2:
        table = torch.cat([table, torch.zeros(n_positions, 1)], dim=1)
    table[padding_idx] = 0.0
    return table


def fairseq_positions(first_feature: torch.Tensor, table: torch.Tensor, padding_idx: int = 0) -> torch.Tensor:
    """(B, P) first input feature of each step → (B, P, dim) fairseq positional embeddings.

    A step whose first feature is exactly 0 counts as padding (the zero row); the
    others are numbered padding_idx + 1, + 2, … in order, skipping padding.
    """
    real = (first_feature != 0).long()  # (B, P)
    positions = torch.cumsum(real, dim=1) * real + padding_idx  # (B, P)
    return table.to(first_feature.device)[positions]


class MaskedBatchNorm(nn.Module):
    """BatchNorm1d over the valid frames of a padded (B, T, D) sequence; padding stays zero."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm1d(dim)

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        # x: (B, T, D); valid: (B, T) bool
        if not valid.any():
            return x
        out = torch.zeros_like(x)
        frames = x[valid]  # (N_valid, D)
        if self.training and frames.shape[0] < 2:
            # BatchNorm cannot estimate a variance from one frame: use the running statistics.
            out[valid] = nn.functional.batch_norm(
                frames,
                self.norm.running_mean,
                self.norm.running_var,
                self.norm.weight,
                self.norm.bias,
                False,
                0.0,
                self.norm.eps,
            )
            return out
        out[valid] = self.norm(frames)
        return out


class ModalityEncoder(nn.Module):
    """Projection, positions and a pre-LN transformer for one modality.

    `final_norm` adds a LayerNorm after the last layer (the baselines keep it;
    the DeepMLF AV encoder, like the reference, normalises only after its Fusion FFW).
    """

    positions: torch.Tensor  # sinusoidal, a non-persistent buffer: (pool_len, d) Vaswani, (pool_len+1, d) fairseq

    def __init__(
        self,
        d_in: int,
        d_model: int,
        n_layers: int,
        n_heads: int,
        d_ffn: int,
        dropout: float,
        pool_len: int,
        final_norm: bool = True,
        positions: AVPositions = AVPositions.VASWANI,
    ) -> None:
        super().__init__()
        self.scale = math.sqrt(d_model)
        self.proj = nn.Linear(d_in, d_model, bias=False)
        self.fairseq = AVPositions(positions) is AVPositions.FAIRSEQ
        table = (
            fairseq_sinusoid_table(pool_len + 1, d_model) if self.fairseq else sinusoidal_positions(pool_len, d_model)
        )
        self.register_buffer("positions", table, persistent=False)
        self.dropout = nn.Dropout(dropout)
        layer = nn.TransformerEncoderLayer(
            d_model, n_heads, d_ffn, dropout, activation="gelu", batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(
            layer, n_layers, norm=nn.LayerNorm(d_model) if final_norm else None, enable_nested_tensor=False
        )

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        # x: (B, P, D_in) pooled; valid: (B, P) bool → (B, P, d_model)
        projected = self.proj(x)  # (B, P, d_model)
        if self.fairseq:
            # As the reference (fairseq): positions from the encoder input's first feature.
            pos = fairseq_positions(projected[..., 0], self.positions)  # (B, P, d_model)
        else:
            pos = self.positions[: x.shape[1]]
        h = projected * self.scale + pos
        h = self.dropout(h)
        return self.encoder(h, src_key_padding_mask=~valid)


class AVEncoder(nn.Module):
    """Audio + vision → z: (B, P, d_av) with its (B, P) validity mask."""

    def __init__(
        self,
        d_audio: int,
        d_vision: int,
        d_av: int = 30,
        pool_len: int = 55,
        n_layers: int = 3,
        n_heads: int = 6,
        d_ffn: int = 120,
        dropout: float = 0.1,
        input_batchnorm: tuple[str, ...] = AV_MODALITIES,
        aug: Augmentation = Augmentation.SEQAUG,
        aug_p: float = 0.2,
        seqaug_mode: SeqAugMode = SeqAugMode.REFERENCE,
        batchnorm_at: AVBatchNormAt = AVBatchNormAt.POOLED,
        positions: AVPositions = AVPositions.FAIRSEQ,
        output_norm: bool = True,
    ) -> None:
        super().__init__()
        self.batchnorm_pooled = AVBatchNormAt(batchnorm_at) is AVBatchNormAt.POOLED
        self.pool_len = pool_len
        self.aug = Augmentation(aug)
        self.aug_p = aug_p
        self.raw_seqaug = uses_reference_seqaug(self.aug, seqaug_mode)  # on raw frames, before BatchNorm
        # BatchNorm on the features of the modalities listed (SIMS both, MOSI pretraining audio only).
        self.audio_norm = MaskedBatchNorm(d_audio) if "audio" in input_batchnorm else None
        self.vision_norm = MaskedBatchNorm(d_vision) if "vision" in input_batchnorm else None
        self.audio = ModalityEncoder(
            d_audio, d_av, n_layers, n_heads, d_ffn, dropout, pool_len, final_norm=False, positions=positions
        )
        self.vision = ModalityEncoder(
            d_vision, d_av, n_layers, n_heads, d_ffn, dropout, pool_len, final_norm=False, positions=positions
        )
        self.fusion = nn.Linear(2 * d_av, d_av)  # the Fusion FFW over cat(z_a, z_v)
        # No LayerNorm with `output_norm` off: the reference's pretraining reads the Fusion FFW's output.
        self.norm: nn.Module = nn.LayerNorm(d_av) if output_norm else nn.Identity()

    @classmethod
    def from_config(cls, config, output_norm: bool = True) -> AVEncoder:
        """The AV encoder a ModelConfig describes (DeepMLF and AV pretraining build it the same way)."""
        return cls(
            config.d_audio,
            config.d_vision,
            config.d_av,
            config.av_pool_len,
            config.av_layers,
            config.av_heads,
            config.av_ffn,
            config.av_dropout,
            config.av_input_batchnorm,
            config.av_aug,
            config.av_aug_p,
            config.seqaug_mode,
            config.av_batchnorm_at,
            config.av_positions,
            output_norm,
        )

    def forward(
        self, audio: torch.Tensor, audio_lengths: torch.Tensor, vision: torch.Tensor, vision_lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """audio (B, T_a, D_a), vision (B, T_v, D_v), lengths (B,) → z (B, P, d_av), valid (B, P)."""
        if self.training and self.raw_seqaug:
            # The reference: raw frames (B, T, D) of the batch, one permutation each, before BatchNorm and pooling.
            audio = seq_aug_shared(audio, self.aug_p)
            vision = seq_aug_shared(vision, self.aug_p)
        if not self.batchnorm_pooled:
            audio, vision = self._batchnorm(
                audio,
                lengths_to_mask(audio_lengths, audio.shape[1]),
                vision,
                lengths_to_mask(vision_lengths, vision.shape[1]),
            )
        steps = pooled_lengths(audio_lengths, vision_lengths, self.pool_len)  # (B,)
        valid = lengths_to_mask(steps, self.pool_len)  # (B, P)
        audio = pool_to_grid(audio, audio_lengths, steps, self.pool_len)  # (B, P, D_a)
        vision = pool_to_grid(vision, vision_lengths, steps, self.pool_len)  # (B, P, D_v)
        if self.batchnorm_pooled:  # the reference: BatchNorm on the aligned (pooled) steps
            audio, vision = self._batchnorm(audio, valid, vision, valid)
        if self.training and not self.raw_seqaug:
            audio = augment_sequence(audio, valid, self.aug, self.aug_p)
            vision = augment_sequence(vision, valid, self.aug, self.aug_p)
        z_a = self.audio(audio, valid)  # (B, P, d_av)
        z_v = self.vision(vision, valid)  # (B, P, d_av)
        z = self.norm(self.fusion(torch.cat([z_a, z_v], dim=-1)))  # (B, P, d_av)
        return z * valid[..., None], valid

    def _batchnorm(
        self, audio: torch.Tensor, audio_valid: torch.Tensor, vision: torch.Tensor, vision_valid: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The modalities' BatchNorms (where they have one) over their valid steps: (B, T, D) each."""
        if self.audio_norm is not None:
            audio = self.audio_norm(audio, audio_valid)
        if self.vision_norm is not None:
            vision = self.vision_norm(vision, vision_valid)
        return audio, vision


def masked_mean(x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """(B, T, D) mean over valid steps → (B, D)."""
    weights = valid.to(x.dtype)[..., None]
    return (x * weights).sum(1) / weights.sum(1).clamp(min=1.0)
