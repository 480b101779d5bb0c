"""Shared fixtures: tiny LMs built offline and loaded through the users' from_pretrained(dir) path."""

from __future__ import annotations

import os

import pytest

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
