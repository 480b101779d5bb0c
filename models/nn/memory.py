"""Drop-in pieces that keep less for backward and compute the same numbers (docs/architecture.md §10).

On CPU the peak memory of a training step is set by the activations
autograd keeps for backward. These pieces keep less of them without
changing the math (same outputs, same gradients, same dropout masks):

- `MaskDropout`: nn.Dropout that keeps a bool mask (1 byte a value) where
  PyTorch's CPU dropout keeps a float32 one; the mask is drawn from the same
  random stream, so outputs are bit-identical.
- `lean_attention`: SDPA for Hugging Face attention layers that, on CPU with
  attention dropout (SDPA's math fallback, which keeps the (B, H, T, T)
  weights, their dropout mask and copies of q/k/v), recomputes the attention
  core in backward from q, k, v (a few % of a layer's FLOPs; same dropout
  mask: the RNG state is restored).
- `recompute_saved`: autograd keeps a cheap element-wise result (an MLP's
  GELU output, saved by the output projection for its weight gradient) as
  "recompute me from this input" instead of the tensor itself.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

LEAN_ATTENTION = "deepmlf_sdpa"  # the attention implementation name FrozenLM registers with transformers

# Every piece here checks this at call time; benchmarks and tests turn it off to compare (see `lean_memory`).
enabled = True


@contextlib.contextmanager
def lean_memory(on: bool):
    """Turn the pieces of this module on or off inside the block (they fall back to the plain ops)."""
    global enabled
    before, enabled = enabled, on
    try:
        yield
    finally:
        enabled = before


def recompute_on_cpu(x: torch.Tensor) -> bool:
    """Whether a cheap block computing from `x` should be recomputed in backward rather than kept (CPU, grad on)."""
    return enabled and x.device.type == "cpu" and _needs_grad(x) and not _compiling()


class MaskDropout(nn.Dropout):
    """nn.Dropout that keeps a bool mask for backward instead of a float32 one (CPU).

    `torch.native_dropout` draws its mask from the same generator calls as
    `F.dropout`'s CPU path, so the output and the mask are the same; only
    what autograd keeps shrinks 4x. Elsewhere (CUDA) F.dropout already is native_dropout.
    """

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if enabled and self.training and 0.0 < self.p < 1.0 and not self.inplace and input.device.type == "cpu":
            return torch.native_dropout(input, self.p, True)[0]
        return super().forward(input)


def swap_dropout(module: nn.Module) -> None:
    """Replace every plain nn.Dropout under `module` by a MaskDropout with the same p."""
    for parent in module.modules():
        for name, child in parent.named_children():
            if type(child) is nn.Dropout:
                setattr(parent, name, MaskDropout(child.p, child.inplace))


def _needs_grad(*tensors: torch.Tensor | None) -> bool:
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def _compiling() -> bool:
    return torch.compiler.is_compiling()


def lean_attention(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    **kwargs,
):
    """Hugging Face's SDPA attention, with its core recomputed in backward on CPU under dropout.

    Same signature and result as transformers' `sdpa_attention_forward`.
    """
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    if not (
        enabled and dropout > 0 and query.device.type == "cpu" and _needs_grad(query, key, value) and not _compiling()
    ):
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, **kwargs)

    def core(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        return sdpa_attention_forward(module, q, k, v, mask, dropout=dropout, **kwargs)[0]

    # Non-reentrant checkpoint restores the RNG state on recompute: the same dropout mask.
    return checkpoint(core, query, key, value, attention_mask, use_reentrant=False), None


def register_lean_attention() -> str:
    """Register `lean_attention` (and SDPA's mask builder) with transformers under LEAN_ATTENTION."""
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask
    from transformers.modeling_utils import AttentionInterface

    AttentionInterface.register(LEAN_ATTENTION, lean_attention)
    AttentionMaskInterface.register(LEAN_ATTENTION, sdpa_mask)
    return LEAN_ATTENTION


class _Recompute:
    """What autograd keeps in place of a saved view of the recomputable tensor."""

    __slots__ = ("fn", "size", "stride", "offset")

    def __init__(self, fn: Callable[[], torch.Tensor], t: torch.Tensor) -> None:
        self.fn, self.size, self.stride, self.offset = fn, t.size(), t.stride(), t.storage_offset()


@contextlib.contextmanager
def recompute_saved(result: torch.Tensor, recompute: Callable[[], torch.Tensor]):
    """Inside the block, autograd saves any view of `result` as a call to `recompute` instead.

    `recompute()` must return `result`'s values again, contiguous like `result`
    (a deterministic element-wise op of tensors autograd keeps anyway, such as
    GELU of its saved input). It runs, without autograd, when backward needs it.
    """
    if not (enabled and _needs_grad(result) and result.is_contiguous()) or _compiling():
        yield
        return
    storage = result.untyped_storage().data_ptr()

    def pack(t: torch.Tensor):
        if t.untyped_storage().data_ptr() == storage and t.dtype == result.dtype:
            return _Recompute(recompute, t)
        return t

    def unpack(saved):
        if isinstance(saved, _Recompute):
            with torch.no_grad():
                return saved.fn().as_strided(saved.size, saved.stride, saved.offset)
        return saved

    with torch.autograd.graph.saved_tensors_hooks(pack, unpack):
        yield


def lean_mlp(mlp: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Run a GPT-2-style MLP (c_fc → act → c_proj → dropout) keeping its act output as a recompute.

    The activation's input is kept anyway (for the activation's own
    backward), so its output costs one element-wise op in backward instead of
    a (N, 4d) float tensor. Other MLP layouts run as they are.
    """
    parts = [getattr(mlp, name, None) for name in ("c_fc", "act", "c_proj", "dropout")]
    if not enabled or any(p is None for p in parts) or type(mlp).forward is not _gpt2_mlp_forward():
        return mlp(x)
    c_fc, act, c_proj, dropout = [p for p in parts if p is not None]
    h = c_fc(x)  # (…, 4d)
    a = act(h)
    with recompute_saved(a, functools.partial(act, h)):
        out = c_proj(a)
    return dropout(out)


def _gpt2_mlp_forward():
    from transformers.models.gpt2.modeling_gpt2 import GPT2MLP

    return GPT2MLP.forward


class _HeadCrossEntropy(torch.autograd.Function):
    """Summed cross-entropy of (N, d) rows through a frozen linear head, chunk by chunk.

    Autograd's log_softmax + nll keeps the (N, vocab) log-probabilities and
    builds two more (N, vocab) gradients in backward. Here, with `eager`, each
    chunk's softmax is turned into the logits' gradient (p - onehot) and
    projected back through the head right away, in forward: backward then
    holds only the rows' (N, d) gradient, and the (chunk, vocab) logits exist
    one chunk at a time. Without `eager`, backward recomputes each chunk's
    logits instead (one more head projection; what the reference's
    checkpointing costs). Same FLOPs as autograd's path in the eager case.
    """

    @staticmethod
    def forward(ctx, hidden, targets, weight, bias, chunk: int, eager: bool, dtype: torch.dtype):
        # `dtype`: what the projection computes in (bf16 under autocast, as F.linear would); logits are fp32.
        weight, bias = weight.to(dtype), bias.to(dtype) if bias is not None else None
        total = hidden.new_zeros((), dtype=torch.float32)
        grad_hidden = torch.empty_like(hidden) if eager else None  # (N, d): d Σloss / d hidden
        for start in range(0, hidden.shape[0], chunk):
            logits = F.linear(hidden[start : start + chunk].to(dtype), weight, bias).float()  # (n, V)
            t = targets[start : start + chunk]
            lse = torch.logsumexp(logits, dim=1)  # (n,)
            total = total + (lse - logits.gather(1, t[:, None]).squeeze(1)).sum()
            if grad_hidden is not None:
                grad_hidden[start : start + chunk] = _logits_grad(logits, lse[:, None], t).to(weight.dtype) @ weight
        if eager:
            ctx.save_for_backward(grad_hidden)
        else:
            ctx.save_for_backward(hidden, targets, weight, bias)
        ctx.chunk, ctx.eager = chunk, eager
        return total

    @staticmethod
    def backward(ctx, grad):
        if ctx.eager:
            (grad_hidden,) = ctx.saved_tensors
            return grad_hidden * grad, None, None, None, None, None, None
        hidden, targets, weight, bias = ctx.saved_tensors
        grad_hidden = torch.empty_like(hidden)
        for start in range(0, hidden.shape[0], ctx.chunk):
            h, t = hidden[start : start + ctx.chunk], targets[start : start + ctx.chunk]
            logits = F.linear(h.to(weight.dtype), weight, bias).float()
            p = _logits_grad(logits, torch.logsumexp(logits, dim=1, keepdim=True), t).mul_(grad)
            grad_hidden[start : start + ctx.chunk] = p.to(weight.dtype) @ weight
        return grad_hidden, None, None, None, None, None, None


def _logits_grad(logits: torch.Tensor, lse: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """d Σ cross-entropy / d logits = softmax - onehot, built in the (n, V) logits' own memory."""
    p = logits.sub_(lse).exp_()
    p[torch.arange(len(targets), device=targets.device), targets] -= 1.0
    return p


def head_cross_entropy_sum(
    hidden: torch.Tensor, targets: torch.Tensor, head: nn.Module, chunk: int, eager: bool
) -> torch.Tensor | None:
    """Σ cross-entropy(head(hidden), targets) through `_HeadCrossEntropy`, or None where it does not apply.

    It applies to a frozen nn.Linear head (elsewhere the caller's autograd path runs). The
    projection computes in autocast's dtype where autocast is on, else in the head's.
    """
    frozen = isinstance(head, nn.Linear) and not any(p.requires_grad for p in head.parameters())
    if not (enabled and frozen and _needs_grad(hidden) and not _compiling()):
        return None
    device_type = hidden.device.type
    dtype = torch.get_autocast_dtype(device_type) if torch.is_autocast_enabled(device_type) else head.weight.dtype
    with torch.autocast(device_type, enabled=False):  # the dtype is explicit inside
        return _HeadCrossEntropy.apply(hidden, targets, head.weight, head.bias, chunk, eager, dtype)


def fix_mmap_threshold(nbytes: int) -> bool:
    """Have glibc malloc serve every block of `nbytes` or more with its own mmap, returned on free.

    glibc raises its mmap threshold as large blocks are freed (up to 32 MiB),
    so a training step's freed activations stay in the heap as holes that
    later, differently sized tensors do not fill: peak RSS grows by up to
    ~0.5 GiB over the live tensors on the SIMS step shape. A fixed threshold
    makes RSS follow the live tensors, at the price of fresh pages (page
    faults) for each large tensor. Process-wide; returns False where the C
    library is not glibc.
    """
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(-3, int(nbytes)))  # M_MMAP_THRESHOLD = -3
    except (OSError, AttributeError):
        return False
