"""A dataset is held once: features are z-scored in place, and the split remembers it."""

from __future__ import annotations

import numpy as np

from models.data.batching import encode_split
from models.data.checks import clean_non_finite
from models.data.normalize import FeatureNormalizer
from models.data.sample import make_sample_dataset


def test_in_place_normalisation_overwrites_the_raw_arrays_with_the_same_values_as_a_copy():
    split = make_sample_dataset(n_train=40, n_valid=8, n_test=8, seed=1).splits["train"]
    normalizer = FeatureNormalizer.fit(split)
    copied = normalizer.apply(split)
    raw_audio = split.audio
    encoded = encode_split(split, None, 8, normalizer, in_place=True)
    assert encoded.audio is raw_audio  # no second copy of the features
    np.testing.assert_array_equal(encoded.audio, copied.audio)
    np.testing.assert_array_equal(encoded.vision, copied.vision)
    assert split.normalized_by is normalizer
    # The raw values are gone: fit returns the statistics they had, applying again changes nothing.
    assert FeatureNormalizer.fit(split) is normalizer
    again = normalizer.apply(split)
    np.testing.assert_array_equal(again.audio, copied.audio)


def test_another_normaliser_first_undoes_the_one_applied_in_place():
    dataset = make_sample_dataset(n_train=40, n_valid=8, n_test=8, seed=2)
    train, valid = dataset.splits["train"], dataset.splits["valid"]
    first, second = FeatureNormalizer.fit(train), FeatureNormalizer.fit(valid)
    expected = second.apply(train)  # from the raw values
    first.apply(train, in_place=True)
    got = second.apply(train)
    np.testing.assert_allclose(got.audio, expected.audio, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(got.vision, expected.vision, rtol=1e-4, atol=1e-4)
    assert got.normalized_by is second and train.normalized_by is first


def test_cleaning_by_blocks_counts_and_zeroes_every_non_finite_value():
    rng = np.random.default_rng(0)
    array = rng.normal(size=(700, 5, 3)).astype(np.float32)
    bad = rng.random(array.shape) < 0.01
    array[bad] = np.where(rng.random(int(bad.sum())) < 0.5, np.nan, -np.inf)
    assert clean_non_finite(array, chunk=64) == int(bad.sum())
    assert np.isfinite(array).all() and (array[bad] == 0).all()


# --- what autograd keeps for backward (models/nn/memory.py): less of it, the same numbers ---

import pytest  # noqa: E402
import torch  # noqa: E402

from models.config import ModelConfig  # noqa: E402
from models.nn import memory  # noqa: E402
from models.nn.deepmlf import DeepMLF, chunked_lm_loss  # noqa: E402
from models.nn.interface import Batch  # noqa: E402
from models.nn.memory import MaskDropout, head_cross_entropy_sum, lean_memory, lean_mlp  # noqa: E402


def saved_bytes(fn, params=()):
    """(fn(), bytes of the distinct storages autograd keeps while `fn()` runs forward, `params` left out)."""
    skip = {p.untyped_storage().data_ptr() for p in params}
    seen: dict[int, int] = {}

    def pack(t):
        if t.untyped_storage().data_ptr() not in skip:
            seen.setdefault(t.untyped_storage().data_ptr(), t.untyped_storage().nbytes())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    return out, sum(seen.values())


@pytest.fixture(scope="module", params=["gpt2", "llama"])
def wide_lm(request, tmp_path_factory):
    from models.nn.tiny_lm import build_tiny_lm

    return build_tiny_lm(tmp_path_factory.mktemp(f"lean-{request.param}"), request.param, initializer_range=0.3)


def _batch(B=6, T=9, vocab=400):
    g = torch.Generator().manual_seed(0)
    lengths = torch.tensor([9, 5, 1, 7, 3, 9])[:B]
    valid = torch.arange(T)[None, :] >= (T - lengths)[:, None]  # left padding
    return Batch(
        torch.randint(0, vocab, (B, T), generator=g),
        valid,
        torch.randn(B, 20, 7, generator=g),
        torch.randint(1, 21, (B,), generator=g),
        torch.randn(B, 8, 5, generator=g),
        torch.randint(1, 9, (B,), generator=g),
        torch.linspace(-0.8, 0.8, B),
    )


@pytest.mark.parametrize("ffw", ["full", "lora"])
def test_lean_memory_keeps_less_and_gives_the_same_loss_and_gradients_with_dropout_on(wide_lm, ffw):
    torch.manual_seed(0)
    config = ModelConfig(
        lm=str(wide_lm),
        mm_layers=(2, 3),
        n_fusion=3,
        d_audio=7,
        d_vision=5,
        av_pool_len=10,
        lm_dropout=True,
        mm_dropout=0.2,
        text_aug="none",
        av_aug="none",
        ffw_mode=ffw,
        lora_r=4,
        lora_alpha=8,
        lora_dropout=0.1,
    )
    model, _ = DeepMLF.from_config(config)
    model.train()
    batch = _batch()
    results = {}
    for lean in (False, True):
        model.zero_grad(set_to_none=True)
        torch.manual_seed(1)  # the same dropout masks, if both paths draw them alike
        with lean_memory(lean):
            out, kept = saved_bytes(lambda: model(batch), [*model.parameters(), *model.buffers()])
            out.loss.backward()
        after = torch.rand(())  # both paths leave the random stream in the same place
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        results[lean] = (out.loss.detach(), grads, kept, after)
    (loss0, grads0, kept0, after0), (loss1, grads1, kept1, after1) = results[False], results[True]
    torch.testing.assert_close(loss1, loss0, rtol=1e-5, atol=1e-6)
    assert after0 == after1
    assert grads0.keys() == grads1.keys() and "fusion_tokens" in grads1
    for name, g in grads0.items():
        torch.testing.assert_close(grads1[name], g, rtol=1e-5, atol=1e-6, msg=lambda m, name=name: f"{name}: {m}")
    # GPT-2 here ~0.75 (the SIMS step shape ~0.6); Llama ~0.87 (no attention dropout, SwiGLU MLP as it is).
    assert kept1 < (0.8 if "gpt2" in wide_lm.name else 0.95) * kept0, (kept1, kept0)
    # The comparison can fail: dropout fires (another seed gives another loss).
    torch.manual_seed(2)
    assert abs(float(model(batch).loss.detach()) - float(loss0)) > 1e-4


def test_mask_dropout_draws_nn_dropouts_mask_and_keeps_a_bool_one():
    x = torch.randn(64, 48, requires_grad=True)
    torch.manual_seed(3)
    plain, kept_plain = saved_bytes(lambda: torch.nn.Dropout(0.1)(x))
    next_plain = torch.rand(())
    torch.manual_seed(3)
    lean, kept_lean = saved_bytes(lambda: MaskDropout(0.1)(x))
    assert torch.equal(lean, plain) and torch.rand(()) == next_plain
    assert kept_lean * 4 == kept_plain  # a bool mask instead of a float32 one
    (g_plain,) = torch.autograd.grad(plain.sum(), x)
    (g_lean,) = torch.autograd.grad(lean.sum(), x)
    assert torch.equal(g_lean, g_plain)


def test_lean_mlp_recomputes_the_activation_and_gives_the_same_gradients(tiny_gpt2):
    from transformers import AutoModelForCausalLM

    from models.nn.fusion import copy_mlp

    mlp = copy_mlp(AutoModelForCausalLM.from_pretrained(tiny_gpt2).transformer.h[0].mlp).eval()
    x = torch.randn(5, 7, mlp.c_fc.weight.shape[0], requires_grad=True)
    grads, kept = [], []
    for lean in (False, True):
        with lean_memory(lean):
            out, size = saved_bytes(lambda: lean_mlp(mlp, x), mlp.parameters())
        grads.append(torch.autograd.grad((out**2).sum(), [x, *mlp.parameters()]))
        kept.append(size)
    for a, b in zip(*grads):
        assert torch.equal(a, b)  # the recomputed GELU output is the same bits
    assert kept[0] - kept[1] == 5 * 7 * mlp.c_fc.weight.shape[1] * 4  # one (N, 4d) float tensor fewer


@pytest.mark.parametrize("eager", [True, False])
def test_head_cross_entropy_equals_autograds_and_builds_no_logit_gradients(eager):
    torch.manual_seed(0)
    head = torch.nn.Linear(16, 50).requires_grad_(False)
    hidden = torch.randn(37, 16, requires_grad=True)
    targets = torch.randint(0, 50, (37,))
    loss = head_cross_entropy_sum(hidden, targets, head, chunk=8, eager=eager)
    (grad,) = torch.autograd.grad(loss * 3.0, hidden, retain_graph=True)  # a scale ≠ 1 reaches backward
    ref = torch.nn.functional.cross_entropy(head(hidden), targets, reduction="sum")
    (ref_grad,) = torch.autograd.grad(ref * 3.0, hidden)
    torch.testing.assert_close(loss, ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-5, atol=1e-6)
    (again,) = torch.autograd.grad(loss, hidden)  # a second backward (retain_graph) gives the same
    torch.testing.assert_close(again * 3.0, grad, rtol=1e-6, atol=1e-7)
    # chunked_lm_loss takes this path for a frozen head (mean over rows).
    with lean_memory(True):
        mean = chunked_lm_loss(hidden, targets, head, chunk=8, budget_bytes=2**30 if eager else 0)
    assert mean.grad_fn.next_functions[0][0].name().endswith("_HeadCrossEntropyBackward")
    torch.testing.assert_close(mean, ref / 37, rtol=1e-5, atol=1e-6)


def test_the_eager_lm_loss_keeps_the_rows_gradient_and_no_logits():
    """Eager: backward holds one (N, d) tensor, not the (N, vocab) softmax (nor hidden, weight)."""
    head = torch.nn.Linear(16, 5000).requires_grad_(False)
    hidden = torch.randn(64, 16, requires_grad=True)
    targets = torch.randint(0, 5000, (64,))
    for eager in (True, False):
        loss = head_cross_entropy_sum(hidden, targets, head, chunk=16, eager=eager)
        saved = loss.grad_fn.saved_tensors
        if eager:
            assert [tuple(t.shape) for t in saved] == [(64, 16)]
        else:  # recompute: the inputs again, still no logits
            assert max(t.numel() for t in saved) == 5000 * 16
    assert memory.enabled
