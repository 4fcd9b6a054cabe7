"""Modality encoders. Each maps one modality's preprocessed tensors to per-step features."""

from .audio import WhisperAudioEncoder
from .frame import FrameEncoder
from .mobilenet_v2 import MobileNetV2

__all__ = ["FrameEncoder", "MobileNetV2", "WhisperAudioEncoder"]
