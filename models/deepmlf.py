"""DeepMLF: a frozen causal LM with learnable fusion tokens and MM blocks after chosen layers.

Sequence layout of one forward pass (text left-padded, so the last real text
token and the fusion tokens sit at the same indices in every row):

    [pad … pad | text_1 … text_K | f_1 … f_nf]
     0 ........................ T-1  T ..... T+nf-1

Fusion tokens see the text through the LM's causal attention; the text never
sees them. The forward pass is split into `encode_prefix` (everything below
the first MM block, which depends on the text alone) and the rest, so the
prefix can later be cached per sample.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from models.augment import augment_text
from models.av_encoder import AVEncoder, masked_mean
from models.config import FFWMode, FusionInputs, ModelConfig
from models.fusion import MMBlock, add_lora, mm_block_ffw
from models.lm import FrozenLM, load_causal_lm
from models.positions import check_position_budget, token_positions


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

    def to(self, device: torch.device | str) -> "Batch":
        return Batch(**{k: (v.to(device, non_blocking=True) if v is not None else None)
                        for k, v in self.__dict__.items()})

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


class TaskHead(nn.Module):
    """Linear(2d+d_av → 64) → BatchNorm → ReLU → Linear(64 → 1)."""

    def __init__(self, d_in: int, hidden: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(d_in, hidden), nn.BatchNorm1d(hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(-1)  # (B, d_in) → (B,)


def chunked_lm_loss(hidden: torch.Tensor, targets: torch.Tensor, head: nn.Module, chunk: int = 512) -> torch.Tensor:
    """Mean next-token cross-entropy of (N, d) hidden rows against (N,) targets.

    Only rows that have a target are passed in; each chunk's logits are
    recomputed in backward instead of stored, so memory holds one chunk of
    (chunk, vocab) logits at a time.
    """
    if hidden.shape[0] == 0:
        return hidden.sum() * 0.0

    def chunk_loss(h: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(head(h).float(), t, reduction="sum")

    total = hidden.new_zeros((), dtype=torch.float32)
    for start in range(0, hidden.shape[0], chunk):
        h, t = hidden[start:start + chunk], targets[start:start + chunk]
        if torch.is_grad_enabled() and h.requires_grad:
            total = total + checkpoint(chunk_loss, h, t, use_reentrant=False)
        else:
            total = total + chunk_loss(h, t)
    return total / hidden.shape[0]


class DeepMLF(nn.Module):
    """The DeepMLF model (DESIGN.md §3). Build with `DeepMLF.from_config` or from an LM instance."""

    def __init__(self, config: ModelConfig, hf_lm: nn.Module) -> None:
        super().__init__()
        self.config = config
        self.lm = FrozenLM(hf_lm)
        self.lm.check_layers(config.mm_layers)
        check_position_budget(config, self.lm.max_positions)
        d = self.lm.d_model
        self.av_encoder = AVEncoder.from_config(config)
        self.fusion_tokens = nn.Parameter(torch.randn(config.n_fusion, d) * 0.02)  # (n_f, d)
        self.mm_blocks = nn.ModuleDict({
            str(i): MMBlock(d, config.d_av, config.mm_heads, config.mm_dropout,
                            mm_block_ffw(config.ffw_mode, self.lm.mlp(i)), config.gating, self.lm.layer_norm_eps,
                            self.lm.rms_norm)
            for i in sorted(config.mm_layers)
        })
        if config.ffw_mode is FFWMode.LORA:
            for block in self.mm_blocks.values():
                add_lora(block, config.lora_r, config.lora_alpha, config.lora_dropout)
        self.task_head = TaskHead(2 * d + config.d_av, config.head_hidden)
        self.text_head = nn.Linear(d, 1)
        self.av_head = nn.Linear(config.d_av, 1)
        self.fusion_head = nn.Linear(d, 1)

    @classmethod
    def from_config(cls, config: ModelConfig, random_init: bool = False, meta: bool = False):
        """Build the model and load its LM; returns (model, tokenizer or None)."""
        hf_lm, tokenizer = load_causal_lm(config.lm, random_init=random_init, meta=meta)
        return cls(config, hf_lm), tokenizer

    # --- training mode: the frozen LM keeps its dropout only if asked ---
    def train(self, mode: bool = True) -> "DeepMLF":
        super().train(mode)
        self.lm.train(mode and self.config.lm_dropout)
        return self

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """Everything a checkpoint must hold: all tensors outside the frozen LM.

        The frozen LM, and the frozen FFW copies of LoRA blocks (rebuilt from
        it), are referenced by `config.lm`, not copied. A frozen AV encoder
        (Pre&Fro) is kept: it does not come from the LM.
        """
        rebuilt = {n for n, p in self.named_parameters() if not p.requires_grad and n.startswith("mm_blocks.")}
        return {n: t for n, t in self.state_dict().items() if not n.startswith("lm.") and n not in rebuilt}

    # --- forward pass ---
    def _query_slice(self, text_len: int) -> slice:
        n_f = self.config.n_fusion
        return {
            FusionInputs.FUSION: slice(text_len, text_len + n_f),
            FusionInputs.TEXT: slice(0, text_len),
            FusionInputs.BOTH: slice(0, text_len + n_f),
        }[self.config.fusion_inputs]

    def encode_prefix(self, batch: Batch):
        """Embed text + fusion tokens and run the LM up to its first MM block.

        Returns (hidden (B, T+n_f, d), LayerContext, index of the next LM layer).
        """
        cfg = self.config
        text = self.lm.embed(batch.text_ids)  # (B, T, d)
        text = augment_text(text, batch.text_valid, cfg, self.training)
        B, T, _ = text.shape
        fusion = self.fusion_tokens.to(text.dtype).expand(B, -1, -1)  # (B, n_f, d)
        embeds = torch.cat([text, fusion], dim=1)  # (B, T+n_f, d)
        key_valid = torch.cat([batch.text_valid, batch.text_valid.new_ones(B, cfg.n_fusion)], dim=1)
        # Text positions count real tokens only (left padding does not shift them); fusion
        # tokens at max_text_tokens… (the reference) or right after the text (models.positions).
        positions = token_positions(batch.text_valid, cfg)  # (B, T+n_f)
        hidden, ctx = self.lm.prepare(embeds, key_valid, positions)
        first = min(cfg.mm_layers) if cfg.mm_layers else self.lm.n_layers
        for i in range(first):
            hidden = self.lm.run_layer(i, hidden, ctx)
        return hidden, ctx, first

    def forward(self, batch: Batch, compute_loss: bool = True) -> Output:
        """Run every head; with labels and `compute_loss`, also the total loss (DESIGN.md §3)."""
        cfg = self.config
        z, z_valid = self.av_encoder(batch.audio, batch.audio_lengths, batch.vision, batch.vision_lengths)
        hidden, ctx, first = self.encode_prefix(batch)  # (B, T+n_f, d)
        T = batch.text_ids.shape[1]
        queries = self._query_slice(T)
        for i in range(first, self.lm.n_layers):
            hidden = self.lm.run_layer(i, hidden, ctx)
            if str(i) in self.mm_blocks:
                hidden = self.mm_blocks[str(i)](hidden, z.to(hidden.dtype), z_valid, queries)
        hidden = self.lm.final_norm(hidden)  # (B, T+n_f, d)
        text_hidden, fusion_hidden = hidden[:, :T], hidden[:, T:]  # (B, T, d), (B, n_f, d)
        last_text = text_hidden[:, -1]  # (B, d): left padding puts the last real token at T-1
        z_mean = masked_mean(z, z_valid)  # (B, d_av)
        fusion_mean = fusion_hidden.mean(1) if cfg.n_fusion else last_text.new_zeros(last_text.shape)
        features = torch.cat([z_mean.to(last_text.dtype), last_text, fusion_mean], dim=-1)  # (B, 2d+d_av)
        out = Output(
            prediction=self.task_head(features).float(),
            text=self.text_head(last_text).squeeze(-1).float(),
            av=self.av_head(z_mean).squeeze(-1).float(),
            fusion=self.fusion_head(fusion_hidden).squeeze(-1).float(),  # (B, n_f)
        )
        if compute_loss and batch.labels is not None:
            self._add_loss(out, batch, text_hidden)
        return out

    def _add_loss(self, out: Output, batch: Batch, text_hidden: torch.Tensor) -> None:
        cfg = self.config
        y = batch.labels.float()
        terms = {"task": F.l1_loss(out.prediction, y)}
        if cfg.lambda_f and cfg.n_fusion:
            terms["fusion"] = F.l1_loss(out.fusion, y[:, None].expand_as(out.fusion))
        if cfg.lambda_av:
            terms["av"] = F.l1_loss(out.av, y)
        if cfg.lambda_t:
            terms["text"] = F.l1_loss(out.text, y)
        if cfg.lambda_lm:
            # Next-token targets exist where a real token follows a real token:
            # gather those rows before the vocabulary projection.
            has_target = batch.text_valid[:, :-1] & batch.text_valid[:, 1:]  # (B, T-1)
            rows = text_hidden[:, :-1][has_target]  # (N, d)
            targets = batch.text_ids[:, 1:][has_target]  # (N,)
            terms["lm"] = chunked_lm_loss(rows, targets, self.lm.lm_head)
        weights = {"task": 1.0, "fusion": cfg.lambda_f, "av": cfg.lambda_av, "text": cfg.lambda_t, "lm": cfg.lambda_lm}
        out.loss = sum(weights[k] * v for k, v in terms.items())
        out.terms = {k: float(v.detach()) for k, v in terms.items()}
