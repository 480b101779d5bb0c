"""Stage 1 of the curriculum: the AV encoder alone, trained with L1 on the label.

Its parameter names (`av_encoder.*`, and `av_head.*` with the mean readout) are
those of DeepMLF, so a pretraining checkpoint loads straight into a DeepMLF
model (Pre&Tune, Pre&Fro). With the reference's last-step readout the head is
`av_clf.*` and the encoder has no LayerNorm: stage 2 keeps its own fresh ones.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models.config import AVReadout, ModelConfig
from models.nn.av_encoder import AVEncoder, masked_mean
from models.nn.interface import Batch, Output


class AVPretrainModel(nn.Module):
    """AV encoder + a linear head: on the last valid step of the Fusion FFW's output, no LayerNorm
    (`av_readout=last`, the reference; the head is `av_clf`, which stage 2 does not load), or on ⟨z⟩
    (`av_readout=mean`; the head is `av_head`, loaded with the encoder's LayerNorm)."""

    kind = "av"  # the model kind its checkpoints record (models.nn.registry)

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.last = config.av_readout is AVReadout.LAST
        self.av_encoder = AVEncoder.from_config(config, output_norm=not self.last)
        head = nn.Linear(config.d_av, 1)
        if self.last:
            self.av_clf = head
        else:
            self.av_head = head

    def forward(self, batch: Batch, compute_loss: bool = True) -> Output:
        z, valid = self.av_encoder(batch.audio, batch.audio_lengths, batch.vision, batch.vision_lengths)
        if self.last:
            # The reference's fixed grid makes [:, -1] its last step; here a clip's last valid one.
            last = (valid.long().sum(1) - 1).clamp(min=0)  # (B,)
            y_av = self.av_clf(z[torch.arange(z.shape[0], device=z.device), last]).squeeze(-1).float()  # (B,)
        else:
            y_av = self.av_head(masked_mean(z, valid)).squeeze(-1).float()  # (B,)
        out = Output.of(y_av, av=y_av)  # no text head, no fusion tokens
        if compute_loss and batch.labels is not None:
            out.loss = F.l1_loss(y_av, batch.labels.float())
            out.terms = {"av": float(out.loss.detach())}
        return out

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        return dict(self.state_dict())


AV_PREFIXES = ("av_encoder.", "av_head.")
BATCHNORM_PREFIXES = ("av_encoder.audio_norm.", "av_encoder.vision_norm.")
FRESH_PREFIXES = ("av_encoder.norm.", "av_head.")


def load_av_weights(model: nn.Module, tensors: dict[str, torch.Tensor], freeze: bool = False) -> int:
    """Copy pretrained AV-encoder (and AV-head) tensors into `model`; returns how many were loaded.

    Strict both ways: every AV tensor of the model must be in the checkpoint
    (none left at its random init) and every AV tensor of the checkpoint must
    fit the model, but for a BatchNorm the model does not have (skipped); the
    error names the first key that does not. With `freeze`
    (Pre&Fro) the AV encoder stops training.
    """
    from models.errors import CheckpointError

    own = {k: v for k, v in model.state_dict().items() if k.startswith(AV_PREFIXES)}
    wanted = {k: v for k, v in tensors.items() if k.startswith(AV_PREFIXES)}
    fix = "pretrain on the same dataset with the same preset (AV settings), or use --init-av random"
    if not wanted:
        raise CheckpointError(f"the AV pretraining checkpoint holds no AV tensors; {fix}")
    # The encoder's LayerNorm and the AV head may be absent: the reference's pretraining has no
    # LayerNorm and its own head (`av_clf`), and stage 2 builds them fresh.
    missing = sorted(k for k in set(own) - set(wanted) if not k.startswith(FRESH_PREFIXES))
    # A BatchNorm the pretraining had and this model has not (MOSI: audio BatchNorm in pretraining
    # only, as the reference) is left out; any other surplus tensor is an error.
    wanted = {k: v for k, v in wanted.items() if k in own or not k.startswith(BATCHNORM_PREFIXES)}
    unexpected = sorted(set(wanted) - set(own))
    mismatched = sorted(k for k in set(own) & set(wanted) if own[k].shape != wanted[k].shape)
    if missing:
        raise CheckpointError(
            f"the AV pretraining checkpoint lacks {missing[0]} ({len(missing)} model AV "
            f"tensor(s) missing), so it would stay randomly initialised; {fix}"
        )
    if unexpected:
        raise CheckpointError(
            f"the AV pretraining checkpoint holds {unexpected[0]}, which this model does not "
            f"have ({len(unexpected)} such tensor(s)); {fix}"
        )
    if mismatched:
        key = mismatched[0]
        raise CheckpointError(
            f"shape mismatch at {key}: checkpoint {tuple(wanted[key].shape)}, model {tuple(own[key].shape)}; {fix}"
        )
    model.load_state_dict(wanted, strict=False)
    if freeze:
        for p in model.get_submodule("av_encoder").parameters():
            p.requires_grad_(False)
    return len(wanted)
