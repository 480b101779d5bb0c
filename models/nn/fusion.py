"""The MM block inserted after chosen LM layers: gated cross-attention, then a gated FFW.

x_q ← x_q + g(α1)·CA(LN1(x_q), z)     (queries: fusion tokens by default)
x   ← x   + g(α2)·FFW(LN2(x))         (all tokens; FFW starts from the LM layer's MLP: copy_mlp)
"""

from __future__ import annotations

import copy
import functools
import math
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from models.config import FFWInit, FFWMode, Gating, LoRAInit, MLPForm
from models.nn.memory import lean_mlp, recompute_on_cpu, recompute_saved


class Gate(nn.Module):
    """A learnable scalar gate on a residual branch (or no gate at all)."""

    def __init__(self, mode: Gating) -> None:
        super().__init__()
        self.mode = Gating(mode)
        # α starts at 0: σ(0) = 0.5 (sigmoid), tanh(0) = 0 (the branch starts closed).
        self.alpha = nn.Parameter(torch.zeros(())) if self.mode is not Gating.NONE else None

    def value(self) -> torch.Tensor | float:
        if self.alpha is None:  # Gating.NONE
            return 1.0
        return torch.sigmoid(self.alpha) if self.mode is Gating.SIGMOID else torch.tanh(self.alpha)

    def forward(self, branch: torch.Tensor) -> torch.Tensor:
        return self.value() * branch


class CrossAttention(nn.Module):
    """Multi-head attention from LM tokens (queries) to the AV context z (keys, values).

    No biases; logits are scaled by 1/√d_model, as the reference code does
    (not 1/√d_head). W_q, W_kv, W_o keep nn.Linear's default initialisation, as
    the reference (W_kv's fan-in is d_context = 30, so a fixed N(0, 0.02) would be
    ~5x too small). Dropout acts after W_o, and on the attention weights unless
    `attention_dropout` is False (the reference is known to drop only after W_o).
    """

    def __init__(
        self, d_model: int, d_context: int, n_heads: int, dropout: float, attention_dropout: bool = True
    ) -> None:
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"LM width {d_model} is not divisible by {n_heads} cross-attention heads")
        self.n_heads = n_heads
        self.attention_dropout = dropout if attention_dropout else 0.0  # on the attention weights
        self.scale = 1.0 / math.sqrt(d_model)
        self.q = nn.Linear(d_model, d_model, bias=False)
        self.kv = nn.Linear(d_context, 2 * d_model, bias=False)
        self.o = nn.Linear(d_model, d_model, bias=False)
        self.out_dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, context: torch.Tensor, context_valid: torch.Tensor) -> torch.Tensor:
        """x (B, Q, d), context (B, S, d_ctx), context_valid (B, S) bool → (B, Q, d)."""
        B, Q, d = x.shape
        H = self.n_heads
        q = self.q(x).view(B, Q, H, d // H).transpose(1, 2)  # (B, H, Q, d_h)
        if recompute_on_cpu(q):
            # On CPU, recompute the K/V projection (d_ctx = 30 wide: cheap) and the attention in
            # backward instead of keeping k, v and SDPA's math-path weights; the RNG state is
            # restored, so the dropout mask is the same.
            out = checkpoint(self._attend, q, context, context_valid, use_reentrant=False)
        else:
            out = self._attend(q, context, context_valid)  # (B, H, Q, d_h)
        return self.out_dropout(self.o(out.transpose(1, 2).reshape(B, Q, d)))

    def _attend(self, q: torch.Tensor, context: torch.Tensor, context_valid: torch.Tensor) -> torch.Tensor:
        """q (B, H, Q, d_h) against the context's keys/values → (B, H, Q, d_h)."""
        B, H, _, d_h = q.shape
        k, v = self.kv(context).chunk(2, dim=-1)  # (B, S, d) each
        k = k.view(B, -1, H, d_h).transpose(1, 2)  # (B, H, S, d_h)
        v = v.view(B, -1, H, d_h).transpose(1, 2)
        return F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=context_valid[:, None, None, :],
            dropout_p=self.attention_dropout if self.training else 0.0,
            scale=self.scale,
        )


class SumGatedMLP(nn.Module):
    """The reference's Llama-family MLP: down(act(gate(x)) + up(x)), a sum where SwiGLU multiplies.

    It holds the LM MLP's own sub-modules under their own names, so LoRA
    targets and checkpoint keys are those of the LM's MLP; only forward differs.
    """

    def __init__(self, mlp: Any) -> None:  # a transformers LlamaMLP (or Mistral's, Qwen2's: the same parts)
        super().__init__()
        self.gate_proj, self.up_proj, self.down_proj = mlp.gate_proj, mlp.up_proj, mlp.down_proj
        self.act_fn = mlp.act_fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(..., d) → (..., d)."""
        return self.down_proj(self.act_fn(self.gate_proj(x)) + self.up_proj(x))  # (..., d_ff) summed, then (..., d)


def _is_gated(mlp: nn.Module) -> bool:
    """Whether `mlp` is a Llama-family gated MLP (gate_proj, up_proj, down_proj, act_fn)."""
    return all(hasattr(mlp, name) for name in ("gate_proj", "up_proj", "down_proj", "act_fn"))


def copy_mlp(mlp: nn.Module, init: FFWInit = FFWInit.COPY_LM, form: MLPForm = MLPForm.SWIGLU) -> nn.Module:
    """A trainable copy of an LM layer's MLP, in fp32.

    `init` copy-lm: exact (weights, biases, activation). reference: the weight
    matrices only, as the reference builds its FFW: every bias is drawn again as
    nn.Linear draws it, U(±1/√fan_in), and GPT-2's tanh GELU becomes nn.GELU's
    erf form. `form` (Llama-family MLPs only; GPT-2's has one form): swiglu
    computes as the LM's own MLP, reference as the reference's (SumGatedMLP).
    The copy trains, so it is fp32 even when the frozen LM is loaded in
    bf16 (bf16 autocast computes in bf16, the optimizer updates fp32 weights).
    """
    clone = copy.deepcopy(mlp).float()
    if FFWInit(init) is FFWInit.REFERENCE:
        _reference_init(clone)
    if MLPForm(form) is MLPForm.REFERENCE and _is_gated(clone):
        clone = SumGatedMLP(clone)
    for p in clone.parameters():
        p.requires_grad_(True)
    return clone


def _reference_init(mlp: nn.Module) -> None:
    """Biases re-drawn as nn.Linear's default, tanh/`gelu_new` GELUs swapped for the erf GELU (in place)."""
    from transformers.activations import NewGELUActivation
    from transformers.pytorch_utils import Conv1D

    for parent in mlp.modules():
        for name, child in parent.named_children():
            if isinstance(child, NewGELUActivation) or (isinstance(child, nn.GELU) and child.approximate != "none"):
                setattr(parent, name, nn.GELU())
        bias = getattr(parent, "bias", None)
        if isinstance(parent, (nn.Linear, Conv1D)) and isinstance(bias, torch.Tensor):
            weight: torch.Tensor = parent.weight
            fan_in = weight.shape[0] if isinstance(parent, Conv1D) else weight.shape[1]  # Conv1D stores (in, out)
            bound = 1.0 / math.sqrt(fan_in)
            with torch.no_grad():
                bias.uniform_(-bound, bound)


# The reference's RMSNorm epsilon in the MM blocks of Llama-family LMs.
RMS_NORM_EPS = 1e-6


def pre_norm(d_model: int, rms_norm: bool, layer_norm_eps: float = 1e-5) -> nn.Module:
    """The MM block's pre-norm: RMSNorm (eps 1e-6) for Llama-family LMs, LayerNorm for GPT-2 (the LM's own kind)."""
    return nn.RMSNorm(d_model, eps=RMS_NORM_EPS) if rms_norm else nn.LayerNorm(d_model, eps=layer_norm_eps)


class MMBlock(nn.Module):
    """One multimodal block; `query_slice` picks the tokens that attend to z.

    `rms_norm` picks the pre-norms' kind (the LM's: RMSNorm on Llama, LayerNorm on GPT-2);
    `ffw_init` how the FFW copy starts and `mlp_form` what a Llama-family copy computes (copy_mlp).
    """

    def __init__(
        self,
        d_model: int,
        d_context: int,
        n_heads: int,
        dropout: float,
        mlp: nn.Module | None,
        gating: Gating,
        layer_norm_eps: float = 1e-5,
        rms_norm: bool = False,
        ffw_init: FFWInit = FFWInit.COPY_LM,
        mlp_form: MLPForm = MLPForm.SWIGLU,
        attention_dropout: bool = True,
    ) -> None:
        super().__init__()
        self.ln_ca = pre_norm(d_model, rms_norm, layer_norm_eps)
        self.cross_attn = CrossAttention(d_model, d_context, n_heads, dropout, attention_dropout)
        self.gate_ca = Gate(gating)
        self.ffw = copy_mlp(mlp, ffw_init, mlp_form) if mlp is not None else None
        if self.ffw is not None:
            self.ln_ffw = pre_norm(d_model, rms_norm, layer_norm_eps)
            self.gate_ffw = Gate(gating)

    def forward(self, hidden: torch.Tensor, z: torch.Tensor, z_valid: torch.Tensor, query_slice: slice) -> torch.Tensor:
        """hidden (B, T, d) → (B, T, d); z (B, S, d_av), z_valid (B, S)."""
        queries = hidden[:, query_slice]  # (B, Q, d)
        # The norms' outputs are kept for the projections' weight gradients as "norm again"
        # (their inputs are kept anyway): models/nn/memory.py.
        normed = self.ln_ca(queries)
        with recompute_saved(normed, functools.partial(self.ln_ca, queries)):
            update = self.gate_ca(self.cross_attn(normed, z, z_valid))
        before, after = hidden[:, : query_slice.start], hidden[:, query_slice.stop :]
        hidden = torch.cat([before, queries + update, after], dim=1)
        if self.ffw is not None:
            normed_all = self.ln_ffw(hidden)
            with recompute_saved(normed_all, functools.partial(self.ln_ffw, hidden)):  # bound now: hidden is rebound
                ffw_out = lean_mlp(self.ffw, normed_all)
            hidden = hidden + self.gate_ffw(ffw_out)
        return hidden

    def ffw_mode_targets(self) -> list[str]:
        """Names of the FFW's linear sub-modules (LoRA targets)."""
        if self.ffw is None:
            return []
        return [name for name, m in self.ffw.named_modules() if _is_linear_like(m)]


def _is_linear_like(module: nn.Module) -> bool:
    from transformers.pytorch_utils import Conv1D

    return isinstance(module, (nn.Linear, Conv1D))


def add_lora(block: MMBlock, r: int, alpha: int, dropout: float = 0.0, init: LoRAInit = LoRAInit.PEFT) -> None:
    """Freeze the FFW copy and train it through LoRA adapters (peft); `init` draws A (reference_lora_a)."""
    if block.ffw is None:
        return
    from peft import LoraConfig, inject_adapter_in_model
    from transformers.pytorch_utils import Conv1D

    targets = block.ffw_mode_targets()
    fan_in_fan_out = any(isinstance(m, Conv1D) for m in block.ffw.modules())  # GPT-2 stores W transposed
    config = LoraConfig(
        r=r, lora_alpha=alpha, target_modules=targets, lora_dropout=dropout, bias="none", fan_in_fan_out=fan_in_fan_out
    )
    block.ffw = inject_adapter_in_model(config, block.ffw)
    if LoRAInit(init) is LoRAInit.REFERENCE:
        reference_lora_a(block.ffw)
    for name, p in block.ffw.named_parameters():
        p.requires_grad_("lora_" in name)


def reference_lora_a(module: nn.Module) -> None:
    """Re-draw every LoRA A under `module` as the reference's own LoRA draws it (in place).

    The reference keeps A as an (in, r) matrix (x @ A) and initialises it
    kaiming-uniform with a=√5, whose fan-in is then r: U(±1/√r). PEFT keeps A
    as a Linear(in → r) with weight (r, in) = A.T, so the same call on its
    weight reads fan-in `in`: U(±1/√in), 2-4x narrower on MOSI (r 512, in 2048
    or 8192). We draw the reference's (in, r) matrix and store its transpose.
    B stays PEFT's zeros.
    """
    from peft.tuners.lora import LoraLayer

    for layer in module.modules():
        if not isinstance(layer, LoraLayer):
            continue
        for lora_a in layer.lora_A.values():
            weight = cast(torch.Tensor, lora_a.weight)  # (r, in); lora_A is a ModuleDict of nn.Linear
            a = torch.empty(weight.shape[1], weight.shape[0], dtype=weight.dtype, device=weight.device)  # (in, r)
            nn.init.kaiming_uniform_(a, a=math.sqrt(5))
            with torch.no_grad():
                weight.copy_(a.T)


def mm_block_ffw(mode: FFWMode, lm_mlp: nn.Module) -> nn.Module | None:
    """The MLP an MM block starts from, or None when the block has no FFW."""
    return None if FFWMode(mode) is FFWMode.NONE else lm_mlp
