"""vLLM general plugin (entry point ``vllm.general_plugins``): runs in every vLLM process.

Registers our transformers config class for ``model_type: deemo_llama`` and the model class for
``architectures: ["DeemoLlamaForConditionalGeneration"]`` (lazy string form: vLLM imports it only
when a deemo checkpoint is served).
"""

from __future__ import annotations

ARCHITECTURE = "DeemoLlamaForConditionalGeneration"


def register() -> None:
    from vllm import ModelRegistry

    from .hf_config import register_auto_config

    register_auto_config()
    if ARCHITECTURE not in ModelRegistry.get_supported_archs():
        ModelRegistry.register_model(ARCHITECTURE, "deemo_llama.serving.vllm_model:DeemoLlamaForConditionalGeneration")
