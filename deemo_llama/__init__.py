"""deemo-llama: privacy-preserving multimodal emotion understanding.

Public API (imported lazily so ``deemo --help`` stays fast):

    from deemo_llama import load_checkpoint, default_checkpoint, analyze_clip
    model, processor = load_checkpoint(default_checkpoint())
    result = analyze_clip("clip.mp4")
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "DeemoConfig": "config",
    "DeemoLlamaForConditionalGeneration": "modeling",
    "MediaInputs": "modeling",
    "DeemoProcessor": "processing",
    "ComponentSpec": "build",
    "create_model": "build",
    "load_checkpoint": "build",
    "save_checkpoint": "build",
    "default_checkpoint": "assets",
    "base_checkpoint": "assets",
    "prepare_assets": "assets",
    "analyze_clip": "analyze",
    "load_clip": "media",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'deemo_llama' has no attribute {name!r}")
