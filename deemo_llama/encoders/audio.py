"""Audio encoder: the encoder half of Whisper.

Shapes: input_features [N, n_mels, 3000] (30 s log-mel) -> features [N, 1500, d_model]; the model
keeps only the first ``audio_frames[i]`` (the unpadded part, 50 per second) of each item.
"""

from __future__ import annotations

import torch
from torch import nn


class WhisperAudioEncoder(nn.Module):
    def __init__(self, encoder: nn.Module, feature_dim: int):
        super().__init__()
        self.encoder = encoder  # transformers' WhisperEncoder
        self.feature_dim = feature_dim

    def forward(self, input_features: torch.Tensor) -> torch.Tensor:
        return self.encoder(input_features=input_features).last_hidden_state
