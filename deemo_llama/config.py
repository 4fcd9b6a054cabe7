"""Typed, nested configuration of a deemo-llama model, saved as ``config.json`` in every checkpoint.

The model config (this file) is separate from training recipes (``training.recipe.Recipe``). Leaves
(encoders, projectors) take plain numbers; ``modeling.build_*`` read the config.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

ARCHITECTURE = "DeemoLlamaForConditionalGeneration"
MODEL_TYPE = "deemo_llama"
CONFIG_VERSION = 1

VideoBackbone = Literal["mobilenet_v2", "hf_vision"]
FrameSampling = Literal["uniform", "fps"]
ProjectorType = Literal["mlp", "linear"]
ProjectorTemporal = Literal["none", "delta"]
Modality = Literal["video", "audio"]

# ImageNet statistics (torchvision's MobileNetV2 preprocessing).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class FrameEncoderConfig:
    """Video encoder: sample frames, encode each with an image backbone, pool over time.

    ``hf_config`` is the vision tower's own config dict (CLIP/SigLIP ``*_vision_model``) when
    ``backbone="hf_vision"``; ``feature_dim`` is derived.
    """

    backbone: VideoBackbone = "mobilenet_v2"
    hf_config: dict[str, Any] | None = None
    width_mult: float = 1.0
    image_size: int = 224
    num_frames: int = 8
    sampling: FrameSampling = "uniform"
    fps: float = 1.0
    image_mean: tuple[float, float, float] = IMAGENET_MEAN
    image_std: tuple[float, float, float] = IMAGENET_STD
    frozen: bool = True
    feature_dim: int = field(init=False)

    def __post_init__(self) -> None:
        self.image_mean, self.image_std = tuple(self.image_mean), tuple(self.image_std)
        if self.num_frames < 1:
            raise ValueError(f"num_frames must be >= 1, got {self.num_frames}")
        if self.sampling == "fps" and self.fps <= 0:
            raise ValueError(f"fps must be > 0 with sampling='fps', got {self.fps}")
        if self.backbone == "hf_vision":
            if not self.hf_config:
                raise ValueError("backbone='hf_vision' needs hf_config (the vision tower's config dict)")
            self.feature_dim = int(self.hf_config["hidden_size"])
        else:
            from .encoders.mobilenet_v2 import make_divisible

            self.feature_dim = make_divisible(1280 * max(1.0, self.width_mult))


@dataclass
class AudioEncoderConfig:
    """Audio encoder: the encoder half of Whisper on 16 kHz log-mel features (30 s windows)."""

    whisper_config: dict[str, Any] = field(default_factory=dict)
    sampling_rate: int = 16000
    max_seconds: float = 30.0
    frozen: bool = True
    feature_dim: int = field(init=False)

    def __post_init__(self) -> None:
        if "d_model" not in self.whisper_config:
            raise ValueError("AudioEncoderConfig.whisper_config must be a WhisperConfig dict (with d_model)")
        self.feature_dim = int(self.whisper_config["d_model"])
        # Whisper's encoder emits 50 frames/s after its stride-2 conv (100 mel frames/s).
        self.frames_per_second = 50


@dataclass
class ProjectorConfig:
    """Maps encoder features [.., feature_dim] into the LLM's embedding space [.., hidden]."""

    type: ProjectorType = "mlp"
    hidden_dim: int | None = None  # MLP width; None = the LLM's hidden size
    # LayerNorm on the encoder features first (their scales differ by dimension and by encoder).
    input_norm: bool = False
    # "delta": each token is read together with its difference from the clip's mean token, so what
    # changes over the clip (a head's motion, a voice's melody) is not buried under what does not
    # (background, face, speaker): the projector's input is [x_t, x_t - mean_t x] (2 x feature_dim).
    temporal: ProjectorTemporal = "none"
    # Each output token rescaled to this L2 norm (the LLM's mean word-embedding norm, set when the
    # checkpoint is created): a trained projector's tokens otherwise grow to tens of times a word's
    # norm and drown the words around them. None: unscaled.
    output_norm: float | None = None

    def __post_init__(self) -> None:
        if self.temporal not in ("none", "delta"):
            raise ValueError(f"projector temporal must be 'none' or 'delta', got {self.temporal!r}")
        if self.output_norm is not None and self.output_norm <= 0:
            raise ValueError(f"projector output_norm must be > 0, got {self.output_norm}")


@dataclass
class ModalityConfig:
    """One modality: its encoder, its projector and its fixed number of placeholder tokens."""

    encoder: FrameEncoderConfig | AudioEncoderConfig
    projector: ProjectorConfig = field(default_factory=ProjectorConfig)
    num_tokens: int = 8
    placeholder: str = "<|video|>"
    placeholder_id: int | None = None  # set once the tokenizer knows the placeholder

    def __post_init__(self) -> None:
        if self.num_tokens < 1:
            raise ValueError(f"num_tokens must be >= 1, got {self.num_tokens}")


@dataclass
class DeemoConfig:
    """The whole model. ``text_config`` is the LLaMA backbone's own config dict (transformers)."""

    text_config: dict[str, Any]
    video: ModalityConfig | None = None
    audio: ModalityConfig | None = None
    # False until projectors were trained: the analyzer then runs text-only (zero-shot).
    projectors_trained: bool = False
    # the audio the transcripts of its training rows were made from (evidence.TRANSCRIBE_FROM; set by
    # `deemo train`, then by `deemo fuser train` from the fuser's rows, on which the fused decision is
    # fitted): the CLI and the server transcribe a clip the same way for this checkpoint
    transcribe_from: str = "anonymised"
    tool_call_start: str = "<tool_call>"
    tool_call_end: str = "</tool_call>"
    architectures: tuple[str, ...] = (ARCHITECTURE,)
    model_type: str = MODEL_TYPE
    config_version: int = CONFIG_VERSION

    @property
    def modalities(self) -> dict[str, ModalityConfig]:
        """The configured modalities, keyed by name (``video``, ``audio``)."""
        return {name: m for name, m in (("video", self.video), ("audio", self.audio)) if m is not None}

    @property
    def hidden_size(self) -> int:
        return int(self.text_config["hidden_size"])

    # -- serialisation -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        from .typed import to_data

        return to_data(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "DeemoConfig":
        d = dict(d)
        if d.get("model_type", MODEL_TYPE) != MODEL_TYPE:
            raise ValueError(f"config model_type is {d.get('model_type')!r}, expected {MODEL_TYPE!r}")
        for name, enc_cls in (("video", FrameEncoderConfig), ("audio", AudioEncoderConfig)):
            m = d.get(name)
            if m is not None:
                m = dict(m)
                m["encoder"] = enc_cls(**m["encoder"])
                m["projector"] = ProjectorConfig(**m.get("projector", {}))
                d[name] = ModalityConfig(**m)
        d["architectures"] = tuple(d.get("architectures", (ARCHITECTURE,)))
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown DeemoConfig fields: {unknown}")
        return cls(**d)

    def save(self, directory: str | Path) -> Path:
        path = Path(directory) / "config.json"
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return path

    @classmethod
    def load(cls, directory: str | Path) -> "DeemoConfig":
        path = Path(directory) / "config.json"
        if not path.is_file():
            raise FileNotFoundError(f"no config.json in {directory}: not a deemo-llama checkpoint")
        return cls.from_dict(json.loads(path.read_text()))
