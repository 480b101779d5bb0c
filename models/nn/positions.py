"""Position ids of one DeepMLF forward pass: text tokens, then fusion tokens.

Text is left-padded, so text positions count real tokens only (padding does
not shift them). The fusion tokens get either the reference's fixed positions
max_text_tokens … max_text_tokens+n_f−1 (its text has a fixed length, so its
fusion tokens always sit there) or the positions right after each clip's last
real token.
"""

from __future__ import annotations

import torch

from models.config import FusionPositions, ModelConfig
from models.errors import ConfigError


def text_positions(text_valid: torch.Tensor) -> torch.Tensor:
    """text_valid (B, T) bool, left-padded → position ids (B, T) long: 0 … K−1 on the real tokens.

    Padding does not shift them (padding positions read 0), so a clip gets the
    same positions alone or in a batch padded to any length.
    """
    return (text_valid.long().cumsum(1) - 1).clamp(min=0)  # (B, T)


def token_positions(text_valid: torch.Tensor, config: ModelConfig) -> torch.Tensor:
    """text_valid (B, T) bool, left-padded → position ids (B, T + n_f) long."""
    B, T = text_valid.shape
    text = text_positions(text_valid)  # (B, T)
    steps = torch.arange(config.n_fusion, device=text_valid.device)[None, :]  # (1, n_f)
    if config.fusion_positions is FusionPositions.FIXED:
        fusion = (config.max_text_tokens + steps).expand(B, -1)  # (B, n_f)
    else:
        fusion = text_valid.long().sum(1, keepdim=True) + steps  # (B, n_f): right after the last real token
    return torch.cat([text, fusion], dim=1)


def check_position_budget(config: ModelConfig, max_positions: int | None) -> None:
    """Raise when text plus fusion tokens need more positions than the LM has (GPT-2: 1024)."""
    needed = config.max_text_tokens + config.n_fusion
    if max_positions is not None and needed > max_positions:
        raise ConfigError(
            f"max_text_tokens={config.max_text_tokens} + n_fusion={config.n_fusion} = {needed} positions, "
            f"but the LM {config.lm!r} has {max_positions}; lower max_text_tokens or n_fusion"
        )
