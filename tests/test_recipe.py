"""Each preset IS the reference recipe (issue 10 §1), and the pieces of that recipe behave as the reference's.

The table below is written from the reference's released configs
(MMSA/config/regression/deepmlf/*/{base_best,large_best,best,bienc}.json) and
the paper's recipe (docs/recipe.md), not from our presets, so a preset that drifts fails here.
"""

from __future__ import annotations

import copy
import json
import math
import warnings

import numpy as np
import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from deepmlf_cli.app import app
from models.config import PRESETS, ModelConfig, TrainConfig, get_preset
from models.errors import CheckpointError, ConfigError
from models.training.loop import fit
from models.training.schedule import (
    accumulation_scale,
    clip_gradients,
    clipped_parameters,
    lr_at_step,
    restart_period_steps,
    warmup_steps_for,
)

runner = CliRunner()

# --- the reference's values ------------------------------------------------------------------------------------

_TRAIN = dict(
    lr=1e-4,
    beta1=0.9,
    beta2=0.95,
    batch_size=32,
    grad_accum=8,
    warmup_epochs=1.0,
    min_lr=1e-7,
    schedule="cosine",
    max_epochs=None,
    clip_mode="value",
    clip_threshold=5.0,
    clip_scope="non-av",
    clip_every="step",
    decay_groups="non-bias",
    selection="reference",
    batching="window",
)  # window: a seeded shuffle as the reference's, each step's clips regrouped (no other steps)
_PRETRAIN = dict(
    beta1=0.9,
    beta2=0.999,
    batch_size=32,
    grad_accum=4,
    schedule="plateau",
    plateau_factor=0.1,
    clip_mode="value",
    clip_threshold=1.0,
    clip_scope="all",
    patience=8,
    max_epochs=None,
    weight_decay=0.01,
    decay_groups="all",
    clip_every="micro-batch",
    selection="reference",
    batching="shuffle",
)
_MODEL = dict(
    d_av=30,
    av_layers=3,
    av_heads=6,
    av_ffn=120,
    av_dropout=0.1,
    mm_heads=16,
    mm_dropout=0.1,
    gating="sigmoid",
    fusion_inputs="fusion",
    fusion_positions="fixed",
    seqaug_mode="reference",
    av_aug="seqaug",
    head_hidden=64,
    lm_dropout=True,
    ffw_init="reference",
    av_batchnorm_at="pooled",
    av_positions="fairseq",
)

REFERENCE = {
    "mosei": dict(
        model=dict(
            _MODEL,
            lm="gpt2",
            mm_layers=[3, 5, 7, 8, 9, 10, 11],
            n_fusion=12,
            lambda_f=1.0,
            lambda_av=1.0,
            lambda_t=1.0,
            lambda_lm=1.1,
            text_aug="seqaug",
            text_aug_p=0.2,
            text_aug_apply=0.3,
            ffw_mode="full",
            max_text_tokens=50,
            av_pool_len=50,
            av_aug_p=0.2,
            av_input_batchnorm=[],
        ),
        train=dict(_TRAIN, weight_decay=0.005, cosine_period_epochs=15, patience=10, lm_dtype="float32"),
        pretrain=dict(_PRETRAIN, lr=5e-3, plateau_patience=4),
        pretrain_pool=50,
    ),
    "mosei-large": dict(
        model=dict(
            _MODEL,
            lm="gpt2-large",
            mm_layers=[7, 14, 21, 28, 35],
            n_fusion=12,
            lambda_f=1.0,
            lambda_av=1.0,
            lambda_t=1.0,
            lambda_lm=1.0,
            text_aug="seqaug",
            text_aug_p=0.3,
            text_aug_apply=0.25,
            ffw_mode="full",
            max_text_tokens=50,
            av_pool_len=50,
            av_aug_p=0.2,
            av_input_batchnorm=[],
        ),
        train=dict(_TRAIN, weight_decay=0.1, cosine_period_epochs=20, patience=10, lm_dtype="float32"),
        pretrain=dict(_PRETRAIN, lr=5e-3, plateau_patience=4),
        pretrain_pool=50,
    ),
    "sims": dict(
        model=dict(
            _MODEL,
            lm="uer/gpt2-chinese-cluecorpussmall",
            mm_layers=[5, 6, 7, 8, 9, 10, 11],
            n_fusion=20,
            lambda_f=1.0,
            lambda_av=1.0,
            lambda_t=1.0,
            lambda_lm=1.0,
            text_aug="seqaug",
            text_aug_p=0.3,
            text_aug_apply=0.25,
            ffw_mode="full",
            max_text_tokens=39,
            av_pool_len=55,
            av_aug_p=0.2,
            av_input_batchnorm=["audio", "vision"],
        ),
        train=dict(_TRAIN, weight_decay=0.1, cosine_period_epochs=100, patience=10, lm_dtype="float32"),
        pretrain=dict(_PRETRAIN, lr=5e-4, plateau_patience=10),
        pretrain_pool=39,
    ),
    "mosi": dict(
        model=dict(
            _MODEL,
            lm="HuggingFaceTB/SmolLM2-1.7B",
            mm_layers=[11, 14, 17, 20, 23],
            n_fusion=8,
            lambda_f=0.4,
            lambda_av=0.8,
            lambda_t=0.8,
            lambda_lm=0.0,
            text_aug="none",
            ffw_mode="lora",
            lora_r=512,
            lora_alpha=8192,
            lora_dropout=0.05,
            max_text_tokens=50,
            av_pool_len=50,
            av_aug_p=0.3,
            av_input_batchnorm=[],
            mlp_form="reference",
            lora_init="reference",
        ),
        train=dict(
            _TRAIN, weight_decay=0.001, cosine_period_epochs=150, patience=30, lm_dtype="auto"
        ),  # use_bf16: true (bf16 on CUDA); the others false
        pretrain=dict(_PRETRAIN, lr=1e-3, plateau_patience=10),
        pretrain_pool=50,
    ),
}


def _mismatches(expected: dict, actual: dict) -> list[str]:
    return [
        f"{k}: reference {v!r}, preset {actual.get(k, '<missing>')!r}"
        for k, v in expected.items()
        if actual.get(k, "<missing>") != v
    ]


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_every_preset_is_the_reference_recipe(name):
    """`deepmlf describe --preset NAME --json` prints the resolved recipe, and it is the reference's."""
    result = runner.invoke(app, ["describe", "--preset", name, "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    ref = REFERENCE[name]
    assert _mismatches(ref["model"], report["model"]) == []
    assert _mismatches(ref["train"], report["train"]) == []
    assert _mismatches(ref["pretrain"], report["pretrain"]["train"]) == []
    assert {**report["model"], **report["pretrain"]["model"]}["av_pool_len"] == ref["pretrain_pool"]
    # Resolved means complete: every field of both configs is there.
    assert set(report["model"]) == set(ModelConfig().to_dict())
    assert set(report["train"]) == set(report["pretrain"]["train"]) == set(TrainConfig().to_dict())
    # The pretraining AV settings are those of the model it loads into but for what has no weights
    # (the pool length, SeqAug) and MOSI's pretraining-only audio BatchNorm (tests/test_reference_model.py).
    assert set(report["pretrain"]["model"]) <= {"av_pool_len", "av_aug_p", "av_input_batchnorm"}


def test_sample_preset_keeps_the_demo_recipe_explicitly():
    sample = PRESETS["sample"]
    train = TrainConfig.from_dict(sample.train)
    assert (train.clip_mode, train.clip_scope, train.grad_accum, train.max_epochs, train.lr) == (
        "norm",
        "all",
        1,
        40,
        1e-3,
    )
    pre = TrainConfig.from_dict(sample.pretrain)
    assert (pre.schedule, pre.plateau_factor, pre.plateau_patience, pre.grad_accum) == ("plateau", 0.5, 2, 1)
    assert (train.selection, train.batching, pre.selection, pre.batching) == ("l1", "bucketed", "l1", "bucketed")


def test_describe_help_names_one_default():
    result = runner.invoke(app, ["describe", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert "default: sims" in result.output and "from the dataset" not in result.output


# --- schedule ---------------------------------------------------------------------------------------------------


def test_warmup_is_linear_per_optimizer_step_from_zero_and_reaches_the_peak():
    lrs = [lr_at_step(s, 1e-4, 1e-7, warmup_steps=10, period_steps=50) for s in range(10)]
    assert lrs == pytest.approx([1e-4 * s / 10 for s in range(10)])  # the reference: the first step runs at lr 0
    assert lrs[0] == 0.0
    assert lr_at_step(10, 1e-4, 1e-7, 10, 50) == pytest.approx(1e-4)  # the first cosine step is the peak


def test_restart_period_is_e_plus_one_epochs_minus_the_warmup():
    # MOSEI base: E = 15; 7 steps per epoch (e.g. 1784 batches / 8 / 32 rounded), warm-up = 1 epoch.
    assert restart_period_steps(15, 7, warmup_steps_for(1.0, 7)) == 16 * 7 - 7
    assert restart_period_steps(150, 5, 5) == 750
    assert warmup_steps_for(0.0, 9) == 0 and restart_period_steps(0, 1, 5) == 1  # never a zero period


def test_schedule_matches_torch_cosine_annealing_warm_restarts():
    lr, eta_min, warmup, period = 1e-4, 1e-7, 6, 13
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(opt, T_0=period, eta_min=eta_min)
    for t in range(3 * period + 4):
        assert lr_at_step(warmup + t, lr, eta_min, warmup, period) == pytest.approx(opt.param_groups[0]["lr"], rel=1e-9)
        opt.step()
        sched.step()


def test_schedule_restarts_and_never_goes_below_eta_min():
    lrs = [lr_at_step(s, 1e-4, 1e-7, 4, 200) for s in range(4, 4 + 600)]
    assert min(lrs) >= 1e-7 and min(lrs) == pytest.approx(1e-7, abs=2e-8)
    assert lrs[0] == lrs[200] == lrs[400] == pytest.approx(1e-4)  # back at the peak at every restart
    assert lrs[199] < 2e-7  # ... from the floor just before it


@pytest.fixture(scope="module")
def av_data():
    from models.data.batching import encode_split
    from models.data.sample import make_sample_dataset

    data = make_sample_dataset(n_train=48, n_valid=16, n_test=16, seed=3)
    return {k: encode_split(v, None, 8, None) for k, v in data.splits.items()}, data.scheme


def _av_model(**overrides):
    from models.nn.av_pretrain import AVPretrainModel

    torch.manual_seed(0)
    config = get_preset("sample").model_config(d_audio=33, d_vision=16, av_dropout=0.0, av_aug="none", **overrides)
    return AVPretrainModel(config)


def test_fit_steps_the_warm_restarts_per_optimizer_step(av_data, tmp_path):
    encoded, scheme = av_data
    # 48 clips / 16 = 3 optimizer steps an epoch; warm-up 3 steps (lr 0, 1/3, 2/3 of the peak);
    # E = 1 → T_0 = 2·3 − 3 = 3 steps.
    config = TrainConfig(
        lr=1e-3, min_lr=0.0, batch_size=16, grad_accum=1, max_epochs=3, patience=10, cosine_period_epochs=1
    )
    result = fit(_av_model(), encoded["train"], encoded["valid"], config, scheme, tmp_path, seed=0)
    lrs = [h["lr"] for h in result.history]  # the lr of each epoch's last step
    assert lrs[0] == pytest.approx(2e-3 / 3)  # the warm-up's last step: base·2/3
    after_two_of_three = 0.5 * 1e-3 * (1 + math.cos(math.pi * 2 / 3))
    assert lrs[1] == pytest.approx(after_two_of_three) and lrs[2] == pytest.approx(after_two_of_three)  # a restart


def test_max_epochs_is_optional_and_separate_from_the_period():
    assert TrainConfig().max_epochs is None
    assert TrainConfig(max_epochs=3, cosine_period_epochs=150).max_epochs == 3
    with pytest.raises(ConfigError, match="max_epochs"):
        TrainConfig(max_epochs=0)
    with pytest.raises(ConfigError, match="clip_mode"):
        TrainConfig(clip_mode="global")


# --- clipping and accumulation ----------------------------------------------------------------------------------


def test_clip_by_value_and_by_norm():
    p = nn.Parameter(torch.zeros(4))
    p.grad = torch.tensor([-9.0, -1.0, 2.0, 7.0])
    clip_gradients([p], "value", 5.0)
    assert p.grad.tolist() == [-5.0, -1.0, 2.0, 5.0]
    p.grad = torch.tensor([3.0, 4.0, 0.0, 0.0])
    clip_gradients([p], "norm", 1.0)
    assert float(p.grad.norm()) == pytest.approx(1.0)
    assert accumulation_scale("value", 8) == 1.0 and accumulation_scale("norm", 8) == 1 / 8


def test_value_clipping_leaves_the_av_encoder_out(tiny_gpt2):
    from models.nn.deepmlf import DeepMLF

    model, _ = DeepMLF.from_config(ModelConfig(lm=str(tiny_gpt2), mm_layers=(1, 3), n_fusion=2, d_audio=7, d_vision=5))
    names = {id(p): n for n, p in model.named_parameters()}
    clipped = {names[id(p)] for p in clipped_parameters(model, "non-av")}
    assert clipped and not any(n.startswith("av_encoder.") for n in clipped)
    assert {"fusion_tokens", "task_head.net.0.weight"} <= clipped and any(n.startswith("mm_blocks.") for n in clipped)
    assert len(clipped_parameters(model, "all")) == sum(p.requires_grad for p in model.parameters())


@pytest.mark.parametrize("mode", ["value", "norm"])
def test_fit_clips_the_gradients_summed_over_the_accumulated_batches(av_data, tmp_path, monkeypatch, mode):
    """Value mode: the clip sees the *sum* of the batches' gradients (loss not divided by grad_accum)."""
    import models.training.loop as training
    from models.data.batching import collate

    encoded, scheme = av_data
    model = _av_model()
    start = copy.deepcopy(model)
    seen_batches, seen_grads = [], []
    real_collate, real_clip = training.collate, training.clip_gradients

    def spy_collate(split, index, loss_norm=None):
        seen_batches.append(np.array(index))
        return real_collate(split, index, loss_norm)

    def spy_clip(params, clip_mode, threshold):
        params = list(params)
        seen_grads.append([p.grad.clone() for p in params])
        real_clip(params, clip_mode, threshold)
        if clip_mode == "value":
            assert max(float(p.grad.abs().max()) for p in params) <= threshold * (1 + 1e-6)  # float32

    monkeypatch.setattr(training, "collate", spy_collate)
    monkeypatch.setattr(training, "clip_gradients", spy_clip)
    config = TrainConfig(
        lr=1e-3, batch_size=16, grad_accum=2, max_epochs=1, clip_mode=mode, clip_threshold=1e-3, clip_scope="all"
    )
    fit(model, encoded["train"], encoded["valid"], config, scheme, tmp_path, seed=0)
    # The first optimizer step accumulated the first two batches; recompute their gradients from the start.
    start.train()
    for index in seen_batches[:2]:
        start(collate(encoded["train"], index)).loss.backward()
    expected = [p.grad for p in start.parameters() if p.requires_grad]
    scale = 1.0 if mode == "value" else 0.5
    for got, want in zip(seen_grads[0], expected):
        torch.testing.assert_close(got, want * scale, rtol=1e-4, atol=1e-7)


# --- NaN validation ---------------------------------------------------------------------------------------------


class _NaNOnValidation(nn.Module):
    """AV pretraining model whose validation predictions are NaN in the chosen validation passes."""

    def __init__(self, nan_passes):
        super().__init__()
        self.inner = _av_model()
        self.config, self.kind = self.inner.config, self.inner.kind
        self.nan_passes, self.validations = set(nan_passes), 0

    def train(self, mode=True):
        if not mode:
            self.validations += 1
        return super().train(mode)

    def forward(self, batch, compute_loss=True):
        out = self.inner(batch, compute_loss)
        if not self.training and self.validations in self.nan_passes:
            out.prediction = torch.full_like(out.prediction, float("nan"))
        return out

    def trainable_state_dict(self):
        return dict(self.state_dict())


def test_a_nan_validation_epoch_is_a_bad_epoch_with_a_warning(av_data, tmp_path):
    encoded, scheme = av_data
    config = TrainConfig(lr=1e-3, batch_size=16, grad_accum=1, max_epochs=3, patience=5)
    with pytest.warns(RuntimeWarning, match="validation predictions are NaN/inf"):
        result = fit(_NaNOnValidation({2}), encoded["train"], encoded["valid"], config, scheme, tmp_path, seed=0)
    history = result.history
    assert len(history) == 3  # no crash: training went on
    assert history[1]["valid_nonfinite"] == len(encoded["valid"]) and history[1]["valid"] == {}
    assert history[1]["best"] is False and math.isnan(history[1]["valid_l1"])
    assert history[0]["valid_nonfinite"] == 0 and result.best_epoch in (0, 2)


def test_only_nan_validation_epochs_is_one_clear_error(av_data, tmp_path):
    encoded, scheme = av_data
    config = TrainConfig(lr=1e-3, batch_size=16, grad_accum=1, max_epochs=2, patience=5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        with pytest.raises(ConfigError, match="no epoch gave finite validation predictions"):
            fit(_NaNOnValidation({1, 2}), encoded["train"], encoded["valid"], config, scheme, tmp_path, seed=0)


# --- SeqAug as the reference applies it -------------------------------------------------------------------------


def test_reference_seqaug_shares_one_permutation_over_the_padded_positions():
    from models.nn.augment import seq_aug_shared

    torch.manual_seed(0)
    B, T, D = 3, 9, 4
    x = torch.arange(1.0, T + 1)[None, :, None].expand(B, T, D) + 100 * torch.arange(B)[:, None, None]
    x = x * (torch.arange(T)[None, :, None] >= torch.tensor([0, 3, 6])[:, None, None])  # left padding: zeros
    out = seq_aug_shared(x, p=1.0)
    # One permutation for every row and dim, over every position (padding included).
    perm = [int(v) - 1 for v in out[0, :, 0]]
    assert sorted(perm) == list(range(T)) and perm != list(range(T))
    torch.testing.assert_close(out, x[:, perm])


def test_reference_seqaug_mask_is_per_sample_and_dim_constant_in_time():
    from models.nn.augment import seq_aug_shared

    torch.manual_seed(3)
    B, T, D = 6, 12, 16
    offset = 100 * torch.arange(D)[None, None, :] + 10000 * torch.arange(B)[:, None, None]
    x = (torch.arange(T)[None, :, None] + offset).float()  # the value names its own time step
    source = (seq_aug_shared(x, p=0.5) - offset).long()  # (B, T, D): the time step each value came from
    identity = torch.arange(T)
    kept = (source == identity[None, :, None]).all(1)  # (B, D)
    swapped = ~kept
    assert kept.any() and swapped.any() and not torch.equal(kept[0], kept[1])  # the mask differs per sample
    # Every (sample, dim) is either untouched for all steps or permuted for all steps, by one shared permutation.
    perms = {tuple(source[b, :, d].tolist()) for b in range(B) for d in range(D) if swapped[b, d]}
    assert len(perms) == 1 and sorted(next(iter(perms))) == identity.tolist()


def test_text_augmentation_follows_the_mode_and_the_batch_probability(tiny_gpt2):
    from models.nn.augment import augment_text

    torch.manual_seed(0)
    text = torch.randn(4, 7, 8)
    valid = torch.ones(4, 7, dtype=torch.bool)
    valid[0, :3] = False
    base = ModelConfig(lm=str(tiny_gpt2), text_aug="seqaug", text_aug_p=1.0, text_aug_apply=1.0)
    assert augment_text(text, valid, base, training=False) is text
    assert augment_text(text, valid, base.replace(text_aug_apply=0.0), training=True) is text
    shared = augment_text(text, valid, base, training=True)
    perm = [int((text[1, :, 0] == v).nonzero()) for v in shared[1, :, 0]]
    torch.testing.assert_close(shared, text[:, perm])  # the same permutation for the whole batch
    per_sample = augment_text(text, valid, base.replace(seqaug_mode="per-sample"), training=True)
    torch.testing.assert_close(per_sample[0, :3], text[0, :3])  # padding stays where it was


@pytest.mark.parametrize("mode,raw", [("reference", True), ("per-sample", False)])
def test_av_seqaug_runs_on_raw_frames_before_batchnorm_in_reference_mode(monkeypatch, mode, raw):
    import models.nn.av_encoder as av_encoder
    from models.nn.av_encoder import AVEncoder

    calls = []

    def marker(x, p):  # stands in for SeqAug: records what it saw, marks what it returns
        calls.append(x.shape)
        return x + 1000.0

    monkeypatch.setattr(av_encoder, "seq_aug_shared", marker)
    enc = AVEncoder(
        d_audio=3,
        d_vision=2,
        pool_len=4,
        input_batchnorm=("audio",),
        aug="seqaug",
        aug_p=0.5,
        seqaug_mode=mode,
        batchnorm_at="raw",
    )  # BatchNorm on raw frames: it sees what SeqAug gave
    seen = []
    enc.audio_norm.register_forward_hook(lambda m, inputs, out: seen.append(inputs[0].clone()))
    audio, vision = torch.randn(2, 10, 3), torch.randn(2, 6, 2)
    enc.train()
    enc(audio, torch.tensor([10, 7]), vision, torch.tensor([6, 6]))
    if raw:
        assert calls == [(2, 10, 3), (2, 6, 2)]  # the raw frames, before pooling to 4 steps
        torch.testing.assert_close(seen[0], audio + 1000.0)  # BatchNorm normalises the augmented frames
    else:
        assert calls == [] and torch.equal(seen[0], audio)
    enc.eval()
    calls.clear()
    enc(audio, torch.tensor([10, 7]), vision, torch.tensor([6, 6]))
    assert calls == []  # never at evaluation


def test_batchnorm_is_per_modality():
    from models.nn.av_encoder import AVEncoder

    mosi = get_preset("mosi")
    pretrain = AVEncoder.from_config(mosi.model_config(**mosi.pretrain_model))  # the reference: audio only
    assert pretrain.audio_norm is not None and pretrain.vision_norm is None
    stage2 = AVEncoder.from_config(mosi.model_config())  # and none in stage 2
    assert stage2.audio_norm is None and stage2.vision_norm is None
    sims = AVEncoder.from_config(get_preset("sims").model_config())
    assert sims.audio_norm is not None and sims.vision_norm is not None
    assert ModelConfig(av_input_batchnorm=True).av_input_batchnorm == ("audio", "vision")  # older configs
    assert ModelConfig(av_input_batchnorm=False).av_input_batchnorm == ()
    with pytest.raises(ConfigError, match="'text' is not a modality"):
        ModelConfig(av_input_batchnorm=["text"])


def test_augmentation_study_compares_both_seqaug_modes():
    from models.training.studies import study_variants

    rows = study_variants("augmentation", PRESETS["sample"].model_config(), 4)
    modes = [v.model_overrides.get("seqaug_mode") for v in rows if v.model_overrides.get("text_aug") == "seqaug"]
    assert modes == ["reference", "per-sample"]


# --- fusion-token positions -------------------------------------------------------------------------------------


def test_fusion_tokens_sit_at_fixed_positions_after_max_text_tokens():
    from models.nn.positions import token_positions

    valid = torch.tensor([[False, False, True, True], [True, True, True, True]])
    fixed = token_positions(valid, ModelConfig(max_text_tokens=50, n_fusion=3))
    assert fixed.tolist() == [[0, 0, 0, 1, 50, 51, 52], [0, 1, 2, 3, 50, 51, 52]]
    after = token_positions(valid, ModelConfig(max_text_tokens=50, n_fusion=3, fusion_positions="after-text"))
    assert after.tolist() == [[0, 0, 0, 1, 2, 3, 4], [0, 1, 2, 3, 4, 5, 6]]


def test_deepmlf_gives_the_lm_the_fixed_fusion_positions(tiny_gpt2):
    from transformers import AutoTokenizer

    from models.nn.deepmlf import DeepMLF

    from conftest import make_batch

    model, _ = DeepMLF.from_config(
        ModelConfig(lm=str(tiny_gpt2), mm_layers=(1, 3), n_fusion=3, d_audio=7, d_vision=5, max_text_tokens=20)
    )
    tok = AutoTokenizer.from_pretrained(tiny_gpt2)
    batch = make_batch(tok, ["i loved it", "no"])
    model.eval()
    with torch.no_grad():
        _, ctx, _ = model.encode_prefix(batch)
    T = batch.text_ids.shape[1]
    assert ctx.position_ids[:, T:].tolist() == [[20, 21, 22]] * 2


def test_positions_beyond_the_lm_are_a_clear_error(tiny_gpt2):
    from models.nn.deepmlf import DeepMLF

    # The tiny GPT-2 has 256 positions (GPT-2 itself: 1024).
    with pytest.raises(ConfigError, match=r"250 \+ n_fusion=8 = 258 positions, but the LM .* has 256"):
        DeepMLF.from_config(
            ModelConfig(lm=str(tiny_gpt2), mm_layers=(1,), n_fusion=8, max_text_tokens=250, d_audio=7, d_vision=5)
        )


# --- MM block and AV encoder details ----------------------------------------------------------------------------


def test_mm_block_norms_follow_the_lm_family(tiny_gpt2, tiny_llama):
    from models.nn.deepmlf import DeepMLF

    fields = dict(mm_layers=(1, 3), n_fusion=2, d_audio=7, d_vision=5)
    llama, _ = DeepMLF.from_config(ModelConfig(lm=str(tiny_llama), **fields))
    gpt2, _ = DeepMLF.from_config(ModelConfig(lm=str(tiny_gpt2), **fields))
    for block in llama.mm_blocks.values():
        assert isinstance(block.ln_ca, nn.RMSNorm) and isinstance(block.ln_ffw, nn.RMSNorm)
        assert block.ln_ca.eps == 1e-6
    for block in gpt2.mm_blocks.values():
        assert type(block.ln_ca) is nn.LayerNorm and type(block.ln_ffw) is nn.LayerNorm


def test_cross_attention_uses_default_linear_init_and_output_dropout():
    from models.nn.fusion import CrossAttention

    torch.manual_seed(0)
    ca = CrossAttention(d_model=64, d_context=30, n_heads=4, dropout=0.5)
    ca.requires_grad_(False)
    bound = 1 / math.sqrt(30)  # nn.Linear's default: U(±1/√fan_in); N(0, 0.02) would be ~5x smaller
    assert float(ca.kv.weight.abs().max()) <= bound and float(ca.kv.weight.std()) > 0.05
    assert float(ca.q.weight.std()) == pytest.approx(1 / math.sqrt(64) / math.sqrt(3), rel=0.1)
    x, ctx, ok = torch.randn(2, 50, 64), torch.randn(2, 6, 30), torch.ones(2, 6, dtype=torch.bool)
    ca.train()
    zeros = float((ca(x, ctx, ok) == 0).float().mean())
    assert 0.4 < zeros < 0.6  # dropout on the output projection zeroes whole entries
    ca.eval()
    assert float((ca(x, ctx, ok) == 0).float().mean()) == 0.0


def test_lora_dropout_is_configurable(tiny_llama):
    from models.nn.deepmlf import DeepMLF

    model, _ = DeepMLF.from_config(
        ModelConfig(
            lm=str(tiny_llama),
            mm_layers=(1,),
            n_fusion=2,
            d_audio=7,
            d_vision=5,
            ffw_mode="lora",
            lora_r=4,
            lora_alpha=8,
            lora_dropout=0.05,
        )
    )
    drops = [m for n, m in model.named_modules() if n.endswith("lora_dropout.default")]
    assert drops and all(isinstance(m, nn.Dropout) and m.p == 0.05 for m in drops)


def test_modality_encoders_have_no_final_layernorm():
    from models.nn.av_encoder import AVEncoder

    enc = AVEncoder(d_audio=3, d_vision=2, pool_len=4)
    assert enc.audio.encoder.norm is None and enc.vision.encoder.norm is None
    assert not any(k.startswith(("audio.encoder.norm", "vision.encoder.norm")) for k in enc.state_dict())
    assert isinstance(enc.norm, nn.LayerNorm)  # the one after the Fusion FFW stays


# --- AV pretraining: recipe and strict loading ------------------------------------------------------------------


def test_av_weights_load_strictly_both_ways(tiny_gpt2):
    from models.nn.av_pretrain import AVPretrainModel, load_av_weights
    from models.nn.deepmlf import DeepMLF

    config = ModelConfig(
        lm=str(tiny_gpt2), mm_layers=(1,), n_fusion=2, d_audio=7, d_vision=5, av_input_batchnorm=("audio",)
    )
    weights = AVPretrainModel(config.replace(av_readout="mean")).state_dict()  # the head carries over too
    model, _ = DeepMLF.from_config(config)
    assert load_av_weights(model, weights) == len(weights)
    # The pool length has no weights: SIMS pretrains at 39 steps and fine-tunes at 55.
    other_pool = AVPretrainModel(config.replace(av_pool_len=config.av_pool_len - 3, av_readout="mean")).state_dict()
    assert load_av_weights(model, other_pool) == len(other_pool)
    missing = {k: v for k, v in weights.items() if k != "av_encoder.fusion.bias"}
    with pytest.raises(CheckpointError, match="lacks av_encoder.fusion.bias"):
        load_av_weights(model, missing)
    # Pretrained without the audio BatchNorm the model has: its BatchNorm would stay at random init.
    no_bn = AVPretrainModel(config.replace(av_input_batchnorm=(), av_readout="mean")).state_dict()
    with pytest.raises(CheckpointError, match="lacks av_encoder.audio_norm"):
        load_av_weights(model, no_bn)
    # A BatchNorm the model lacks is skipped (MOSI pretrains with one, its stage 2 has none: as the
    # reference); any other surplus tensor is an error.
    assert load_av_weights(model, {**weights, "av_encoder.vision_norm.norm.weight": torch.ones(5)}) == len(weights)
    extra = {**weights, "av_encoder.extra.weight": torch.ones(5)}
    with pytest.raises(CheckpointError, match="holds av_encoder.extra.weight"):
        load_av_weights(model, extra)


def test_pretrain_command_runs_the_presets_pretraining_recipe(tmp_path):
    from models.data.format import save_dataset
    from models.data.sample import make_sample_dataset

    # 128 clips = 4 batches of 32: the sims recipe's grad_accum 4 makes one optimizer step (no partial steps).
    data_dir = save_dataset(make_sample_dataset(n_train=128, n_valid=16, n_test=16), tmp_path / "sample")
    out = tmp_path / "pre"
    result = runner.invoke(
        app,
        [
            "pretrain",
            "--dataset",
            str(data_dir),
            "--preset",
            "sims",
            "--max-epochs",
            "1",
            "--device",
            "cpu",
            "--out",
            str(out),
            "--quiet",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    spec = json.loads((out / "run.json").read_text())["spec"]
    assert spec["kind"] == "av" and spec["model"]["av_pool_len"] == 39
    ref = dict(REFERENCE["sims"]["pretrain"], max_epochs=1)
    assert _mismatches(ref, spec["train"]) == []


def test_av_pretrain_spec_takes_the_recipe_and_keeps_the_cap(tiny_gpt2):
    from models.run import RunSpec
    from models.training.experiment import av_pretrain_spec

    preset = get_preset("mosei")
    base = RunSpec(
        "deepmlf",
        preset.model_config(),
        TrainConfig.from_dict({**preset.train, "max_epochs": 3, "device": "cpu"}),
        (0,),
    )
    spec = av_pretrain_spec(base, preset=preset)
    assert spec.kind == "av" and spec.train.max_epochs == 3
    assert _mismatches(REFERENCE["mosei"]["pretrain"] | {"max_epochs": 3}, spec.train.to_dict()) == []
    assert av_pretrain_spec(base, lr=0.01, preset=preset).train.lr == 0.01
