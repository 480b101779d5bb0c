"""The training procedure a TrainConfig (with its ModelConfig) runs, as one line per rule.

`deepmlf describe` shows these; each line is built from the config's values,
so it stays true for any preset or override. (How the model itself starts:
models.model_rules.)
"""

from __future__ import annotations

from models.config import ModelConfig, TrainConfig

BATCHING_RULES = {
    "window": "a seeded uniform shuffle every epoch (as the reference draws its batches), cut into windows "
    "of one optimizer step's clips (ranks x grad_accum x batch); each window regrouped into length-sorted "
    "micro-batches, so every step sums gradients over the clips the shuffle gives it; loss sums divided by "
    "the window's means per micro-batch. Still different from shuffle: BatchNorm's per-micro-batch "
    "statistics, the LM loss's divisor (the window's mean target count, not each micro-batch's own) and "
    "the dropout and SeqAug draws",
    "shuffle": "a seeded uniform shuffle every epoch cut in order, no drop_last (the reference's procedure; "
    "not its random stream)",
    "bucketed": "global length buckets (pools of 50 batches, sorted, batches shuffled): fastest; it changes "
    "which clips share an optimizer step",
}


def _precision(lm_dtype: str) -> str:
    return {
        "float32": "float32 on every device (the reference's use_bf16: false)",
        "auto": "bf16 autocast with a bf16 LM on CUDA, float32 on a CPU (the reference's use_bf16: true)",
        "bfloat16": "bf16 LM under bf16 autocast on every device (an opt-in)",
    }[lm_dtype]


def _schedule(train: TrainConfig) -> dict[str, str]:
    steps = (
        f"floor(micro-batches / {train.grad_accum}) optimizer steps an epoch (micro-batches = "
        f"ceil(ceil(N / {train.batch_size}) / ranks)); the remainder micro-batches run forward and backward, "
        f"their gradients are dropped (no partial step)"
    )
    if train.schedule == "plateau":
        return {
            "steps_per_epoch": steps,
            "lr": f"{train.lr:g}, x{train.plateau_factor:g} after {train.plateau_patience} epochs without a "
            f"better validation score",
        }
    warmup = (
        f"lr = {train.lr:g}·k/W at optimizer step k < W (W = {train.warmup_epochs:g} epoch(s) of steps; step 0 at lr 0)"
        if train.warmup_epochs
        else "no warm-up"
    )
    return {
        "steps_per_epoch": steps,
        "warmup": warmup,
        "lr": f"then cosine with warm restarts to {train.min_lr:g}, T_0 = ({train.cosine_period_epochs} + 1)"
        f"·steps_per_epoch − W, per optimizer step (a period, not a stop)",
    }


def _at_train_size(train: TrainConfig, n_clips: int) -> str:
    from models.training.schedule import (
        epoch_schedule,
        micro_batches_per_epoch,
    )  # integer maths; the module holds torch

    micro = micro_batches_per_epoch(n_clips, train.batch_size)
    steps, warmup, period = epoch_schedule(
        n_clips, train.batch_size, train.grad_accum, train.warmup_epochs, train.cosine_period_epochs
    )
    text = f"{n_clips} training clips on one process: {micro} micro-batches, {steps} optimizer steps an epoch"
    if train.schedule == "cosine":
        text += f", W = {warmup}, T_0 = {period}"
    return text


def describe_procedure(
    train: TrainConfig, model: ModelConfig | None = None, train_clips: int | None = None
) -> dict[str, str]:
    """Rule name → what this configuration does, in words with its numbers.

    `model`: the DeepMLF model trained (its LM-loss targets); None for AV pretraining, which
    holds no LM (so no bf16 weights: it computes in float32). `train_clips`: a training split's
    size (a paper preset's dataset), for the step counts it gives.
    """
    decay = {
        "non-bias": f"weight decay {train.weight_decay:g} on every trainable parameter whose name lacks "
        f"'bias' (norms, gates, fusion tokens decay); 0 on biases",
        "all": f"weight decay {train.weight_decay:g} on every trainable parameter, biases included",
    }
    clipped = "every trainable parameter" if train.clip_scope == "all" else "all but the AV encoder"
    when = "after every micro-batch's backward" if train.clip_every == "micro-batch" else "once before each step"
    accumulate = "summed" if train.clip_mode == "value" else "averaged"
    selection = {
        "reference": f"mean of per-batch validation L1 means (batches of {train.batch_size}, split order) "
        f"rounded to 4 decimals; a new best must improve by more than 1e-6",
        "l1": "plain validation L1; any improvement is a new best",
    }[train.selection]
    rules = {
        **_schedule(train),
        **({"at_train_size": _at_train_size(train, train_clips)} if train_clips else {}),
        "optimizer": f"AdamW betas ({train.beta1:g}, {train.beta2:g}); batch {train.batch_size} x "
        f"{train.grad_accum} accumulated ({accumulate})",
        "decay_groups": decay[train.decay_groups],
        "clipping": f"by {train.clip_mode} at {train.clip_threshold:g} on {clipped}, {when}",
        "batching": f"{train.batching}: {BATCHING_RULES[train.batching]}",
        "precision": (
            f"{train.lm_dtype}: {_precision(train.lm_dtype)}"
            if model is not None
            else "float32: the AV encoder alone holds no LM, so no bf16 weights"
        ),
        "selection": f"{train.selection}: {selection}; early stop after {train.patience} epochs without one; "
        f"the best state is reloaded for test",
    }
    if model is not None and model.lambda_lm:
        rules["lm_targets"] = (
            f"next-token cross-entropy (weight {model.lambda_lm:g}) on every real token; the last "
            f"real token's target is the padding id (GPT-2: EOS; BERT tokenizers: [PAD] after "
            f"[SEP]), or id 0 when the transcript fills {model.max_text_tokens} tokens"
        )
    elif model is not None:
        rules["lm_targets"] = "no LM loss (lambda_lm 0)"
    return rules
