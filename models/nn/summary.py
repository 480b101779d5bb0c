"""Parameter counts per component, for `deepmlf describe` and for checking parity with the paper."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

# Component name → attribute prefixes on DeepMLF (order = display order).
COMPONENTS = {
    "av_encoder": ("av_encoder.",),
    "fusion_tokens": ("fusion_tokens",),
    "mm_blocks": ("mm_blocks.",),
    "heads": ("task_head.", "text_head.", "av_head.", "fusion_head."),
    "frozen_lm": ("lm.",),
}


@dataclass(frozen=True)
class ParamCount:
    total: int
    trainable: int


def count_parameters(model: nn.Module) -> dict[str, ParamCount]:
    """Total and trainable parameters per DeepMLF component, plus "all".

    Tied weights (GPT-2's lm_head = wte) are counted once, as
    `named_parameters` yields each tensor once.
    """
    totals = {name: [0, 0] for name in COMPONENTS}
    for param_name, p in model.named_parameters():
        for component, prefixes in COMPONENTS.items():
            if param_name.startswith(prefixes):
                totals[component][0] += p.numel()
                totals[component][1] += p.numel() if p.requires_grad else 0
                break
        else:
            raise ValueError(f"parameter {param_name} belongs to no component; add it to COMPONENTS")
    counts = {k: ParamCount(*v) for k, v in totals.items()}
    counts["all"] = ParamCount(sum(c.total for c in counts.values()), sum(c.trainable for c in counts.values()))
    return counts


def per_block_parameters(model: nn.Module) -> dict[int, ParamCount]:
    """Parameters of each MM block, keyed by the LM layer it follows."""
    return {
        int(layer): ParamCount(
            sum(p.numel() for p in block.parameters()), sum(p.numel() for p in block.parameters() if p.requires_grad)
        )
        for layer, block in model.get_submodule("mm_blocks").named_children()
    }


def parameter_summary(config) -> dict:
    """Parameter counts of the DeepMLF a `ModelConfig` builds, on the meta device (no weights loaded).

    {"lm_layers", "d_model", "parameters": {component: {total, trainable}}, "mm_block_parameters":
    {layer: total}}; {"parameters": None, "parameters_unavailable": reason} when the LM's config is
    not found (not local, not cached, not in the built-in table).
    """
    from models.errors import ModelNotAvailableError
    from models.nn.deepmlf import DeepMLF

    try:
        model, _ = DeepMLF.from_config(config, random_init=True, meta=True)
    except ModelNotAvailableError as exc:
        return {"parameters": None, "parameters_unavailable": str(exc)}
    counts = count_parameters(model)
    return {
        "lm_layers": model.lm.n_layers,
        "d_model": model.lm.d_model,
        "parameters": {k: {"total": v.total, "trainable": v.trainable} for k, v in counts.items()},
        "mm_block_parameters": {str(k): v.total for k, v in per_block_parameters(model).items()},
    }
