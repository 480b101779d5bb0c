"""The speed paths of docs/architecture.md §10 compute what the plain path computes.

Prefix path (text rows below the first MM block without autograd, fusion rows
against their keys/values) = the full pass; per-clip prefix cache = no cache;
length-bucketed batches = the reference's fixed-length padding; the LM loss
without its checkpoint recompute = with it. Tiny GPT-2 and Llama, built with
a wide initialisation so the fusion tokens visibly read the text.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from models.config import ModelConfig, TrainConfig
from models.data.batching import EncodedSplit, collate
from models.data.text import tokenize_texts
from models.evaluation.inference import predict_encoded
from models.nn.deepmlf import DeepMLF, chunked_lm_loss
from models.training.loop import fit

from conftest import make_batch

TEXTS = [
    "the movie was great and i loved it",
    "i hated it",
    "okay",
    "",
    "what a wonderful day with people",
    "terrible acting and a boring story",
]
QUIET = dict(lm_dropout=False, mm_dropout=0.0, av_dropout=0.0, text_aug="none", av_aug="none")


@pytest.fixture(scope="module", params=["gpt2", "llama"])
def wide_lm(request, tmp_path_factory):
    from models.nn.tiny_lm import build_tiny_lm

    return build_tiny_lm(tmp_path_factory.mktemp(f"wide-{request.param}"), request.param, initializer_range=0.3)


def make_model(lm_dir, **overrides):
    torch.manual_seed(0)
    fields = dict(lm=str(lm_dir), mm_layers=(2, 3), n_fusion=3, d_audio=7, d_vision=5, av_pool_len=10)
    return DeepMLF.from_config(ModelConfig(**{**fields, **overrides}))


def outputs(model, batch, compute_loss=True):
    out = model(batch, compute_loss=compute_loss)
    values = {"prediction": out.prediction, "text": out.text, "av": out.av, "fusion": out.fusion}
    if out.loss is not None:
        values["loss"] = out.loss
    return {k: v.detach().clone() for k, v in values.items()}


def assert_same(a, b, atol=1e-5):
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=atol, msg=lambda m, key=key: f"{key}: {m}")


def test_prefix_path_equals_the_full_pass_in_eval(wide_lm):
    model, tok = make_model(wide_lm)
    model.eval()
    batch = make_batch(tok, TEXTS, random_lengths=True)
    T = batch.text_ids.shape[1]
    with torch.no_grad():
        model.prefix_path = False
        full_hidden, _, first = model.encode_prefix(batch)
        full = outputs(model, batch)
        model.prefix_path = True
        hidden, _, first_again = model.encode_prefix(batch)
        fast = outputs(model, batch)
    assert first == first_again == 2
    assert_same(full, fast)
    # The states entering the first MM block agree wherever something reads them (real text and fusion rows).
    keep = torch.cat([batch.text_valid, torch.ones(len(batch), 3, dtype=torch.bool)], dim=1)
    scale = float(full_hidden[keep].abs().max())
    torch.testing.assert_close(hidden[keep], full_hidden[keep], rtol=0, atol=1e-5 * max(1.0, scale))
    # The check can fail: the fusion rows do read the text's keys/values (other text, other fusion states).
    with torch.no_grad():
        other, _, _ = model.encode_prefix(make_batch(tok, list(reversed(TEXTS)), random_lengths=True))
    assert (other[:, T:] - hidden[:, T:]).abs().max() > 1e-3


def test_prefix_path_gradients_match_the_full_pass_in_training(wide_lm):
    model, tok = make_model(wide_lm, **QUIET)
    model.train()
    batch = make_batch(tok, TEXTS, random_lengths=True)
    grads = {}
    for prefix in (False, True):
        model.prefix_path = prefix
        model.zero_grad(set_to_none=True)
        torch.manual_seed(1)  # the same dropout masks in the MM blocks' FFW copies
        model(batch).loss.backward()
        grads[prefix] = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    assert grads[True].keys() == grads[False].keys()
    assert "fusion_tokens" in grads[True] and grads[True]["fusion_tokens"].abs().max() > 0
    for name, g in grads[False].items():
        torch.testing.assert_close(grads[True][name], g, rtol=1e-4, atol=1e-6, msg=lambda m, name=name: f"{name}: {m}")


def test_prefix_path_keeps_the_text_out_of_autograd(wide_lm):
    model, tok = make_model(wide_lm, **QUIET)
    model.train()
    batch = make_batch(tok, TEXTS, random_lengths=True)
    hidden, _, _ = model.encode_prefix(batch)
    T = batch.text_ids.shape[1]
    assert hidden.requires_grad
    # Only the fusion rows carry a graph: the text half of the concatenation has none.
    (text_part, _), (fusion_part, _) = hidden.grad_fn.next_functions
    assert text_part is None and fusion_part is not None
    assert hidden[:, :T].shape[1] == T


def test_cached_prefix_equals_recomputed_in_eval(wide_lm):
    model, tok = make_model(wide_lm)
    model.eval()
    batch = make_batch(tok, TEXTS, random_lengths=True)
    with torch.no_grad():
        plain = outputs(model, batch)
        model.configure_speed(1.0, torch.device("cpu"))
        filling = outputs(model, batch)
        assert model.prefix_cache.stats()["entries"] == len(batch)
        hits_before = model.prefix_cache.hits
        reused = outputs(model, batch)
        assert model.prefix_cache.hits == hits_before + len(batch)
        # Same clips in another batch shape (reordered, longer padding, one new clip): entries still fit.
        mixed_texts = [TEXTS[4], "a brand new clip nobody saw before", TEXTS[0], TEXTS[2]]
        mixed = make_batch(tok, mixed_texts, seed=3, pad_to=batch.text_ids.shape[1] + 5, random_lengths=True)
        model.prefix_cache, cache = None, model.prefix_cache
        mixed_plain = outputs(model, mixed)
        model.prefix_cache = cache
        mixed_cached = outputs(model, mixed)
    assert_same(plain, filling)
    assert_same(plain, reused)
    assert_same(mixed_plain, mixed_cached)
    assert cache.stats()["entries"] == len(batch) + 1


def test_cached_prefix_train_step_equals_recomputed(wide_lm):
    model, tok = make_model(wide_lm, **QUIET)
    batch = make_batch(tok, TEXTS, random_lengths=True)
    grads, losses = [], []
    for cached in (False, True, True):  # without; filling the cache; from the cache
        if cached and model.prefix_cache is None:
            model.configure_speed(1.0, torch.device("cpu"))
        model.train()
        model.zero_grad(set_to_none=True)
        torch.manual_seed(1)  # the same dropout masks in the MM blocks' FFW copies
        out = model(batch)
        out.loss.backward()
        losses.append(out.loss.detach())
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    assert model.prefix_cache.hits == len(batch)
    for other_loss, other in zip(losses[1:], grads[1:]):
        torch.testing.assert_close(other_loss, losses[0], rtol=0, atol=1e-5)
        for name, g in grads[0].items():
            torch.testing.assert_close(other[name], g, rtol=1e-4, atol=1e-6, msg=lambda m, name=name: f"{name}: {m}")


def test_cache_serves_only_batches_the_lm_runs_without_dropout_or_augmentation(wide_lm):
    model, tok = make_model(wide_lm, lm_dropout=True)
    model.configure_speed(1.0, torch.device("cpu"))
    batch = make_batch(tok, TEXTS, random_lengths=True)
    model.train()
    model(batch)  # the LM's dropout is on: its states are not the clip's alone
    assert model.prefix_cache.stats()["entries"] == 0 and model.prefix_cache.misses == 0
    model.eval()
    with torch.no_grad():
        model(batch, compute_loss=False)  # evaluation always runs the LM without dropout
    assert model.prefix_cache.stats()["entries"] == len(batch)
    augmented, tok = make_model(wide_lm, lm_dropout=False, text_aug="seqaug", text_aug_apply=1.0)
    augmented.configure_speed(1.0, torch.device("cpu"))
    augmented.train()
    augmented(batch)
    assert augmented.prefix_cache.stats()["entries"] == 0


def test_cache_past_its_budget_recomputes_and_agrees(wide_lm):
    model, tok = make_model(wide_lm)
    model.eval()
    batch = make_batch(tok, TEXTS, random_lengths=True)
    with torch.no_grad():
        plain = outputs(model, batch)
        model.configure_speed(1e-5, torch.device("cpu"))  # ~10 KiB: room for a few clips only
        first, second = outputs(model, batch), outputs(model, batch)
    stats = model.prefix_cache.stats()
    assert 0 < stats["entries"] < len(batch) and stats["refused"] > 0
    assert model.prefix_cache.bytes_held <= model.prefix_cache.budget_bytes
    assert_same(plain, first)
    assert_same(plain, second)


def encoded_split(tokenizer, n=21, seed=0, **batching):
    rng = np.random.default_rng(seed)
    words = "the movie was great and i loved it what a wonderful day terrible acting boring story".split()
    texts = [" ".join(rng.choice(words, size=int(rng.integers(0, 14)))) for _ in range(n)]
    audio_lengths = rng.integers(1, 21, n)
    vision_lengths = rng.integers(1, 9, n)
    audio = rng.standard_normal((n, 20, 7)) * (np.arange(20)[None, :, None] < audio_lengths[:, None, None])
    vision = rng.standard_normal((n, 8, 5)) * (np.arange(8)[None, :, None] < vision_lengths[:, None, None])
    return EncodedSplit(
        [f"c{i}" for i in range(n)],
        tokenize_texts(tokenizer, texts, 32),
        audio.astype(np.float32),
        audio_lengths,
        vision.astype(np.float32),
        vision_lengths,
        rng.uniform(-1, 1, n).astype(np.float32),
        tokenizer.pad_token_id,
        **batching,
    )


def test_bucketed_predictions_equal_fixed_length_padding(wide_lm):
    model, tok = make_model(wide_lm)
    bucketed = encoded_split(tok)
    fixed = encoded_split(tok, bucketed=False, pad_to=50)
    assert collate(fixed, np.arange(4)).text_ids.shape[1] == 50
    a = predict_encoded(model, bucketed, 4, torch.device("cpu"))
    b = predict_encoded(model, fixed, 4, torch.device("cpu"))
    for key in ("prediction", "text", "av", "fusion"):
        np.testing.assert_allclose(a[key], b[key], rtol=0, atol=1e-5, err_msg=key)


def test_fit_logs_the_padding_share_and_the_cache(wide_lm, tmp_path):
    model, tok = make_model(wide_lm, **QUIET)
    config = TrainConfig(batch_size=4, grad_accum=1, max_epochs=2, patience=5, prefix_cache_gib=0.01)
    bucketed = fit(
        model,
        encoded_split(tok),
        encoded_split(tok, n=6, seed=1),
        dataclasses.replace(config, batching="bucketed"),
        "mosi",
        tmp_path / "a",
        0,
    )
    model, tok = make_model(wide_lm, **QUIET)
    fixed = fit(
        model,
        encoded_split(tok, bucketed=False, pad_to=50),
        encoded_split(tok, n=6, seed=1),
        dataclasses.replace(config, batching="shuffle"),
        "mosi",
        tmp_path / "b",
        0,
    )
    share = [r["text_padding"] for r in bucketed.history]
    fixed_share = [r["text_padding"] for r in fixed.history]
    assert all(0 <= s < 0.5 for s in share) and all(s > 0.75 for s in fixed_share)
    cache = bucketed.history[-1]["prefix_cache"]
    # Epoch 1 fills the cache (train and valid clips), epoch 2 reads it.
    assert cache["entries"] > 0 and cache["mib"] >= 0 and cache["hits"] >= cache["entries"]


def test_lm_loss_without_recompute_equals_the_checkpointed_chunks():
    torch.manual_seed(0)
    head = torch.nn.Linear(16, 50, bias=False)
    hidden = torch.randn(37, 16, requires_grad=True)
    targets = torch.randint(0, 50, (37,))
    results = []
    for budget in (0, 2**30):  # 0: chunks of 8 rows, recomputed in backward; 1 GiB: logits kept
        loss = chunked_lm_loss(hidden, targets, head, chunk=8, budget_bytes=budget)
        (grad,) = torch.autograd.grad(loss, hidden)
        results.append((loss.detach(), grad))
    torch.testing.assert_close(results[0][0], results[1][0])
    torch.testing.assert_close(results[0][1], results[1][1])
    torch.testing.assert_close(results[1][0], torch.nn.functional.cross_entropy(head(hidden), targets))


def test_lm_dropout_study_and_option():
    from typer.testing import CliRunner

    from deepmlf_cli.app import app
    from models.config import PRESETS
    from models.training.studies import study_variants

    base = PRESETS["sample"].model_config()
    variants = study_variants("lm-dropout", base, 4)
    assert [base.replace(**v.model_overrides).lm_dropout for v in variants] == [True, False, False]
    assert base.replace(**variants[-1].model_overrides).text_aug.value == "none"
    out = CliRunner().invoke(app, ["train", "--dataset", "sample", "--lm-dropout", "maybe"])
    assert out.exit_code == 1 and "--lm-dropout maybe: choose on or off" in out.output
    assert "Traceback" not in out.output
