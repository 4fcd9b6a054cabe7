"""Training code: the LLM's LoRA fine-tuning (``llm``: the loop; ``rows``: tokenised rows and batches;
``anchor`` and ``crossfit``: the anchor stage; re-exported here as ``deemo_llama.training`` always
offered it) and the ``analyze_physiology`` valence/arousal model (``physio``).

The ``llm`` names load on first use, so that ``deemo_llama.training.physio`` (scikit-learn only)
does not import torch and transformers.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .llm import apply_lora, train, trainable_parameter_names
    from .recipe import LoraRecipe, Recipe, StageRecipe, load_recipe
    from .rows import encode_record, load_records

__all__ = ["LoraRecipe", "Recipe", "StageRecipe", "apply_lora", "encode_record", "load_recipe", "load_records", "train", "trainable_parameter_names"]
_HOME = {"LoraRecipe": ".recipe", "Recipe": ".recipe", "StageRecipe": ".recipe", "load_recipe": ".recipe", "encode_record": ".rows", "load_records": ".rows"}


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(importlib.import_module(_HOME.get(name, ".llm"), __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
