"""Training code: the LLM's LoRA fine-tuning (``llm``, re-exported here as ``deemo_llama.training``
always offered it) and the ``analyze_physiology`` valence/arousal model (``physio``).

The ``llm`` names load on first use, so that ``deemo_llama.training.physio`` (scikit-learn only)
does not import torch and transformers.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .llm import LoraSettings, TrainArgs, apply_lora, encode_record, load_records, train, trainable_parameter_names

__all__ = ["LoraSettings", "TrainArgs", "apply_lora", "encode_record", "load_records", "train", "trainable_parameter_names"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(importlib.import_module(".llm", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
