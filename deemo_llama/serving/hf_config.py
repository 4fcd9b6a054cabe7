"""``DeemoHFConfig``: our checkpoint's config.json as a transformers ``PretrainedConfig``.

vLLM reads every checkpoint through ``AutoConfig``; registering this class for model_type
``deemo_llama`` lets it find the LLaMA text config (KV-cache sizing, tokenizer limits) under
``text_config`` while the modality settings stay plain dicts that :class:`deemo_llama.config.DeemoConfig`
parses (one source of truth for their meaning; the vLLM model reads them with DeemoConfig.load).
"""

from __future__ import annotations

from typing import Any

from transformers import AutoConfig, PretrainedConfig


class DeemoHFConfig(PretrainedConfig):
    model_type = "deemo_llama"
    sub_configs = {"text_config": AutoConfig}

    def __init__(self, text_config: dict | PretrainedConfig | None = None, video: dict | None = None, audio: dict | None = None, projectors_trained: bool = False, tool_call_start: str = "<tool_call>", tool_call_end: str = "</tool_call>", config_version: int = 1, **kwargs: Any):
        if isinstance(text_config, dict):
            tc = dict(text_config)
            text_config = AutoConfig.for_model(tc.pop("model_type", "llama"), **tc)
        self.text_config = text_config if text_config is not None else AutoConfig.for_model("llama")
        self.video = video
        self.audio = audio
        self.projectors_trained = projectors_trained
        self.tool_call_start = tool_call_start
        self.tool_call_end = tool_call_end
        self.config_version = config_version
        kwargs.setdefault("tie_word_embeddings", getattr(self.text_config, "tie_word_embeddings", False))
        super().__init__(**kwargs)


def register_auto_config() -> None:
    """Make ``AutoConfig.from_pretrained(<deemo checkpoint>)`` work (idempotent)."""
    try:
        AutoConfig.register(DeemoHFConfig.model_type, DeemoHFConfig)
    except ValueError:  # already registered in this process
        pass
