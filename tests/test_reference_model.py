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
        for bias, lm_bias, bound in ((ffw.c_fc.bias, lm_mlp.c_fc.bias, 1 / 8), (ffw.c_proj.bias, lm_mlp.c_proj.bias, 1 / 16)):
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
