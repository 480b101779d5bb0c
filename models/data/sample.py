"""The embedded sample dataset: synthetic, small, needs no download.

It exists so that every command can be tried (and tested) end to end without
the MMSA files, on a task where *fusion* matters: no single modality predicts
the label well, and the right combination predicts it almost perfectly.

Generative story, per clip (all draws from ``numpy.random.default_rng(seed)``):

1. **Text** (English, 3-12 words) from a small lexicon of polar words and
   templates: ``"the food was really wonderful"``, ``"i hated the service"``,
   negations (``"the room was not great"``), contrast (``"the movie was bad but
   the music was wonderful"``, the clause after *but* decides), intensifiers
   and softeners, openers and tails. 10 % of clips are neutral
   (``"we visited the hotel on monday"``). ``text_polarity(sentence)`` reads
   a sentence's literal polarity ``p`` in [-1, 1] with the lexicon's rules;
   positive and negative sentences are equally likely.
2. **Audio**: 33 features per frame named like the SIMS librosa recipe
   (``zcr``, ``mfcc_0..19``, ``chroma_0..11``) at 12 frames/s, 20-60 frames,
   smooth AR(1) noise around recipe-like means and scales. In 30 % of clips a
   *sarcastic tone* appears: ``SARCASM_SHIFT`` standard deviations added to the
   ``SARCASM_FEATURES`` dims over a contiguous window of 6-12 frames. Sarcasm
   flips the meaning: ``flip = -1`` in those clips, else ``+1``.
3. **Vision**: 16 OpenFace-style action-unit intensities (``AU01_r`` ...) at
   4 frames/s, 5-20 frames (a third of the audio frames: the same clip). An
   *expressiveness* level ``s`` in [0.4, 1] raises every AU by ``s`` times a
   per-AU loading; it sets how *strong* the sentiment is, never its sign.
4. **Label** (scheme ``"sims"``): ``clip(p · flip · s + N(0, 0.05), -1, 1)``
   rounded to steps of 0.2, as CH-SIMS labels are. Unimodal labels follow the
   SIMS idea of an annotator who sees one modality: ``labels_T`` is the literal
   text polarity ``p``, ``labels_A`` reads a sarcastic tone as mildly negative
   (-0.4, else 0), ``labels_V`` is ~0 (a face's expressiveness has no valence
   here); each with small noise and the same 0.2 rounding.
5. **Dirt** at a low rate, as real features have it: about 1 % of clips get a
   ``-inf`` audio value (COVAREP style) and 1 % a NaN vision frame. The loader's
   cleaning sets them to 0 and counts them.

Consequences (checked in ``tests/test_sample.py`` with plain numpy): the sign
of ``p`` alone agrees with the label's sign on ~70 % of polar clips, a linear
read-out of audio+vision alone is at chance on the sign, and ``p`` combined
with a detector of the audio sarcasm window gets ~95 %+. Generation is
deterministic in ``seed`` and takes a few tens of milliseconds.
"""

from __future__ import annotations

from pathlib import Path
from typing import TypedDict

import numpy as np

from models.data.format import build_split, save_dataset
from models.data.locate import SAMPLE_NAME
from models.data.types import MultimodalDataset, SplitData
from models.errors import ConfigError
from models.schemes import Scheme

AUDIO_FEATURES: list[str] = ["zcr"] + [f"mfcc_{i}" for i in range(20)] + [f"chroma_{i}" for i in range(12)]
VISION_FEATURES: list[str] = [f"AU{n:02d}_r" for n in (1, 2, 4, 5, 6, 7, 9, 10, 12, 14, 15, 17, 20, 23, 25, 26)]
AUDIO_RATE_HZ = 12.0
VISION_RATE_HZ = 4.0
T_AUDIO_RANGE = (20, 60)  # frames, inclusive
T_VISION_RANGE = (5, 20)

SARCASM_RATE = 0.30
SARCASM_FEATURES: tuple[str, ...] = ("zcr", "mfcc_1", "mfcc_2", "mfcc_3", "chroma_0")
SARCASM_SHIFT = 2.5  # in units of the feature's noise std
SARCASM_WINDOW = (6, 12)  # frames, inclusive
NEUTRAL_RATE = 0.10
STRENGTH_RANGE = (0.4, 1.0)
LABEL_NOISE = 0.05
LABEL_STEP = 0.2
DIRT_RATE = 0.01

# --------------------------------------------------------------------------- #
# Text
# --------------------------------------------------------------------------- #

ADJECTIVES: dict[str, float] = {
    "wonderful": 1.0,
    "excellent": 1.0,
    "amazing": 1.0,
    "great": 0.8,
    "lovely": 0.8,
    "good": 0.6,
    "nice": 0.6,
    "pleasant": 0.4,
    "decent": 0.4,
    "awful": -1.0,
    "terrible": -1.0,
    "horrible": -1.0,
    "bad": -0.8,
    "disappointing": -0.8,
    "poor": -0.6,
    "boring": -0.6,
    "bland": -0.4,
    "mediocre": -0.4,
}
VERBS: dict[str, float] = {
    "loved": 1.0,
    "enjoyed": 0.8,
    "liked": 0.6,
    "appreciated": 0.6,
    "hated": -1.0,
    "despised": -1.0,
    "disliked": -0.6,
    "regretted": -0.8,
}
LEXICON: dict[str, float] = {**ADJECTIVES, **VERBS}
INTENSIFIERS: dict[str, float] = {"really": 1.25, "very": 1.25, "so": 1.25, "extremely": 1.5, "truly": 1.25}
SOFTENERS: dict[str, float] = {"somewhat": 0.6, "slightly": 0.5, "fairly": 0.7}
NEGATIONS: frozenset[str] = frozenset({"not", "never"})
NEGATION_FACTOR = -0.7  # "not terrible" is mildly positive, not great

NOUNS = [
    "food",
    "service",
    "movie",
    "hotel",
    "staff",
    "music",
    "room",
    "price",
    "show",
    "waiter",
    "coffee",
    "trip",
    "book",
    "game",
    "phone",
]
PLACES = ["hotel", "museum", "cafe", "market", "cinema"]
NEUTRAL_ADJECTIVES = ["average", "ordinary", "standard", "typical"]
DAYS = ["monday", "tuesday", "friday", "sunday"]
OPENERS = ["", "", "", "honestly", "well", "i think", "overall", "to be fair"]
TAILS = ["", "", "", "today", "this time", "as usual", "for the price", "at the end"]


def text_polarity(sentence: str) -> float:
    """Literal polarity in [-1, 1] of a sentence built from this module's lexicon.

    The clause after the last "but" decides; within it, each lexicon word's
    value is scaled by an intensifier or softener right before it and flipped
    (times -0.7) by "not"/"never" up to two words before it; several polar words
    are averaged. Sentences without polar words have polarity 0.
    """
    tokens = sentence.lower().split()
    if "but" in tokens:
        last = len(tokens) - 1 - tokens[::-1].index("but")
        tokens = tokens[last + 1 :]
    values = []
    for i, token in enumerate(tokens):
        if token not in LEXICON:
            continue
        value = LEXICON[token]
        before = tokens[max(0, i - 2) : i]
        if before:
            value *= INTENSIFIERS.get(before[-1], 1.0) * SOFTENERS.get(before[-1], 1.0)
        if any(word in NEGATIONS for word in before):
            value *= NEGATION_FACTOR
        values.append(value)
    if not values:
        return 0.0
    return float(np.clip(np.mean(values), -1.0, 1.0))


def text_label(sentence: str) -> float:
    """What a text-only annotator would give: the literal polarity rounded to the label step (0.2)."""
    return round(round(text_polarity(sentence) / LABEL_STEP) * LABEL_STEP, 6) + 0.0


def _pick(rng: np.random.Generator, items):
    return items[int(rng.integers(len(items)))]


def _words_with_sign(rng: np.random.Generator, table: dict[str, float], positive: bool) -> str:
    return _pick(rng, [w for w, v in table.items() if (v > 0) == positive])


def _modifier(rng: np.random.Generator) -> str:
    roll = rng.random()
    if roll < 0.25:
        return _pick(rng, list(INTENSIFIERS)) + " "
    if roll < 0.35:
        return _pick(rng, list(SOFTENERS)) + " "
    return ""


def _clause(rng: np.random.Generator, positive: bool) -> str:
    """One polar clause whose literal polarity has the requested sign."""
    noun = _pick(rng, NOUNS)
    kind = rng.random()
    if kind < 0.15:
        # negated: pick a word of the opposite sign so the clause keeps the requested sign
        adjective = _words_with_sign(rng, ADJECTIVES, not positive)
        return f"the {noun} was {_pick(rng, ['not', 'never'])} {adjective}"
    if kind < 0.55:
        return f"the {noun} was {_modifier(rng)}{_words_with_sign(rng, ADJECTIVES, positive)}"
    if kind < 0.85:
        return f"i {_modifier(rng)}{_words_with_sign(rng, VERBS, positive)} the {noun}"
    if kind < 0.93:
        return f"what a {_words_with_sign(rng, ADJECTIVES, positive)} {noun}"
    return f"{_modifier(rng)}{_words_with_sign(rng, ADJECTIVES, positive)} {noun}"


def _sentence(rng: np.random.Generator, polarity_sign: int) -> str:
    """A 3-12 word sentence; ``polarity_sign`` is -1, 0 (neutral) or +1."""
    while True:
        if polarity_sign == 0:
            noun = _pick(rng, NOUNS)
            core = (
                f"we visited the {_pick(rng, PLACES)} on {_pick(rng, DAYS)}"
                if rng.random() < 0.5
                else f"the {noun} was {_pick(rng, NEUTRAL_ADJECTIVES)}"
            )
        elif rng.random() < 0.15:
            core = f"{_clause(rng, polarity_sign < 0)} but {_clause(rng, polarity_sign > 0)}"
        else:
            core = _clause(rng, polarity_sign > 0)
        words = " ".join(part for part in (_pick(rng, OPENERS), core, _pick(rng, TAILS)) if part)
        if 3 <= len(words.split()) <= 12:
            return words


# Continuations the demo LM learns after a sentence, by literal polarity. A
# real pretrained LM has read text followed by reactions; after pretraining on
# this corpus the tiny LM's state at a sentence's last token predicts its
# continuation, so it carries the polarity the way GPT-2's states do.
CONTINUATIONS: dict[int, str] = {1: " :)", -1: " :(", 0: " ."}
LM_CORPUS_SEED = 12345  # not a dataset seed: the corpus is new sentences of the same grammar


def sample_sentences(n: int, seed: int = LM_CORPUS_SEED) -> list[str]:
    """`n` fresh sentences of the sample's grammar (10 % neutral, the rest half positive, half negative)."""
    rng = np.random.default_rng(seed)
    signs = rng.choice([-1, 0, 1], size=n, p=[(1 - NEUTRAL_RATE) / 2, NEUTRAL_RATE, (1 - NEUTRAL_RATE) / 2])
    return [_sentence(rng, int(sign)) for sign in signs]


def lm_corpus(n: int = 4000, seed: int = LM_CORPUS_SEED) -> list[str]:
    """Pretraining text for the demo's tiny LM: `n` sentences of the sample's grammar, each
    followed by its literal polarity's continuation (``CONTINUATIONS``).

    The sentences are fresh draws, not the dataset's clips, and the continuation
    depends on the words alone: the LM learns what a text says, never the
    sarcasm (audio) or strength (vision) the labels also depend on.
    """
    return [s + CONTINUATIONS[int(np.sign(text_polarity(s)))] for s in sample_sentences(n, seed)]


# --------------------------------------------------------------------------- #
# Audio and vision
# --------------------------------------------------------------------------- #

# Recipe-like per-feature location and spread, so normalisation matters:
# zcr ~0.08, mfcc_0 around -250, other MFCCs around 0 with shrinking spread,
# chroma in [0, 1].
_AUDIO_MEAN = np.concatenate([[0.08], [-250.0], np.linspace(60.0, -5.0, 19), np.full(12, 0.45)]).astype(np.float32)
_AUDIO_STD = np.concatenate([[0.03], [40.0], np.linspace(20.0, 4.0, 19), np.full(12, 0.15)]).astype(np.float32)
_VISION_BASE = np.linspace(0.2, 0.8, 16).astype(np.float32)  # resting AU intensity
_VISION_LOADING = np.linspace(2.0, 0.8, 16).astype(np.float32)[::-1].copy()  # AU rise per unit of expressiveness
_VISION_NOISE = 0.25


def _ar1(rng: np.random.Generator, shape: tuple[int, int, int], rho: float = 0.6) -> np.ndarray:
    """Unit-variance AR(1) noise along axis 1: smooth like frame-level features. (N,T,D)."""
    white = rng.standard_normal(shape).astype(np.float32)
    out = np.empty_like(white)
    out[:, 0] = white[:, 0]
    scale = np.float32(np.sqrt(1 - rho**2))
    for t in range(1, shape[1]):
        out[:, t] = rho * out[:, t - 1] + scale * white[:, t]
    return out


def _round_label(values: np.ndarray) -> np.ndarray:
    steps = np.round(np.clip(values, -1.0, 1.0) / LABEL_STEP)
    return (steps * LABEL_STEP + 0.0).astype(np.float32)  # + 0.0 turns -0.0 into 0.0


class _RawSplit(TypedDict):
    """One generated split, named as in a deepmlf ``<split>.npz`` (dirt not yet cleaned)."""

    audio: np.ndarray  # (N, T_a, D_a) float32
    vision: np.ndarray  # (N, T_v, D_v) float32
    audio_lengths: np.ndarray  # (N,) int64
    vision_lengths: np.ndarray  # (N,) int64
    labels: np.ndarray  # (N,) float32, multimodal
    labels_T: np.ndarray  # (N,) float32, one per modality
    labels_A: np.ndarray
    labels_V: np.ndarray
    ids: list[str]
    texts: list[str]


def _generate_split(rng: np.random.Generator, n: int, split: str) -> _RawSplit:
    """Raw arrays of one split, dirt included, named as in a deepmlf ``.npz``."""
    # Exact shares, not coin flips, so that even a 150-clip split shows the
    # designed mix: 10 % neutral, the rest half positive and half negative,
    # and 30 % of the polar clips sarcastic.
    n_neutral = int(round(NEUTRAL_RATE * n))
    n_polar = n - n_neutral
    signs = np.array([0] * n_neutral + [1] * (n_polar // 2) + [-1] * (n_polar - n_polar // 2))
    signs = signs[rng.permutation(n)]  # (N,)
    polar = np.flatnonzero(signs != 0)
    sarcastic = np.zeros(n, dtype=bool)  # (N,)
    sarcastic[rng.choice(polar, int(round(SARCASM_RATE * polar.size)), replace=False)] = True
    neutral = np.flatnonzero(signs == 0)
    sarcastic[neutral] = rng.random(neutral.size) < SARCASM_RATE
    texts = [_sentence(rng, int(sign)) for sign in signs]
    polarity = np.array([text_polarity(t) for t in texts], dtype=np.float32)  # (N,)

    t_a = rng.integers(T_AUDIO_RANGE[0], T_AUDIO_RANGE[1] + 1, n)  # (N,)
    t_v = np.clip(np.round(t_a * VISION_RATE_HZ / AUDIO_RATE_HZ), *T_VISION_RANGE).astype(np.int64)  # (N,)
    frames_a = np.arange(T_AUDIO_RANGE[1])[None, :]  # (1, T_a)
    frames_v = np.arange(T_VISION_RANGE[1])[None, :]  # (1, T_v)
    valid_a = frames_a < t_a[:, None]  # (N, T_a)
    valid_v = frames_v < t_v[:, None]  # (N, T_v)

    # Audio in noise units first, then scaled to recipe-like values.
    z_audio = _ar1(rng, (n, T_AUDIO_RANGE[1], len(AUDIO_FEATURES)))  # (N, T_a, D_a)
    width = rng.integers(SARCASM_WINDOW[0], SARCASM_WINDOW[1] + 1, n)  # (N,)
    start = (rng.random(n) * (t_a - width + 1)).astype(np.int64)  # window inside the valid frames
    window = (frames_a >= start[:, None]) & (frames_a < (start + width)[:, None]) & sarcastic[:, None]  # (N, T_a)
    dims = [AUDIO_FEATURES.index(name) for name in SARCASM_FEATURES]
    z_audio[:, :, dims] += SARCASM_SHIFT * window[:, :, None]
    audio = (_AUDIO_MEAN + _AUDIO_STD * z_audio) * valid_a[:, :, None]  # (N, T_a, D_a), zero padding

    strength = rng.uniform(*STRENGTH_RANGE, n).astype(np.float32)  # (N,)
    z_vision = _ar1(rng, (n, T_VISION_RANGE[1], len(VISION_FEATURES)), rho=0.4)  # (N, T_v, D_v)
    vision = _VISION_BASE + strength[:, None, None] * _VISION_LOADING + _VISION_NOISE * z_vision
    vision = np.maximum(vision, 0.0) * valid_v[:, :, None]  # AU intensities are >= 0; zero padding

    flip = np.where(sarcastic, -1.0, 1.0).astype(np.float32)
    labels = _round_label(polarity * flip * strength + rng.normal(0, LABEL_NOISE, n))
    labels_t = _round_label(polarity + rng.normal(0, LABEL_NOISE, n))
    labels_a = _round_label(np.where(sarcastic, -0.4, 0.0) + rng.normal(0, LABEL_NOISE, n))
    labels_v = _round_label(rng.normal(0, 0.1, n))

    # Dirt: one -inf in a valid audio frame, one NaN vision frame, in ~1 % of clips each.
    for array, lengths, make_bad in ((audio, t_a, "audio"), (vision, t_v, "vision")):
        hit = np.flatnonzero(rng.random(n) < DIRT_RATE)
        frame = (rng.random(hit.size) * lengths[hit]).astype(np.int64)
        if make_bad == "audio":
            array[hit, frame, rng.integers(0, array.shape[2], hit.size)] = -np.inf
        else:
            array[hit, frame, :] = np.nan

    # About five clips per "video", as in real corpora: ids "video$_$clip".
    ids = [f"{split}{i // 5:03d}$_${i % 5}" for i in range(n)]
    return {
        "audio": audio.astype(np.float32),
        "vision": vision.astype(np.float32),
        "audio_lengths": t_a.astype(np.int64),
        "vision_lengths": t_v,
        "labels": labels,
        "labels_T": labels_t,
        "labels_A": labels_a,
        "labels_V": labels_v,
        "ids": ids,
        "texts": texts,
    }


def _raw_splits(n_train: int, n_valid: int, n_test: int, seed: int) -> dict[str, _RawSplit]:
    sizes = {"train": n_train, "valid": n_valid, "test": n_test}
    for name, size in sizes.items():
        if size < 1:
            raise ConfigError(f"n_{name} must be at least 1, got {size}")
    # One child stream per split: changing n_test does not change the train split.
    streams = np.random.SeedSequence(seed).spawn(3)
    return {
        name: _generate_split(np.random.default_rng(stream), size, name)
        for (name, size), stream in zip(sizes.items(), streams)
    }


def _dataset(splits: dict[str, SplitData], report: dict[str, dict[str, int]], seed: int) -> MultimodalDataset:
    return MultimodalDataset(
        name=SAMPLE_NAME,
        scheme=Scheme.SIMS,
        splits=splits,
        audio_features=list(AUDIO_FEATURES),
        vision_features=list(VISION_FEATURES),
        # No raw media exist, so there is no extraction recipe to reproduce.
        recipe=None,
        source=f"models.data.sample (seed {seed})",
        audio_rate_hz=AUDIO_RATE_HZ,
        vision_rate_hz=VISION_RATE_HZ,
        cleaning_report=report,
    )


def make_sample_dataset(n_train: int = 600, n_valid: int = 150, n_test: int = 150, seed: int = 0) -> MultimodalDataset:
    """The synthetic sample, checked and cleaned like any loaded dataset.

    Deterministic in ``seed``. The injected dirt has been cleaned (set to 0);
    ``cleaning_report`` says how much there was.
    """
    raw = _raw_splits(n_train, n_valid, n_test, seed)
    splits, report = {}, {}
    for name, arrays in raw.items():
        splits[name], report[name] = build_split(arrays, where=f"sample [{name}]")
    return _dataset(splits, report, seed)


def write_sample_dataset(
    out_dir: Path, n_train: int = 600, n_valid: int = 150, n_test: int = 150, seed: int = 0
) -> Path:
    """Write the sample in the deepmlf dataset format (see ``save_dataset``); return the directory.

    The files keep the dirt (NaN/-inf), as extracted features may, so loading
    them exercises the loader's cleaning.
    """
    raw = _raw_splits(n_train, n_valid, n_test, seed)
    splits = {
        name: SplitData(
            ids=list(arrays["ids"]),
            texts=list(arrays["texts"]),
            audio=arrays["audio"],
            vision=arrays["vision"],
            audio_lengths=arrays["audio_lengths"],
            vision_lengths=arrays["vision_lengths"],
            labels=arrays["labels"],
            labels_T=arrays["labels_T"],
            labels_A=arrays["labels_A"],
            labels_V=arrays["labels_V"],
        )
        for name, arrays in raw.items()
    }
    return save_dataset(_dataset(splits, {}, seed), Path(out_dir))
