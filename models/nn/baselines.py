"""The fusion baselines (docs/architecture.md §8) and unimodal models.

One transformer encoder per modality, then:

* ``early``: the three pooled states concatenated → task head;
* ``attention``: multi-head self-attention over the three states (3 tokens) → task head;
* ``late``: one head per modality, each trained with its own L1 loss; the
  prediction is the majority vote of their polarity classes (``late_vote``);
* ``text`` / ``audio`` / ``vision``: one modality → task head.

Text comes from the same frozen LM as DeepMLF (all layers, final norm, no
gradient), so the comparison with DeepMLF is fair; a small transformer
encoder then reads those states. Audio and vision are BatchNorm'ed (when
the config asks), pooled onto a grid of at most ``av_pool_len`` steps and
encoded like DeepMLF's AV encoder branches. Every encoder has the AV
encoder's sizes (``d_av``, ``av_layers``, ``av_heads``, ``av_ffn``).

The models follow DeepMLF's contract (``__init__(config, hf_lm)``,
``forward(batch) -> Output``, ``trainable_state_dict``). Each kind is a small
class declaring its name, the modalities it reads, its settings
(``BaselineSettings``) and its fusion; ``BASELINES`` lists them and
``models.nn.registry.MODEL_KINDS`` takes them from there, so
``deepmlf train --model X``, ``evaluate`` and ``load_model`` handle them like
DeepMLF. A new kind is one class and one entry in ``BASELINES``.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import ClassVar, Self

import torch
import torch.nn.functional as F
from torch import nn

from models.config import MODALITIES, Augmentation, ModelConfig
from models.errors import ConfigError
from models.nn.augment import augment_sequence
from models.nn.av_encoder import (
    MaskedBatchNorm,
    ModalityEncoder,
    lengths_to_mask,
    masked_mean,
    pool_to_grid,
    pooled_lengths,
)
from models.nn.interface import Batch, Output, TaskHead
from models.nn.lm import FrozenLM
from models.nn.positions import text_positions

# Polarity classes of the late-fusion vote: left-open, right-closed bins
# (-inf, -0.1] / (-0.1, 0.1] / (0.1, inf) → 0 negative, 1 neutral, 2 positive.
# These are MMSA's 3-class SIMS bins; on MOSI/MOSEI's [-3, 3] scale they make
# a narrow neutral band around 0 (the model does not know the dataset's scheme).
VOTE_NEUTRAL_BAND: float = 0.1


def vote_classes(values: torch.Tensor, band: float = VOTE_NEUTRAL_BAND) -> torch.Tensor:
    """Regression values (any shape) → polarity classes 0/1/2 with the vote's bins."""
    return (values > -band).long() + (values > band).long()


def late_vote(predictions: torch.Tensor, band: float = VOTE_NEUTRAL_BAND) -> torch.Tensor:
    """Majority vote of unimodal regression predictions, mapped back to a score.

    predictions: (B, M) one prediction per modality → (B,).

    Each modality votes for the polarity class of its prediction
    (``vote_classes``). The class with the most votes wins; the score is the
    mean of the predictions of the modalities that voted for it, so it lies
    in the winning class's bin (bins are intervals). With no majority (three
    different classes) the neutral class wins, i.e. the score is the neutral
    voter's prediction (= the median of the three).
    """
    classes = vote_classes(predictions, band)  # (B, M)
    counts = F.one_hot(classes, 3).sum(1)  # (B, 3)
    top = counts.max(1).values  # (B,)
    # Ties between classes with equal counts: neutral first, then negative, then positive.
    preference = torch.tensor([1, 0, 2], device=predictions.device)
    winner = preference[torch.argmax((counts[:, preference] == top[:, None]).long(), dim=1)]  # (B,)
    members = (classes == winner[:, None]).to(predictions.dtype)  # (B, M)
    return (predictions * members).sum(1) / members.sum(1)


@dataclass(frozen=True)
class BaselineSettings:
    """What the baselines read of a config: the AV encoder's sizes for every encoder, the head, the augmentation.

    A family takes its settings from here, not from the whole ModelConfig (DeepMLF's):
    a family with settings of its own subclasses this with them (defaults given) and
    names it as its `Settings`; `from_config` fills each field the config has.
    """

    d_audio: int
    d_vision: int
    d_av: int
    av_layers: int
    av_heads: int
    av_ffn: int
    av_dropout: float
    av_pool_len: int
    av_input_batchnorm: tuple[str, ...]
    av_aug: str
    av_aug_p: float
    text_aug: str
    text_aug_p: float
    text_aug_apply: float
    max_text_tokens: int
    head_hidden: int

    @classmethod
    def from_config(cls, config: ModelConfig) -> Self:
        """The fields of this settings class that `config` holds (the others keep their defaults)."""
        return cls(**{f.name: getattr(config, f.name) for f in fields(cls) if hasattr(config, f.name)})


class TextBranch(nn.Module):
    """Frozen LM states of the transcript → small transformer encoder → pooled (B, d) state."""

    def __init__(self, lm: FrozenLM, settings: BaselineSettings) -> None:
        super().__init__()
        self.max_tokens = settings.max_text_tokens
        self.encoder = ModalityEncoder(
            lm.d_model,
            settings.d_av,
            settings.av_layers,
            settings.av_heads,
            settings.av_ffn,
            settings.av_dropout,
            settings.max_text_tokens,
        )
        self.aug = Augmentation(settings.text_aug)
        self.aug_p = settings.text_aug_p
        self.aug_apply = settings.text_aug_apply

    def forward(self, lm: FrozenLM, text_ids: torch.Tensor, text_valid: torch.Tensor) -> torch.Tensor:
        # text_ids, text_valid: (B, T) left-padded → (B, d_av)
        with torch.no_grad():
            embeds = lm.embed(text_ids)  # (B, T, d_lm)
            positions = text_positions(text_valid)  # (B, T)
            hidden, ctx = lm.prepare(embeds, text_valid, positions)
            for i in range(lm.n_layers):
                hidden = lm.run_layer(i, hidden, ctx)
            hidden = lm.final_norm(hidden).float()  # (B, T, d_lm)
        # Right-align the real tokens (roll each row left by its padding), so a
        # clip gets the same encoder positions alone or in a batch.
        B, T, _ = hidden.shape
        n_real = text_valid.sum(1)  # (B,)
        index = (torch.arange(T, device=hidden.device)[None, :] + (T - n_real)[:, None]) % T  # (B, T)
        hidden = hidden.gather(1, index[..., None].expand_as(hidden))
        hidden, n_real = hidden[:, : self.max_tokens], n_real.clamp(max=self.max_tokens)
        valid = lengths_to_mask(n_real.clamp(min=1), hidden.shape[1])  # an empty transcript keeps one step
        if self.training and self.aug is not Augmentation.NONE and torch.rand(()) < self.aug_apply:
            hidden = augment_sequence(hidden, valid, self.aug, self.aug_p)
        return masked_mean(self.encoder(hidden, valid), valid)


class SequenceBranch(nn.Module):
    """One audio or vision track → BatchNorm, length-aware pooling, transformer → pooled (B, d) state."""

    def __init__(self, d_in: int, settings: BaselineSettings) -> None:
        super().__init__()
        self.pool_len = settings.av_pool_len
        self.norm = MaskedBatchNorm(d_in) if settings.av_input_batchnorm else None
        self.encoder = ModalityEncoder(
            d_in,
            settings.d_av,
            settings.av_layers,
            settings.av_heads,
            settings.av_ffn,
            settings.av_dropout,
            settings.av_pool_len,
        )
        self.aug = Augmentation(settings.av_aug)
        self.aug_p = settings.av_aug_p

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        # x: (B, T, D) zero-padded, lengths: (B,) → (B, d_av)
        if self.norm is not None:
            x = self.norm(x, lengths_to_mask(lengths, x.shape[1]))
        steps = pooled_lengths(lengths, lengths, self.pool_len)  # (B,)
        valid = lengths_to_mask(steps, self.pool_len)  # (B, P)
        x = pool_to_grid(x, lengths, steps, self.pool_len)  # (B, P, D)
        if self.training:
            x = augment_sequence(x, valid, self.aug, self.aug_p)
        return masked_mean(self.encoder(x, valid), valid)


class BaselineModel(nn.Module):
    """Per-modality encoders (those of `modalities`) plus the fusion a subclass defines in `fuse`.

    A family declares, as class attributes, its `kind` (the name runs record),
    the `modalities` it reads and its `Settings`; it builds its fusion layers in
    `build_fusion` and maps the pooled states to an Output in `fuse` (stating
    only the heads it has: `Output.of`). `loss_terms` is the L1 task loss
    unless the family says otherwise. The parameter names (text, audio, vision,
    head, ...) are what its checkpoints hold.
    """

    kind: ClassVar[str]
    modalities: ClassVar[tuple[str, ...]]
    Settings: ClassVar[type[BaselineSettings]] = BaselineSettings

    def __init__(self, config: ModelConfig, hf_lm: nn.Module | None) -> None:
        super().__init__()
        self.config = config
        self.settings = self.Settings.from_config(config)
        if "text" in self.modalities:
            if hf_lm is None:
                raise ConfigError(f"the {self.kind} baseline reads text: it needs the frozen LM")
            self.lm = FrozenLM(hf_lm)
            self.text = TextBranch(self.lm, self.settings)
        if "audio" in self.modalities:
            self.audio = SequenceBranch(self.settings.d_audio, self.settings)
        if "vision" in self.modalities:
            self.vision = SequenceBranch(self.settings.d_vision, self.settings)
        self.build_fusion(self.settings)

    def build_fusion(self, settings: BaselineSettings) -> None:
        """The layers after the encoders: one task head on the concatenated states by default."""
        self.head = TaskHead(len(self.modalities) * settings.d_av, settings.head_hidden)

    def fuse(self, states: dict[str, torch.Tensor]) -> Output:
        """Pooled states (name → (B, d_av)) → the model's Output."""
        raise NotImplementedError

    def loss_terms(self, out: Output, y: torch.Tensor) -> dict[str, torch.Tensor]:
        """The named loss terms (summed into the loss): the task's L1 by default."""
        return {"task": F.l1_loss(out.prediction, y)}

    def train(self, mode: bool = True) -> BaselineModel:
        super().train(mode)
        if hasattr(self, "lm"):
            self.lm.train(False)  # the LM only supplies fixed states
        return self

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """All tensors outside the frozen LM (which `config.lm` references)."""
        return {n: t for n, t in self.state_dict().items() if not n.startswith("lm.")}

    def encode(self, batch: Batch) -> dict[str, torch.Tensor]:
        """Pooled state of each modality the model reads: name → (B, d_av)."""
        states = {}
        if "text" in self.modalities:
            states["text"] = self.text(self.lm, batch.text_ids, batch.text_valid)
        if "audio" in self.modalities:
            states["audio"] = self.audio(batch.audio.float(), batch.audio_lengths)
        if "vision" in self.modalities:
            states["vision"] = self.vision(batch.vision.float(), batch.vision_lengths)
        return states

    def forward(self, batch: Batch, compute_loss: bool = True) -> Output:
        out = self.fuse(self.encode(batch))
        if compute_loss and batch.labels is not None:
            terms = self.loss_terms(out, batch.labels.float())
            out.loss = torch.stack(list(terms.values())).sum()
            out.terms = {k: float(v.detach()) for k, v in terms.items()}
        return out


class EarlyFusion(BaselineModel):
    """The three pooled states concatenated → task head."""

    kind = "early"
    modalities = MODALITIES

    def fuse(self, states: dict[str, torch.Tensor]) -> Output:
        features = torch.cat([states[m] for m in self.modalities], dim=-1)  # (B, 3·d)
        return Output.of(self.head(features).float())


class AttentionFusion(BaselineModel):
    """Multi-head self-attention over the three pooled states (3 tokens) → task head."""

    kind = "attention"
    modalities = MODALITIES

    def build_fusion(self, settings: BaselineSettings) -> None:
        d = settings.d_av
        self.modality_embed = nn.Parameter(torch.randn(len(self.modalities), d) * 0.02)  # (3, d)
        self.attention = nn.MultiheadAttention(d, settings.av_heads, dropout=settings.av_dropout, batch_first=True)
        self.attention_norm = nn.LayerNorm(d)
        self.head = TaskHead(len(self.modalities) * d, settings.head_hidden)

    def fuse(self, states: dict[str, torch.Tensor]) -> Output:
        tokens = torch.stack([states[m] for m in self.modalities], dim=1) + self.modality_embed  # (B, 3, d)
        mixed, _ = self.attention(tokens, tokens, tokens, need_weights=False)
        features = self.attention_norm(tokens + mixed).flatten(1)  # (B, 3d)
        return Output.of(self.head(features).float())


class LateFusion(BaselineModel):
    """One head per modality, each trained with its own L1 loss; the prediction is their vote (`late_vote`)."""

    kind = "late"
    modalities = MODALITIES

    def build_fusion(self, settings: BaselineSettings) -> None:
        self.heads = nn.ModuleDict({m: TaskHead(settings.d_av, settings.head_hidden) for m in self.modalities})

    def fuse(self, states: dict[str, torch.Tensor]) -> Output:
        unimodal = {m: self.heads[m](states[m]).float() for m in self.modalities}  # each (B,)
        stacked = torch.stack([unimodal[m] for m in self.modalities], dim=1)  # (B, 3)
        # text: the text classifier; av: mean of the audio and vision classifiers; fusion: all three.
        return Output.of(
            late_vote(stacked.detach()),
            text=unimodal["text"],
            av=(unimodal["audio"] + unimodal["vision"]) / 2,
            fusion=stacked,
        )

    def loss_terms(self, out: Output, y: torch.Tensor) -> dict[str, torch.Tensor]:
        # Each unimodal classifier learns on its own.
        return {m: F.l1_loss(out.fusion[:, i], y) for i, m in enumerate(self.modalities)}


class Unimodal(BaselineModel):
    """One modality → task head; its prediction is also the text or AV head's (whichever it is)."""

    def fuse(self, states: dict[str, torch.Tensor]) -> Output:
        prediction = self.head(states[self.modalities[0]]).float()  # (B,)
        if self.modalities == ("text",):
            return Output.of(prediction, text=prediction)
        return Output.of(prediction, av=prediction)


class TextOnly(Unimodal):
    kind = "text"
    modalities = ("text",)


class AudioOnly(Unimodal):
    kind = "audio"
    modalities = ("audio",)


class VisionOnly(Unimodal):
    kind = "vision"
    modalities = ("vision",)


# kind -> its class; the registry takes each one's builder and modalities from here.
BASELINES: dict[str, type[BaselineModel]] = {
    cls.kind: cls for cls in (EarlyFusion, LateFusion, AttentionFusion, TextOnly, AudioOnly, VisionOnly)
}
BASELINE_KINDS: dict[str, frozenset[str]] = {kind: frozenset(cls.modalities) for kind, cls in BASELINES.items()}
