"""Dataset loading, checking, cleaning, saving and normalisation."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest

from models.data.format import build_split, save_dataset
from models.data.load import load_dataset
from models.data.locate import default_data_dir, resolve_dataset
from models.data.normalize import FeatureNormalizer
from models.data.types import MultimodalDataset, SplitData
from models.errors import CheckpointError, DatasetError

SPLIT_SIZES = {"train": 6, "valid": 3, "test": 4}


def _mmsa_split(n: int, rng: np.random.Generator, *, t_a=7, d_a=5, t_v=4, d_v=3, sims=False, lengths=True) -> dict:
    """A split the way MMSA's unaligned pickles store it."""
    audio = np.zeros((n, t_a, d_a), np.float32)
    vision = np.zeros((n, t_v, d_v), np.float64)  # some MMSA files hold float64
    a_len = rng.integers(1, t_a + 1, n)
    v_len = rng.integers(1, t_v + 1, n)
    for i in range(n):
        audio[i, : a_len[i]] = rng.normal(1.0, 2.0, (a_len[i], d_a))
        vision[i, : v_len[i]] = rng.normal(-1.0, 0.5, (v_len[i], d_v))
    span = 1.0 if sims else 3.0
    split = {
        "raw_text": np.array([f"clip number {i}" for i in range(n)], dtype=object),
        "text": np.zeros((n, 3, 50, 2)),  # BERT inputs, unused
        "audio": audio,
        "vision": vision,
        "id": np.array([f"vid{i}$_${i}" for i in range(n)], dtype=object),
        "regression_labels": rng.uniform(-span, span, n).astype(np.float32),
        "classification_labels": np.zeros(n),
    }
    if lengths:
        split["audio_lengths"] = list(a_len)
        split["vision_lengths"] = v_len
    if sims:
        for m in "TAV":
            split[f"regression_labels_{m}"] = rng.uniform(-1, 1, n).astype(np.float32)
    return split


def _mmsa_data(sims=False, lengths=True, seed=0) -> dict:
    rng = np.random.default_rng(seed)
    return {name: _mmsa_split(n, rng, sims=sims, lengths=lengths) for name, n in SPLIT_SIZES.items()}


def _write_pickle(path: Path, data: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:
        pickle.dump(data, handle)
    return path


# --------------------------------------------------------------------------- #
# MMSA pickles
# --------------------------------------------------------------------------- #


def test_load_mmsa_pickle_with_lengths(tmp_path):
    data = _mmsa_data()
    data["train"]["audio"][0, 0, 0] = -np.inf  # COVAREP dirt
    data["train"]["audio"][1, 0, 1] = np.nan
    data["test"]["vision"][2, 0, 0] = np.inf
    path = _write_pickle(tmp_path / "MOSI" / "Processed" / "unaligned_50.pkl", data)
    ds = load_dataset(str(path))
    assert ds.name == "mosi" and ds.scheme == "mosi" and ds.recipe is None
    assert ds.source == str(path)
    assert set(ds.splits) == {"train", "valid", "test"}
    train = ds.splits["train"]
    assert len(train) == 6 and train.audio.dtype == np.float32 and train.vision.dtype == np.float32
    assert train.audio.shape == (6, 7, 5) and ds.d_audio == 5 and ds.d_vision == 3
    assert np.isfinite(train.audio).all() and train.audio[0, 0, 0] == 0.0
    assert ds.cleaning_report["train"] == {"audio": 2, "vision": 0}
    assert ds.cleaning_report["test"] == {"audio": 0, "vision": 1}
    assert ds.n_cleaned == 3
    assert train.audio_lengths.dtype == np.int64
    assert train.audio_lengths.tolist() == [int(x) for x in data["train"]["audio_lengths"]]
    assert train.ids[0] == "vid0$_$0" and train.texts[1] == "clip number 1"
    assert train.labels_T is None
    # the source arrays were not modified (cleaning works on a copy)
    assert np.isneginf(data["train"]["audio"][0, 0, 0])


def test_load_mmsa_without_lengths_infers_from_trailing_zeros(tmp_path):
    data = _mmsa_data(lengths=False)
    data["valid"]["audio"][1] = 0.0  # an all-zero clip still gets length 1
    path = _write_pickle(tmp_path / "x.pkl", data)
    ds = load_dataset(path)
    rng = np.random.default_rng(0)
    expected = _mmsa_split(SPLIT_SIZES["train"], rng)["audio_lengths"]
    assert ds.splits["train"].audio_lengths.tolist() == [int(x) for x in expected]
    assert ds.splits["valid"].audio_lengths[1] == 1
    assert (ds.splits["test"].vision_lengths >= 1).all()


def test_sims_scheme_and_unimodal_labels(tmp_path):
    path = _write_pickle(tmp_path / "SIMS" / "Processed" / "unaligned_39.pkl", _mmsa_data(sims=True))
    ds = load_dataset(path)
    assert ds.scheme == "sims" and ds.name == "sims"
    assert ds.splits["valid"].labels_A.shape == (3,)
    # labels in [-1, 1] under another name are SIMS-style too
    path2 = _write_pickle(tmp_path / "other.pkl", _mmsa_data(sims=True))
    assert load_dataset(path2).scheme == "sims"


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: d.pop("valid"), r"missing split\(s\) valid; found train, test"),
        (lambda d: d["test"].pop("raw_text"), r"\[test\]: missing key\(s\) raw_text; found text, audio"),
        (lambda d: d["train"].update(audio=np.zeros((6, 5))), r"\[train\]: 'audio' has shape \(6, 5\), expected 3-D"),
        (
            lambda d: d["train"].update(regression_labels=np.zeros(5, np.float32)),
            r"regression_labels has 5 clips but audio has 6",
        ),
        (lambda d: d["test"].update(vision=np.zeros((4, 4, 9))), r"vision feature size differs between splits"),
        (lambda d: d["train"]["audio_lengths"].__setitem__(2, 8), r"'audio_lengths'\[2\] = 8 is outside 0..7"),
        (lambda d: d["train"]["vision_lengths"].__setitem__(0, -1), r"'vision_lengths'\[0\] = -1"),
        (lambda d: d["valid"]["regression_labels"].__setitem__(1, np.nan), r"non-finite label\(s\), first at clip 1"),
        (lambda d: d["valid"].update(id=["a", "b"]), r"id has 2"),
    ],
)
def test_mmsa_schema_errors(tmp_path, mutate, message):
    data = _mmsa_data()
    mutate(data)
    path = _write_pickle(tmp_path / "bad.pkl", data)
    with pytest.raises(DatasetError, match=message):
        load_dataset(path)


def test_not_a_pickle(tmp_path):
    path = tmp_path / "junk.pkl"
    path.write_bytes(b"not a pickle at all")
    with pytest.raises(DatasetError, match="not a readable MMSA pickle"):
        load_dataset(path)
    _write_pickle(path, [1, 2, 3])
    with pytest.raises(DatasetError, match="expected a dict of splits"):
        load_dataset(path)


# --------------------------------------------------------------------------- #
# Finding datasets
# --------------------------------------------------------------------------- #


def test_default_data_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("DEEPMLF_DATA_DIR", str(tmp_path / "d"))
    assert default_data_dir() == tmp_path / "d"
    monkeypatch.delenv("DEEPMLF_DATA_DIR")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert default_data_dir() == tmp_path / "xdg" / "deepmlf" / "datasets"
    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_data_dir() == tmp_path / "home" / ".local" / "share" / "deepmlf" / "datasets"


def test_resolve_named_in_mmsa_layout(monkeypatch, tmp_path):
    path = _write_pickle(tmp_path / "MOSEI" / "Processed" / "unaligned_50.pkl", _mmsa_data())
    assert resolve_dataset("mosei", tmp_path) == path
    assert resolve_dataset("MOSEI", tmp_path) == path
    monkeypatch.setenv("DEEPMLF_DATA_DIR", str(tmp_path))
    assert resolve_dataset("mosei") == path
    ds = load_dataset("mosei")
    assert ds.name == "mosei" and ds.scheme == "mosi"


def test_bare_name_is_not_shadowed_by_a_local_folder(monkeypatch, tmp_path):
    data_dir = tmp_path / "data"
    path = _write_pickle(data_dir / "MOSI" / "Processed" / "unaligned_50.pkl", _mmsa_data())
    work = tmp_path / "work"
    (work / "mosi").mkdir(parents=True)  # e.g. the user's raw videos
    (work / "sample").mkdir()
    monkeypatch.chdir(work)
    assert resolve_dataset("mosi", data_dir) == path
    assert load_dataset("sample").source.startswith("models.data.sample")
    # an explicit path still means the folder
    with pytest.raises(DatasetError, match="without manifest.json"):
        resolve_dataset("./mosi", data_dir)


def test_resolve_flat_files(tmp_path):
    sims = _write_pickle(tmp_path / "unaligned_39.pkl", _mmsa_data(sims=True))
    assert resolve_dataset("sims", tmp_path) == sims
    mosi = _write_pickle(tmp_path / "mosi.pkl", _mmsa_data())
    assert resolve_dataset("mosi", tmp_path) == mosi
    v2 = _write_pickle(tmp_path / "SIMSv2" / "Processed" / "sims_unaligned.pkl", _mmsa_data(sims=True))
    assert resolve_dataset("simsv2", tmp_path) == v2


def test_resolve_missing_named_dataset_is_one_line(tmp_path):
    with pytest.raises(DatasetError) as info:
        resolve_dataset("sims", tmp_path)
    message = str(info.value)
    assert "\n" not in message
    assert str(tmp_path / "SIMS" / "Processed" / "unaligned_39.pkl") in message
    assert "https://github.com/thuiar/MMSA#datasets" in message


def test_resolve_other_errors(tmp_path):
    with pytest.raises(DatasetError, match="unknown dataset 'imdb'"):
        resolve_dataset("imdb", tmp_path)
    with pytest.raises(DatasetError, match="no such file"):
        resolve_dataset(str(tmp_path / "nope.pkl"), tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="without manifest.json"):
        resolve_dataset(str(tmp_path / "empty"))
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(DatasetError, match="not a dataset"):
        resolve_dataset(str(tmp_path / "notes.txt"))


def test_load_sample_by_name():
    ds = load_dataset("sample")
    assert ds.scheme == "sims" and len(ds.splits["train"]) > 0


# --------------------------------------------------------------------------- #
# Our own format
# --------------------------------------------------------------------------- #


def _dataset(tmp_path) -> MultimodalDataset:
    ds = load_dataset(_write_pickle(tmp_path / "SIMS" / "Processed" / "unaligned_39.pkl", _mmsa_data(sims=True)))
    ds.audio_features = [f"a{i}" for i in range(5)]
    ds.vision_features = None
    ds.recipe = {"audio": {"extractor": "librosa", "sr": 22050}}
    ds.audio_rate_hz = 43.07
    return ds


def test_save_load_roundtrip(tmp_path):
    ds = _dataset(tmp_path)
    out = save_dataset(ds, tmp_path / "out" / "mine")
    assert out == tmp_path / "out" / "mine"
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "test.npz", "train.npz", "valid.npz"]
    assert [p.name for p in out.parent.iterdir()] == ["mine"]  # no temp dirs left behind
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["format"] == "deepmlf-dataset" and manifest["version"] == 1
    assert manifest["splits"] == SPLIT_SIZES and manifest["scheme"] == "sims"
    back = load_dataset(out)
    assert back.name == "sims" and back.scheme == "sims" and back.recipe == ds.recipe
    assert back.audio_features == ds.audio_features and back.audio_rate_hz == 43.07
    assert back.n_cleaned == 0
    for name in SPLIT_SIZES:
        a, b = ds.splits[name], back.splits[name]
        assert a.ids == b.ids and a.texts == b.texts
        for key in ("audio", "vision", "audio_lengths", "vision_lengths", "labels", "labels_T", "labels_A", "labels_V"):
            np.testing.assert_array_equal(getattr(a, key), getattr(b, key))
    # by directory name under the data dir, and through manifest.json
    assert load_dataset("mine", tmp_path / "out").name == "sims"
    assert resolve_dataset(str(out / "manifest.json")) == out


def test_save_replaces_dataset_but_not_other_dirs(tmp_path):
    ds = _dataset(tmp_path)
    out = save_dataset(ds, tmp_path / "d")
    ds.splits["test"] = ds.splits["test"].subset([0, 1])
    save_dataset(ds, out)
    assert json.loads((out / "manifest.json").read_text())["splits"]["test"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["SIMS", "d"]
    other = tmp_path / "other"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    with pytest.raises(DatasetError, match="refusing to overwrite"):
        save_dataset(ds, other)
    assert (other / "keep.txt").read_text() == "mine"


def test_npz_with_dirt_is_cleaned(tmp_path):
    ds = _dataset(tmp_path)
    ds.splits["train"].audio[0, 0, :2] = [np.nan, -np.inf]
    out = save_dataset(ds, tmp_path / "dirty")
    back = load_dataset(out)
    assert back.cleaning_report["train"]["audio"] == 2
    assert np.isfinite(back.splits["train"].audio).all()


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda m: m.update(format="other"), "'format' is 'other', expected 'deepmlf-dataset'"),
        (lambda m: m.update(version=2), "version 2 is newer than this deepmlf reads"),
        (lambda m: m.update(version="1"), "'version' is '1'"),
        (lambda m: m.update(scheme="mosei"), "'scheme' is 'mosei'"),
        (lambda m: m["splits"].update(train=99), "holds 6 clips but manifest.json says 99"),
        (lambda m: m.update(audio_features=["a"]), "'audio_features' names 1 features but the audio arrays have 5"),
    ],
)
def test_manifest_errors(tmp_path, edit, message):
    out = save_dataset(_dataset(tmp_path), tmp_path / "d")
    manifest = json.loads((out / "manifest.json").read_text())
    edit(manifest)
    (out / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(DatasetError, match=message):
        load_dataset(out)


def test_npz_errors(tmp_path):
    out = save_dataset(_dataset(tmp_path), tmp_path / "d")
    (out / "valid.npz").unlink()
    with pytest.raises(DatasetError, match="valid.npz: missing split file"):
        load_dataset(out)
    arrays = dict(np.load(out / "train.npz"))
    arrays["texts"] = np.array(["x"] * 6, dtype=object)  # would need pickle to read
    np.savez(out / "valid.npz", **arrays)
    with pytest.raises(DatasetError, match="without pickled objects"):
        load_dataset(out)
    arrays = dict(np.load(out / "train.npz"))
    del arrays["vision_lengths"]
    np.savez(out / "valid.npz", **arrays)
    with pytest.raises(DatasetError, match="valid.npz: missing key\\(s\\) vision_lengths"):
        load_dataset(out)


def test_build_split_and_subset():
    rng = np.random.default_rng(1)
    arrays = {
        "audio": rng.normal(size=(5, 4, 2)),
        "vision": rng.normal(size=(5, 3, 2)),
        "audio_lengths": np.array([4, 3, 2, 1, 0]),
        "vision_lengths": np.array([3, 3, 3, 3, 3]),
        "labels": np.linspace(-1, 1, 5),
        "ids": [f"v$_${i}" for i in range(5)],
        "texts": ["a", "b", "c", "d", "e"],
    }
    split, report = build_split(arrays)
    assert report == {"audio": 0, "vision": 0} and split.labels.dtype == np.float32
    sub = split.subset(np.array([4, 0]))
    assert sub.ids == ["v$_$4", "v$_$0"] and sub.audio_lengths.tolist() == [0, 4]
    assert len(split.subset(slice(1, 3))) == 2
    assert split.subset(split.labels > 0).texts == ["d", "e"]
    with pytest.raises(DatasetError, match="missing key\\(s\\) texts"):
        build_split({k: v for k, v in arrays.items() if k != "texts"})


# --------------------------------------------------------------------------- #
# Normalisation
# --------------------------------------------------------------------------- #


def _valid_frames(features, lengths):
    return np.concatenate([features[i, : lengths[i]] for i in range(len(lengths))])


def test_normalizer_uses_valid_frames_only(tmp_path):
    ds = _dataset(tmp_path)
    train = ds.splits["train"]
    norm = FeatureNormalizer.fit(train)
    frames = _valid_frames(train.audio, train.audio_lengths)
    np.testing.assert_allclose(norm.audio_mean, frames.mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(norm.audio_std, frames.std(0), rtol=1e-5)
    out = norm.apply(train)
    z = _valid_frames(out.audio, out.audio_lengths)
    np.testing.assert_allclose(z.mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(z.std(0), 1, atol=1e-4)
    for i, n in enumerate(out.audio_lengths):
        assert (out.audio[i, n:] == 0).all()  # padding stays zero
    for i, n in enumerate(out.vision_lengths):
        assert (out.vision[i, n:] == 0).all()
    assert out.ids == train.ids and out.labels is train.labels
    assert train.audio[0, 0, 0] != out.audio[0, 0, 0]  # input untouched


def test_normalizer_chunked_fit_matches_and_constant_feature():
    rng = np.random.default_rng(2)
    audio = rng.normal(1000.0, 0.01, (700, 6, 2)).astype(np.float32)  # large mean, tiny spread
    audio[..., 1] = 5.0  # constant feature
    lengths = rng.integers(0, 7, 700)
    split = SplitData(
        ids=[""] * 700,
        texts=[""] * 700,
        audio=audio,
        vision=audio[:, :3],
        audio_lengths=lengths,
        vision_lengths=np.minimum(lengths, 3),
        labels=np.zeros(700, np.float32),
    )
    norm = FeatureNormalizer.fit(split)
    frames = _valid_frames(audio, lengths).astype(np.float64)
    np.testing.assert_allclose(norm.audio_mean[0], frames[:, 0].mean(), rtol=1e-6)
    np.testing.assert_allclose(norm.audio_std[0], frames[:, 0].std(), rtol=1e-3)
    assert norm.audio_std[1] == 1.0  # constant: centred, not blown up


def test_normalizer_state_dict_and_apply_array(tmp_path):
    ds = _dataset(tmp_path)
    norm = FeatureNormalizer.fit(ds.splits["train"])
    state = norm.state_dict()
    assert set(state) == {"audio_mean", "audio_std", "vision_mean", "vision_std"}
    assert all(v.dtype == np.float32 for v in state.values())
    again = FeatureNormalizer.from_state_dict(state)
    clip_audio = ds.splits["test"].audio[0, : ds.splits["test"].audio_lengths[0]]  # (T, D)
    a, v = again.apply_array(clip_audio, None)
    assert v is None and a.shape == clip_audio.shape
    np.testing.assert_allclose(a, (clip_audio - norm.audio_mean) / norm.audio_std, rtol=1e-6)
    batch = ds.splits["test"]
    a3, v3 = norm.apply_array(batch.audio, batch.vision, batch.audio_lengths, batch.vision_lengths)
    np.testing.assert_array_equal(a3, norm.apply(batch).audio)
    np.testing.assert_array_equal(v3, norm.apply(batch).vision)
    dirty = clip_audio.copy()
    dirty[0, 0] = np.nan
    assert np.isfinite(norm.apply_array(dirty, None)[0]).all()
    with pytest.raises(DatasetError, match="audio has 4 features per frame but the normalizer was fit on 5"):
        norm.apply_array(np.zeros((3, 4)), None)
    with pytest.raises(CheckpointError, match="lacks vision_std"):
        FeatureNormalizer.from_state_dict({k: v for k, v in state.items() if k != "vision_std"})
    with pytest.raises(CheckpointError, match="inconsistent"):
        FeatureNormalizer.from_state_dict({**state, "audio_std": np.zeros(5, np.float32)})
