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
    # How batches are cut (benchmarks switch these to the reference's way to compare):
    bucketed: bool = True  # batch clips of similar transcript length (else in the given / shuffled order)
    pad_to: int = 0  # pad every batch's text to at least this many tokens (the reference pads to a fixed 50)
    max_tokens: int = 0  # the length transcripts were cut to (0: unknown, none counts as cut)

    def __len__(self) -> int:
        return len(self.ids)


def encode_split(split: SplitData, tokenizer, max_tokens: int, normalizer: FeatureNormalizer | None,
                 in_place: bool = False) -> EncodedSplit:
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
    return EncodedSplit(list(split.ids), token_ids, split.audio, split.audio_lengths, split.vision,
                        split.vision_lengths, split.labels.astype(np.float32), int(pad_id), max_tokens=max_tokens)


def length_bucketed_batches(encoded: EncodedSplit, batch_size: int, rng: np.random.Generator | None,
                            bucket_factor: int = 50) -> list[np.ndarray]:
    """Index batches of similar transcript length, so padding stays short.

    With `rng` (training) the order is shuffled: clips are shuffled, grouped
    into pools of `bucket_factor` batches, sorted by length within a pool,
    cut into batches, and the batches shuffled. Without it (evaluation) the
    whole split is sorted by length. A split with `bucketed` False is cut
    in order (shuffled with `rng`), as the reference does.
    """
    lengths = np.array([len(t) for t in encoded.token_ids])
    if not encoded.bucketed:
        order = np.arange(len(lengths)) if rng is None else rng.permutation(len(lengths))
        return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    if rng is None:
        order = np.argsort(lengths, kind="stable")
        return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    order = rng.permutation(len(lengths))
    pool = batch_size * bucket_factor
    batches: list[np.ndarray] = []
    for start in range(0, len(order), pool):
        chunk = order[start:start + pool]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        batches.extend(chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size))
    return [batches[i] for i in rng.permutation(len(batches))]


def next_token_targets(token_ids: list[list[int]], pad_id: int, max_tokens: int) -> torch.Tensor:
    """(B,) long: the LM-loss target after each transcript's last real token, as the reference has it.

    The reference right-pads to the maximum length and rolls the ids left by one, so the last
    real token predicts the padding id (GPT-2: EOS; a BERT tokenizer: [PAD] after the final
    [SEP]); a transcript that fills the maximum length (cut there) has nothing after it and
    predicts id 0.
    """
    full = [max_tokens > 0 and len(ids) >= max_tokens for ids in token_ids]
    return torch.tensor([0 if f else pad_id for f in full], dtype=torch.long)


def collate(encoded: EncodedSplit, index: np.ndarray) -> Batch:
    """Batch of clips `index`: text left-padded, audio/vision cut to the batch's longest clip."""
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
    )
