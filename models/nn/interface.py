"""What every model kind shares: the batch it reads, the output it returns, the task head."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Protocol

import torch
from torch import nn

from models.config import ModelConfig


@dataclass
class Batch:
    """Model inputs for B clips (tensors on one device)."""

    text_ids: torch.Tensor  # (B, T) long, left-padded
    text_valid: torch.Tensor  # (B, T) bool, False on padding
    audio: torch.Tensor  # (B, T_a, D_a) float, zero-padded at the end
    audio_lengths: torch.Tensor  # (B,) long
    vision: torch.Tensor  # (B, T_v, D_v) float
    vision_lengths: torch.Tensor  # (B,) long
    labels: torch.Tensor | None = None  # (B,) float
    # The LM-loss target after each clip's last real token (the reference's rule): the padding id
    # (GPT-2: EOS; BERT tokenizers: [PAD] after the final [SEP]), or id 0 when the transcript fills
    # the maximum length. None: that token has no target.
    text_next: torch.Tensor | None = None  # (B,) long
    # Divisors of the loss terms' sums: (clips, LM targets) per micro-batch. None: this micro-batch's
    # own counts (plain means). Window batching sets its window's means, so that regrouping a
    # window's clips into micro-batches leaves the summed gradient as it is.
    loss_norm: tuple[float, float] | None = None

    def to(self, device: torch.device | str) -> Batch:
        def move(t: torch.Tensor) -> torch.Tensor:
            return t.to(device, non_blocking=True)

        return replace(
            self,
            text_ids=move(self.text_ids),
            text_valid=move(self.text_valid),
            audio=move(self.audio),
            audio_lengths=move(self.audio_lengths),
            vision=move(self.vision),
            vision_lengths=move(self.vision_lengths),
            labels=None if self.labels is None else move(self.labels),
            text_next=None if self.text_next is None else move(self.text_next),
        )

    def __len__(self) -> int:
        return self.text_ids.shape[0]


@dataclass
class Output:
    """Predictions of every head and, with labels, the loss and its terms."""

    prediction: torch.Tensor  # (B,) task head y_o
    text: torch.Tensor  # (B,) text head y_t (on the last real text token)
    av: torch.Tensor  # (B,) AV head y_av (on ⟨z⟩)
    fusion: torch.Tensor  # (B, n_f) one y_f per fusion token
    loss: torch.Tensor | None = None
    terms: dict[str, float] = field(default_factory=dict)

    @classmethod
    def of(
        cls,
        prediction: torch.Tensor,
        text: torch.Tensor | None = None,
        av: torch.Tensor | None = None,
        fusion: torch.Tensor | None = None,
    ) -> Output:
        """The Output of a model with only some of DeepMLF's heads: each head it lacks is NaN (fusion: no columns).

        prediction: (B,). Evaluation writes every head's column, so a missing
        head reads as "not computed", never as a score.
        """

        def missing() -> torch.Tensor:
            return torch.full_like(prediction, float("nan"))  # (B,)

        return cls(
            prediction=prediction,
            text=missing() if text is None else text,
            av=missing() if av is None else av,
            fusion=prediction.new_zeros(prediction.shape[0], 0) if fusion is None else fusion,
        )


class SentimentModel(Protocol):
    """What every model kind of models.nn.registry has besides being an nn.Module (what checkpoints save).

    nn.Module's `__getattr__` hides these from a type checker (it types every
    unknown attribute `Tensor | Module`); a function that needs them says so
    with this type.
    """

    kind: str  # the model kind its checkpoints record
    config: ModelConfig  # the config it was built from

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """The tensors a checkpoint stores (everything but the frozen LM, which `config.lm` names)."""
        ...


class TaskHead(nn.Module):
    """Linear(2d+d_av → 64) → BatchNorm → ReLU → Linear(64 → 1)."""

    def __init__(self, d_in: int, hidden: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(d_in, hidden), nn.BatchNorm1d(hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(-1)  # (B, d_in) → (B,)
