"""A model records the hub snapshot of its LM and is rebuilt on it, even after the cache moves on.

The hub cache is built here by hand (models--local--tiny/snapshots/<commit>/, refs/main),
as `hf download` lays it out; nothing is downloaded.
"""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from test_training import small_sample, spec_for  # noqa: F401  (fixture re-used)

from models.checkpoint import load_model
from models.errors import ModelNotAvailableError
from models.nn.lm import lm_revision, load_causal_lm
from models.run import Run
from models.training.experiment import train_run

HUB_ID = "local/tiny"
OLD, NEW = "a" * 40, "b" * 40


def _snapshot(cache, lm_dir, commit):
    repo = cache / f"models--{HUB_ID.replace('/', '--')}"
    shutil.copytree(lm_dir, repo / "snapshots" / commit)
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(commit)  # main now points here
    return repo / "snapshots" / commit


@pytest.fixture
def hub_cache(tmp_path, monkeypatch, tiny_gpt2):
    import huggingface_hub.constants

    cache = tmp_path / "hub"
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    _snapshot(cache, tiny_gpt2, OLD)
    return cache


def test_the_revision_is_the_snapshot_main_points_to_and_directories_have_none(hub_cache, tiny_gpt2):
    assert lm_revision(HUB_ID) == OLD
    assert lm_revision(str(tiny_gpt2)) is None


def test_a_model_is_rebuilt_on_the_lm_snapshot_it_trained_on(hub_cache, tiny_gpt2, small_sample, tmp_path):  # noqa: F811
    dataset, _ = small_sample
    spec = spec_for(tiny_gpt2, epochs=1)
    spec = spec.__class__(spec.kind, spec.model.replace(lm=HUB_ID), spec.train, spec.seeds)
    train_run(dataset, spec, tmp_path / "run", device="cpu")
    best = Run(tmp_path / "run").best()
    saved = json.loads((best / "config.json").read_text())
    assert saved["kind"] == "deepmlf" and saved["lm"] == HUB_ID and saved["lm_revision"] == OLD
    trained_on = load_causal_lm(HUB_ID)[0].state_dict()

    # The cache fetches a newer snapshot with other weights; main points to it.
    newer = _snapshot(hub_cache, tiny_gpt2, NEW)
    other, _ = load_causal_lm(str(newer))
    with torch.no_grad():
        for p in other.parameters():
            p.add_(1.0)
    other.save_pretrained(newer)
    assert lm_revision(HUB_ID) == NEW

    loaded = load_model(best)
    key = next(k for k in trained_on if k.endswith("wte.weight"))
    rebuilt = [v for k, v in loaded.model.state_dict().items() if k.endswith("wte.weight")]
    assert rebuilt and all(torch.equal(v, trained_on[key]) for v in rebuilt)  # the old snapshot, not main's

    # The trained-on snapshot is gone from the cache: one line naming the download that brings it back.
    shutil.rmtree(hub_cache / f"models--{HUB_ID.replace('/', '--')}" / "snapshots" / OLD)
    with pytest.raises(ModelNotAvailableError, match=f"not at revision {OLD}.*hf download {HUB_ID} --revision {OLD}"):
        load_model(best)
