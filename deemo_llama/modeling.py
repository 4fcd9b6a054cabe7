"""DeemoLlamaForConditionalGeneration: per-modality encoder -> projector -> placeholder tokens -> LLaMA.

    video frames [N_v, T, 3, S, S] --FrameEncoder--> [N_v, T, Dv] --pool--> [N_v, K_v, Dv] --proj--> [N_v, K_v, H]
    log-mel      [N_a, 80, 3000]   --Whisper enc--> [N_a, 1500, Da] --pool valid--> [N_a, K_a, Da] --proj--> [N_a, K_a, H]
    text ids with K_v x <|video|> and K_a x <|audio|> per item --embed--> [B, L, H] --masked scatter--> LLaMA

Checkpoints are one directory: ``config.json`` (DeemoConfig), ``model.safetensors`` (LLM, encoders,
projectors), optionally ``adapter/`` (an LLM-only peft LoRA adapter), plus the processor's files.
"""

from __future__ import annotations

import contextlib
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from safetensors.torch import load_model, save_model
from torch import nn

from .config import AudioEncoderConfig, DeemoConfig, FrameEncoderConfig, ModalityConfig
from .encoders import FrameEncoder, MobileNetV2, WhisperAudioEncoder
from .projectors import build_projector

WEIGHTS_NAME = "model.safetensors"
ADAPTER_DIR = "adapter"
Quantization = Literal["none", "8bit", "4bit"]


class PlaceholderMismatchError(ValueError):
    """The prompt's placeholder tokens and the media's feature vectors differ in number."""


@dataclass
class MediaInputs:
    """Preprocessed media of one batch, in prompt order per modality.

    pixel_values_videos: [N_v, T, 3, S, S] float, normalised frames
    audio_features:      [N_a, n_mels, 3000] float, Whisper log-mel (30 s, zero-padded)
    audio_frames:        [N_a] long, unpadded Whisper encoder frames per item (50 per second)
    encoded:             {modality: [N, num_tokens, D_enc]} the FROZEN encoders' pooled outputs,
                         computed once and cached (training.features); such a modality skips its encoder
    """

    pixel_values_videos: torch.Tensor | None = None
    audio_features: torch.Tensor | None = None
    audio_frames: torch.Tensor | None = None
    encoded: dict[str, torch.Tensor] | None = None

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> "MediaInputs":
        def mv(t, float_=True):
            return None if t is None else t.to(device=device, dtype=dtype if (dtype and float_) else t.dtype)

        enc = {k: mv(v) for k, v in self.encoded.items()} if self.encoded else None
        return MediaInputs(mv(self.pixel_values_videos), mv(self.audio_features), mv(self.audio_frames, False), enc)

    @property
    def modalities(self) -> dict[str, int]:
        """Number of items per modality present in this batch."""
        out = {k: v.shape[0] for k, v in (self.encoded or {}).items()}
        if self.pixel_values_videos is not None:
            out["video"] = self.pixel_values_videos.shape[0]
        if self.audio_features is not None:
            out["audio"] = self.audio_features.shape[0]
        return out


def build_video_encoder(cfg: FrameEncoderConfig) -> FrameEncoder:
    if cfg.backbone == "hf_vision":
        from transformers import AutoConfig, AutoModel

        hf_cfg = dict(cfg.hf_config)
        vision_config = AutoConfig.for_model(hf_cfg.pop("model_type"), **hf_cfg)
        return FrameEncoder(AutoModel.from_config(vision_config), cfg.feature_dim, hf_vision=True)
    return FrameEncoder(MobileNetV2(width_mult=cfg.width_mult), cfg.feature_dim, hf_vision=False)


def build_audio_encoder(cfg: AudioEncoderConfig) -> WhisperAudioEncoder:
    from transformers import WhisperConfig
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    return WhisperAudioEncoder(WhisperEncoder(WhisperConfig(**cfg.whisper_config)), cfg.feature_dim)


def build_language_model(text_config: dict) -> nn.Module:
    from transformers import AutoConfig, AutoModelForCausalLM

    tc = dict(text_config)
    return AutoModelForCausalLM.from_config(AutoConfig.for_model(tc.pop("model_type"), **tc))


def pool_tokens(x: torch.Tensor, num_tokens: int) -> torch.Tensor:
    """Temporal adaptive average pooling [T, D] -> [num_tokens, D] (repeats steps when T < num_tokens)."""
    return F.adaptive_avg_pool1d(x.transpose(0, 1)[None], num_tokens)[0].transpose(0, 1)


class DeemoLlamaForConditionalGeneration(nn.Module):
    """The fused model. ``encoders``/``projectors`` are keyed by modality name."""

    def __init__(self, config: DeemoConfig, language_model: nn.Module | None = None):
        super().__init__()
        self.config = config
        self.language_model = language_model if language_model is not None else build_language_model(config.text_config)
        self.encoders = nn.ModuleDict()
        self.projectors = nn.ModuleDict()
        for name, m in config.modalities.items():
            enc = build_video_encoder(m.encoder) if name == "video" else build_audio_encoder(m.encoder)
            self.encoders[name] = enc
            self.projectors[name] = build_projector(m.projector, m.encoder.feature_dim, config.hidden_size)
        self.freeze_encoders()

    # -- parameters ----------------------------------------------------------------------------
    def freeze_encoders(self) -> None:
        """Freeze each encoder whose config says ``frozen`` (the default); eval mode keeps BN stats."""
        for name, m in self.config.modalities.items():
            if m.encoder.frozen:
                self.encoders[name].requires_grad_(False).eval()

    def train(self, mode: bool = True):
        super().train(mode)
        self.freeze_encoders()  # frozen encoders stay in eval mode (BatchNorm, dropout)
        return self

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return self.get_input_embeddings().weight.dtype

    def get_input_embeddings(self) -> nn.Embedding:
        return self.language_model.get_input_embeddings()

    # -- media -> embeddings ---------------------------------------------------------------------
    @torch.no_grad()
    def encode_media(self, media: MediaInputs) -> dict[str, torch.Tensor]:
        """{modality: [N, num_tokens, D_enc]}: the frozen encoders' outputs pooled to the token count
        (what the projectors read; cacheable, as the encoders do not train)."""
        return {name: self._encode(name, media) for name in media.modalities}

    def _encode(self, name: str, media: MediaInputs) -> torch.Tensor:
        if name not in self.config.modalities:
            raise ValueError(f"this model has no {name} modality (configured: {sorted(self.config.modalities)})")
        if media.encoded and name in media.encoded:
            return media.encoded[name].to(self.device)
        m: ModalityConfig = self.config.modalities[name]
        enc = self.encoders[name]
        if name == "video":
            feats = enc(media.pixel_values_videos.to(self.device))  # [N, T, D]
            return torch.stack([pool_tokens(f, m.num_tokens) for f in feats])
        feats = enc(media.audio_features.to(self.device))  # [N, 1500, D]
        n = feats.shape[0]
        lengths = media.audio_frames.tolist() if media.audio_frames is not None else [feats.shape[1]] * n
        return torch.stack([pool_tokens(f[: max(1, int(k))], m.num_tokens) for f, k in zip(feats, lengths)])

    def embed_media(self, media: MediaInputs) -> dict[str, torch.Tensor]:
        """Return {modality: [N, num_tokens, hidden]} for the modalities present in ``media``."""
        out: dict[str, torch.Tensor] = {}
        for name in media.modalities:
            pooled = self._encode(name, media)
            proj = self.projectors[name]
            out[name] = proj(pooled.to(next(proj.parameters()).dtype))
        return out

    def merge_media(self, input_ids: torch.Tensor, inputs_embeds: torch.Tensor, media_embeds: dict[str, torch.Tensor]) -> torch.Tensor:
        """Scatter each modality's vectors into its placeholder positions; raise on a count mismatch."""
        for name, m in self.config.modalities.items():
            mask = input_ids == m.placeholder_id  # [B, L]
            n_tokens = int(mask.sum())
            feats = media_embeds.get(name)
            n_feats = 0 if feats is None else feats.shape[0] * feats.shape[1]
            if n_tokens != n_feats:
                items = 0 if feats is None else feats.shape[0]
                raise PlaceholderMismatchError(
                    f"{name}: the prompt has {n_tokens} {m.placeholder} placeholder tokens but the media give "
                    f"{n_feats} feature vectors ({items} item(s) x {m.num_tokens} tokens)"
                )
            if n_feats:
                inputs_embeds = inputs_embeds.masked_scatter(mask.unsqueeze(-1), feats.reshape(-1, feats.shape[-1]).to(inputs_embeds.dtype))
        return inputs_embeds

    def build_inputs_embeds(self, input_ids: torch.Tensor, media: MediaInputs | None) -> torch.Tensor:
        embeds = self.get_input_embeddings()(input_ids)
        return self.merge_media(input_ids, embeds, self.embed_media(media) if media is not None else {})

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, labels: torch.Tensor | None = None, media: MediaInputs | None = None, **lm_kwargs):
        """Returns the language model's output (``loss`` when ``labels`` is given, ``logits`` [B, L, V])."""
        embeds = self.build_inputs_embeds(input_ids, media)
        return self.language_model(inputs_embeds=embeds, attention_mask=attention_mask, labels=labels, **lm_kwargs)

    @torch.inference_mode()
    def generate(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, media: MediaInputs | None = None, **gen_kwargs) -> torch.Tensor:
        """Generate from text + optional media; returns only the new token ids [B, new]."""
        embeds = self.build_inputs_embeds(input_ids, media)
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        return self.language_model.generate(inputs_embeds=embeds, attention_mask=attention_mask, **gen_kwargs)

    # -- checkpoints -----------------------------------------------------------------------------
    def save_pretrained(self, directory: str | Path) -> Path:
        """Write config.json, model.safetensors (base weights) and, under LoRA, ``adapter/``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.config.save(directory)
        lm = self.language_model
        if _is_peft(lm):
            lm.save_pretrained(directory / ADAPTER_DIR)
            with _unwrapped(self):
                save_model(self, str(directory / WEIGHTS_NAME))
        else:
            save_model(self, str(directory / WEIGHTS_NAME))
        return directory

    @classmethod
    def from_pretrained(cls, directory: str | Path, dtype: torch.dtype | None = None, device: str | torch.device = "cpu", load_adapter: bool = True, quantization: Quantization = "none") -> "DeemoLlamaForConditionalGeneration":
        """Load a checkpoint directory written by :meth:`save_pretrained`."""
        from transformers.initialization import no_init_weights

        directory = Path(directory)
        config = DeemoConfig.load(directory)
        weights = directory / WEIGHTS_NAME
        if not weights.is_file():
            raise FileNotFoundError(f"no {WEIGHTS_NAME} in {directory}")
        with no_init_weights():
            model = cls(config)
        model.language_model.tie_weights()  # skipped with the weight init; tied keys are stored once
        missing, unexpected = load_model(model, str(weights), strict=False)
        missing = _untied(model, missing)
        if missing or unexpected:
            raise ValueError(f"{weights} does not match its config: missing={sorted(missing)[:5]} unexpected={sorted(unexpected)[:5]}")
        if quantization != "none":
            model.language_model = _quantized_language_model(model.language_model, quantization)
            model._lm_source = weights  # the full-precision base weights a save writes back (4/8-bit weights are packed)
        model.to(device=device, **({"dtype": dtype} if dtype is not None else {}))
        if load_adapter and (directory / ADAPTER_DIR).is_dir():
            from peft import PeftModel

            model.language_model = PeftModel.from_pretrained(model.language_model, directory / ADAPTER_DIR)
        model.eval()
        return model


def _untied(model: nn.Module, missing: list[str]) -> list[str]:
    """Drop missing keys that are tied to a loaded tensor (safetensors stores a shared tensor once)."""
    state = model.state_dict()
    loaded_ptrs = {t.data_ptr() for k, t in state.items() if k not in set(missing)}
    return [k for k in missing if state[k].data_ptr() not in loaded_ptrs]


def _is_peft(module: nn.Module) -> bool:
    try:
        from peft import PeftModel
    except ImportError:  # pragma: no cover - peft is a core dependency
        return False
    return isinstance(module, PeftModel)


@contextlib.contextmanager
def _unwrapped(model: DeemoLlamaForConditionalGeneration):
    """Temporarily swap a peft-wrapped LLM for a clean copy of its base weights (LoRA not merged)."""
    peft_lm = model.language_model
    base = build_language_model(model.config.text_config)
    if _is_quantized(peft_lm.get_base_model()):
        # QLoRA: the frozen base is stored packed in 4/8 bits; the checkpoint keeps the full-precision
        # weights it was loaded from (LoRA never changes them)
        source = getattr(model, "_lm_source", None)
        if source is None:
            raise RuntimeError("this quantized LLM was not loaded by from_pretrained, so its full-precision weights are unknown and it cannot be saved")
        from safetensors.torch import load_file

        sd = {k.removeprefix("language_model."): v for k, v in load_file(str(source)).items() if k.startswith("language_model.")}
        base.tie_weights()
        missing, unexpected = base.load_state_dict(sd, strict=False)
        missing = _untied(base, missing)
    else:
        sd = {k.replace(".base_layer", ""): v for k, v in peft_lm.get_base_model().state_dict().items() if "lora_" not in k}
        missing, unexpected = base.load_state_dict(sd, strict=True)
    if missing or unexpected:
        raise RuntimeError(f"the LLM's base weights do not match its config: missing={sorted(missing)[:5]} unexpected={sorted(unexpected)[:5]}")
    model.language_model = base
    try:
        yield
    finally:
        model.language_model = peft_lm


def _is_quantized(lm: nn.Module) -> bool:
    """A transformers model loaded in 4/8 bits through bitsandbytes."""
    return getattr(lm, "hf_quantizer", None) is not None or bool(getattr(lm, "is_loaded_in_4bit", False) or getattr(lm, "is_loaded_in_8bit", False))


def _quantized_language_model(lm: nn.Module, quantization: Quantization) -> nn.Module:
    """Reload the LLM in 4/8-bit through bitsandbytes (CUDA only)."""
    if not torch.cuda.is_available():
        raise RuntimeError(f"{quantization} loading needs a CUDA GPU (bitsandbytes); none is available here")
    try:
        from transformers import AutoModelForCausalLM, BitsAndBytesConfig
        import bitsandbytes  # noqa: F401
    except ImportError as e:
        raise RuntimeError("4/8-bit loading needs bitsandbytes: pip install 'deemo-llama[gpu]'") from e
    bnb = BitsAndBytesConfig(load_in_4bit=quantization == "4bit", load_in_8bit=quantization == "8bit", bnb_4bit_compute_dtype=torch.bfloat16)
    with tempfile.TemporaryDirectory() as tmp:
        lm.save_pretrained(tmp)
        # this process's GPU (accelerate sets it per process under `accelerate launch`)
        return AutoModelForCausalLM.from_pretrained(tmp, quantization_config=bnb, device_map={"": torch.cuda.current_device()})
