"""Mixed precision and memory switches without a GPU: every training path takes one step under CPU bf16
autocast (fp32 and bf16 frozen LMs), --lm-dtype resolves per device, layer checkpointing changes no gradient."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.config import FFWMode, ModelConfig
from models.devices import autocast_context
from models.nn.lm import load_causal_lm
from models.nn.registry import build_model, needs_text

from conftest import make_batch

CPU = torch.device("cpu")

# kind (as `deepmlf train --model` / pretraining names it) → ModelConfig overrides
PATHS = {
    "deepmlf-full": ("deepmlf", {}),
    "deepmlf-lora": ("deepmlf", {"ffw_mode": FFWMode.LORA, "lora_r": 4, "lora_alpha": 8}),
    "early": ("early", {}),
    "late": ("late", {}),
    "attention": ("attention", {}),
    "text": ("text", {}),
    "audio": ("audio", {}),
    "vision": ("vision", {}),
    "av-pretrain": ("av", {}),
}
TEXT_PATHS = [name for name, (kind, _) in PATHS.items() if needs_text(kind)]
AV_PATHS = [name for name in PATHS if name not in TEXT_PATHS]


@pytest.fixture(scope="module")
def lms(tiny_gpt2, tiny_llama):
    """(family, LM dtype) → (directory, (hf_lm, tokenizer)): fp32 as on CPU, bf16 as `--lm-dtype auto` on CUDA."""
    dirs = {"gpt2": tiny_gpt2, "llama": tiny_llama}
    return {
        (family, dtype): (path, load_causal_lm(str(path), dtype=dtype))
        for family, path in dirs.items()
        for dtype in (torch.float32, torch.bfloat16)
    }


def one_bf16_step(path: str, lm_dir, hf_lm, tokenizer) -> None:
    kind, overrides = PATHS[path]
    config = ModelConfig(
        lm=str(lm_dir),
        mm_layers=(1, 3),
        n_fusion=4,
        d_audio=7,
        d_vision=5,
        av_pool_len=10,
        max_text_tokens=32,
        av_input_batchnorm=True,
        lambda_lm=0.5,
        **overrides,
    )
    torch.manual_seed(0)
    model = build_model(kind, config, hf_lm if needs_text(kind) else None)
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(p.dtype == torch.float32 for p in trainable.values())  # masters stay fp32
    before = {n: p.detach().clone() for n, p in trainable.items()}
    optimizer = torch.optim.AdamW(trainable.values(), lr=1e-3)
    # Proof that autocast is on: the trainable Linear layers compute in bf16.
    seen: set[torch.dtype] = set()
    hooks = [
        m.register_forward_hook(lambda m, i, o: seen.add(o.dtype) if torch.is_tensor(o) else None)
        for n, m in model.named_modules()
        if isinstance(m, torch.nn.Linear) and not n.startswith("lm.")
    ]
    model.train()
    with autocast_context(CPU, enabled=True):
        out = model(make_batch(tokenizer if needs_text(kind) else None))
    for hook in hooks:
        hook.remove()
    assert torch.bfloat16 in seen
    assert torch.isfinite(out.loss) and torch.isfinite(out.prediction.float()).all()
    out.loss.backward()
    no_grad = [n for n, p in trainable.items() if p.grad is None]
    assert not no_grad, f"no gradient reached {no_grad[:5]}"
    assert all(torch.isfinite(p.grad).all() and p.grad.dtype == torch.float32 for p in trainable.values())
    optimizer.step()
    assert all(torch.isfinite(p).all() for p in trainable.values())
    assert any(not torch.equal(before[n], p) for n, p in trainable.items())


@pytest.mark.parametrize("lm_dtype", [torch.float32, torch.bfloat16], ids=["fp32-lm", "bf16-lm"])
@pytest.mark.parametrize("family", ["gpt2", "llama"])
@pytest.mark.parametrize("path", TEXT_PATHS)
def test_text_paths_take_a_bf16_step(path, family, lm_dtype, lms):
    lm_dir, (hf_lm, tokenizer) = lms[family, lm_dtype]
    assert next(hf_lm.parameters()).dtype == lm_dtype
    one_bf16_step(path, lm_dir, hf_lm, tokenizer)


@pytest.mark.parametrize("path", AV_PATHS)
def test_audio_vision_paths_take_a_bf16_step(path, tiny_gpt2):
    one_bf16_step(path, tiny_gpt2, None, None)


def test_autocast_is_off_on_cpu_unless_asked():
    with autocast_context(CPU):
        assert torch.nn.Linear(2, 2)(torch.ones(1, 2)).dtype == torch.float32
    with autocast_context(CPU, enabled=True):
        assert torch.nn.Linear(2, 2)(torch.ones(1, 2)).dtype == torch.bfloat16


def test_the_frozen_lm_is_bf16_on_cuda_and_fp32_on_cpu_by_default():
    from models.config import TrainConfig
    from models.devices import resolve_lm_dtype
    from models.errors import ConfigError

    assert resolve_lm_dtype("auto", torch.device("cuda", 0)) == torch.bfloat16
    assert resolve_lm_dtype("auto", CPU) == torch.float32
    assert resolve_lm_dtype("float32", torch.device("cuda", 0)) == torch.float32
    assert resolve_lm_dtype("bfloat16", CPU) == torch.bfloat16  # opt-in on the CPU (bf16 autocast)
    with pytest.raises(ConfigError, match="lm_dtype"):
        TrainConfig(lm_dtype="float16")


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_layer_checkpointing_recomputes_each_layer_and_gives_the_same_gradients(family, lms):
    lm_dir, (hf_lm, tokenizer) = lms[family, torch.float32]
    config = ModelConfig(
        lm=str(lm_dir),
        mm_layers=(1, 3),
        n_fusion=4,
        d_audio=7,
        d_vision=5,
        av_pool_len=10,
        max_text_tokens=32,
        lambda_lm=0.5,
    )
    batch = make_batch(tokenizer)
    results = []
    for checkpointing in (False, True):
        torch.manual_seed(0)
        model = build_model("deepmlf", config, hf_lm)
        model.lm.checkpoint_layers = checkpointing
        calls = [0]
        # A pre-hook: the recompute stops early, once it has what backward needs, so a post-hook may not fire.
        hooks = [
            layer.register_forward_pre_hook(lambda *_, calls=calls: calls.__setitem__(0, calls[0] + 1))
            for layer in model.lm.layers
        ]
        model.train()
        torch.manual_seed(1)  # the same LM dropout masks in both runs
        out = model(batch)
        out.loss.backward()
        for hook in hooks:
            hook.remove()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
        results.append((calls[0], out.loss.detach(), grads))
    (plain_calls, plain_loss, plain), (ckpt_calls, ckpt_loss, ckpt) = results
    n_layers = hf_lm.config.num_hidden_layers
    first = min(config.mm_layers)
    # The prefix path runs layers below the first MM block twice (text rows under no_grad, then the
    # fusion rows against their keys/values); every layer from the first MM block up is recomputed.
    assert plain_calls == n_layers + first and ckpt_calls - plain_calls == n_layers - first
    torch.testing.assert_close(ckpt_loss, plain_loss)
    for name in plain:
        torch.testing.assert_close(ckpt[name], plain[name], msg=name)


def test_a_bf16_lm_trains_under_cpu_autocast_and_its_lm_loss_stays_fused(lms, tmp_path):
    """`--lm-dtype bfloat16` on the CPU: fit and predict_encoded compute under bf16 autocast, the
    LM loss through the fused head (no (N, vocab) logits kept), the prefix cache in bf16."""
    from test_speed_paths import encoded_split

    from models.config import TrainConfig
    from models.devices import model_autocast
    from models.evaluation.inference import predict_encoded
    from models.training.loop import fit

    lm_dir, (hf_lm, tokenizer) = lms["gpt2", torch.bfloat16]
    config = ModelConfig(
        lm=str(lm_dir),
        mm_layers=(1, 3),
        n_fusion=4,
        d_audio=7,
        d_vision=5,
        av_pool_len=10,
        max_text_tokens=32,
        lambda_lm=0.5,
        lm_dropout=False,
    )
    torch.manual_seed(0)
    model = build_model("deepmlf", config, hf_lm)
    assert model_autocast(model, CPU) and not model_autocast(torch.nn.Linear(2, 2), CPU)
    seen: set[torch.dtype] = set()
    model.task_head.register_forward_hook(lambda m, i, o: seen.add(o.dtype))
    lm_losses = []
    original = model._add_loss

    def spy(out, batch, text_hidden):
        original(out, batch, text_hidden)
        if out.loss.requires_grad:
            lm_losses.append(out.loss.grad_fn)

    model._add_loss = spy
    train_config = TrainConfig(batch_size=4, grad_accum=1, max_epochs=2, patience=5, prefix_cache_gib=0.01)
    result = fit(
        model,
        encoded_split(tokenizer),
        encoded_split(tokenizer, n=6, seed=1),
        train_config,
        "mosi",
        tmp_path,
        0,
        device="cpu",
    )
    assert seen == {torch.bfloat16}  # every forward (training and validation) ran under autocast
    assert all(np.isfinite(r["train_loss"]) for r in result.history)
    assert model.prefix_cache is not None and model.prefix_cache.dtype == torch.bfloat16
    predictions = predict_encoded(model, encoded_split(tokenizer, n=5, seed=2), 4, CPU)
    assert np.isfinite(predictions["prediction"]).all()
    assert lm_losses and all(_reaches(g, "_HeadCrossEntropyBackward") for g in lm_losses)


def _reaches(grad_fn, name: str) -> bool:
    stack, seen = [grad_fn], set()
    while stack:
        fn = stack.pop()
        if fn is None or id(fn) in seen:
            continue
        seen.add(id(fn))
        if fn.name().endswith(name):
            return True
        stack.extend(next_fn for next_fn, _ in fn.next_functions)
    return False


@pytest.mark.parametrize("head_dtype", [torch.float32, torch.bfloat16], ids=["fp32-head", "bf16-head"])
def test_the_fused_lm_loss_under_autocast_matches_autograds(head_dtype):
    from models.nn.memory import head_cross_entropy_sum

    torch.manual_seed(0)
    head = torch.nn.Linear(32, 300, bias=False).to(head_dtype).requires_grad_(False)
    hidden = torch.randn(45, 32, requires_grad=True)
    targets = torch.randint(0, 300, (45,))
    with autocast_context(CPU, enabled=True):
        fused = head_cross_entropy_sum(hidden, targets, head, chunk=16, eager=True)
        ref = torch.nn.functional.cross_entropy(head(hidden).float(), targets, reduction="sum")
    assert fused is not None
    (grad,) = torch.autograd.grad(fused, hidden)
    (ref_grad,) = torch.autograd.grad(ref, hidden)
    torch.testing.assert_close(fused, ref, rtol=2e-3, atol=1e-2)  # both project in bf16
    torch.testing.assert_close(grad, ref_grad.to(grad.dtype), rtol=2e-2, atol=2e-3)


def test_bf16_on_a_cpu_without_bf16_instructions_gets_a_note():
    from models.devices import cpu_has_native_bf16, slow_bf16_note

    zen4 = "flags\t\t: fpu avx2 avx512f avx512_bf16 avx512vl\n"
    old = "flags\t\t: fpu avx2 avx512f avx512vl\n"
    graviton = "Features\t: fp asimd sve bf16 i8mm\n"
    assert cpu_has_native_bf16(zen4) and cpu_has_native_bf16(graviton) and cpu_has_native_bf16(old) is False
    note = slow_bf16_note("bfloat16", CPU, old)
    assert note and "emulated" in note and "--lm-dtype auto" in note
    assert slow_bf16_note("bfloat16", CPU, zen4) is None
    assert slow_bf16_note("auto", CPU, old) is None and slow_bf16_note("float32", CPU, old) is None
    assert slow_bf16_note("bfloat16", torch.device("cuda", 0), old) is None
