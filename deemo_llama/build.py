"""Assemble a deemo-llama model from pretrained parts given by hub id or local path.

The same code builds the embedded default (from the converted package assets, see ``assets.py``)
and a research model (e.g. a Llama-3.x Instruct, a SigLIP tower, Whisper large): nothing here looks
at names, only at the configs the parts carry.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from .config import AudioEncoderConfig, DeemoConfig, FrameEncoderConfig, ModalityConfig, ProjectorConfig, ProjectorTemporal, ProjectorType, VideoBackbone
from .modeling import DeemoLlamaForConditionalGeneration
from .processing import CHATML_TOKENS, DeemoProcessor

VIDEO_TOKEN, AUDIO_TOKEN = "<|video|>", "<|audio|>"
# Keys of a loaded config that describe how it was loaded, not the architecture.
_DROP_TEXT_KEYS = ("quantization_config", "_name_or_path", "transformers_version", "architectures", "auto_map", "id2label", "label2id")


@dataclass
class ComponentSpec:
    """Where each part comes from. ``video``/``audio`` None drops that modality."""

    llm: str
    audio: str | None = None
    video: str | None = None
    video_backbone: VideoBackbone = "mobilenet_v2"
    video_tokens: int = 8
    audio_tokens: int = 16
    num_frames: int = 8
    projector: ProjectorType = "mlp"
    projector_hidden_dim: int | None = None  # the MLP's width; None = the LLM's hidden size
    # the projectors' options (ProjectorConfig); off here, on in the embedded default (assets.DEFAULT_PROJECTORS)
    projector_input_norm: bool = False
    projector_temporal: ProjectorTemporal = "none"
    # rescale every projected token to the LLM's mean word-embedding norm (measured at creation)
    projector_output_norm: bool = False
    seed: int = 0

    def projector_config(self, word_norm: float | None = None) -> ProjectorConfig:
        return ProjectorConfig(type=self.projector, hidden_dim=self.projector_hidden_dim, input_norm=self.projector_input_norm, temporal=self.projector_temporal,
                               output_norm=round(word_norm, 4) if self.projector_output_norm and word_norm else None)


def _load_mobilenet_state(path: str) -> dict[str, torch.Tensor]:
    if str(path).endswith(".safetensors"):
        from safetensors.torch import load_file

        return load_file(path)
    return torch.load(path, map_location="cpu", weights_only=True)


def _video_modality(spec: ComponentSpec, word_norm: float) -> tuple[ModalityConfig, dict[str, torch.Tensor]]:
    """Return the video ModalityConfig and the backbone's state dict (keys of FrameEncoder.backbone)."""
    if spec.video_backbone == "mobilenet_v2":
        state = _load_mobilenet_state(spec.video)
        enc = FrameEncoderConfig(backbone="mobilenet_v2", num_frames=spec.num_frames)
    else:
        from transformers import AutoConfig, AutoImageProcessor, AutoModel

        cfg = AutoConfig.from_pretrained(spec.video)
        vision_cfg = getattr(cfg, "vision_config", cfg)  # a CLIP/SigLIP dual encoder carries one
        # The tower's own class (e.g. CLIPVisionModel) loads from a dual-encoder checkpoint too;
        # transformers maps the keys.
        tower_cls = type(AutoModel.from_config(vision_cfg))
        state = tower_cls.from_pretrained(spec.video, dtype=torch.float32).state_dict()
        try:
            ip = AutoImageProcessor.from_pretrained(spec.video)
            mean, std = tuple(ip.image_mean), tuple(ip.image_std)
            size = int(getattr(ip, "crop_size", None) and ip.crop_size.get("height") or ip.size.get("height") or ip.size.get("shortest_edge"))
        except (OSError, ValueError, AttributeError):
            mean, std, size = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), int(vision_cfg.image_size)
        hf = vision_cfg.to_dict()
        for k in _DROP_TEXT_KEYS:
            hf.pop(k, None)
        enc = FrameEncoderConfig(backbone="hf_vision", hf_config=hf, image_size=size, image_mean=mean, image_std=std, num_frames=spec.num_frames)
    return ModalityConfig(encoder=enc, projector=spec.projector_config(word_norm), num_tokens=spec.video_tokens, placeholder=VIDEO_TOKEN), state


def create_model(spec: ComponentSpec) -> tuple[DeemoLlamaForConditionalGeneration, DeemoProcessor]:
    """Load the parts, extend the tokenizer, and return (model, processor) with fresh projectors."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(spec.llm)
    lm = AutoModelForCausalLM.from_pretrained(spec.llm, dtype=torch.float32)
    # the length of a word as the LLM reads it: the mean L2 norm of its own input embeddings
    word_norm = float(lm.get_input_embeddings().weight.detach().norm(dim=-1).mean())
    # The chat template is ChatML; media placeholders are special; tool-call tags are plain added
    # tokens so they survive skip_special_tokens and vLLM's hermes parser finds them in the vocab.
    missing_chatml = [t for t in CHATML_TOKENS if t not in tokenizer.get_vocab()]
    tokenizer.add_special_tokens({"additional_special_tokens": missing_chatml + [VIDEO_TOKEN, AUDIO_TOKEN]}, replace_extra_special_tokens=False)
    tokenizer.add_tokens(["<tool_call>", "</tool_call>"])
    if tokenizer.pad_token is None:
        tokenizer.pad_token = "<|im_end|>"
    if len(tokenizer) > lm.get_input_embeddings().weight.shape[0]:
        torch.manual_seed(spec.seed)  # the new rows are drawn at random: the same spec gives the same checkpoint
        lm.resize_token_embeddings(len(tokenizer), mean_resizing=True)
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    lm.generation_config.eos_token_id = im_end
    lm.generation_config.pad_token_id = tokenizer.pad_token_id
    text_config = lm.config.to_dict()
    for k in _DROP_TEXT_KEYS:
        text_config.pop(k, None)
    text_config["eos_token_id"] = im_end
    text_config["pad_token_id"] = tokenizer.pad_token_id

    video, video_state = (None, None)
    if spec.video:
        video, video_state = _video_modality(spec, word_norm)
        video.placeholder_id = tokenizer.convert_tokens_to_ids(VIDEO_TOKEN)
    audio, whisper, fe = None, None, None
    if spec.audio:
        from transformers import WhisperFeatureExtractor, WhisperModel

        whisper = WhisperModel.from_pretrained(spec.audio, dtype=torch.float32)
        fe = WhisperFeatureExtractor.from_pretrained(spec.audio)
        wcfg = whisper.config.to_dict()
        for k in _DROP_TEXT_KEYS:
            wcfg.pop(k, None)
        audio = ModalityConfig(encoder=AudioEncoderConfig(whisper_config=wcfg), projector=spec.projector_config(word_norm), num_tokens=spec.audio_tokens, placeholder=AUDIO_TOKEN, placeholder_id=tokenizer.convert_tokens_to_ids(AUDIO_TOKEN))

    config = DeemoConfig(text_config=text_config, video=video, audio=audio)
    torch.manual_seed(spec.seed)
    model = DeemoLlamaForConditionalGeneration(config, language_model=lm)
    if video_state is not None:
        model.encoders["video"].backbone.load_state_dict(video_state, strict=True)
    if whisper is not None:
        model.encoders["audio"].encoder.load_state_dict(whisper.encoder.state_dict(), strict=True)
    model.eval()
    return model, DeemoProcessor(tokenizer, config, fe)


def save_checkpoint(model: DeemoLlamaForConditionalGeneration, processor: DeemoProcessor, directory: str | Path) -> Path:
    """One HF-style directory: config, weights, (adapter), tokenizer, chat template, features."""
    directory = Path(directory)
    model.save_pretrained(directory)
    processor.save_pretrained(directory)
    model.config.save(directory)  # the processor's tokenizer save must not clobber our config.json
    return directory


def load_checkpoint(directory: str | Path, **kwargs) -> tuple[DeemoLlamaForConditionalGeneration, DeemoProcessor]:
    """Inverse of :func:`save_checkpoint`; kwargs go to ``from_pretrained`` (dtype, device, ...)."""
    model = DeemoLlamaForConditionalGeneration.from_pretrained(directory, **kwargs)
    return model, DeemoProcessor.from_pretrained(directory, model.config)


def merged_for_serving(checkpoint: str | Path) -> Path:
    """``checkpoint`` with its LoRA adapter merged into the LLM's weights (peft ``merge_and_unload``),
    for an inference server that should run the fine-tuned model without LoRA machinery (vLLM on CPU
    gives no prompt logprobs with LoRA enabled). A checkpoint without an adapter is returned as is;
    the merged copy is cached under ``<cache>/served/`` by the adapter's and weights' content."""
    import hashlib
    import os
    import shutil
    import tempfile

    from .assets import cache_dir
    from .hashing import file_digest
    from .modeling import ADAPTER_DIR, WEIGHTS_NAME

    checkpoint = Path(checkpoint)
    if not (checkpoint / ADAPTER_DIR).is_dir():
        return checkpoint
    files = [checkpoint / "config.json", checkpoint / WEIGHTS_NAME, *sorted((checkpoint / ADAPTER_DIR).iterdir())]
    key = hashlib.sha256("".join(file_digest(f) for f in files if f.is_file()).encode()).hexdigest()[:16]
    out = cache_dir() / "served" / f"{checkpoint.name}-{key}"
    if (out / WEIGHTS_NAME).is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    model, processor = load_checkpoint(checkpoint)
    model.language_model = model.language_model.merge_and_unload()
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    save_checkpoint(model, processor, tmp)
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    return out
