"""Video encoder: an image backbone applied to each sampled frame.

Shapes: pixel_values [N, T, 3, S, S] (ImageNet/CLIP-normalised) -> features [N, T, D].
Frame sampling happens at decode time (``media.sample_times``); temporal pooling to a fixed token
count happens in the model, so every clip gets the same number of placeholder tokens.
"""

from __future__ import annotations

import torch
from torch import nn


class FrameEncoder(nn.Module):
    """Wraps either our MobileNetV2 or a Hugging Face vision tower (CLIP/SigLIP ``*VisionModel``)."""

    def __init__(self, backbone: nn.Module, feature_dim: int, hf_vision: bool):
        super().__init__()
        self.backbone = backbone
        self.feature_dim = feature_dim
        self.hf_vision = hf_vision

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        n, t = pixel_values.shape[:2]
        flat = pixel_values.flatten(0, 1)  # [N*T, 3, S, S]
        if self.hf_vision:
            out = self.backbone(pixel_values=flat)
            pooled = out.pooler_output if getattr(out, "pooler_output", None) is not None else out.last_hidden_state.mean(1)
        else:
            pooled = self.backbone.forward_features(flat)
        return pooled.reshape(n, t, -1)
