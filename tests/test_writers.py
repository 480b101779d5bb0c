"""One atomic writer in models (models/io.py) and one writer of the dataset format (issue 13)."""

from __future__ import annotations

import json
import pickle
import re
from pathlib import Path

import numpy as np
import pytest

from models.data.format import save_dataset, save_extracted
from models.data.load import load_dataset
from models.io import atomic_dir, atomic_write

import media as tm

ROOT = Path(__file__).resolve().parent.parent


class Boom(RuntimeError):
    pass


def _fail_on_call(monkeypatch, module, name: str, n: int) -> None:
    """Make module.name raise Boom on its n-th call (a crash mid-write)."""
    real = getattr(module, name)
    calls = {"n": 0}

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == n:
            raise Boom("disk died")
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, flaky)


def test_atomic_write_text_bytes_and_streams(tmp_path):
    atomic_write(tmp_path / "a.txt", "héllo")
    atomic_write(tmp_path / "b.bin", b"\x00\x01")
    atomic_write(tmp_path / "c.npz", lambda fh: np.savez(fh, x=np.arange(3)))
    assert (tmp_path / "a.txt").read_bytes() == "héllo".encode()
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\x01"
    with np.load(tmp_path / "c.npz") as z:
        assert z["x"].tolist() == [0, 1, 2]

    def crash(fh):
        fh.write(b"half")
        raise Boom("mid-write")

    with pytest.raises(Boom):
        atomic_write(tmp_path / "a.txt", crash)
    assert (tmp_path / "a.txt").read_text(encoding="utf-8") == "héllo"  # the old file stands
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.bin", "c.npz"]  # no temp file left


def test_atomic_dir_swaps_in_whole_or_not_at_all(tmp_path):
    target = tmp_path / "ckpt"
    with atomic_dir(target) as tmp:
        (tmp / "one").write_text("1")
    with pytest.raises(Boom):
        with atomic_dir(target) as tmp:
            (tmp / "one").write_text("2")
            raise Boom("crash before the second file")
    assert [p.name for p in target.iterdir()] == ["one"] and (target / "one").read_text() == "1"
    with atomic_dir(target) as tmp:
        (tmp / "two").write_text("2")
    assert [p.name for p in target.iterdir()] == ["two"]  # replaced, not merged
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"]  # no temp or old directory left


def test_models_has_one_atomic_writer():
    """Temp names and renames live in models/io.py only; every other writer in models calls it."""
    pattern = re.compile(r"\btempfile\b|mkstemp|mkdtemp|os\.replace\(|os\.rename\(|\.rename\(|shutil\.move\(")
    offenders = []
    for path in sorted((ROOT / "models").rglob("*.py")):
        if path.relative_to(ROOT).as_posix() == "models/io.py":
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            code = line.split("#", 1)[0]
            if pattern.search(code):
                offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not offenders, "\n".join(offenders)


def test_a_crash_mid_save_leaves_no_dataset(tmp_path, monkeypatch):
    import models.data.format as fmt

    ds = load_dataset("sample")
    _fail_on_call(monkeypatch, fmt.np, "savez", 2)  # the second split
    with pytest.raises(Boom):
        save_dataset(ds, tmp_path / "new")
    assert list(tmp_path.iterdir()) == []  # no dataset, no temp directory

    monkeypatch.undo()
    out = save_dataset(ds, tmp_path / "old")
    before = (out / "manifest.json").read_bytes()
    _fail_on_call(monkeypatch, fmt.np, "savez", 3)
    with pytest.raises(Boom):
        save_dataset(ds, out)
    assert (out / "manifest.json").read_bytes() == before and len(load_dataset(out).splits["test"]) > 0
    assert [p.name for p in tmp_path.iterdir()] == ["old"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return tm.make_mmsa_corpus(tmp_path_factory.mktemp("writers") / "corpus", (2, 1, 1))


def _extract(corpus: Path, out: Path, *extra: str):
    from typer.testing import CliRunner

    from deepmlf_cli.app import app

    return CliRunner().invoke(app, ["extract", str(corpus), "--out", str(out), "--face", "none", "--transcript",
                                    "given", "-q", *extra])  # fmt: skip


def test_extract_and_save_dataset_write_the_same_dataset(corpus, tmp_path):
    out = tmp_path / "ds"
    res = _extract(corpus, out, "--format", "mmsa")
    assert res.exit_code == 0, res.output
    ds = load_dataset(out)
    copy = save_dataset(ds, tmp_path / "copy")
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert manifest == json.loads((copy / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["name"] == "ds" and manifest["scheme"] == "sims" and manifest["recipe"]["audio"]
    # same writer, so the same bytes (the name is the only thing tied to the folder, and it is kept)
    assert (out / "manifest.json").read_bytes() == (copy / "manifest.json").read_bytes()
    for split in ("train", "valid", "test"):
        with np.load(out / f"{split}.npz") as a, np.load(copy / f"{split}.npz") as b:
            assert a.files == b.files
            for key in a.files:
                np.testing.assert_array_equal(a[key], b[key])
    with open(out / "ds.pkl", "rb") as fh:
        data = pickle.load(fh)
    assert type(data["scheme"]) is str and data["scheme"] == "sims"  # loads without deepmlf's enum
    assert list(data["train"]["annotations"]) == ["Neutral", "Neutral"]
    np.testing.assert_array_equal(load_dataset(out / "ds.pkl").splits["valid"].labels, ds.splits["valid"].labels)


def test_a_crash_mid_extract_write_leaves_no_manifest_and_resumes(corpus, tmp_path, monkeypatch):
    import models.data.format as fmt
    from extractors.batch import run_extract
    from extractors.feature_recipe import build_recipe

    recipe = build_recipe(face="none", transcript="given")
    out = tmp_path / "ds"
    run_extract(corpus, out, recipe, write_dataset=save_extracted)
    _fail_on_call(monkeypatch, fmt.np, "savez", 2)
    with pytest.raises(Boom):
        run_extract(corpus, out, recipe, scheme="mosi", write_dataset=save_extracted)
    # The splits were being replaced: no manifest may point at them; the per-clip cache stays.
    assert not (out / "manifest.json").exists() and len(list((out / "features").glob("*.json"))) == 4
    assert not list(out.rglob("*.tmp"))
    monkeypatch.undo()
    again = run_extract(corpus, out, recipe, scheme="mosi", write_dataset=save_extracted)
    assert again.count("skipped") == 4 and again.manifest["scheme"] == "mosi"
    assert load_dataset(out).scheme == "mosi"


def test_labelled_extraction_needs_the_writer(corpus, tmp_path):
    from extractors.batch import run_extract
    from extractors.feature_recipe import build_recipe

    with pytest.raises(TypeError, match="write_dataset"):
        run_extract(corpus, tmp_path / "ds", build_recipe(face="none", transcript="given"))
    assert not (tmp_path / "ds").exists()  # refused before any clip was extracted


def test_save_extracted_checks_arrays_as_the_reader_does(tmp_path):
    from models.errors import DatasetError

    split = {
        "audio": np.zeros((2, 3, 4), np.float32),
        "vision": np.zeros((2, 1, 5), np.float32),
        "audio_lengths": np.array([3, 9]),
        "vision_lengths": np.array([1, 1]),
        "labels": np.array([0.5, -2.0], np.float32),
        "ids": np.array(["a", "b"]),
        "texts": np.array(["", ""]),
    }
    with pytest.raises(DatasetError, match=r"'audio_lengths'\[1\] = 9 is outside 0..3"):
        save_extracted(tmp_path / "bad", {"train": split, "valid": split, "test": split})
    assert not (tmp_path / "bad" / "manifest.json").exists()
    split["audio_lengths"] = np.array([3, 2])
    manifest = save_extracted(tmp_path / "good", {"train": split, "valid": split, "test": split})
    assert manifest["scheme"] == "mosi" and manifest["name"] == "good"  # guessed: a label beyond [-1, 1]
