"""DeemoLlamaForConditionalGeneration for vLLM 0.32 (the serving environment only).

Same architecture and checkpoint as :mod:`deemo_llama.modeling`; vLLM runs the LLaMA backbone with
its paged attention, while the encoders and projectors are our own modules:

    video frames [T, H, W, 3] uint8 --DeemoProcessor--> [T, 3, S, S] --FrameEncoder--> [T, Dv]
        --pool--> [K_v, Dv] --projector--> [K_v, H]  replaces K_v x <|video|> in the prompt
    16 kHz wave --Whisper log-mel--> [80, 3000] --Whisper encoder--> [1500, Da]
        --pool valid frames--> [K_a, Da] --projector--> [K_a, H]  replaces K_a x <|audio|>

The chat template emits ONE placeholder per media part; the prompt update below expands it to the
modality's ``num_tokens`` copies. LoRA adapters (peft, LLM-only) are served with ``--enable-lora``:
``hf_to_vllm_mapper`` maps a bare LLaMA adapter's ``model.*`` keys onto ``language_model.model.*``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from functools import cached_property
from typing import Annotated, Any

import numpy as np
import torch
from torch import nn
from transformers import BatchFeature
from vllm.config import VllmConfig
from vllm.config.multimodal import BaseDummyOptions
from vllm.multimodal import MULTIMODAL_REGISTRY
from vllm.multimodal.inputs import MultiModalFieldConfig, MultiModalKwargsItems
from vllm.multimodal.parse import MultiModalDataItems, MultiModalDataParser
from vllm.multimodal.processing import BaseDummyInputsBuilder, BaseMultiModalProcessor, BaseProcessingInfo, PromptReplacement, PromptUpdate
from vllm.sequence import IntermediateTensors
from vllm.utils.tensor_schema import TensorSchema, TensorShape
from vllm.model_executor.models.interfaces import MultiModalEmbeddings, SupportsLoRA, SupportsMultiModal
from vllm.model_executor.models.module_mapping import MultiModelKeys
from vllm.model_executor.models.utils import AutoWeightsLoader, WeightsMapper, init_vllm_registered_model, maybe_prefix

from ..config import DeemoConfig
from ..modeling import build_audio_encoder, build_video_encoder, pool_tokens
from ..projectors import build_projector
from .hf_config import DeemoHFConfig

MEDIA_KEYS = {"video": ("pixel_values_videos",), "audio": ("audio_features", "audio_frames")}


class DeemoVideoInputs(TensorSchema):
    """Dimensions: nv videos, t frames, s image size."""

    pixel_values_videos: Annotated[torch.Tensor, TensorShape("nv", "t", 3, "s", "s")]


class DeemoAudioInputs(TensorSchema):
    """Dimensions: na audios, nm mel bins; audio_frames: unpadded Whisper frames per item."""

    audio_features: Annotated[torch.Tensor, TensorShape("na", "nm", 3000)]
    audio_frames: Annotated[torch.Tensor, TensorShape("na")]


class DeemoProcessingInfo(BaseProcessingInfo):
    def get_hf_config(self) -> DeemoHFConfig:
        return self.ctx.get_hf_config(DeemoHFConfig)

    @cached_property
    def deemo_config(self) -> DeemoConfig:
        return DeemoConfig.load(self.ctx.model_config.model)

    @cached_property
    def media_processor(self):
        """Our DeemoProcessor (tokenizer, template, media preprocessing) from the checkpoint."""
        from ..processing import DeemoProcessor

        return DeemoProcessor.from_pretrained(self.ctx.model_config.model, self.deemo_config)

    def get_data_parser(self) -> MultiModalDataParser:
        return MultiModalDataParser(target_sr=16000, target_channels=1, expected_hidden_size=self._get_expected_hidden_size(), allow_missing_mm_embeddings=self.allow_missing_mm_embeddings)

    def get_supported_mm_limits(self) -> Mapping[str, int | None]:
        return {name: None for name in self.deemo_config.modalities}

    def get_mm_max_tokens_per_item(self, seq_len: int, mm_counts: Mapping[str, int] | None = None) -> Mapping[str, int]:
        return {name: m.num_tokens for name, m in self.deemo_config.modalities.items()}


class DeemoDummyInputsBuilder(BaseDummyInputsBuilder[DeemoProcessingInfo]):
    def get_dummy_text(self, mm_counts: Mapping[str, int]) -> str:
        mods = self.info.deemo_config.modalities
        return "".join(mods[name].placeholder * mm_counts.get(name, 0) for name in mods)

    def get_dummy_mm_data(self, seq_len: int, mm_counts: Mapping[str, int], mm_options: Mapping[str, BaseDummyOptions] | None = None) -> dict:
        cfg = self.info.deemo_config
        data: dict = {}
        if cfg.video is not None:  # worst case: the encoder's frame count at its input size
            s = cfg.video.encoder.image_size
            data["video"] = self._get_dummy_videos(width=s, height=s, num_frames=cfg.video.encoder.num_frames, num_videos=mm_counts.get("video", 0))
        if cfg.audio is not None:  # worst case: the full Whisper window
            data["audio"] = self._get_dummy_audios(length=int(cfg.audio.encoder.max_seconds * 16000), num_audios=mm_counts.get("audio", 0))
        return data


def _frames(item: Any) -> np.ndarray:
    """A vLLM video item (frames, or (frames, metadata)) -> uint8 [T, H, W, 3]."""
    if isinstance(item, tuple):
        item = item[0]
    x = np.asarray(item)
    if x.dtype != np.uint8:
        x = np.clip(x * (255.0 if x.max() <= 1.0 else 1.0), 0, 255).astype(np.uint8)
    return x


def _subsample(frames: np.ndarray, n: int) -> np.ndarray:
    """At most ``n`` uniformly spaced frames (the encoder's frame budget), as in load_clip."""
    if len(frames) <= n:
        return frames
    idx = np.linspace(0, len(frames) - 1, n).round().astype(int)
    return frames[idx]


class DeemoMultiModalProcessor(BaseMultiModalProcessor[DeemoProcessingInfo]):
    def _call_hf_processor(self, hf_data: Mapping[str, object], hf_kwargs: Mapping[str, object]) -> BatchFeature:
        proc, cfg = self.info.media_processor, self.info.deemo_config
        videos = [_subsample(_frames(v), cfg.video.encoder.num_frames) for v in hf_data.get("videos", []) or []]
        audios = [np.asarray(a[0] if isinstance(a, tuple) else a, dtype=np.float32) for a in hf_data.get("audio", []) or []]
        media = proc.prepare_media(videos, audios)
        out: dict[str, torch.Tensor] = {}
        if media is not None and media.pixel_values_videos is not None:
            out["pixel_values_videos"] = media.pixel_values_videos
        if media is not None and media.audio_features is not None:
            out["audio_features"] = media.audio_features
            out["audio_frames"] = media.audio_frames
        return BatchFeature(out)

    def _get_mm_fields_config(self, hf_inputs: BatchFeature, hf_processor_mm_kwargs: Mapping[str, object]) -> Mapping[str, MultiModalFieldConfig]:
        return {"pixel_values_videos": MultiModalFieldConfig.batched("video"), "audio_features": MultiModalFieldConfig.batched("audio"), "audio_frames": MultiModalFieldConfig.batched("audio")}

    def _get_prompt_updates(self, mm_items: MultiModalDataItems, hf_processor_mm_kwargs: Mapping[str, object], out_mm_kwargs: MultiModalKwargsItems) -> Sequence[PromptUpdate]:
        return [PromptReplacement(modality=name, target=[m.placeholder_id], replacement=[m.placeholder_id] * m.num_tokens) for name, m in self.info.deemo_config.modalities.items()]


@MULTIMODAL_REGISTRY.register_processor(DeemoMultiModalProcessor, info=DeemoProcessingInfo, dummy_inputs=DeemoDummyInputsBuilder)
class DeemoLlamaForConditionalGeneration(nn.Module, SupportsMultiModal, SupportsLoRA):
    packed_modules_mapping = {"qkv_proj": ["q_proj", "k_proj", "v_proj"], "gate_up_proj": ["gate_proj", "up_proj"]}
    # Our checkpoint stores language_model.* (no change); a peft adapter of the bare LLaMA stores model.*
    hf_to_vllm_mapper = WeightsMapper(orig_to_new_prefix={"model.": "language_model.model.", "lm_head.": "language_model.lm_head."})

    @classmethod
    def get_placeholder_str(cls, modality: str, i: int) -> str | None:
        if modality.startswith("video"):
            return "<|video|>"
        if modality.startswith("audio"):
            return "<|audio|>"
        raise ValueError(f"deemo-llama takes video and audio, not {modality}")

    def __init__(self, *, vllm_config: VllmConfig, prefix: str = ""):
        super().__init__()
        hf_config: DeemoHFConfig = vllm_config.model_config.hf_config
        self.config = hf_config
        # the typed config as we wrote it: vLLM's round trip of hf_config loses the text config's
        # tie_word_embeddings (seen in 0.32), so the LLaMA below is built untied and load_weights ties
        self.deemo = DeemoConfig.load(vllm_config.model_config.model)
        mods = self.deemo.modalities
        with self._mark_tower_model(vllm_config, set(mods)):
            self.encoders = nn.ModuleDict()
            self.projectors = nn.ModuleDict()
            for name, m in mods.items():
                self.encoders[name] = build_video_encoder(m.encoder) if name == "video" else build_audio_encoder(m.encoder)
                self.projectors[name] = build_projector(m.projector, m.encoder.feature_dim, self.deemo.hidden_size)
        with self._mark_language_model(vllm_config):
            self.language_model = init_vllm_registered_model(vllm_config=vllm_config, hf_config=hf_config.text_config, prefix=maybe_prefix(prefix, "language_model"), architectures=["LlamaForCausalLM"])
        self.make_empty_intermediate_tensors = self.language_model.make_empty_intermediate_tensors

    # -- media -> embeddings -------------------------------------------------------------------
    def _embed(self, name: str, kwargs: dict) -> list[torch.Tensor]:
        m = self.deemo.modalities[name]
        enc, proj = self.encoders[name], self.projectors[name]
        dtype = next(proj.parameters()).dtype
        if name == "video":
            x = DeemoVideoInputs(pixel_values_videos=kwargs["pixel_values_videos"]).pixel_values_videos
            feats = enc(x.to(dtype))  # [N, T, D]
            pooled = [pool_tokens(f, m.num_tokens) for f in feats]
        else:
            a = DeemoAudioInputs(audio_features=kwargs["audio_features"], audio_frames=kwargs["audio_frames"])
            feats = enc(a.audio_features.to(dtype))  # [N, 1500, D]
            pooled = [pool_tokens(f[: max(1, int(k))], m.num_tokens) for f, k in zip(feats, a.audio_frames.tolist())]
        return [proj(p.to(dtype)) for p in pooled]  # each [num_tokens, H]

    def embed_multimodal(self, **kwargs: object) -> MultiModalEmbeddings:
        out: list[torch.Tensor] = []
        done: set[str] = set()
        for key in kwargs:  # keep the order in which the modalities arrive
            for name, keys in MEDIA_KEYS.items():
                if key in keys and name not in done and kwargs.get(keys[0]) is not None:
                    done.add(name)
                    out += self._embed(name, kwargs)
        return out

    # -- language model ------------------------------------------------------------------------
    def forward(self, input_ids: torch.Tensor | None, positions: torch.Tensor, intermediate_tensors: IntermediateTensors | None = None, inputs_embeds: torch.Tensor | None = None, **kwargs: object) -> torch.Tensor | IntermediateTensors:
        if intermediate_tensors is not None:
            inputs_embeds = None
        return self.language_model.model(input_ids, positions, intermediate_tensors, inputs_embeds=inputs_embeds)

    def compute_logits(self, hidden_states: torch.Tensor) -> torch.Tensor | None:
        return self.language_model.compute_logits(hidden_states)

    def load_weights(self, weights: Iterable[tuple[str, torch.Tensor]]) -> set[str]:
        tied = bool(self.deemo.text_config.get("tie_word_embeddings"))

        def renamed():
            # safetensors stores a tied tensor once, under lm_head; give it to the input embeddings too
            # (vLLM's LLaMA would otherwise leave them unloaded)
            for name, w in weights:
                yield name, w
                if tied and name.endswith("lm_head.weight"):
                    yield name.replace("lm_head", "model.embed_tokens"), w

        return AutoWeightsLoader(self).load_weights(renamed(), mapper=self.hf_to_vllm_mapper)

    def get_mm_mapping(self) -> MultiModelKeys:
        return MultiModelKeys.from_string_field(language_model="language_model", connector="projectors", tower_model="encoders")
