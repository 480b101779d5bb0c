"""A dataset is held once: features are z-scored in place, and the split remembers it."""

from __future__ import annotations

import numpy as np

from models.data.batching import encode_split
from models.data.checks import _clean
from models.data.normalize import FeatureNormalizer
from models.data.sample import make_sample_dataset


def test_in_place_normalisation_overwrites_the_raw_arrays_with_the_same_values_as_a_copy():
    split = make_sample_dataset(n_train=40, n_valid=8, n_test=8, seed=1).splits["train"]
    normalizer = FeatureNormalizer.fit(split)
    copied = normalizer.apply(split)
    raw_audio = split.audio
    encoded = encode_split(split, None, 8, normalizer, in_place=True)
    assert encoded.audio is raw_audio  # no second copy of the features
    np.testing.assert_array_equal(encoded.audio, copied.audio)
    np.testing.assert_array_equal(encoded.vision, copied.vision)
    assert split.normalized_by is normalizer
    # The raw values are gone: fit returns the statistics they had, applying again changes nothing.
    assert FeatureNormalizer.fit(split) is normalizer
    again = normalizer.apply(split)
    np.testing.assert_array_equal(again.audio, copied.audio)


def test_another_normaliser_first_undoes_the_one_applied_in_place():
    dataset = make_sample_dataset(n_train=40, n_valid=8, n_test=8, seed=2)
    train, valid = dataset.splits["train"], dataset.splits["valid"]
    first, second = FeatureNormalizer.fit(train), FeatureNormalizer.fit(valid)
    expected = second.apply(train)  # from the raw values
    first.apply(train, in_place=True)
    got = second.apply(train)
    np.testing.assert_allclose(got.audio, expected.audio, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(got.vision, expected.vision, rtol=1e-4, atol=1e-4)
    assert got.normalized_by is second and train.normalized_by is first


def test_cleaning_by_blocks_counts_and_zeroes_every_non_finite_value():
    rng = np.random.default_rng(0)
    array = rng.normal(size=(700, 5, 3)).astype(np.float32)
    bad = rng.random(array.shape) < 0.01
    array[bad] = np.where(rng.random(int(bad.sum())) < 0.5, np.nan, -np.inf)
    assert _clean(array, chunk=64) == int(bad.sum())
    assert np.isfinite(array).all() and (array[bad] == 0).all()
