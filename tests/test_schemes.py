"""The Scheme enum (issue 13): scale, neutral band and bins as docs/architecture.md §7 defines them; files keep plain strings."""

from __future__ import annotations

import json
import pickle
from types import SimpleNamespace

import numpy as np
import pytest

from models.errors import CheckpointError, ConfigError
from models.evaluation.metrics import PRIMARY_METRICS, SCHEMES, compute_metrics
from models.schemes import Scheme


def test_scales_and_clipping_follow_the_design():
    assert Scheme.MOSI.scale == (-3.0, 3.0) and Scheme.SIMS.scale == (-1.0, 1.0)
    # SIMS: clip both to [-1, 1] first, MAE too; MOSI scores unclipped predictions.
    assert Scheme.SIMS.clips_before_scoring and not Scheme.MOSI.clips_before_scoring
    assert compute_metrics([3.0, -1.0], [1.0, -1.0], Scheme.SIMS)["MAE"] == 0.0
    assert compute_metrics([3.0, -1.0], [1.0, -1.0], Scheme.MOSI)["MAE"] == 1.0


def test_sims_bins_are_left_open_right_closed():
    values = [-5.0, -1.0, -0.7, -0.69, -0.1, -0.09, 0.0, 0.1, 0.11, 0.7, 0.71, 1.0, 5.0]
    sims = Scheme.SIMS
    assert sims.classes(values, 2).tolist() == [0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1]  # zero counts as negative
    assert sims.classes(values, 3).tolist() == [0, 0, 0, 0, 0, 1, 1, 1, 2, 2, 2, 2, 2]  # cuts at ±0.1
    assert sims.classes(values, 5).tolist() == [0, 0, 0, 1, 1, 2, 2, 2, 3, 3, 4, 4, 4]  # -0.7, -0.1, 0.1, 0.7
    assert sims.edges(5)[1:-1] == (-0.7, -0.1, 0.1, 0.7) and sims.edges(2)[1:-1] == (0.0,)
    assert sims.neutral_band == 0.1 and sims.edges(3)[1:-1] == (-sims.neutral_band, sims.neutral_band)
    assert sims.class_counts == (2, 3, 5) and sims.finest_classes == 5


def test_mosi_classes_round_half_to_even():
    values = [-9.0, -2.5, -1.5, -0.5, 0.0, 0.5, 1.5, 2.5, 9.0]
    mosi = Scheme.MOSI
    # Acc-7: round(clip(±3)), numpy rounding (half to even), shifted to 0..6.
    assert (mosi.classes(values, 7) - 3).tolist() == [-3, -2, -2, 0, 0, 0, 2, 2, 3]
    # Acc-5: round(clip(±2)).
    assert (mosi.classes(values, 5) - 2).tolist() == [-2, -2, -2, 0, 0, 0, 2, 2, 2]
    assert mosi.classes([-0.01, 0.0, 0.01], 2).tolist() == [0, 1, 1]  # Has0: zero is positive
    assert mosi.classes([-0.01, 0.0, 0.01], 3).tolist() == [0, 1, 2]  # neutral is exactly 0
    assert mosi.neutral_band == 0.0 and mosi.finest_classes == 7
    with pytest.raises(ConfigError, match="rounding"):
        mosi.edges(2)
    with pytest.raises(ConfigError, match="use 2, 3, 5, 7"):
        mosi.classes([0.0], 4)


def test_primary_metrics_are_what_the_metrics_compute():
    for scheme in Scheme:
        keys = compute_metrics([0.5, -0.2, 0.1], [0.4, -0.3, 0.2], scheme)
        assert PRIMARY_METRICS[scheme] == scheme.primary_metrics and set(scheme.primary_metrics) <= set(keys)
        acc_n = [int(key.rsplit("_", 1)[1]) for key in keys if key.startswith("Mult_acc_")]
        assert acc_n and set(acc_n) <= set(scheme.class_counts)  # every Acc-n is one of the scheme's binnings
    assert SCHEMES == ("mosi", "sims")


@pytest.mark.parametrize("text", ["mosi", "sims"])
def test_every_scheme_string_in_files_parses(text, tmp_path):
    scheme = Scheme.parse(text)
    assert scheme == text and scheme.value == text and Scheme(text) is scheme
    # written as the plain string: run.json, results.json, manifests, checkpoint meta
    assert json.dumps({"scheme": scheme}) == json.dumps({"scheme": text})
    assert json.loads(json.dumps(scheme)) == text and str(scheme) == text and f"{scheme}" == text
    assert repr(scheme) == repr(text)  # messages written with !r read as before
    assert {text: 1}[scheme] == 1 and PRIMARY_METRICS[text] == PRIMARY_METRICS[scheme]
    # the pickle of an enum member would need deepmlf to load: files hold .value
    assert type(scheme.value) is str and b"models.schemes" not in pickle.dumps(scheme.value)


def test_unknown_schemes_are_refused_with_the_choices():
    assert Scheme.get("mosei") is None and Scheme.get(None) is None and Scheme.get(Scheme.SIMS) is Scheme.SIMS
    with pytest.raises(ConfigError, match="'mosei': use one of mosi, sims"):
        Scheme.parse("mosei")
    with pytest.raises(ConfigError, match="use one of mosi, sims"):
        compute_metrics([0.0, 1.0], [0.0, 1.0], "MOSI")


def test_checkpoint_meta_schemes_parse():
    from models.evaluation.predict import model_scheme

    def loaded(meta):
        return SimpleNamespace(meta=meta, directory="ckpt")

    assert model_scheme(loaded({"dataset": {"scheme": "sims"}})) is Scheme.SIMS
    assert model_scheme(loaded({})) is Scheme.MOSI  # checkpoints from before the scheme was recorded
    with pytest.raises(CheckpointError, match="unknown scheme 'mosei'"):
        model_scheme(loaded({"dataset": {"scheme": "mosei"}}))


def test_guess_from_labels_and_name():
    assert Scheme.guess([np.array([-1.0, 0.4, 1.0]), np.array([])]) is Scheme.SIMS
    assert Scheme.guess([np.array([0.2]), np.array([-1.2])]) is Scheme.MOSI
    assert Scheme.guess([np.array([1.0000001], np.float32)]) is Scheme.SIMS  # a label of 1 through float32
    assert Scheme.guess([np.array([2.0])], name="my-sims") is Scheme.SIMS  # MMSA's SIMS folder names it
    assert Scheme.guess([]) is Scheme.SIMS


def test_loaded_datasets_hold_a_scheme(tmp_path):
    from models.data.format import save_dataset
    from models.data.load import load_dataset

    ds = load_dataset("sample")
    assert ds.scheme is Scheme.SIMS
    out = save_dataset(ds, tmp_path / "copy")
    assert json.loads((out / "manifest.json").read_text())["scheme"] == "sims"
    assert load_dataset(out).scheme is Scheme.SIMS


def test_plots_bin_as_the_metrics_do():
    from models.evaluation.plots import class_bins

    values = np.array([-1.0, -0.7, -0.1, 0.0, 0.1, 0.7, 1.0])
    index, names = class_bins(values, "sims", 5)
    assert index.tolist() == Scheme.SIMS.classes(values, 5).tolist() and len(names) == 5
    index, names = class_bins(values * 3, "mosi", 7)
    assert index.tolist() == Scheme.MOSI.classes(values * 3, 7).tolist() and names[0] == "-3"
