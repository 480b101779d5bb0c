"""How a ModelConfig's parts start and compute, as one line per rule (`deepmlf describe`'s model_rules).

The reference's forms and ours are told apart here in words: the MM blocks' FFW
copy and MLP form, LoRA's A, the AV encoder's BatchNorm and positions, the
cross-attention's dropout, and AV pretraining's readout. Each line picks its
text from the config's values, so it stays true for any preset or override.
"""

from __future__ import annotations

from models.config import AVBatchNormAt, AVPositions, AVReadout, FFWInit, FFWMode, LoRAInit, MLPForm, ModelConfig


def _ffw_rules(model: ModelConfig) -> dict[str, str]:
    if model.ffw_mode is FFWMode.NONE:
        return {"ffw_init": "the MM blocks have no FFW (ffw_mode none)"}
    if model.ffw_init is FFWInit.REFERENCE:
        init = (
            "each MM block's FFW copies its LM layer's MLP weight matrices only; its biases (where the MLP has "
            "them) keep nn.Linear's default U(±1/√fan_in); GPT-2's tanh GELU becomes nn.GELU (erf form)"
        )
    else:
        init = "each MM block's FFW is an exact copy of its LM layer's MLP (weights, biases, its own activation)"
    form = (
        "a Llama-family FFW computes down(act(gate(x)) + up(x)), the reference's sum (SwiGLU is the LM's own)"
        if model.mlp_form is MLPForm.REFERENCE
        else "a Llama-family FFW computes down(act(gate(x)) · up(x)), SwiGLU, the LM's own form"
    )
    rules = {
        "ffw_init": f"{model.ffw_init.value}: {init}",
        "mlp_form": f"{model.mlp_form.value}: {form}; GPT-2's MLP has one form and ignores this",
    }
    if model.ffw_mode is FFWMode.LORA:
        bound = "U(±1/√r), the reference's own LoRA" if model.lora_init is LoRAInit.REFERENCE else "U(±1/√in), PEFT's"
        rules["lora_init"] = (
            f"{model.lora_init.value}: LoRA r {model.lora_r}, alpha {model.lora_alpha} on the FFW; A ~ {bound}; B = 0"
        )
    return rules


def describe_av_rules(model: ModelConfig) -> dict[str, str]:
    """The AV encoder's BatchNorm placement and positions, in words (the rules AV pretraining shares)."""
    where = "after the length-aware pooling" if model.av_batchnorm_at is AVBatchNormAt.POOLED else "on raw frames"
    batchnorm = f"BatchNorm on {' and '.join(model.av_input_batchnorm)} {where}" if model.av_input_batchnorm else "none"
    positions = (
        "[sin | cos] halves, counted from 1 over the steps whose projected first feature (proj(x)[..., 0]) is "
        "non-zero; the others get the zero embedding"
        if model.av_positions is AVPositions.FAIRSEQ
        else "Vaswani's interleaved table, positions 0, 1, … on every step"
    )
    return {"av_batchnorm": batchnorm, "av_positions": f"{model.av_positions.value}: {positions}"}


def describe_model_rules(model: ModelConfig) -> dict[str, str]:
    """Rule name → how this DeepMLF model's parts start and compute (the FFW copy, MLP form, LoRA, AV
    BatchNorm, positions, cross-attention dropout), in words."""
    if not model.mm_dropout:
        dropout = "none in the cross-attention"
    else:
        dropout = f"{model.mm_dropout:g} after the cross-attention's output projection" + (
            " and on its attention weights (ours)" if model.mm_attention_dropout else " only"
        )
    return {**_ffw_rules(model), **describe_av_rules(model), "mm_dropout": dropout}


def describe_av_readout(model: ModelConfig) -> str:
    """What AV pretraining's head reads, and what of it stage 2 keeps."""
    if model.av_readout is AVReadout.LAST:
        return (
            "last: clf(fusion(cat)[:, -1]), the Fusion FFW's output at each clip's last valid step, no LayerNorm; "
            "stage 2 loads the encoder (less any BatchNorm it has not) and builds a fresh LayerNorm and AV head"
        )
    return "mean: av_head(⟨LayerNorm(z)⟩), as stage 2 reads it; the LayerNorm and head carry over to stage 2"
