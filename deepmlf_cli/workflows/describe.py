"""`deepmlf describe`: a preset's fully resolved recipe and the parameter counts of the model it builds."""

from __future__ import annotations

from typing import Any


def resolved_recipe(chosen, config) -> dict[str, Any]:
    """Every field of the model, of DeepMLF training and of AV pretraining, defaults filled in, and the
    same as rules in words: the model's (`model_rules`), training's and pretraining's (`procedure`)."""
    from models.config import TrainConfig
    from models.model_rules import describe_av_readout, describe_av_rules, describe_model_rules
    from models.training.procedure import describe_procedure

    pretrain_config = config.replace(**chosen.pretrain_model)
    pretrain_model = pretrain_config.to_dict()
    model = config.to_dict()
    train, pretrain = TrainConfig.from_dict(chosen.train), TrainConfig.from_dict(chosen.pretrain)
    return {
        "preset": chosen.name,
        "description": chosen.description,
        "notes": list(chosen.notes),
        "model": model,
        "train": train.to_dict(),
        # How the model's parts start and compute, in words (FFW copy, MLP form, LoRA, AV BatchNorm, positions).
        "model_rules": describe_model_rules(config),
        # The same settings as rules in words (steps, warm-up, decay, batching, precision, targets, selection),
        # with the step counts of the paper dataset's train split.
        "procedure": describe_procedure(train, config, chosen.train_clips),
        "pretrain": {
            "train": pretrain.to_dict(),
            "procedure": {
                **describe_procedure(pretrain, train_clips=chosen.train_clips),
                "readout": describe_av_readout(pretrain_config),
                # The AV encoder's rules where pretraining's differ (MOSI: audio BatchNorm in pretraining only).
                **{k: v for k, v in describe_av_rules(pretrain_config).items() if v != describe_av_rules(config)[k]},
            },
            # Only what differs from the DeepMLF model (the AV settings must match for loading).
            "model": {k: v for k, v in pretrain_model.items() if model[k] != v},
        },
    }


def describe_preset(
    preset: str,
    lm: str | None = None,
    mm_layers: str | None = None,
    n_fusion: int | None = None,
    ffw: str | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the preset's resolved recipe with the overrides given, parameter counts of its model).

    `mm_layers` as text (5..11, 3,5,7); None means "the preset's". Loads no weights.
    """
    from models.config import get_preset, parse_layer_list
    from models.nn.summary import parameter_summary

    overrides = {
        "lm": lm or None,
        "mm_layers": parse_layer_list(mm_layers) if mm_layers is not None else None,
        "n_fusion": n_fusion,
        "ffw_mode": ffw,
    }
    chosen = get_preset(preset)
    config = chosen.model_config(**{k: v for k, v in overrides.items() if v is not None})
    return resolved_recipe(chosen, config), parameter_summary(config)
