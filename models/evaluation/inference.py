"""Predictions over an encoded split, in batches, split over ranks under torchrun and gathered."""

from __future__ import annotations

import numpy as np
import torch

from models.data.batching import EncodedSplit, collate, length_bucketed_batches
from models.devices import autocast_context, model_autocast


@torch.no_grad()
def predict_encoded(model, encoded: EncodedSplit, batch_size: int, device: torch.device) -> dict[str, np.ndarray]:
    """Every head's output for every clip, in the split's order.

    Returns arrays (N,): "prediction", "text", "av", "fusion" (mean over the
    fusion tokens; NaN when the model has none).
    """
    from models.distributed import gather_predictions, rank_and_world

    was_training = model.training
    model.eval()
    n = len(encoded)
    out = {k: np.full(n, np.nan, dtype=np.float32) for k in ("prediction", "text", "av", "fusion")}
    # Under torchrun each rank predicts every world-th batch (the same batches as one process) and the
    # shares are gathered, so every rank returns the full split; every rank must call this.
    rank, world = rank_and_world()
    mine = length_bucketed_batches(encoded, batch_size, rng=None)[rank::world]
    autocast = model_autocast(model, device)
    try:
        for index in mine:
            batch = collate(encoded, index).to(device)
            with autocast_context(device, autocast):
                result = model(batch, compute_loss=False)
            out["prediction"][index] = result.prediction.float().cpu().numpy()
            out["text"][index] = result.text.float().cpu().numpy()
            out["av"][index] = result.av.float().cpu().numpy()
            if result.fusion.numel():
                out["fusion"][index] = result.fusion.float().mean(-1).cpu().numpy()
    finally:
        model.train(was_training)
    return gather_predictions(out, np.concatenate(mine) if mine else np.zeros(0, np.int64), n)
