"""Tiny causal LMs built offline (tests and the embedded demo): a BPE tokenizer
trained in-process and a randomly initialised GPT-2 or Llama, saved with
`save_pretrained` so they load through the same `from_pretrained(dir)` code
users run on hub models.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Literal

DEFAULT_CORPUS = (
    "the movie was great and i loved it",
    "i really hated the service it was awful",
    "the food was okay nothing special",
    "what a wonderful day with wonderful people",
    "this is the worst product i have ever bought",
    "i am not sure how i feel about this",
    "absolutely fantastic performance by everyone",
    "terrible acting and a boring story",
)


def build_tiny_lm(
    out_dir: Path,
    family: Literal["gpt2", "llama"] = "gpt2",
    corpus: Iterable[str] = DEFAULT_CORPUS,
    n_layer: int = 4,
    d_model: int = 64,
    n_head: int = 4,
    vocab_size: int = 400,
    seed: int = 0,
    pretrain_steps: int = 0,
    initializer_range: float = 0.02,
) -> Path:
    """Train a byte-level BPE tokenizer on `corpus`, build a tiny LM, save both to `out_dir`.

    With `pretrain_steps`, the LM is also trained on `corpus` with its
    next-token loss, so its hidden states carry context the way a real
    pretrained LM's do (seconds on a CPU). A larger `initializer_range` than
    GPT-2's 0.02 makes a random LM's attention mix tokens visibly (at 0.02 the
    attention output is ~1000x smaller than the residual stream), which a
    frozen random LM needs to carry words to the fusion tokens.
    Returns `out_dir`; needs no network.
    """
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import AutoModelForCausalLM, GPT2Config, LlamaConfig, PretrainedConfig, PreTrainedTokenizerFast

    out_dir = Path(out_dir)
    bpe = Tokenizer(models.BPE(unk_token=None))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(list(corpus), trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        eos_token="<|endoftext|>",
        bos_token="<|endoftext|>",
        unk_token="<|endoftext|>",
        pad_token="<|endoftext|>",
    )
    vocab = len(tokenizer)
    eos = tokenizer.eos_token_id
    config: PretrainedConfig
    if family == "gpt2":
        config = GPT2Config(
            vocab_size=vocab,
            n_positions=256,
            n_embd=d_model,
            n_layer=n_layer,
            n_head=n_head,
            bos_token_id=eos,
            eos_token_id=eos,
            initializer_range=initializer_range,
        )
    elif family == "llama":
        config = LlamaConfig(
            vocab_size=vocab,
            hidden_size=d_model,
            intermediate_size=d_model * 3,
            num_hidden_layers=n_layer,
            num_attention_heads=n_head,
            num_key_value_heads=max(1, n_head // 2),
            max_position_embeddings=256,
            bos_token_id=eos,
            eos_token_id=eos,
            pad_token_id=eos,
            tie_word_embeddings=True,
            initializer_range=initializer_range,
        )
    else:
        raise ValueError(f"family must be 'gpt2' or 'llama', not {family!r}")
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config)
    if pretrain_steps:
        _pretrain(model, tokenizer, list(corpus), pretrain_steps, seed)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # library code stays quiet (the CLI draws its own progress)
    from models.io import atomic_dir

    # Whole or not at all (an interrupted save is no half LM), and with the modes open() gives:
    # safetensors writes model.safetensors 0600, which would hide it from the rest of a shared group.
    with atomic_dir(out_dir) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    return out_dir


def _pretrain(model, tokenizer, corpus: list[str], steps: int, seed: int, batch_size: int = 32) -> None:
    """Next-token training of the tiny LM on `corpus` (AdamW, constant lr)."""
    import torch

    encoded = [tokenizer(text)["input_ids"] + [tokenizer.eos_token_id] for text in corpus]
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    # The loss transformers falls back to anyway, named so it does not warn that the config names none.
    model.loss_type = "ForCausalLM"
    model.train()
    for _ in range(steps):
        rows = torch.randint(len(encoded), (batch_size,), generator=generator).tolist()
        T = max(len(encoded[r]) for r in rows)
        ids = torch.full((batch_size, T), tokenizer.eos_token_id)
        labels = torch.full((batch_size, T), -100)
        for i, r in enumerate(rows):
            ids[i, : len(encoded[r])] = torch.tensor(encoded[r])
            labels[i, : len(encoded[r])] = torch.tensor(encoded[r])
        loss = model(input_ids=ids, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
