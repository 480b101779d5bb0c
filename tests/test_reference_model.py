"""The paper presets' model as the reference builds it (issue 21 items 7-10, 12-15), pinned against
numbers written here: FFW initialisation and GELU form, the Llama MLP form, LoRA A's bound, the AV
encoder's BatchNorm placement and fairseq positions, and AV pretraining's readout, decay and clipping."""

from __future__ import annotations

import pytest
import torch

from models.config import PRESETS, ModelConfig
from models.nn.deepmlf import DeepMLF


def make_model(lm_dir, **overrides):
    fields = dict(lm=str(lm_dir), mm_layers=(1, 3), n_fusion=4, d_audio=7, d_vision=5, av_pool_len=10)
    return DeepMLF.from_config(ModelConfig(**{**fields, **overrides}))[0]


# --- item 7: the MM-block FFW copies the LM MLP's weights only; biases default-init; erf GELU ---


def test_paper_presets_copy_weights_only_and_the_sample_keeps_the_exact_copy():
    for name in ("mosei", "mosei-large", "sims", "mosi"):
        assert PRESETS[name].model_config().ffw_init.value == "reference"
    assert PRESETS["sample"].model_config().ffw_init.value == "copy-lm"


def test_reference_ffw_copies_weights_redraws_biases_and_uses_the_erf_gelu(tiny_gpt2):
    torch.manual_seed(0)
    model = make_model(tiny_gpt2, ffw_init="reference")
    for layer, block in model.mm_blocks.items():
        lm_mlp, ffw = model.lm.mlp(int(layer)), block.ffw
        assert torch.equal(ffw.c_fc.weight, lm_mlp.c_fc.weight) and torch.equal(ffw.c_proj.weight, lm_mlp.c_proj.weight)
        # nn.Linear's default bias: U(±1/√fan_in); the tiny GPT-2 is 64 wide, its MLP 256.
        for bias, lm_bias, bound in (
            (ffw.c_fc.bias, lm_mlp.c_fc.bias, 1 / 8),
            (ffw.c_proj.bias, lm_mlp.c_proj.bias, 1 / 16),
        ):
            assert not torch.equal(bias, lm_bias)
            assert 0.8 * bound < float(bias.abs().max()) <= bound
        assert type(ffw.act) is torch.nn.GELU and ffw.act.approximate == "none"
        # GELU(1) = Φ(1) = 0.8413447 (erf); the tanh form gives 0.8411920.
        assert float(ffw.act(torch.tensor(1.0))) == pytest.approx(0.8413447, abs=1e-7)
        assert float(lm_mlp.act(torch.tensor(1.0))) == pytest.approx(0.8411920, abs=1e-7)


def test_copy_lm_keeps_the_lm_biases_and_tanh_gelu(tiny_gpt2):
    model = make_model(tiny_gpt2, ffw_init="copy-lm")
    block = model.mm_blocks["1"]
    assert torch.equal(block.ffw.c_fc.bias, model.lm.mlp(1).c_fc.bias)
    assert float(block.ffw.act(torch.tensor(1.0))) == pytest.approx(0.8411920, abs=1e-7)


# --- item 8: MOSI's Llama MLP is the reference's sum down(act(gate(x)) + up(x)), not SwiGLU's product ---


@pytest.mark.parametrize("form", ["reference", "swiglu"])
def test_llama_ffw_computes_the_chosen_mlp_form(tiny_llama, form):
    torch.manual_seed(0)
    model = make_model(tiny_llama, mlp_form=form).eval()
    x = torch.randn(2, 5, model.lm.d_model)  # (B, T, d)
    for layer, block in model.mm_blocks.items():
        lm_mlp = model.lm.mlp(int(layer))  # the frozen LM's own SwiGLU MLP: its weights are the copy's
        gate, up = lm_mlp.act_fn(lm_mlp.gate_proj(x)), lm_mlp.up_proj(x)  # (B, T, d_ff) each
        summed, product = lm_mlp.down_proj(gate + up), lm_mlp.down_proj(gate * up)  # (B, T, d)
        assert not torch.allclose(summed, product, atol=1e-3)  # the two forms are told apart
        with torch.no_grad():
            out = block.ffw(x)
        torch.testing.assert_close(out, summed if form == "reference" else product, rtol=0, atol=1e-6)
        if form == "swiglu":
            torch.testing.assert_close(out, lm_mlp(x), rtol=0, atol=1e-6)  # the LM's own form


def test_mosi_defaults_to_the_reference_mlp_form_and_describe_shows_it():
    import json

    from typer.testing import CliRunner

    from deepmlf_cli.app import app

    assert PRESETS["mosi"].model_config().mlp_form.value == "reference"
    assert ModelConfig().mlp_form.value == "reference" and ModelConfig(mlp_form="swiglu").mlp_form.value == "swiglu"
    result = CliRunner().invoke(app, ["describe", "--preset", "mosi", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["model"]["mlp_form"] == "reference"


# --- item 9: LoRA A drawn as the reference's own LoRA, U(±1/√r); B zero ---


def _lora_pairs(model):
    from peft.tuners.lora import LoraLayer

    for block in model.mm_blocks.values():
        for layer in block.ffw.modules():
            if isinstance(layer, LoraLayer):
                yield layer.lora_A["default"].weight, layer.lora_B["default"].weight  # (r, in), (out, r)


@pytest.mark.parametrize("init", ["reference", "peft"])
def test_lora_a_bound_follows_the_reference(tiny_lm, init):
    torch.manual_seed(0)
    r = 4
    model = make_model(tiny_lm, ffw_mode="lora", lora_r=r, lora_alpha=8, lora_init=init)
    pairs = list(_lora_pairs(model))
    per_block = 3 if model.lm.rms_norm else 2  # Llama: gate, up, down; GPT-2: c_fc, c_proj
    assert len(pairs) == per_block * len(model.mm_blocks)
    for a, b in pairs:
        in_features = a.shape[1]  # tiny LMs: 64 wide, MLP 256 (GPT-2) or 192 (Llama)
        # The reference: 1/√r = 0.5; PEFT: 1/√in = 0.125 or less. 64·4 or more draws reach 0.8 of the bound.
        bound = 1 / r**0.5 if init == "reference" else 1 / in_features**0.5
        assert 0.8 * bound < float(a.abs().max()) <= bound
        assert torch.count_nonzero(b) == 0


def test_mosi_lora_init_is_the_reference_and_describe_shows_it():
    import json

    from typer.testing import CliRunner

    from deepmlf_cli.app import app

    assert PRESETS["mosi"].model_config().lora_init.value == "reference" == ModelConfig().lora_init.value
    result = CliRunner().invoke(app, ["describe", "--preset", "mosi", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["model"]["lora_init"] == "reference"


# --- item 10: AV BatchNorm after pooling; fairseq sinusoids; MOSI has no stage-2 BatchNorm ---


def test_batchnorm_normalises_the_pooled_steps():
    from models.nn.av_encoder import AVEncoder

    enc = AVEncoder(d_audio=3, d_vision=2, pool_len=4, input_batchnorm=("audio",))
    seen = []
    enc.audio_norm.register_forward_hook(lambda m, inputs, out: seen.append(inputs[0].shape))
    enc.eval()
    enc(torch.randn(2, 10, 3), torch.tensor([10, 7]), torch.randn(2, 6, 2), torch.tensor([6, 6]))
    assert seen == [(2, 4, 3)]  # the 4 pooled steps, not the 10 raw frames
    assert ModelConfig().av_batchnorm_at.value == "pooled"
    raw = AVEncoder(d_audio=3, d_vision=2, pool_len=4, input_batchnorm=("audio",), batchnorm_at="raw")
    raw.audio_norm.register_forward_hook(lambda m, inputs, out: seen.append(inputs[0].shape))
    raw.eval()
    raw(torch.randn(2, 10, 3), torch.tensor([10, 7]), torch.randn(2, 6, 2), torch.tensor([6, 6]))
    assert seen[-1] == (2, 10, 3)


def test_fairseq_sinusoid_values():
    from models.nn.av_encoder import fairseq_positions, fairseq_sinusoid_table

    table = fairseq_sinusoid_table(6, 30)  # d_av = 30: 15 frequencies 10000^(-i/14)
    assert torch.equal(table[0], torch.zeros(30))  # padding_idx 0
    # position 1: sin(1) in column 0, cos(1) in column 15 (halves, not interleaved)
    assert float(table[1, 0]) == pytest.approx(0.8414710, abs=1e-6)
    assert float(table[1, 15]) == pytest.approx(0.5403023, abs=1e-6)
    # position 3, frequency i = 1: 10000^(-1/14) = 0.5179475; sin(3·0.5179475) = 0.9998563
    assert float(table[3, 1]) == pytest.approx(0.9998563, abs=1e-6)
    assert float(table[3, 16]) == pytest.approx(0.0169531, abs=1e-6)  # cos of the same
    # the last frequency is 10000^-1: position 5 → sin(5e-4)
    assert float(table[5, 14]) == pytest.approx(5e-4, rel=1e-4)
    # positions count from 1 over non-zero first features, skipping the zero ones
    first = torch.tensor([[0.3, 0.0, -1.0, 2.0]])
    pos = fairseq_positions(first, table)  # (1, 4, 30)
    assert torch.equal(pos[0, 0], table[1]) and torch.equal(pos[0, 1], torch.zeros(30))
    assert torch.equal(pos[0, 2], table[2]) and torch.equal(pos[0, 3], table[3])
    assert ModelConfig().av_positions.value == "fairseq"
    assert PRESETS["sample"].model_config().av_positions.value == "vaswani"


def test_mosi_has_no_stage_two_batchnorm_and_its_pretraining_checkpoint_loads(tiny_gpt2):
    from models.nn.av_pretrain import AVPretrainModel, load_av_weights

    mosi = PRESETS["mosi"]
    assert mosi.model_config().av_input_batchnorm == ()
    assert mosi.model_config(**mosi.pretrain_model).av_input_batchnorm == ("audio",)
    config = ModelConfig(lm=str(tiny_gpt2), mm_layers=(1,), n_fusion=2, d_audio=7, d_vision=5, av_input_batchnorm=())
    pretrained = AVPretrainModel(config.replace(av_input_batchnorm=("audio",))).state_dict()
    assert any(k.startswith("av_encoder.audio_norm.") for k in pretrained)
    model = make_model(tiny_gpt2, mm_layers=(1,), n_fusion=2, av_input_batchnorm=())
    loaded = load_av_weights(model, pretrained)
    assert loaded == sum(1 for k in pretrained if k.startswith("av_encoder.") and "audio_norm" not in k)


# --- item 14: pretraining reads clf(fusion(cat)[:, -1]); stage 2 keeps its own LayerNorm and head ---


def test_pretraining_reads_the_last_step_without_layernorm(tiny_gpt2):
    from models.nn.av_pretrain import AVPretrainModel, load_av_weights

    from conftest import make_batch

    config = ModelConfig(lm=str(tiny_gpt2), mm_layers=(1,), n_fusion=2, d_audio=7, d_vision=5, av_pool_len=10)
    assert config.av_readout.value == "last" and PRESETS["sample"].model_config().av_readout.value == "mean"
    torch.manual_seed(0)
    pre = AVPretrainModel(config).eval()
    assert not any(k.startswith(("av_encoder.norm.", "av_head.")) for k in pre.state_dict())
    batch = make_batch(None)  # pooled steps per clip: min(10, longest modality) = 10, 8, 1, 10
    captured = []
    pre.av_encoder.fusion.register_forward_hook(lambda m, i, out: captured.append(out))
    with torch.no_grad():
        y = pre(batch, compute_loss=False).prediction
    fused = captured[0]  # (B, P, d_av) before masking; no LayerNorm after it
    last = torch.tensor([9, 7, 0, 9])
    expected = pre.av_clf(fused[torch.arange(4), last]).squeeze(-1)
    torch.testing.assert_close(y, expected, rtol=0, atol=1e-6)
    # Stage 2: the encoder carries over; its LayerNorm and AV head stay fresh.
    model = make_model(tiny_gpt2, mm_layers=(1,), n_fusion=2)
    fresh_norm = model.av_encoder.norm.weight.clone()
    fresh_head = model.av_head.weight.clone()
    n = load_av_weights(model, pre.state_dict())
    assert n == sum(1 for k in pre.state_dict() if k.startswith("av_encoder."))
    assert torch.equal(model.av_encoder.fusion.weight, pre.av_encoder.fusion.weight)
    assert torch.equal(model.av_encoder.norm.weight, fresh_norm) and torch.equal(model.av_head.weight, fresh_head)


# --- items 12, 13, 15: pretraining decay on every parameter, clipping per micro-batch, MOSI SeqAug ---


def test_pretraining_recipe_fields_per_preset():
    from models.config import TrainConfig

    for name in ("mosei", "mosei-large", "sims", "mosi"):
        pre = TrainConfig.from_dict(PRESETS[name].pretrain)
        assert (pre.weight_decay, pre.decay_groups, pre.clip_every) == (0.01, "all", "micro-batch")
        stage2 = TrainConfig.from_dict(PRESETS[name].train)
        assert (stage2.clip_every, stage2.decay_groups) == ("step", "non-bias")
    mosi = PRESETS["mosi"]
    assert mosi.model_config(**mosi.pretrain_model).av_aug_p == 0.2 and mosi.model_config().av_aug_p == 0.3


def test_decay_groups_all_decays_biases_too():
    from models.nn.av_pretrain import AVPretrainModel
    from models.training.loop import parameter_groups

    model = AVPretrainModel(ModelConfig(d_audio=7, d_vision=5, av_pool_len=10))
    (group,) = parameter_groups(model, 0.01, "all")
    assert group["weight_decay"] == 0.01 and len(group["params"]) == len(list(model.parameters()))
    groups = parameter_groups(model, 0.01, "non-bias")
    assert any(g["weight_decay"] == 0.0 and g["params"] for g in groups)  # biases exempt


@pytest.mark.parametrize("every,calls", [("micro-batch", 3), ("step", 1)])
def test_clipping_runs_after_every_micro_batch(monkeypatch, tmp_path, every, calls):
    """48 clips / batch 16 = 3 micro-batches, grad_accum 2 → floor(3/2) = 1 optimizer step: 3 clips by micro-batch, 1 by step."""
    import models.training.loop as training
    from models.config import TrainConfig
    from models.data.batching import encode_split
    from models.data.sample import make_sample_dataset
    from models.nn.av_pretrain import AVPretrainModel

    data = make_sample_dataset(n_train=48, n_valid=16, n_test=16, seed=3)
    encoded = {k: encode_split(v, None, 8, None) for k, v in data.splits.items()}
    seen = []
    real_clip = training.clip_gradients

    exceeded = []

    def spy(params, mode, threshold):
        params = [p for p in params if p.grad is not None]
        seen.append(sum(float(p.grad.abs().sum()) for p in params))
        before = [p.grad.clone() for p in params]
        exceeded.append(max(float(g.abs().max()) for g in before) > threshold)
        real_clip(params, mode, threshold)
        # By value (each entry clamped; a norm clip would scale them all), on the gradients accumulated so far.
        assert mode == "value"
        for p, g in zip(params, before):
            assert torch.equal(p.grad, g.clamp(-threshold, threshold))

    monkeypatch.setattr(training, "clip_gradients", spy)
    torch.manual_seed(0)
    model = AVPretrainModel(PRESETS["sample"].model_config(d_audio=33, d_vision=16, av_aug="none"))
    config = TrainConfig(
        lr=1e-3,
        batch_size=16,
        grad_accum=2,
        max_epochs=1,
        clip_mode="value",
        clip_threshold=1e-3,
        clip_scope="all",
        clip_every=every,
        schedule="plateau",
        warmup_epochs=0.0,
    )
    training.fit(model, encoded["train"], encoded["valid"], config, data.scheme, tmp_path, seed=0)
    assert len(seen) == calls and all(s > 0 for s in seen)  # each on gradients that exist
    assert all(exceeded)  # each call had gradients to clip (the threshold binds)


def test_a_config_saved_before_the_reference_forms_loads_as_it_was_trained():
    """A saved config without the newer keys keeps the forms its model computed; a full one is unchanged."""
    saved = ModelConfig().to_dict()
    for key in ("ffw_init", "mlp_form", "lora_init", "av_batchnorm_at", "av_positions", "av_readout"):
        del saved[key]
    old = ModelConfig.from_dict(saved)
    assert (old.ffw_init, old.mlp_form, old.lora_init) == ("copy-lm", "swiglu", "peft")
    assert (old.av_batchnorm_at, old.av_positions, old.av_readout) == ("raw", "vaswani", "mean")
    assert ModelConfig.from_dict(ModelConfig().to_dict()) == ModelConfig()
    assert PRESETS["mosi"].model_config().mlp_form == "reference"
