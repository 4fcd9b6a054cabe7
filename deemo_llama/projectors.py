"""Projectors: encoder features [N, T, in_dim] (or one item's [T, in_dim]) -> LLM embedding space [.., T, out_dim].

``build_projector`` reads a ProjectorConfig: the map itself (``mlp``: LLaVA-1.5's two layers with
GELU; ``linear``: Emotion-LLaMA's single map), optionally a LayerNorm on the features first, and
optionally the temporal ``delta`` input, [x_t, x_t - mean_t x], so that what changes over a clip
is a direct input rather than a small difference between tokens the LLM would have to compute, and
optionally a fixed output norm (each token rescaled to the length of a word embedding).
"""

from __future__ import annotations

from collections import OrderedDict
from contextlib import contextmanager
from typing import Callable, Iterator, Mapping

import torch
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


class FixedNorm(nn.Module):
    """[.., H] -> [.., H]: each vector rescaled to L2 norm ``norm`` (no parameters)."""

    def __init__(self, norm: float, eps: float = 1e-6):
        super().__init__()
        self.norm, self.eps = float(norm), eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * (self.norm / (x.norm(dim=-1, keepdim=True) + self.eps))


class TemporalDelta(nn.Module):
    """[.., T, D] -> [.., T, 2D]: each token beside its difference from the mean over the T axis."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, x - x.mean(-2, keepdim=True)], -1)


def build_projector(cfg: ProjectorConfig, in_dim: int, out_dim: int) -> nn.Module:
    """The one place that reads a ProjectorConfig. Plain configs keep the plain module (and its
    state-dict keys: ``fc1``/``fc2`` or ``proj``); with ``input_norm`` or ``temporal`` the map is
    the last step of an ``nn.Sequential`` (keys ``norm``, ``map.fc1``, ...)."""
    width = in_dim * (2 if cfg.temporal == "delta" else 1)
    if cfg.type == "mlp":
        core: nn.Module = MLPProjector(width, cfg.hidden_dim or out_dim, out_dim)
    elif cfg.type == "linear":
        core = LinearProjector(width, out_dim)
    else:
        raise ValueError(f"unknown projector type {cfg.type!r} (expected 'mlp' or 'linear')")
    if not cfg.input_norm and cfg.temporal == "none" and cfg.output_norm is None:
        return core
    steps: dict[str, nn.Module] = {}
    if cfg.input_norm:
        steps["norm"] = nn.LayerNorm(in_dim)
    if cfg.temporal == "delta":
        steps["delta"] = TemporalDelta()
    steps["map"] = core
    if cfg.output_norm is not None:
        steps["out_norm"] = FixedNorm(cfg.output_norm)
    return nn.Sequential(OrderedDict(steps))


@contextmanager
def projector_outputs_replaced(model, fns: Mapping[str, Callable[[torch.Tensor], torch.Tensor]]) -> Iterator:
    """While inside, each named modality's projected tokens ``out`` become ``fns[name](out)`` (forward
    hooks on ``model.projectors``; modalities the model lacks are ignored): the one mechanism behind
    the ablation's zeroing, modality dropout and cross-fitting's out-of-fold tokens."""
    handles = [model.projectors[n].register_forward_hook(lambda _m, _i, out, f=f: f(out)) for n, f in fns.items() if n in model.projectors]
    try:
        yield model
    finally:
        for h in handles:
            h.remove()
