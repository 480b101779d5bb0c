"""Every size and switch of DeepMLF and of its training in frozen dataclasses, plus the paper's presets.

The config is the single source of truth for building a model: a checkpoint
stores it as JSON and rebuilds with `ModelConfig.from_dict(saved)`.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import asdict, dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from models.errors import ConfigError


class Gating(str, Enum):
    """How α gates the MM block's two residual branches."""

    SIGMOID = "sigmoid"  # σ(α), α=0 → gate 0.5 (paper default)
    TANH = "tanh"  # tanh(α), α=0 → closed: the block starts as the identity
    NONE = "none"  # no gate: the branches are added as they are


class FFWMode(str, Enum):
    """How the MM block's feed-forward (a copy of the LM layer's MLP) trains."""

    FULL = "full"  # every weight of the copy trains
    LORA = "lora"  # the copy is frozen; LoRA adapters train (peft)
    NONE = "none"  # no FFW in the block (fusion-block ablation)


class FFWInit(str, Enum):
    """How the MM block's FFW copy starts from the LM layer's MLP."""

    # The reference: the weight matrices copied; biases keep nn.Linear's default
    # initialisation; GPT-2's tanh GELU becomes nn.GELU (erf form).
    REFERENCE = "reference"
    # An exact copy (weights, biases, the LM's own activation): the FFW branch starts as the LM layer's MLP.
    COPY_LM = "copy-lm"


class MLPForm(str, Enum):
    """What a Llama-family MM-block FFW computes (GPT-2's MLP has one form, so it ignores this)."""

    REFERENCE = "reference"  # down(act(gate(x)) + up(x)): the reference's Llama MLP, a sum (the paper's MOSI)
    SWIGLU = "swiglu"  # down(act(gate(x)) · up(x)): SwiGLU, the LM's own form


class LoRAInit(str, Enum):
    """How LoRA's A starts (B always starts at zero, so the adapted FFW starts as the copy)."""

    # The reference's own LoRA: A of shape (in, r), kaiming-uniform with a=√5, i.e. U(±1/√r).
    REFERENCE = "reference"
    PEFT = "peft"  # PEFT's default: A as a Linear(in → r), U(±1/√in)


class FusionInputs(str, Enum):
    """Which tokens are the queries of the MM block's cross-attention."""

    FUSION = "fusion"  # the learnable fusion tokens (paper)
    TEXT = "text"  # the text tokens (ablation)
    BOTH = "both"  # text and fusion tokens (ablation)


class Augmentation(str, Enum):
    """Embedding regularisers the paper compares (training only)."""

    SEQAUG = "seqaug"
    NOISE = "noise"
    DROPOUT = "dropout"
    NONE = "none"


class SeqAugMode(str, Enum):
    """How SeqAug picks its permutation (the other regularisers ignore this)."""

    # The reference: text — one permutation shared by the batch over all (padded)
    # positions; audio/vision — on the raw frames before BatchNorm and pooling,
    # one permutation per batch.
    REFERENCE = "reference"
    # One permutation per sample over its real steps only; audio/vision after pooling.
    PER_SAMPLE = "per-sample"


class AVBatchNormAt(str, Enum):
    """Where the AV encoder's BatchNorm acts (for the modalities `av_input_batchnorm` lists)."""

    POOLED = "pooled"  # after the temporal pooling, on the shared grid's valid steps (the reference)
    RAW = "raw"  # on the raw frames, before pooling


class AVPositions(str, Enum):
    """The AV encoder's sinusoidal positions."""

    # fairseq's table (the reference): [sin | cos] halves, frequencies 10000^(-i/(h-1)), positions
    # counted from padding_idx + 1 = 1 over the steps whose first input feature is non-zero; a
    # step whose first feature is exactly 0 is padding and gets the zero embedding.
    FAIRSEQ = "fairseq"
    VASWANI = "vaswani"  # interleaved sin/cos, positions 0, 1, … on every step


class AVReadout(str, Enum):
    """What AV pretraining's head reads (stage 2 always reads ⟨LayerNorm(z)⟩ with its own head)."""

    # The reference: clf(fusion(cat)[:, -1]), the Fusion FFW's output at the last (valid) step,
    # no LayerNorm; stage 2 builds a fresh LayerNorm and AV head: only the encoder carries over.
    LAST = "last"
    MEAN = "mean"  # av_head(⟨LayerNorm(z)⟩), as stage 2 reads it; the LayerNorm and head carry over


class FusionPositions(str, Enum):
    """The position ids the fusion tokens get (text positions always count real tokens only)."""

    FIXED = "fixed"  # max_text_tokens … max_text_tokens+n_f−1, as the reference (fixed-length text)
    AFTER_TEXT = "after-text"  # right after each clip's last real text token


# The three modalities, in the order every table and report lists them; the audio-visual
# pair is the part the AV encoder reads. (extractors/ keeps its own copy, since it may not
# import models; tests/test_structure.py checks the two agree.)
MODALITIES: tuple[str, ...] = ("text", "audio", "vision")
AV_MODALITIES: tuple[str, ...] = MODALITIES[1:]

# Fields given as strings (JSON, the CLI) become these enums in ModelConfig.__post_init__.
_ENUM_FIELDS: dict[str, type[Enum]] = {
    "gating": Gating,
    "ffw_mode": FFWMode,
    "fusion_inputs": FusionInputs,
    "text_aug": Augmentation,
    "av_aug": Augmentation,
    "seqaug_mode": SeqAugMode,
    "fusion_positions": FusionPositions,
    "ffw_init": FFWInit,
    "av_batchnorm_at": AVBatchNormAt,
    "av_positions": AVPositions,
    "av_readout": AVReadout,
    "mlp_form": MLPForm,
    "lora_init": LoRAInit,
}


def _batchnorm_modalities(value: Any) -> tuple[str, ...]:
    """`av_input_batchnorm` as a tuple of modality names; a bool (older configs) means both or none."""
    if isinstance(value, bool):
        return AV_MODALITIES if value else ()
    if isinstance(value, str):
        value = [value] if value else []
    names = tuple(str(v) for v in value)
    bad = [n for n in names if n not in AV_MODALITIES]
    if bad:
        raise ConfigError(
            f"av_input_batchnorm={list(names)}: {bad[0]!r} is not a modality; "
            f"list some of {list(AV_MODALITIES)} (or none)"
        )
    return tuple(m for m in AV_MODALITIES if m in names)


@dataclass(frozen=True)
class ModelConfig:
    """All sizes and switches of a DeepMLF model (docs/architecture.md)."""

    # --- language model ---
    lm: str = "gpt2"  # hub id or local directory of a causal LM (frozen, never copied into checkpoints)
    lm_revision: str | None = None  # the hub commit of `lm` it trains on (set by training; None: a directory)
    max_text_tokens: int = 50  # transcripts are cut to this many tokens, keeping the start (the reference: 50, SIMS 39)
    lm_dropout: bool = True  # the reference trains with the frozen LM's own dropout active
    # --- audio-visual encoder ---
    d_audio: int = 33  # raw audio feature size (SIMS librosa recipe: 33)
    d_vision: int = 709  # raw vision feature size (SIMS OpenFace2: 709)
    d_av: int = 30  # width of the AV encoder and of the context the MM blocks attend to
    av_pool_len: int = 55  # time steps after length-aware pooling (50 MOSI/MOSEI, 55 SIMS)
    av_layers: int = 3
    av_heads: int = 6
    av_ffn: int = 120
    av_dropout: float = 0.1
    # Modalities that get BatchNorm (SIMS: both; MOSI: audio in pretraining, none in stage 2;
    # MOSEI: none). A bool (older configs) means both or none.
    av_input_batchnorm: tuple[str, ...] = AV_MODALITIES
    av_batchnorm_at: AVBatchNormAt = AVBatchNormAt.POOLED  # after pooling (the reference) or on raw frames
    av_positions: AVPositions = AVPositions.FAIRSEQ
    av_readout: AVReadout = AVReadout.LAST  # AV pretraining's readout (AVReadout)
    # --- fusion ---
    mm_layers: tuple[int, ...] = (5, 6, 7, 8, 9, 10, 11)  # 0-based LM layers followed by an MM block
    n_fusion: int = 20  # learnable fusion tokens appended after the text
    mm_heads: int = 16  # cross-attention heads (the reference scales by 1/√d_model)
    mm_dropout: float = 0.1  # after the cross-attention output projection (and on its weights: below)
    # Dropout on the cross-attention's weights too (ours); False: only after its output projection,
    # the one dropout the reference is known to apply (docs/recipe.md, "Where we deviate on purpose").
    mm_attention_dropout: bool = True
    gating: Gating = Gating.SIGMOID
    ffw_mode: FFWMode = FFWMode.FULL
    ffw_init: FFWInit = FFWInit.REFERENCE  # copy-lm: an exact copy of the LM layer's MLP
    mlp_form: MLPForm = MLPForm.REFERENCE  # Llama-family FFW copies only; swiglu is the LM's own form
    lora_r: int = 512
    lora_alpha: int = 8192
    lora_dropout: float = 0.0  # dropout on the LoRA branch's input (the reference: 0.05 on MOSI)
    lora_init: LoRAInit = LoRAInit.REFERENCE  # A ~ U(±1/√r) as the reference; peft: U(±1/√in)
    fusion_inputs: FusionInputs = FusionInputs.FUSION
    fusion_positions: FusionPositions = FusionPositions.FIXED
    # --- heads and loss ---
    head_hidden: int = 64
    lambda_f: float = 1.0  # fusion-token auxiliary heads
    lambda_av: float = 1.0  # AV auxiliary head
    lambda_t: float = 1.0  # text auxiliary head
    lambda_lm: float = 1.0  # next-token loss on the transcript through the frozen lm_head
    # --- augmentation (training only) ---
    text_aug: Augmentation = Augmentation.SEQAUG
    text_aug_p: float = 0.3  # fraction of feature dims taken from the permuted sequence
    text_aug_apply: float = 0.25  # probability that a batch is augmented at all
    av_aug: Augmentation = Augmentation.SEQAUG
    av_aug_p: float = 0.2  # 0.3 on MOSI; applied every step
    seqaug_mode: SeqAugMode = SeqAugMode.REFERENCE

    def __post_init__(self) -> None:
        for name, enum_type in _ENUM_FIELDS.items():
            value = getattr(self, name)
            if not isinstance(value, enum_type):
                try:
                    object.__setattr__(self, name, enum_type(value))
                except ValueError:
                    choices = ", ".join(e.value for e in enum_type)
                    raise ConfigError(f"{name}={value!r} is not valid; choose one of: {choices}") from None
        object.__setattr__(self, "mm_layers", tuple(int(i) for i in self.mm_layers))
        object.__setattr__(self, "av_input_batchnorm", _batchnorm_modalities(self.av_input_batchnorm))
        if len(set(self.mm_layers)) != len(self.mm_layers):
            raise ConfigError(f"mm_layers {list(self.mm_layers)} repeats a layer; list each layer once")
        if self.n_fusion < 0:
            raise ConfigError(f"n_fusion={self.n_fusion} must be >= 0")
        if self.n_fusion == 0 and self.fusion_inputs is FusionInputs.FUSION and self.mm_layers:
            raise ConfigError("n_fusion=0 leaves the MM blocks no queries; use n_fusion >= 1 or fusion_inputs=text")
        if self.d_av % self.av_heads:
            raise ConfigError(f"d_av={self.d_av} must be divisible by av_heads={self.av_heads}")
        for name in ("text_aug_p", "text_aug_apply", "av_aug_p", "av_dropout", "mm_dropout", "lora_dropout"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"{name}={getattr(self, name)} must be within [0, 1]")
        if min(self.d_audio, self.d_vision, self.av_pool_len, self.max_text_tokens) < 1:
            raise ConfigError("d_audio, d_vision, av_pool_len and max_text_tokens must be >= 1")

    # --- JSON round trip ---
    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (enums as their values, tuples as lists)."""
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Enum):
                value = value.value
            elif isinstance(value, tuple):
                value = list(value)
            out[f.name] = value
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """Rebuild from `to_dict()` output; unknown keys are an error that names them.

        A saved config lacking a key added since is rebuilt with what the code that
        saved it computed (`_BEFORE_KEY`), not with today's default: a checkpoint
        trained before the reference's forms must load as the model it was.
        """
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown model config keys {unknown}; valid keys: {sorted(known)}")
        return cls(**{**{k: v for k, v in _BEFORE_KEY.items() if k not in data}, **data})

    def replace(self, **changes: Any) -> ModelConfig:
        """A copy with some fields changed (validated again)."""
        return ModelConfig.from_dict({**self.to_dict(), **changes})

    def save(self, path: Path) -> None:
        from models.io import atomic_write

        atomic_write(Path(path), json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> ModelConfig:
        return cls.from_dict(json.loads(Path(path).read_text()))


# What models saved before each of these keys existed computed (ModelConfig.from_dict).
_BEFORE_KEY: dict[str, Any] = {
    "ffw_init": FFWInit.COPY_LM,
    "mlp_form": MLPForm.SWIGLU,
    "lora_init": LoRAInit.PEFT,
    "av_batchnorm_at": AVBatchNormAt.RAW,
    "av_positions": AVPositions.VASWANI,
    "av_readout": AVReadout.MEAN,
}

# Training choices (TrainConfig checks them; the schedule and device code act on them).
CLIP_MODES = ("value", "norm")
CLIP_SCOPES = ("non-av", "all")
CLIP_EVERY = ("step", "micro-batch")  # clip before each optimizer step, or after every micro-batch's backward
DECAY_GROUPS = ("non-bias", "all")  # weight decay on every parameter whose name lacks "bias", or on all
# Which epoch is best: "reference" = the mean of per-batch validation L1 means (batches of batch_size
# in the split's order) rounded to 4 decimals, better only by more than 1e-6; "l1" = plain L1, any gain.
SELECTION_RULES = ("reference", "l1")
# How training batches are cut (models.data.batching.training_batches): "window" = a seeded
# shuffle as the reference's, each optimizer step's clips regrouped by length (the same steps, less padding);
# "shuffle" = the reference's procedure; "bucketed" = global length pools (fastest; other steps).
BATCHINGS = ("window", "shuffle", "bucketed")
FEATURE_SCALINGS = ("zscore", "none")  # audio and vision standardised with train statistics, or raw
TEXT_PADDINGS = ("batch", "fixed")  # text padded to the batch's longest, or to max_text_tokens (every split)
SELECTION_TOLERANCE = 1e-6  # the reference's: a new best must improve by more than this
# The frozen LM's weights, hence the run's precision (bf16 autocast exactly with a bf16 LM);
# "auto" = bfloat16 on CUDA, float32 elsewhere. Each preset sets its default (the reference's use_bf16).
LM_DTYPES = ("auto", "float32", "bfloat16")


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings (docs/recipe.md): what a run computes, not where it runs."""

    lr: float = 1e-4
    weight_decay: float = 0.1  # preset-dependent: 0.005 MOSEI base, 0.1 MOSEI large and SIMS, 0.001 MOSI
    beta1: float = 0.9
    beta2: float = 0.95
    batch_size: int = 32
    grad_accum: int = 8  # optimizer step every `grad_accum` batches
    max_epochs: int | None = None  # an optional cap; None trains until early stopping (the reference)
    patience: int = 10  # epochs without a better validation L1 before stopping
    warmup_epochs: float = 1.0  # linear warm-up, per optimizer step
    min_lr: float = 1e-7  # cosine floor (eta_min)
    # Cosine with warm restarts: the period is (E+1)·steps per epoch − warm-up steps,
    # E = this (the reference's `max_epochs`: 15 MOSEI, 20 MOSEI large, 100 SIMS, 150 MOSI).
    cosine_period_epochs: int = 100
    schedule: str = "cosine"  # "cosine" (DeepMLF) or "plateau" (AV pretraining: reduce on plateau)
    plateau_factor: float = 0.1  # reduce-on-plateau: lr × factor ...
    plateau_patience: int = 10  # ... after this many epochs without a better validation L1
    # "value": clamp every gradient entry to ±clip_threshold, over gradients *summed*
    # across the accumulated batches (the reference); "norm": clip the global norm,
    # over the *mean* of the accumulated batches' gradients.
    clip_mode: str = "value"
    clip_threshold: float = 5.0
    clip_scope: str = "non-av"  # "non-av": all trainable parameters but the AV encoder (the reference); "all"
    # "step": once before each optimizer step; "micro-batch": after every micro-batch's backward, on
    # the gradients accumulated so far (the reference's AV pretraining).
    clip_every: str = "step"
    # "non-bias": parameters whose name contains "bias" get no decay (the reference's fine-tuning
    # groups; norms, gates and fusion tokens decay); "all": every parameter decays,
    # biases included (the reference's AV pretraining: torch AdamW's default on model.parameters()).
    decay_groups: str = "non-bias"
    selection: str = "reference"  # how the best epoch is chosen (SELECTION_RULES)
    batching: str = "window"  # how training batches are cut (BATCHINGS)
    # Deliberate deviations kept switchable so their effect can be measured (`deepmlf study deviations`):
    # "zscore": audio/vision standardised with train statistics; "none": raw values (the reference).
    feature_scaling: str = "zscore"
    text_padding: str = "batch"  # text padded to each batch's longest; "fixed": to max_text_tokens (the reference)
    eval_batch_size: int = 64
    # Frozen LM weights and so the precision: "auto" = bfloat16 on CUDA, float32 elsewhere. The paper
    # presets set the reference's use_bf16: float32 for mosei, mosei-large and sims, auto for mosi.
    lm_dtype: str = "auto"
    checkpoint_layers: bool = False  # recompute each frozen LM layer in backward (activation memory)
    prefix_cache_gib: float = 2.0  # per-clip text states reused across epochs (docs/architecture.md §10); 0 = off
    compile: bool = False  # torch.compile the MM blocks and the AV encoder

    def __post_init__(self) -> None:
        choices = {
            "schedule": ("cosine", "plateau"),
            "clip_mode": CLIP_MODES,
            "clip_scope": CLIP_SCOPES,
            "clip_every": CLIP_EVERY,
            "decay_groups": DECAY_GROUPS,
            "selection": SELECTION_RULES,
            "batching": BATCHINGS,
            "feature_scaling": FEATURE_SCALINGS,
            "text_padding": TEXT_PADDINGS,
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ConfigError(f"{name}={getattr(self, name)!r}; choose one of: {', '.join(allowed)}")
        for name in (
            "lr",
            "batch_size",
            "grad_accum",
            "eval_batch_size",
            "cosine_period_epochs",
            "clip_threshold",
            "plateau_factor",
        ):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name}={getattr(self, name)} must be > 0")
        if self.max_epochs is not None and self.max_epochs <= 0:
            raise ConfigError(f"max_epochs={self.max_epochs} must be > 0 (or unset: train until early stopping)")
        if self.patience < 1 or self.plateau_patience < 0:
            raise ConfigError(f"patience={self.patience} must be >= 1 and plateau_patience >= 0")
        if self.lm_dtype not in LM_DTYPES:
            raise ConfigError(f"lm_dtype={self.lm_dtype!r}; choose one of {', '.join(LM_DTYPES)}")
        if self.prefix_cache_gib < 0:
            raise ConfigError(f"prefix_cache_gib={self.prefix_cache_gib} must be >= 0 (0 turns the cache off)")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        # Where a run runs is not what it computes: the device is an argument of training, not a
        # setting (run.json files written before it moved out still hold one).
        data = {k: v for k, v in data.items() if k != "device"}
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown training config keys {unknown}; valid keys: {sorted(known)}")
        return cls(**data)


@dataclass(frozen=True)
class Preset:
    """A named recipe: model fields plus the training recipe of both curriculum stages.

    `train` and `pretrain` are TrainConfig fields (above) for DeepMLF
    training and AV-encoder pretraining; `pretrain_model` holds the ModelConfig
    fields that differ in pretraining (the pool length, which has no weights).
    """

    name: str
    model: dict[str, Any]
    train: dict[str, Any]
    pretrain: dict[str, Any]
    pretrain_model: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    notes: tuple[str, ...] = field(default_factory=tuple)
    # The paper dataset's training split (clips in its MMSA file): `deepmlf describe` shows the step
    # counts it gives. None: no fixed dataset (the sample).
    train_clips: int | None = None

    @property
    def weight_decay(self) -> float:
        return float(self.train["weight_decay"])

    @property
    def av_pretrain_lr(self) -> float:
        return float(self.pretrain["lr"])

    def model_config(self, **overrides: Any) -> ModelConfig:
        return ModelConfig.from_dict({**ModelConfig().to_dict(), **self.model, **overrides})


# DeepMLF training as the reference runs it (docs/recipe.md): AdamW
# β=(0.9, 0.95), lr 1e-4, batch 32 × 8 accumulated (gradients summed), one
# warm-up epoch, cosine with warm restarts to 1e-7 every `cosine_period_epochs`
# (not a cap: training ends by early stopping), clip by value 5.0 on everything
# but the AV encoder. Each preset adds its weight decay, period, patience and precision (lm_dtype).
_REFERENCE_TRAIN: dict[str, Any] = dict(
    lr=1e-4,
    beta1=0.9,
    beta2=0.95,
    batch_size=32,
    grad_accum=8,
    max_epochs=None,
    warmup_epochs=1.0,
    min_lr=1e-7,
    schedule="cosine",
    clip_mode="value",
    clip_threshold=5.0,
    clip_scope="non-av",
)
# AV-encoder pretraining as the reference's `bienc` trainer runs it: AdamW(model.parameters(), lr)
# with torch's defaults (betas, weight decay 0.01 on every parameter, biases included: the trainer
# never reads its configs' decay), batch 32 × 4, reduce-on-plateau ×0.1, clip by value 1.0 after
# every micro-batch's backward, early stop 8; its shuffle exactly (no text to bucket by).
_REFERENCE_PRETRAIN: dict[str, Any] = dict(
    beta1=0.9,
    beta2=0.999,
    weight_decay=0.01,
    decay_groups="all",
    batch_size=32,
    grad_accum=4,
    max_epochs=None,
    warmup_epochs=0.0,
    schedule="plateau",
    plateau_factor=0.1,
    clip_mode="value",
    clip_threshold=1.0,
    clip_scope="all",
    clip_every="micro-batch",
    patience=8,
    batching="shuffle",
)

# Paper Table 1 with the reference configs (docs/architecture.md §9, docs/recipe.md). Feature
# sizes are those of the MMSA files; a dataset overrides them with its own.
# What both MOSEI presets read: the MMSA file's feature sizes, the pool length, no AV BatchNorm, 50 text tokens.
_MOSEI_DATA: dict[str, Any] = dict(d_audio=74, d_vision=35, av_pool_len=50, av_input_batchnorm=(), max_text_tokens=50)
_MOSEI_TRAIN_CLIPS = 16326  # the MMSA file's train split

PRESETS: dict[str, Preset] = {
    "mosei": Preset(
        name="mosei",
        train_clips=_MOSEI_TRAIN_CLIPS,
        description="CMU-MOSEI, GPT-2 base, 7 MM blocks",
        model=dict(
            lm="gpt2",
            mm_layers=(3, 5, 7, 8, 9, 10, 11),
            n_fusion=12,
            lambda_lm=1.1,
            text_aug_p=0.2,
            text_aug_apply=0.3,
            **_MOSEI_DATA,
        ),
        train=dict(_REFERENCE_TRAIN, weight_decay=0.005, cosine_period_epochs=15, patience=10, lm_dtype="float32"),
        pretrain=dict(_REFERENCE_PRETRAIN, lr=5e-3, plateau_patience=4),
        pretrain_model=dict(av_pool_len=50),
    ),
    "mosei-large": Preset(
        name="mosei-large",
        train_clips=_MOSEI_TRAIN_CLIPS,
        description="CMU-MOSEI, GPT-2 large, 5 MM blocks",
        model=dict(
            lm="gpt2-large",
            mm_layers=(7, 14, 21, 28, 35),
            n_fusion=12,
            lambda_lm=1.0,
            text_aug_p=0.3,
            text_aug_apply=0.25,
            **_MOSEI_DATA,
        ),
        train=dict(_REFERENCE_TRAIN, weight_decay=0.1, cosine_period_epochs=20, patience=10, lm_dtype="float32"),
        pretrain=dict(_REFERENCE_PRETRAIN, lr=5e-3, plateau_patience=4),
        pretrain_model=dict(av_pool_len=50),
    ),
    "sims": Preset(
        name="sims",
        train_clips=1368,
        description="CH-SIMS, Chinese GPT-2 base, 7 MM blocks",
        model=dict(
            lm="uer/gpt2-chinese-cluecorpussmall",
            mm_layers=(5, 6, 7, 8, 9, 10, 11),
            n_fusion=20,
            lambda_lm=1.0,
            text_aug_p=0.3,
            text_aug_apply=0.25,
            d_audio=33,
            d_vision=709,
            av_pool_len=55,
            av_input_batchnorm=("audio", "vision"),
            max_text_tokens=39,
        ),
        train=dict(_REFERENCE_TRAIN, weight_decay=0.1, cosine_period_epochs=100, patience=10, lm_dtype="float32"),
        pretrain=dict(_REFERENCE_PRETRAIN, lr=5e-4, plateau_patience=10),
        pretrain_model=dict(av_pool_len=39),
        notes=("the paper's text says 16 fusion tokens; the reference config uses 20",),
    ),
    "mosi": Preset(
        name="mosi",
        train_clips=1284,
        description="CMU-MOSI, SmolLM2-1.7B, 5 MM blocks with LoRA FFW",
        model=dict(
            lm="HuggingFaceTB/SmolLM2-1.7B",
            mm_layers=(11, 14, 17, 20, 23),
            n_fusion=8,
            lambda_f=0.4,
            lambda_av=0.8,
            lambda_t=0.8,
            lambda_lm=0.0,
            text_aug=Augmentation.NONE,
            ffw_mode=FFWMode.LORA,
            lora_r=512,
            lora_alpha=8192,
            lora_dropout=0.05,
            d_audio=5,
            d_vision=20,
            av_pool_len=50,
            av_aug_p=0.3,
            av_input_batchnorm=(),
            max_text_tokens=50,
            mlp_form=MLPForm.REFERENCE,  # the reference's Llama MLP: a sum, not SwiGLU's product
            lora_init=LoRAInit.REFERENCE,
        ),  # its LoRA A: U(±1/√r), not PEFT's U(±1/√in)
        # use_bf16: true in the reference's MOSI config (the other presets: false, fp32).
        train=dict(_REFERENCE_TRAIN, weight_decay=0.001, cosine_period_epochs=150, patience=30, lm_dtype="auto"),
        pretrain=dict(_REFERENCE_PRETRAIN, lr=1e-3, plateau_patience=10),
        # The reference pretrains MOSI's AV encoder with BatchNorm on audio (its stage 2 has none)
        # and SeqAug p = 0.2 (stage 2: 0.3).
        pretrain_model=dict(av_pool_len=50, av_input_batchnorm=("audio",), av_aug_p=0.2),
        notes=(
            "the released MOSI config sets use_ulgm: true, but the released trainer has no path that runs "
            "it (it never computes the task loss there): the non-ULGM path is trained",
        ),
    ),
    # Not a paper recipe: the embedded demo on 2 CPU cores. It keeps the settings
    # the demo was tuned with (norm clipping over mean gradients, no accumulation,
    # a 40-epoch cap, plain-L1 model selection, global length buckets, per-sample SeqAug, an exact FFW copy, fusion positions after the text: the tiny
    # LM never saw positions past its short training sentences).
    "sample": Preset(
        name="sample",
        description="the embedded sample with a tiny local GPT-2 (4 layers): minutes on 2 CPU cores",
        model=dict(
            lm="runs/demo/tiny-gpt2",
            mm_layers=(0, 1, 2, 3),
            n_fusion=4,
            lambda_lm=0.2,
            d_audio=33,
            d_vision=16,
            av_pool_len=20,
            av_input_batchnorm=(),
            max_text_tokens=32,
            seqaug_mode=SeqAugMode.PER_SAMPLE,
            fusion_positions=FusionPositions.AFTER_TEXT,
            ffw_init=FFWInit.COPY_LM,
            av_positions=AVPositions.VASWANI,
            av_readout=AVReadout.MEAN,
        ),
        train=dict(
            lr=1e-3,
            beta1=0.9,
            beta2=0.95,
            weight_decay=0.01,
            batch_size=32,
            grad_accum=1,
            max_epochs=40,
            patience=8,
            warmup_epochs=1.0,
            min_lr=1e-7,
            schedule="cosine",
            cosine_period_epochs=39,  # one warm-up epoch + 39: the floor at the 40-epoch cap
            clip_mode="norm",
            clip_threshold=5.0,
            clip_scope="all",
            selection="l1",
            batching="bucketed",
        ),
        pretrain=dict(
            lr=1e-3,
            beta1=0.9,
            beta2=0.95,
            weight_decay=0.01,
            batch_size=32,
            grad_accum=1,
            max_epochs=40,
            patience=8,
            warmup_epochs=0.0,
            schedule="plateau",
            plateau_factor=0.5,
            plateau_patience=2,
            clip_mode="norm",
            clip_threshold=5.0,
            clip_scope="all",
            selection="l1",
            batching="bucketed",
        ),
    ),
}

# Which preset a named dataset uses when --preset is not given.
DATASET_PRESETS = {"mosi": "mosi", "mosei": "mosei", "sims": "sims", "simsv2": "sims", "sample": "sample"}


def get_preset(name: str) -> Preset:
    """Look up a preset by name, with an error listing the valid ones."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigError(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}") from None


def parse_layer_list(text: str) -> tuple[int, ...]:
    """Parse "5,6,7", "5..11" or "3,5,7..11" into a tuple of 0-based layer indices."""
    layers: list[int] = []
    for part in filter(None, (p.strip() for p in text.replace(" ", ",").split(","))):
        try:
            if ".." in part:
                lo, hi = (int(x) for x in part.split(".."))
                layers.extend(range(lo, hi + 1))
            else:
                layers.append(int(part))
        except ValueError:
            raise ConfigError(f"cannot read layer list {text!r}; write e.g. 5,6,7 or 5..11") from None
    return tuple(layers)
