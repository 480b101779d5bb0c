"""Loading a frozen Hugging Face causal LM and driving its layers one by one.

DeepMLF inserts MM blocks between LM layers, so it runs the LM's layer loop
itself. `FrozenLM` hides the per-architecture attribute names (GPT-2 family
vs Llama family) behind a small table, the way PEFT keeps its per-model
mappings, and checks layer indices with an error that says what to fix.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from models.errors import ConfigError, ModelNotAvailableError
from models.nn.memory import register_lean_attention, swap_dropout


@dataclass(frozen=True)
class LMLayout:
    """Where an architecture keeps its parts (attribute names on the HF model)."""

    backbone: str  # the decoder stack under the *ForCausalLM wrapper
    layers: str  # the ModuleList of decoder layers
    embed_tokens: str
    final_norm: str
    mlp: str  # the feed-forward sub-module of one decoder layer
    position_embed: str | None  # learned absolute positions (GPT-2)
    rotary: str | None  # rotary position module (Llama)
    embed_dropout: str | None


_GPT2 = LMLayout("transformer", "h", "wte", "ln_f", "mlp", "wpe", None, "drop")
_LLAMA = LMLayout("model", "layers", "embed_tokens", "norm", "mlp", None, "rotary_emb", None)
LAYOUTS: dict[str, LMLayout] = {"gpt2": _GPT2, "llama": _LLAMA, "mistral": _LLAMA, "qwen2": _LLAMA}

# Configs of the presets' LMs, so `deepmlf describe` counts parameters with
# no network and an empty cache (sizes from the models' published configs).
KNOWN_CONFIGS: dict[str, tuple[str, dict[str, Any]]] = {
    "gpt2": ("gpt2", dict(n_embd=768, n_layer=12, n_head=12)),
    "openai-community/gpt2": ("gpt2", dict(n_embd=768, n_layer=12, n_head=12)),
    "gpt2-medium": ("gpt2", dict(n_embd=1024, n_layer=24, n_head=16)),
    "openai-community/gpt2-medium": ("gpt2", dict(n_embd=1024, n_layer=24, n_head=16)),
    "gpt2-large": ("gpt2", dict(n_embd=1280, n_layer=36, n_head=20)),
    "openai-community/gpt2-large": ("gpt2", dict(n_embd=1280, n_layer=36, n_head=20)),
    "gpt2-xl": ("gpt2", dict(n_embd=1600, n_layer=48, n_head=25)),
    "uer/gpt2-chinese-cluecorpussmall": (
        "gpt2",
        dict(n_embd=768, n_layer=12, n_head=12, vocab_size=21128, bos_token_id=None, eos_token_id=None),
    ),  # GPT-2's 50256 is outside its vocabulary
    "HuggingFaceTB/SmolLM2-135M": (
        "llama",
        dict(
            hidden_size=576,
            intermediate_size=1536,
            num_hidden_layers=30,
            num_attention_heads=9,
            num_key_value_heads=3,
            vocab_size=49152,
            tie_word_embeddings=True,
        ),
    ),
    "HuggingFaceTB/SmolLM2-360M": (
        "llama",
        dict(
            hidden_size=960,
            intermediate_size=2560,
            num_hidden_layers=32,
            num_attention_heads=15,
            num_key_value_heads=5,
            vocab_size=49152,
            tie_word_embeddings=True,
        ),
    ),
    "HuggingFaceTB/SmolLM2-1.7B": (
        "llama",
        dict(
            hidden_size=2048,
            intermediate_size=8192,
            num_hidden_layers=24,
            num_attention_heads=32,
            num_key_value_heads=32,
            vocab_size=49152,
            tie_word_embeddings=True,
            rope_theta=130000.0,
        ),
    ),
}


def _not_cached(name: str) -> ModelNotAvailableError:
    return ModelNotAvailableError(
        f"language model {name!r} is not a local directory and not in the Hugging Face cache "
        f"(the hub is not reachable from here): run `hf download {name}` where there is "
        f"network and copy the cache, or pass a local directory with --lm DIR"
    )


def resolve_lm_source(name: str, revision: str | None = None) -> str:
    """Return a path or hub id that `from_pretrained` can load without the network.

    Raises at once (no 20 s hub retries) when the model is neither a local
    directory nor cached (at `revision`, a hub commit, when given; directories
    have no revision).
    """
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelNotAvailableError(f"{path} has no config.json; pass a directory written by save_pretrained()")
        return str(path.resolve())
    # A hub id is "name" or "namespace/name", whatever characters it holds
    # ("HuggingFaceTB/SmolLM2-1.7B", "Qwen/Qwen2.5-0.5B"); anything else can only be a directory.
    if name.startswith((".", "/", "~")) or "\\" in name or name.count("/") > 1 or not all(name.split("/")):
        from models.config import PRESETS

        hint = (
            "; it is the `sample` preset's tiny GPT-2, which `deepmlf demo` (make demo) builds"
            if name == PRESETS["sample"].model["lm"]
            else "; check the --lm path"
        )
        raise ModelNotAvailableError(f"language model directory {path}{_relative_to_cwd(path)} does not exist{hint}")
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(name, "config.json", revision=revision)
    if not isinstance(cached, str):
        if revision is not None and isinstance(try_to_load_from_cache(name, "config.json"), str):
            raise ModelNotAvailableError(
                f"language model {name!r} is cached, but not at revision {revision} (the one the model was "
                f"trained on): run `hf download {name} --revision {revision}` where there is network and copy "
                f"the cache"
            )
        if "/" not in name and name not in KNOWN_CONFIGS:
            # A bare word is a hub id only for a few legacy models (gpt2, ...); a user's "lmcopy"
            # is a folder they meant, and `hf download lmcopy` would only send them astray.
            raise ModelNotAvailableError(
                f"language model {name!r}: no directory {path}{_relative_to_cwd(path)} and no cached hub "
                f"model of that name; check the --lm path (hub ids are namespace/name, e.g. openai-community/gpt2)"
            )
        raise _not_cached(name)
    return name


def _relative_to_cwd(path: Path) -> str:
    """' (relative to the current directory, DIR)' for a relative path: a preset's relative LM folder
    is looked up from where the command runs, not from the run or the dataset."""
    return "" if path.is_absolute() else f" (relative to the current directory, {Path.cwd()})"


def lm_revision(name: str) -> str | None:
    """The hub commit `name` loads from the cache now (None for a local directory).

    Recorded in the model's config (`ModelConfig.lm_revision`), so a model is
    always rebuilt on the LM snapshot it was trained on, even after the cache
    has fetched a newer one.
    """
    source = resolve_lm_source(name)
    if Path(source).is_dir():
        return None
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(name, "config.json")
    return Path(str(cached)).parent.name  # .../models--ns--name/snapshots/<commit>/config.json


def load_lm_config(name: str):
    """The LM's config: local dir or cache first, then the built-in table of known models."""
    from transformers import AutoConfig, GPT2Config, LlamaConfig

    try:
        source = resolve_lm_source(name)
        return AutoConfig.from_pretrained(source, local_files_only=True)
    except ModelNotAvailableError:
        if name not in KNOWN_CONFIGS:
            raise
    model_type, kwargs = KNOWN_CONFIGS[name]
    return (GPT2Config if model_type == "gpt2" else LlamaConfig)(**kwargs)


def load_causal_lm(
    name: str,
    random_init: bool = False,
    meta: bool = False,
    dtype: torch.dtype = torch.float32,
    revision: str | None = None,
):
    """Load (model, tokenizer) for `name` (at hub commit `revision` if given); tokenizer is None with `random_init`.

    `random_init` builds the LM from its config alone (no weights needed);
    `meta` builds it on the meta device (shapes only, no memory), for counting.
    `dtype` of the frozen weights: bf16 halves a large LM's memory (training picks it on CUDA).
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # the CLI draws its own progress; library code stays quiet
    if random_init:
        config = load_lm_config(name)
        config._attn_implementation = "sdpa"
        if meta:
            with torch.device("meta"):
                model = AutoModelForCausalLM.from_config(config, dtype=dtype)
        else:
            model = AutoModelForCausalLM.from_config(config, dtype=dtype)
        return model, None
    source = resolve_lm_source(name, revision)
    offline: dict[str, Any] = (
        {"local_files_only": True} if not Path(source).is_dir() or os.environ.get("HF_HUB_OFFLINE") else {}
    )
    if revision is not None and not Path(source).is_dir():
        offline["revision"] = revision
    model = AutoModelForCausalLM.from_pretrained(source, attn_implementation="sdpa", dtype=dtype, **offline)
    tokenizer = AutoTokenizer.from_pretrained(source, **offline)
    return model, tokenizer


def _fuse_gelu(module: nn.Module) -> None:
    """Swap GPT-2's `gelu_new` (≈6 element-wise ops) for PyTorch's fused tanh GELU: the same formula."""
    from transformers.activations import NewGELUActivation

    for parent in module.modules():
        for child_name, child in parent.named_children():
            if isinstance(child, NewGELUActivation):
                setattr(parent, child_name, nn.GELU(approximate="tanh"))


@dataclass
class LayerContext:
    """What every decoder layer of one forward pass needs besides the hidden states."""

    attention_mask: torch.Tensor  # (B, 1, T, T) bool, True = may attend
    position_ids: torch.Tensor  # (B, T)
    position_embeddings: tuple[torch.Tensor, torch.Tensor] | None  # rotary (cos, sin), Llama only

    def part(self, queries: slice, keys: slice = slice(None), rows: torch.Tensor | None = None) -> LayerContext:
        """The context of some query positions (and batch `rows`) attending to some key positions.

        Positions and rotary tables follow the queries; the mask keeps
        (queries × keys). Used to run the text rows alone (keys = the text)
        and the fusion rows against the text's keys/values (keys = all).
        """
        pick = (lambda t: t) if rows is None else (lambda t: t[rows])
        rotary = None
        if self.position_embeddings is not None:
            rotary = tuple(pick(t)[:, queries] for t in self.position_embeddings)
        return LayerContext(pick(self.attention_mask)[:, :, queries, keys], pick(self.position_ids)[:, queries], rotary)


class _KVShim:
    """Stands in for a Hugging Face cache during one decoder-layer call.

    HF attention calls `cache.update(k, v, layer_idx, ...)` with the keys and
    values of the rows it was given and attends to what update returns. The
    shim records those keys/values and, given `past`, puts the keys/values of
    earlier positions in front of them: the fusion rows then attend to the
    text without the text rows being run again (or tracked by autograd).
    """

    def __init__(self, past: tuple[torch.Tensor, torch.Tensor] | None = None) -> None:
        self.past = past
        self.kv: tuple[torch.Tensor, torch.Tensor] | None = None

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, layer_idx: int, *args, **kwargs):
        self.kv = (key_states, value_states)  # (B, H_kv, L, d_h) each, rotary already applied
        if self.past is None:
            return key_states, value_states
        past_k, past_v = self.past
        return (
            torch.cat([past_k.to(key_states.dtype), key_states], dim=2),
            torch.cat([past_v.to(value_states.dtype), value_states], dim=2),
        )


def _cache_kwarg(layer: nn.Module) -> str:
    """The name under which this transformers version's decoder layers take a KV cache."""
    import inspect

    params = inspect.signature(layer.forward).parameters
    for name in ("cache", "past_key_values", "past_key_value", "layer_past"):
        if name in params:
            return name
    raise ConfigError(f"{type(layer).__name__} takes no KV cache argument; run with the full pass (prefix_path off)")


class FrozenLM(nn.Module):
    """A frozen causal LM whose layers DeepMLF calls one at a time."""

    # Activation checkpointing per decoder layer (TrainConfig.checkpoint_layers): keep only each
    # layer's input and recompute the layer in backward; for LMs whose activations do not fit.
    checkpoint_layers: bool = False

    def __init__(self, hf_model: nn.Module, fuse_gelu: bool = True) -> None:
        super().__init__()
        hf_config: Any = hf_model.config  # a transformers PretrainedConfig (nn.Module attributes type as modules)
        model_type = hf_config.model_type
        if model_type not in LAYOUTS:
            raise ConfigError(
                f"LM architecture {model_type!r} is not supported yet; supported: {', '.join(sorted(LAYOUTS))}"
            )
        self.layout = LAYOUTS[model_type]
        self.model = hf_model
        self._cache_name: str | None = None  # found on first use (see _cache_kwarg)
        if fuse_gelu:
            _fuse_gelu(hf_model)
        # Keep less for backward, same math (models/nn/memory.py): bool dropout masks, and on CPU
        # the attention core recomputed in backward instead of its (B, H, T, T) weights kept.
        swap_dropout(hf_model)
        if hf_config._attn_implementation == "sdpa":
            hf_config._attn_implementation = register_lean_attention()
        # Freeze once, here; never inside forward.
        for p in self.model.parameters():
            p.requires_grad_(False)

    # --- shapes and parts ---
    @property
    def backbone(self) -> nn.Module:
        return getattr(self.model, self.layout.backbone)

    @property
    def layers(self) -> nn.ModuleList:
        return getattr(self.backbone, self.layout.layers)

    @property
    def n_layers(self) -> int:
        return len(self.layers)

    @property
    def hf_config(self) -> Any:
        """The LM's transformers config."""
        return self.model.config

    @property
    def d_model(self) -> int:
        return int(self.hf_config.hidden_size)

    @property
    def layer_norm_eps(self) -> float:
        cfg = self.hf_config
        eps = getattr(cfg, "layer_norm_epsilon", None) or getattr(cfg, "rms_norm_eps", None) or 1e-5
        return float(eps)

    @property
    def rms_norm(self) -> bool:
        """Whether the LM normalises with RMSNorm (Llama family) rather than LayerNorm (GPT-2)."""
        return getattr(self.hf_config, "rms_norm_eps", None) is not None

    @property
    def max_positions(self) -> int | None:
        """The most position ids the LM has (GPT-2: 1024), or None when it states no limit."""
        cfg = self.hf_config
        return getattr(cfg, "n_positions", None) or getattr(cfg, "max_position_embeddings", None)

    @property
    def lm_head(self) -> nn.Module:
        model: Any = self.model  # a transformers PreTrainedModel
        return model.get_output_embeddings()

    def mlp(self, layer: int) -> nn.Module:
        """The feed-forward sub-module of decoder layer `layer` (0-based)."""
        return getattr(self.layers[layer], self.layout.mlp)

    def check_layers(self, layers: tuple[int, ...]) -> None:
        """Raise a clear error if an MM layer index is outside the LM."""
        bad = [i for i in layers if not 0 <= i < self.n_layers]
        if bad:
            raise ConfigError(
                f"MM layer(s) {bad} are outside the LM, which has {self.n_layers} layers "
                f"(valid 0-based indices: 0..{self.n_layers - 1}); fix --mm-layers"
            )

    # --- the pieces of a forward pass ---
    def embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        """(B, T) token ids → (B, T, d) token embeddings (no positions yet)."""
        return getattr(self.backbone, self.layout.embed_tokens)(input_ids)

    def prepare(self, embeds: torch.Tensor, key_valid: torch.Tensor, position_ids: torch.Tensor):
        """Add positions (GPT-2) and build the causal mask and rotary tables.

        embeds: (B, T, d); key_valid: (B, T) bool, False on padding;
        position_ids: (B, T). Returns (hidden (B, T, d), LayerContext).
        """
        hidden = self.add_positions(embeds, position_ids)
        return hidden, self.context(key_valid, position_ids, hidden)

    def add_positions(self, embeds: torch.Tensor, position_ids: torch.Tensor) -> torch.Tensor:
        """(B, L, d) embeddings → layer-0 input: learned positions (GPT-2) and embedding dropout.

        Both act per position, so a sequence's rows can be prepared in parts.
        """
        hidden = embeds
        if self.layout.position_embed:
            hidden = hidden + getattr(self.backbone, self.layout.position_embed)(position_ids)
        if self.layout.embed_dropout:
            hidden = getattr(self.backbone, self.layout.embed_dropout)(hidden)
        return hidden

    def context(self, key_valid: torch.Tensor, position_ids: torch.Tensor, like: torch.Tensor) -> LayerContext:
        """Causal mask and rotary tables of a (B, T) sequence; `like` gives device and dtype."""
        T = key_valid.shape[1]
        causal = torch.ones(T, T, dtype=torch.bool, device=key_valid.device).tril()
        # (B, 1, T, T): causal and not padding; each position also sees itself,
        # so no row is fully masked (that would make NaN rows under SDPA).
        mask = causal[None, None] & key_valid[:, None, None, :]
        mask = mask | torch.eye(T, dtype=torch.bool, device=key_valid.device)[None, None]
        rotary = None
        if self.layout.rotary:
            rotary = getattr(self.backbone, self.layout.rotary)(like, position_ids=position_ids)
        return LayerContext(mask, position_ids, rotary)

    def run_layer(self, index: int, hidden: torch.Tensor, ctx: LayerContext) -> torch.Tensor:
        """Run decoder layer `index` on (B, T, d) hidden states."""
        kwargs: dict[str, Any] = {"attention_mask": ctx.attention_mask, "position_ids": ctx.position_ids}
        if ctx.position_embeddings is not None:
            kwargs["position_embeddings"] = ctx.position_embeddings
        layer = self.layers[index]
        if self.checkpoint_layers and torch.is_grad_enabled() and hidden.requires_grad:
            from torch.utils.checkpoint import checkpoint

            out = checkpoint(layer, hidden, use_reentrant=False, **kwargs)  # same dropout mask on recompute
        else:
            out = layer(hidden, **kwargs)
        return out[0] if isinstance(out, tuple) else out

    def run_layer_kv(
        self, index: int, hidden: torch.Tensor, ctx: LayerContext, past: tuple[torch.Tensor, torch.Tensor] | None = None
    ):
        """Run decoder layer `index` on (B, L, d) rows and also return their keys and values.

        With `past` (keys, values (B, H_kv, P, d_h) of P earlier positions),
        the rows attend to those positions first, then to themselves:
        `ctx.attention_mask` is then (B, 1, L, P+L). Returns (hidden (B, L, d),
        (keys, values) (B, H_kv, L, d_h) of these rows).
        """
        layer = self.layers[index]
        if self._cache_name is None:
            self._cache_name = _cache_kwarg(layer)
        shim = _KVShim(past)
        kwargs: dict[str, Any] = {
            "attention_mask": ctx.attention_mask,
            "position_ids": ctx.position_ids,
            self._cache_name: shim,
        }
        if ctx.position_embeddings is not None:
            kwargs["position_embeddings"] = ctx.position_embeddings
        out = layer(hidden, **kwargs)
        return (out[0] if isinstance(out, tuple) else out), shim.kv

    def final_norm(self, hidden: torch.Tensor) -> torch.Tensor:
        return getattr(self.backbone, self.layout.final_norm)(hidden)
