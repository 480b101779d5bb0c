"""Shared fixtures: tiny LMs built offline and loaded through the users' from_pretrained(dir) path,
`make_batch`, the one builder of model Batches for the tests, and `free_port` for torchrun
(`from conftest import make_batch`: [tool.pytest.ini_options] puts tests/ on the path)."""

from __future__ import annotations

import os
import socket
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from models.nn.interface import Batch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


def pytest_collection_modifyitems(config, items):
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def tiny_gpt2(tmp_path_factory):
    """Directory of a 4-layer, 64-wide GPT-2 with its own BPE tokenizer."""
    from models.nn.tiny_lm import build_tiny_lm

    return build_tiny_lm(tmp_path_factory.mktemp("tiny-gpt2"), "gpt2")


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory):
    """Directory of a 4-layer, 64-wide Llama (SwiGLU MLP, rotary positions) with its tokenizer."""
    from models.nn.tiny_lm import build_tiny_lm

    return build_tiny_lm(tmp_path_factory.mktemp("tiny-llama"), "llama")


@pytest.fixture(params=["gpt2", "llama"])
def tiny_lm(request, tiny_gpt2, tiny_llama):
    return {"gpt2": tiny_gpt2, "llama": tiny_llama}[request.param]


TEXTS = ["the movie was great and i loved it", "i hated it", "okay", ""]
# The default clips' AV lengths (frames): full, short, no audio at all, in between.
AUDIO_LENGTHS = (20, 5, 0, 13)
VISION_LENGTHS = (8, 8, 1, 3)
D_AUDIO, D_VISION = 7, 5  # the feature widths the tests' ModelConfigs use


def make_batch(
    tokenizer, texts=TEXTS, *, seed: int = 0, labels: bool = True, pad_to: int = 0, random_lengths: bool = False
) -> Batch:
    """A Batch of len(texts) clips: the texts tokenized (left-padded, to `pad_to` if longer), random
    audio (B, 20, 7) and vision (B, 8, 5) features zeroed past each clip's length, labels from -0.8 to 0.8.

    Lengths are AUDIO_LENGTHS/VISION_LENGTHS (at most 4 clips) or, with `random_lengths`, drawn from
    the seed (audio 1..20, vision 1..8). `tokenizer=None` gives every clip one placeholder token, as
    encode_split gives the models that read no text.
    """
    import torch

    from models.data.text import collate_text, tokenize_texts
    from models.nn.interface import Batch

    g = torch.Generator().manual_seed(seed)
    B = len(texts)
    if tokenizer is None:
        ids, valid = collate_text([[0]] * B, 0, pad_to)
    else:
        ids, valid = collate_text(tokenize_texts(tokenizer, texts, 32), tokenizer.pad_token_id, pad_to)
    if random_lengths:
        audio_lengths = torch.randint(1, 21, (B,), generator=g)
        vision_lengths = torch.randint(1, 9, (B,), generator=g)
    else:
        if B > len(AUDIO_LENGTHS):
            raise ValueError(f"{B} clips need random_lengths=True (fixed lengths exist for {len(AUDIO_LENGTHS)})")
        audio_lengths = torch.tensor(AUDIO_LENGTHS[:B])
        vision_lengths = torch.tensor(VISION_LENGTHS[:B])
    audio = torch.randn(B, 20, D_AUDIO, generator=g) * (torch.arange(20)[None, :, None] < audio_lengths[:, None, None])
    vision = torch.randn(B, 8, D_VISION, generator=g) * (torch.arange(8)[None, :, None] < vision_lengths[:, None, None])
    y = torch.linspace(-0.8, 0.8, B) if labels else None
    return Batch(ids, valid, audio, audio_lengths, vision, vision_lengths, y)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now, for torchrun's --master_port
    (a fixed port fails when two runs, or a leftover process, hold it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
