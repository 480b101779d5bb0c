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
        int(layer): ParamCount(sum(p.numel() for p in block.parameters()),
                               sum(p.numel() for p in block.parameters() if p.requires_grad))
        for layer, block in model.get_submodule("mm_blocks").named_children()
    }
