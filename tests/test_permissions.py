"""Atomic writes end with the mode a plain open()/mkdir() gives under the umask (issue 11 item 2).

mkstemp/mkdtemp create 0600 files and 0700 folders; renamed into place they
would hide a dataset or a model from colleagues on a shared machine.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

import media as tm


@pytest.fixture(params=[0o022, 0o002], ids=["umask022", "umask002"])
def umask(request):
    old = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(old)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tm.make_mmsa_corpus(tmp_path_factory.mktemp("perm") / "corpus", (1, 1, 1))
    with open(root / "label.csv", "a") as fh:  # a clip missing on disk: errors.tsv gets written too
        fh.write("vid9,9999,gone,0.2,0.2,0.2,0.2,Neutral,train\n")
    return root


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _assert_modes(paths, umask: int, directory: bool = False) -> None:
    want = (0o777 if directory else 0o666) & ~umask
    paths = list(paths)
    assert paths, "nothing was written"
    wrong = {str(p): oct(_mode(p)) for p in paths if _mode(p) != want}
    assert not wrong, f"expected {oct(want)}: {wrong}"


def test_extract_outputs_follow_the_umask(corpus, tmp_path, umask):
    from typer.testing import CliRunner

    from deepmlf_cli.app import app

    out = tmp_path / "ds"
    res = CliRunner().invoke(app, ["extract", str(corpus), "--out", str(out), "--face", "none", "--transcript", "given",
                                   "--format", "mmsa", "-q"])  # fmt: skip
    assert res.exit_code == 1, res.output  # the missing clip
    files = [p for p in out.rglob("*") if p.is_file()]
    names = {p.name for p in files}
    assert {"manifest.json", "train.npz", "valid.npz", "test.npz", "ds.pkl", "errors.tsv"} <= names
    assert any(p.suffix == ".npz" for p in (out / "features").iterdir())
    _assert_modes(files, umask)


def test_transcripts_follow_the_umask(tmp_path, umask):
    from typer.testing import CliRunner

    from deepmlf_cli.app import app

    clip = tm.make_audio_only(tmp_path / "in" / "talk.wav", 0.3)
    clip.with_suffix(".txt").write_text("hello there")
    out = tmp_path / "texts"
    res = CliRunner().invoke(app, ["transcribe", str(clip.parent), "--out", str(out), "-q"])
    assert res.exit_code == 0, res.output
    _assert_modes(out.iterdir(), umask)


def test_checkpoints_results_and_state_follow_the_umask(tmp_path, umask):
    import torch

    from models.checkpoint import save_checkpoint
    from models.io import atomic_write_text
    from models.training.state import FitCounters, save_state

    class Tiny(torch.nn.Linear):
        kind = "tiny"

        class config:  # noqa: N801 — stands in for ModelConfig
            @staticmethod
            def to_dict():
                return {}

        def trainable_state_dict(self):
            return self.state_dict()

    model = Tiny(2, 1)
    best = save_checkpoint(tmp_path / "seed_0" / "best", model, meta={"x": 1})
    _assert_modes([best, best.parent], umask, directory=True)
    _assert_modes(best.iterdir(), umask)
    save_checkpoint(best, model)  # replacing an existing checkpoint too
    _assert_modes([best], umask, directory=True)
    atomic_write_text(tmp_path / "results.json", "{}")
    _assert_modes([tmp_path / "results.json"], umask)
    optimizer = torch.optim.AdamW(model.parameters())
    model(torch.ones(1, 2)).sum().backward()
    optimizer.step()
    save_state(tmp_path / "state", model, optimizer, FitCounters(epoch=1))
    _assert_modes((tmp_path / "state").iterdir(), umask)


def test_saved_datasets_follow_the_umask(tmp_path, umask):
    from models.data.format import save_dataset
    from models.data.load import load_dataset

    out = save_dataset(load_dataset("sample"), tmp_path / "copy")
    _assert_modes([out], umask, directory=True)
    _assert_modes(out.iterdir(), umask)


def test_the_tiny_lm_files_follow_the_umask(tmp_path, umask):
    """`deepmlf demo`'s tiny GPT-2: safetensors alone writes model.safetensors 0600 (issue 19 item 19)."""
    from models.nn.tiny_lm import build_tiny_lm

    out = build_tiny_lm(tmp_path / "tiny-gpt2", n_layer=1, d_model=16, n_head=2, vocab_size=300)
    files = [p for p in out.rglob("*") if p.is_file()]
    assert "model.safetensors" in {p.name for p in files}
    _assert_modes(files, umask)
    _assert_modes([out], umask, directory=True)
