"""The embedded sample: shape, determinism, dirt, and that it needs fusion (numpy analysis)."""

from __future__ import annotations

import numpy as np
import pytest

from models.data.load import load_dataset
from models.data.normalize import FeatureNormalizer
from models.data.sample import (
    AUDIO_FEATURES,
    SARCASM_FEATURES,
    SARCASM_SHIFT,
    VISION_FEATURES,
    make_sample_dataset,
    text_polarity,
    write_sample_dataset,
)
from models.errors import ConfigError


@pytest.fixture(scope="module")
def sample():
    return make_sample_dataset()


def test_shapes_and_ranges(sample):
    assert sample.name == "sample" and sample.scheme == "sims" and sample.recipe is None
    assert {k: len(v) for k, v in sample.splits.items()} == {"train": 600, "valid": 150, "test": 150}
    assert sample.d_audio == 33 == len(AUDIO_FEATURES) and sample.audio_features == AUDIO_FEATURES
    assert sample.d_vision == 16 == len(VISION_FEATURES)
    for split in sample.splits.values():
        assert split.audio.dtype == np.float32 and split.audio.shape[1:] == (60, 33)
        assert split.vision.shape[1:] == (20, 16)
        assert 20 <= split.audio_lengths.min() and split.audio_lengths.max() <= 60
        assert 5 <= split.vision_lengths.min() and split.vision_lengths.max() <= 20
        for i in range(len(split)):
            assert not split.audio[i, split.audio_lengths[i] :].any()  # zero padding at the end
            assert not split.vision[i, split.vision_lengths[i] :].any()
        for labels in (split.labels, split.labels_T, split.labels_A, split.labels_V):
            assert labels.dtype == np.float32 and np.abs(labels).max() <= 1.0
            np.testing.assert_allclose(labels * 5, np.round(labels * 5), atol=1e-5)  # 0.2 steps
        words = [len(t.split()) for t in split.texts]
        assert min(words) >= 3 and max(words) <= 12
        assert all("$_$" in i for i in split.ids) and len(set(split.ids)) == len(split)


def test_deterministic():
    # Its speed (well under a second) is measured by benchmarks/bench_sample.py, not asserted here.
    a = make_sample_dataset(seed=3)
    b = make_sample_dataset(seed=3)
    c = make_sample_dataset(seed=4)
    for name in ("train", "valid", "test"):
        np.testing.assert_array_equal(a.splits[name].audio, b.splits[name].audio)
        np.testing.assert_array_equal(a.splits[name].labels, b.splits[name].labels)
        assert a.splits[name].texts == b.splits[name].texts
    assert not np.array_equal(a.splits["train"].labels, c.splits["train"].labels)
    # the train split does not depend on the size of the others
    small = make_sample_dataset(n_valid=10, n_test=10, seed=3)
    np.testing.assert_array_equal(small.splits["train"].audio, a.splits["train"].audio)
    with pytest.raises(ConfigError):
        make_sample_dataset(n_test=0)


def test_dirt_is_cleaned_and_written(sample, tmp_path):
    assert sample.n_cleaned > 0
    assert all(np.isfinite(s.audio).all() and np.isfinite(s.vision).all() for s in sample.splits.values())
    out = write_sample_dataset(tmp_path / "sample")
    with np.load(out / "train.npz") as raw:  # the files keep the dirt
        assert not np.isfinite(raw["audio"]).all() or not np.isfinite(raw["vision"]).all()
    loaded = load_dataset(out)
    assert loaded.cleaning_report == sample.cleaning_report
    assert loaded.audio_rate_hz == 12.0 and loaded.vision_features == VISION_FEATURES
    for name in ("train", "valid", "test"):
        np.testing.assert_array_equal(loaded.splits[name].audio, sample.splits[name].audio)
        np.testing.assert_array_equal(loaded.splits[name].labels_A, sample.splits[name].labels_A)
        assert loaded.splits[name].texts == sample.splits[name].texts


def test_text_polarity_rules():
    assert text_polarity("the food was wonderful") == 1.0
    assert text_polarity("the food was bad") == -0.8
    assert text_polarity("the food was really good") == pytest.approx(0.75)
    assert text_polarity("the food was not terrible") == pytest.approx(0.7)
    assert text_polarity("the food was bad but the service was great") == pytest.approx(0.8)
    assert text_polarity("we visited the museum on monday") == 0.0


# --------------------------------------------------------------------------- #
# The sample needs fusion: a numpy analysis, no neural model
# --------------------------------------------------------------------------- #


def _polar(split):
    """Polarity of each text and a mask of clips where both text and label have a sign."""
    p = np.array([text_polarity(t) for t in split.texts])
    return p, (split.labels != 0) & (p != 0)


def _sarcasm_score(split, normalizer) -> np.ndarray:
    """Peak of a 4-frame moving average over the sarcasm dims, in z units: (N,)."""
    audio = normalizer.apply(split).audio  # (N, T, D)
    dims = [AUDIO_FEATURES.index(name) for name in SARCASM_FEATURES]
    track = audio[:, :, dims].mean(axis=2)  # (N, T)
    kernel = np.ones(4) / 4
    scores = np.empty(len(split))
    for i, length in enumerate(split.audio_lengths):
        scores[i] = np.convolve(track[i, :length], kernel, mode="valid").max()
    return scores


def _av_summary(split, normalizer) -> np.ndarray:
    """Mean and max over valid frames of normalised audio and vision, plus a bias: (N, F)."""
    s = normalizer.apply(split)
    parts = []
    for feats, lengths in ((s.audio, s.audio_lengths), (s.vision, s.vision_lengths)):
        mask = (np.arange(feats.shape[1]) < lengths[:, None])[:, :, None]  # (N, T, 1)
        parts.append((feats * mask).sum(1) / lengths[:, None])
        parts.append(np.where(mask, feats, -np.inf).max(1))
    parts.append(np.ones((len(split), 1)))
    return np.concatenate(parts, axis=1)


def test_label_needs_text_and_audio_and_vision(sample):
    train, held_out = sample.splits["train"], [sample.splits["valid"], sample.splits["test"]]
    normalizer = FeatureNormalizer.fit(train)

    # 1. Text alone: the sign of the words agrees with the label on ~70 % only.
    agree = []
    for split in sample.splits.values():
        p, m = _polar(split)
        agree.append(np.sign(p[m]) == np.sign(split.labels[m]))
    text_acc = np.concatenate(agree).mean()
    assert 0.65 <= text_acc <= 0.75, text_acc

    # 2. Audio+vision alone: a least-squares linear read-out of the sign is at chance.
    y_train = np.sign(train.labels)
    fit = train.labels != 0
    weights, *_ = np.linalg.lstsq(_av_summary(train, normalizer)[fit], y_train[fit], rcond=None)
    hits = []
    for split in held_out:
        m = split.labels != 0
        pred = np.sign(_av_summary(split, normalizer)[m] @ weights)
        hits.append(pred == np.sign(split.labels[m]))
    av_acc = np.concatenate(hits).mean()
    assert 0.35 <= av_acc <= 0.62, av_acc

    # 3. Text + the audio sarcasm cue: ~95 %+ (threshold half the designed shift).
    combined = []
    for split in sample.splits.values():
        p, m = _polar(split)
        flip = np.where(_sarcasm_score(split, normalizer) > SARCASM_SHIFT / 2, -1, 1)
        combined.append(np.sign(p[m]) * flip[m] == np.sign(split.labels[m]))
    fused_acc = np.concatenate(combined).mean()
    assert fused_acc >= 0.95, fused_acc

    # 4. Vision sets the strength: |label| follows |text| x expressiveness better than |text| alone.
    level = np.concatenate([_av_summary(s, normalizer)[:, 66:82].mean(1) for s in sample.splits.values()])
    p_abs = np.concatenate([np.abs(_polar(s)[0]) for s in sample.splits.values()])
    y_abs = np.concatenate([np.abs(s.labels) for s in sample.splits.values()])
    level = (level - level.min()) / (level.max() - level.min())
    assert np.corrcoef(p_abs * (0.4 + 0.6 * level), y_abs)[0, 1] > np.corrcoef(p_abs, y_abs)[0, 1] + 0.05


def test_lm_corpus_continuations_follow_the_words():
    from models.data.sample import CONTINUATIONS, lm_corpus, sample_sentences, text_label

    corpus = lm_corpus(300, seed=3)
    assert corpus == lm_corpus(300, seed=3) and corpus != lm_corpus(300, seed=4)
    sentences = sample_sentences(300, seed=3)
    for sentence, line in zip(sentences, corpus):
        sign = int(np.sign(text_polarity(sentence)))
        assert line == sentence + CONTINUATIONS[sign]
        assert np.sign(text_label(sentence)) == sign or abs(text_polarity(sentence)) < 0.1
    for continuation in CONTINUATIONS.values():  # all three continuations occur
        assert any(line.endswith(continuation) for line in corpus)
