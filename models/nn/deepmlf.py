"""DeepMLF: a frozen causal LM with learnable fusion tokens and MM blocks after chosen layers.

Sequence layout of one forward pass (text left-padded, so the last real text
token and the fusion tokens sit at the same indices in every row):

    [pad … pad | text_1 … text_K | f_1 … f_nf]
     0 ........................ T-1  T ..... T+nf-1

Fusion tokens see the text through the LM's causal attention; the text never
sees them. The forward pass is split into `encode_prefix` (everything below
the first MM block, which depends on the text alone) and the rest. Below
the first MM block the text rows run without autograd and the fusion rows
attend to their keys/values (the prefix path), and with the LM's dropout off
those text states are kept per clip (models/prefix_cache.py).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from models.config import FFWInit, FFWMode, FusionInputs, ModelConfig
from models.nn.augment import augment_text
from models.nn.av_encoder import AVEncoder, masked_mean
from models.nn.fusion import MMBlock, add_lora, mm_block_ffw
from models.nn.interface import Batch, Output, TaskHead
from models.nn.lm import FrozenLM, LayerContext, load_causal_lm
from models.nn.memory import head_cross_entropy_sum, swap_dropout
from models.nn.positions import check_position_budget, token_positions
from models.nn.prefix_cache import PrefixCache, PrefixEntry

LOGITS_BUDGET_BYTES = 512 * 2**20  # float32 LM-loss logits held at once up to this size (chunked_lm_loss)
FUSED_CHUNK_BYTES = 32 * 2**20  # one chunk's (rows, vocab) float32 logits in the fused LM loss


def chunked_lm_loss(
    hidden: torch.Tensor,
    targets: torch.Tensor,
    head: nn.Module,
    chunk: int = 512,
    budget_bytes: int = LOGITS_BUDGET_BYTES,
) -> torch.Tensor:
    """Mean next-token cross-entropy of (N, d) hidden rows against (N,) targets.

    Only rows that have a target are passed in. A frozen linear head (the
    LM's) runs through `head_cross_entropy_sum`: chunks of at
    most FUSED_CHUNK_BYTES of logits, each turned into the rows' gradient in
    forward when a chunk fits `budget_bytes` (backward then holds an (N, d)
    tensor, no logits), else recomputed in backward. Any other head goes
    through autograd: the (N, vocab) logits are kept for backward when they
    fit the budget, else each chunk of `chunk` rows is recomputed in backward.
    """
    if hidden.shape[0] == 0:
        return hidden.sum() * 0.0
    vocab = int(head.weight.shape[0])  # type: ignore[index]  # nn.Module attributes type as Tensor | Module
    fused_chunk = max(1, min(chunk, FUSED_CHUNK_BYTES // (vocab * 4)))
    fused = head_cross_entropy_sum(hidden, targets, head, fused_chunk, eager=fused_chunk * vocab * 4 <= budget_bytes)
    if fused is not None:
        return fused / hidden.shape[0]

    def chunk_loss(h: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(head(h).float(), t, reduction="sum")

    # float32 logits plus their log-softmax, both held for backward
    if hidden.shape[0] * vocab * 8 <= budget_bytes:
        return chunk_loss(hidden, targets) / hidden.shape[0]
    total = hidden.new_zeros((), dtype=torch.float32)
    for start in range(0, hidden.shape[0], chunk):
        h, t = hidden[start : start + chunk], targets[start : start + chunk]
        if torch.is_grad_enabled() and h.requires_grad:
            total = total + checkpoint(chunk_loss, h, t, use_reentrant=False)
        else:
            total = total + chunk_loss(h, t)
    return total / hidden.shape[0]


class DeepMLF(nn.Module):
    """The DeepMLF model (docs/architecture.md). Build with `DeepMLF.from_config` or from an LM instance."""

    kind = "deepmlf"  # the model kind its checkpoints record (models.nn.registry)
    # Speed switches that never change the math (docs/architecture.md §10); benchmarks turn them off to compare.
    prefix_path = True  # below the first MM block: text rows without autograd, fusion rows against their K/V
    logits_budget_bytes = LOGITS_BUDGET_BYTES  # LM-loss logits held (not recomputed in backward) up to this size

    def __init__(self, config: ModelConfig, hf_lm: nn.Module) -> None:
        super().__init__()
        self.config = config
        self.prefix_cache: PrefixCache | None = None  # per-clip text states; see configure_speed
        self.lm = FrozenLM(hf_lm)
        self.lm.check_layers(config.mm_layers)
        check_position_budget(config, self.lm.max_positions)
        d = self.lm.d_model
        self.av_encoder = AVEncoder.from_config(config)
        self.fusion_tokens = nn.Parameter(torch.randn(config.n_fusion, d) * 0.02)  # (n_f, d)
        blocks = {
            str(i): MMBlock(
                d,
                config.d_av,
                config.mm_heads,
                config.mm_dropout,
                mm_block_ffw(config.ffw_mode, self.lm.mlp(i)),
                config.gating,
                self.lm.layer_norm_eps,
                self.lm.rms_norm,
                config.ffw_init,
                config.mlp_form,
                config.mm_attention_dropout,
            )
            for i in sorted(config.mm_layers)
        }
        self.mm_blocks = nn.ModuleDict(blocks)
        if config.ffw_mode is FFWMode.LORA:
            for block in blocks.values():
                add_lora(block, config.lora_r, config.lora_alpha, config.lora_dropout, config.lora_init)
        self.task_head = TaskHead(2 * d + config.d_av, config.head_hidden)
        self.text_head = nn.Linear(d, 1)
        self.av_head = nn.Linear(config.d_av, 1)
        self.fusion_head = nn.Linear(d, 1)
        swap_dropout(self)  # bool dropout masks for backward, same masks (models/nn/memory.py)

    @classmethod
    def from_config(cls, config: ModelConfig, random_init: bool = False, meta: bool = False):
        """Build the model and load its LM; returns (model, tokenizer or None)."""
        hf_lm, tokenizer = load_causal_lm(config.lm, random_init=random_init, meta=meta)
        return cls(config, hf_lm), tokenizer

    def configure_speed(self, prefix_cache_gib: float, device: torch.device, compile_parts: bool = False) -> None:
        """Attach a per-clip prefix cache of `prefix_cache_gib` (0: none) and optionally compile the
        MM blocks and the AV encoder (`torch.compile`). Neither changes what the model computes.

        The cache serves batches the LM runs without dropout and without text
        augmentation: every evaluation pass, and training with lm_dropout off.
        It stores bf16 where the model computes in bf16 (a bf16 LM), float32 elsewhere.
        """
        if prefix_cache_gib > 0 and self.config.mm_layers and min(self.config.mm_layers) > 0:
            if self.prefix_cache is None or self.prefix_cache.budget_bytes != int(prefix_cache_gib * 2**30):
                bf16 = next(self.lm.parameters()).dtype == torch.bfloat16  # the run's precision (models.devices)
                dtype = torch.bfloat16 if bf16 else torch.float32
                self.prefix_cache = PrefixCache(int(prefix_cache_gib * 2**30), dtype)
        else:
            self.prefix_cache = None
        if compile_parts:
            for block in self.mm_blocks.values():
                block.compile(dynamic=True)
            self.av_encoder.compile(dynamic=True)

    # --- training mode: the frozen LM keeps its dropout only if asked ---
    def train(self, mode: bool = True) -> DeepMLF:
        super().train(mode)
        self.lm.train(mode and self.config.lm_dropout)
        return self

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """Everything a checkpoint must hold: all tensors outside the frozen LM.

        The frozen LM, and the frozen FFW copies of LoRA blocks (rebuilt from
        it, all but their freshly drawn biases), are referenced by `config.lm`, not copied. A frozen AV encoder
        (Pre&Fro) is kept: it does not come from the LM.
        """
        rebuilt = {n for n, p in self.named_parameters() if not p.requires_grad and n.startswith("mm_blocks.")}
        if self.config.ffw_init is FFWInit.REFERENCE:
            # Randomly drawn frozen biases (ffw_init=reference) cannot be rebuilt from the LM: kept.
            rebuilt = {n for n in rebuilt if not n.endswith(".bias")}
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

        Returns (hidden (B, T+n_f, d), LayerContext of the whole sequence,
        index of the next LM layer). With `prefix_path` (the default) the text
        rows run alone under no_grad (nothing trainable touches them there)
        and the fusion rows attend to their keys/values; the result equals the
        full pass over the concatenated sequence.
        """
        cfg = self.config
        text = self.lm.embed(batch.text_ids)  # (B, T, d)
        embedded = text  # augment_text returns this very tensor when it does not fire
        text = augment_text(text, batch.text_valid, cfg, self.training)
        B, T, _ = text.shape
        fusion = self.fusion_tokens.to(text.dtype).expand(B, -1, -1)  # (B, n_f, d)
        key_valid = torch.cat([batch.text_valid, batch.text_valid.new_ones(B, cfg.n_fusion)], dim=1)
        # Text positions count real tokens only (left padding does not shift them); fusion
        # tokens at max_text_tokens… (the reference) or right after the text (models.nn.positions).
        positions = token_positions(batch.text_valid, cfg)  # (B, T+n_f)
        first = min(cfg.mm_layers) if cfg.mm_layers else self.lm.n_layers
        if not (self.prefix_path and first > 0):
            embeds = torch.cat([text, fusion], dim=1)  # (B, T+n_f, d)
            hidden, ctx = self.lm.prepare(embeds, key_valid, positions)
            for i in range(first):
                hidden = self.lm.run_layer(i, hidden, ctx)
            return hidden, ctx, first
        ctx = self.lm.context(key_valid, positions, text)
        # The cache holds clip-only states: usable when the LM has no dropout and the text is not augmented.
        cacheable = self.prefix_cache is not None and not self.lm.training and text is embedded
        with torch.no_grad():
            text_hidden, text_kv = self._text_prefix(
                batch, text, positions[:, :T], ctx.part(slice(0, T), slice(0, T)), first, cacheable
            )  # (B, T, d), per layer (B, H_kv, T, d_h) x2
        if not cfg.n_fusion:
            return text_hidden, ctx, first
        fusion_hidden = self.lm.add_positions(fusion, positions[:, T:])  # (B, n_f, d)
        fusion_ctx = ctx.part(slice(T, None))  # fusion queries × all T+n_f keys
        for i in range(first):
            fusion_hidden, _ = self.lm.run_layer_kv(i, fusion_hidden, fusion_ctx, past=text_kv[i])
        return torch.cat([text_hidden, fusion_hidden], dim=1), ctx, first

    def _run_text_layers(self, text: torch.Tensor, text_positions: torch.Tensor, ctx: LayerContext, first: int):
        """Text rows alone through layers 0..first-1 → (hidden (B, T, d), [(keys, values)] per layer)."""
        hidden = self.lm.add_positions(text, text_positions)
        kvs = []
        for i in range(first):
            hidden, kv = self.lm.run_layer_kv(i, hidden, ctx)
            kvs.append(kv)
        return hidden, kvs

    def _text_prefix(
        self,
        batch: Batch,
        text: torch.Tensor,
        text_positions: torch.Tensor,
        ctx: LayerContext,
        first: int,
        cacheable: bool,
    ):
        """The text's prefix states, from the per-clip cache where it has them, else computed (and stored)."""
        if not cacheable:
            return self._run_text_layers(text, text_positions, ctx, first)
        cache = self.prefix_cache
        assert cache is not None, "cacheable batches need configure_speed's prefix cache"
        B, T, d = text.shape
        keys = cache.keys(batch.text_ids, batch.text_valid, text_positions)
        entries: list[PrefixEntry | None] = [cache.get(k) for k in keys]
        missing = [row for row, e in enumerate(entries) if e is None]
        if missing:
            rows = torch.tensor(missing, device=text.device)
            hidden, kvs = self._run_text_layers(
                text[rows], text_positions[rows], ctx.part(slice(None), slice(None), rows), first
            )
            kv = torch.stack([torch.stack(pair) for pair in kvs])  # (L, 2, M, H_kv, T, d_h)
            lengths = batch.text_valid[rows].sum(1).tolist()
            for j, (row, n) in enumerate(zip(missing, lengths)):
                # Left padding: a clip's n real tokens are the last n positions.
                entry = PrefixEntry(kv[:, :, j, :, T - n :], hidden[j, T - n :])
                entries[row] = entry
                cache.put(keys[row], entry)
        found = [e for e in entries if e is not None]  # every row, now
        # Assemble the batch, left-padded; padding rows stay zero (no real token attends to them).
        L, _, H, _, d_h = found[0].kv.shape
        out_kv = text.new_zeros(L, 2, B, H, T, d_h)
        out_hidden = text.new_zeros(B, T, d)
        for row, entry in enumerate(found):
            n = entry.hidden.shape[0]
            out_kv[:, :, row, :, T - n :] = entry.kv
            out_hidden[row, T - n :] = entry.hidden
        return out_hidden, [(out_kv[i, 0], out_kv[i, 1]) for i in range(L)]

    def forward(self, batch: Batch, compute_loss: bool = True) -> Output:
        """Run every head; with labels and `compute_loss`, also the total loss (docs/architecture.md §4)."""
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
        assert batch.labels is not None, "the loss needs labels"
        y = batch.labels.float()
        # Each term is a sum over the micro-batch divided by its clip (or LM-target) count, or by the
        # counts batch.loss_norm gives (window batching: the window's means per micro-batch).
        n_clips, n_targets = batch.loss_norm or (float(len(y)), None)

        def l1(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
            per_clip = pred.numel() // max(1, len(y))  # the fusion head has n_f predictions per clip
            return F.l1_loss(pred, target, reduction="sum") / (n_clips * per_clip)

        terms = {"task": l1(out.prediction, y)}
        if cfg.lambda_f and cfg.n_fusion:
            terms["fusion"] = l1(out.fusion, y[:, None].expand_as(out.fusion))
        if cfg.lambda_av:
            terms["av"] = l1(out.av, y)
        if cfg.lambda_t:
            terms["text"] = l1(out.text, y)
        if cfg.lambda_lm:
            terms["lm"] = self._lm_loss(batch, text_hidden, n_targets)
        weights = {"task": 1.0, "fusion": cfg.lambda_f, "av": cfg.lambda_av, "text": cfg.lambda_t, "lm": cfg.lambda_lm}
        out.loss = torch.stack([weights[k] * v for k, v in terms.items()]).sum()
        out.terms = {k: float(v.detach()) for k, v in terms.items()}

    def _lm_loss(self, batch: Batch, text_hidden: torch.Tensor, n_targets: float | None) -> torch.Tensor:
        """Next-token cross-entropy on the transcript (targets: `lm_targets`): a sum over the targets
        divided by `n_targets` (None: their count, a plain mean). Only the rows that have a target
        are gathered before the vocabulary projection."""
        positions, targets = lm_targets(batch)  # (N,), (N,)
        rows = text_hidden.reshape(-1, text_hidden.shape[-1])[positions]  # (N, d)
        mean = chunked_lm_loss(rows, targets, self.lm.lm_head, budget_bytes=self.logits_budget_bytes)
        return mean if n_targets is None else mean * (rows.shape[0] / n_targets)


def lm_targets(batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    """The LM loss's rows and targets: (positions (N,) into the flattened (B·T) text rows, targets (N,)).

    A real token followed by a real token predicts it. The last real token (at T-1: text is
    left-padded) predicts `batch.text_next` when the batch carries it: the reference's padding id,
    or id 0 for a transcript cut at the maximum length (models.data.batching.next_token_targets).
    """
    ids, valid = batch.text_ids, batch.text_valid  # (B, T)
    has_target = torch.zeros_like(valid)
    has_target[:, :-1] = valid[:, :-1] & valid[:, 1:]
    targets = torch.zeros_like(ids)
    targets[:, :-1] = ids[:, 1:]
    if batch.text_next is not None:
        has_target[:, -1] = True
        targets[:, -1] = batch.text_next.to(ids.device)
    positions = has_target.flatten().nonzero().squeeze(1)  # (N,)
    return positions, targets.flatten()[positions]
