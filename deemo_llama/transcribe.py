"""Speech to text with a transformers Whisper model (the embedded tiny.en by default).

Audio is cut into 30 s windows (Whisper's context); each window becomes one segment with its time
span. Near-silent audio gives an empty transcript instead of Whisper's hallucinations.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

WINDOW_S = 30.0
SILENCE_RMS = 1e-3  # about -60 dBFS


@dataclass
class Segment:
    start: float
    end: float
    text: str


@dataclass
class Transcript:
    text: str
    segments: list[Segment] = field(default_factory=list)
    language: str = "en"


class Transcriber:
    """``Transcriber(path_or_hub_id)(wave16k) -> Transcript``. Greedy decoding (deterministic)."""

    def __init__(self, model: str | Path, device: str = "cpu", max_new_tokens: int = 220):
        from transformers import WhisperForConditionalGeneration, WhisperProcessor

        self.processor = WhisperProcessor.from_pretrained(model)
        self.model = WhisperForConditionalGeneration.from_pretrained(model).to(device).eval()
        self.device = device
        self.max_new_tokens = max_new_tokens

    @torch.inference_mode()
    def __call__(self, wave: np.ndarray, sample_rate: int = 16000) -> Transcript:
        step = int(WINDOW_S * sample_rate)
        segments = []
        for start in range(0, len(wave), step):
            chunk = wave[start : start + step]
            if len(chunk) < sample_rate // 10 or float(np.sqrt(np.mean(chunk**2))) < SILENCE_RMS:
                continue
            feats = self.processor(chunk, sampling_rate=sample_rate, return_tensors="pt").input_features.to(self.device)
            ids = self.model.generate(feats, max_new_tokens=self.max_new_tokens, do_sample=False)
            text = self.processor.batch_decode(ids, skip_special_tokens=True)[0].strip()
            if text:
                segments.append(Segment(round(start / sample_rate, 2), round((start + len(chunk)) / sample_rate, 2), text))
        return Transcript(" ".join(s.text for s in segments), segments)
