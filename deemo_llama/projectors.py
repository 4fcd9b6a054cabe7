"""Projectors: encoder features [N, T, in_dim] -> LLM embedding space [N, T, out_dim]."""

from __future__ import annotations

from torch import nn

from .config import ProjectorConfig


class MLPProjector(nn.Module):
    """Two-layer MLP with GELU (the LLaVA-1.5 projector)."""

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int):
        super().__init__()
        self.fc1 = nn.Linear(in_dim, hidden_dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_dim, out_dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class LinearProjector(nn.Module):
    """A single linear map (the Emotion-LLaMA projector)."""

    def __init__(self, in_dim: int, out_dim: int):
        super().__init__()
        self.proj = nn.Linear(in_dim, out_dim)

    def forward(self, x):
        return self.proj(x)


def build_projector(cfg: ProjectorConfig, in_dim: int, out_dim: int) -> nn.Module:
    """The one place that reads a ProjectorConfig."""
    if cfg.type == "mlp":
        return MLPProjector(in_dim, cfg.hidden_dim or out_dim, out_dim)
    if cfg.type == "linear":
        return LinearProjector(in_dim, out_dim)
    raise ValueError(f"unknown projector type {cfg.type!r} (expected 'mlp' or 'linear')")
