"""From a dataset split to model batches: tokenise once, bucket by length, collate, predict.

Shared by training, evaluation and prediction so all three see a clip
exactly the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from models.data.normalize import FeatureNormalizer
from models.data.text import fallback_token_id, tokenize_texts
from models.data.types import SplitData
from models.nn.interface import Batch


@dataclass
class EncodedSplit:
    """A split ready for the model: normalised features and token ids computed once."""

    ids: list[str]
    token_ids: list[list[int]]
    audio: np.ndarray  # (N, T_a, D_a) float32, normalised, zero-padded
    audio_lengths: np.ndarray  # (N,)
    vision: np.ndarray  # (N, T_v, D_v)
    vision_lengths: np.ndarray  # (N,)
    labels: np.ndarray  # (N,) float32
    pad_id: int
    # How evaluation batches are cut (benchmarks switch these to the reference's way to compare;
    # training batches follow TrainConfig.batching, see `training_batches`):
    bucketed: bool = True  # evaluation: clips sorted by transcript length (else in the split's order)
    pad_to: int = 0  # pad every batch's text to at least this many tokens (the reference pads to a fixed 50)
    max_tokens: int = 0  # the length transcripts were cut to (0: unknown, none counts as cut)

    def __len__(self) -> int:
        return len(self.ids)


def encode_split(
    split: SplitData, tokenizer, max_tokens: int, normalizer: FeatureNormalizer | None, in_place: bool = False
) -> EncodedSplit:
    """Normalise features and tokenise transcripts once (never per batch).

    `tokenizer` may be None for models that read no text (AV pretraining):
    every clip then gets one placeholder token. `in_place` normalises the
    split's own arrays (FeatureNormalizer.apply), so the raw copy is not kept.
    """
    if normalizer is not None:
        split = normalizer.apply(split, in_place=in_place)
    if tokenizer is None:
        token_ids, pad_id = [[0] for _ in range(len(split))], 0
    else:
        token_ids = tokenize_texts(tokenizer, split.texts, max_tokens)
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else fallback_token_id(tokenizer)
    return EncodedSplit(
        list(split.ids),
        token_ids,
        split.audio,
        split.audio_lengths,
        split.vision,
        split.vision_lengths,
        split.labels.astype(np.float32),
        int(pad_id),
        max_tokens=max_tokens,
    )


def length_bucketed_batches(
    encoded: EncodedSplit, batch_size: int, rng: np.random.Generator | None, bucket_factor: int = 50
) -> list[np.ndarray]:
    """Index batches of similar transcript length, so padding stays short.

    Without `rng` (evaluation) the whole split is sorted by length (in the split's order when
    `encoded.bucketed` is False). With it (training's "bucketed" batching) clips are shuffled,
    grouped into pools of `bucket_factor` batches, sorted by length within a pool, cut into
    batches, and the batches shuffled: the fastest, but it changes which clips share an
    optimizer step.
    """
    lengths = np.array([len(t) for t in encoded.token_ids])
    if rng is None:
        order = np.argsort(lengths, kind="stable") if encoded.bucketed else np.arange(len(lengths))
        return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    order = rng.permutation(len(lengths))
    pool = batch_size * bucket_factor
    batches: list[np.ndarray] = []
    for start in range(0, len(order), pool):
        chunk = order[start : start + pool]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    return [batches[i] for i in rng.permutation(len(batches))]


LossNorm = tuple[float, float] | None  # a micro-batch's loss divisors (Batch.loss_norm)


def training_batches(
    encoded: EncodedSplit, batch_size: int, per_step: int, rng: np.random.Generator, mode: str
) -> tuple[list[np.ndarray], list[LossNorm]]:
    """One epoch's micro-batches, in order, for every rank together, and each one's loss divisors.

    `per_step` is the micro-batches of one optimizer step over all ranks (world × grad_accum);
    models.distributed.shard_batches deals the list round-robin, so step s takes micro-batches
    s·per_step … (s+1)·per_step − 1 of it on every rank together.

    - "shuffle": the reference's batches: a seeded permutation cut in order (no drop_last).
    - "window": the same permutation, cut into windows of per_step × batch_size clips (one
      optimizer step's clips); each window's full micro-batches are regrouped by transcript
      length, so every step sums gradients over exactly the clips "shuffle" gives it, with far
      less padding. A window's short last micro-batch (the epoch's end) keeps the clips shuffle
      gives it. Regrouped micro-batches divide their loss sums by the window's means per
      micro-batch (clips, LM targets: one per real token), not their own counts, so the
      regrouping cannot change the summed gradient.
    - "bucketed": `length_bucketed_batches` (global length pools): fastest; it changes which
      clips share an optimizer step.
    """
    batches: list[np.ndarray] = []
    norms: list[LossNorm] = []
    if mode == "bucketed":
        batches = length_bucketed_batches(encoded, batch_size, rng)
        return batches, [None] * len(batches)
    order = rng.permutation(len(encoded))
    if mode == "shuffle":
        batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
        return batches, [None] * len(batches)
    if mode != "window":
        raise ValueError(f"unknown batching {mode!r}; choose window, shuffle or bucketed")
    lengths = np.array([len(t) for t in encoded.token_ids])  # LM targets per clip (models.nn.deepmlf.lm_targets)
    window = per_step * batch_size
    for start in range(0, len(order), window):
        chunk = order[start : start + window]
        full = len(chunk) // batch_size * batch_size
        regrouped = chunk[:full][np.argsort(lengths[chunk[:full]], kind="stable")]
        micro = [regrouped[i : i + batch_size] for i in range(0, full, batch_size)]
        if micro:
            norm = (float(batch_size), float(lengths[regrouped].sum()) / len(micro))
            batches.extend(micro)
            norms.extend([norm] * len(micro))
        if full < len(chunk):
            batches.append(chunk[full:])
            norms.append(None)
    return batches, norms


def next_token_targets(token_ids: list[list[int]], pad_id: int, max_tokens: int) -> torch.Tensor:
    """(B,) long: the LM-loss target after each transcript's last real token, as the reference has it.

    The reference right-pads to the maximum length and rolls the ids left by one, so the last
    real token predicts the padding id (GPT-2: EOS; a BERT tokenizer: [PAD] after the final
    [SEP]); a transcript that fills the maximum length (cut there) has nothing after it and
    predicts id 0.
    """
    full = [max_tokens > 0 and len(ids) >= max_tokens for ids in token_ids]
    return torch.tensor([0 if f else pad_id for f in full], dtype=torch.long)


def collate(encoded: EncodedSplit, index: np.ndarray, loss_norm: LossNorm = None) -> Batch:
    """Batch of clips `index`: text left-padded, audio/vision cut to the batch's longest clip.

    `loss_norm`: the loss terms' divisors (from `training_batches`); None: the batch's own counts.
    """
    from models.data.text import collate_text

    token_ids = [encoded.token_ids[i] for i in index]
    text_ids, text_valid = collate_text(token_ids, encoded.pad_id, encoded.pad_to)
    a_len = encoded.audio_lengths[index]
    v_len = encoded.vision_lengths[index]
    t_a = max(1, int(a_len.max()))
    t_v = max(1, int(v_len.max()))
    return Batch(
        text_ids=text_ids,
        text_valid=text_valid,
        audio=torch.from_numpy(np.ascontiguousarray(encoded.audio[index, :t_a])),
        audio_lengths=torch.from_numpy(a_len.astype(np.int64)),
        vision=torch.from_numpy(np.ascontiguousarray(encoded.vision[index, :t_v])),
        vision_lengths=torch.from_numpy(v_len.astype(np.int64)),
        labels=torch.from_numpy(encoded.labels[index]),
        text_next=next_token_targets(token_ids, encoded.pad_id, encoded.max_tokens),
        loss_norm=loss_norm,
    )
