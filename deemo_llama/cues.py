"""Cheap, non-identifying cues that the zero-shot prompt gives the LLM as text.

Nothing here keeps a face, a voiceprint or raw samples: only a handful of aggregate numbers.
The expert tools (facial expression, body language, physiology, voice) extend this later.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass
class Cues:
    sentiment: dict[str, float] | None = None  # VADER: neg/neu/pos/compound of the transcript
    speech_rate_wps: float | None = None  # words per second of voiced audio
    loudness_db: float | None = None  # mean RMS level, dBFS
    loudness_var_db: float | None = None  # std of frame RMS level over voiced frames
    pause_ratio: float | None = None  # share of 25 ms frames below the voicing threshold
    visual_motion: float | None = None  # mean absolute difference of sampled frames (0-255)

    def to_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}

    def describe(self) -> str:
        """One line per cue, phrased for the LLM prompt."""
        lines = []
        if self.sentiment is not None:
            c = self.sentiment["compound"]
            tone = "positive" if c >= 0.05 else "negative" if c <= -0.05 else "neutral"
            lines.append(f"- Wording sentiment: {tone} (VADER compound {c:+.2f})")
        if self.speech_rate_wps is not None:
            pace = "fast" if self.speech_rate_wps > 3.2 else "slow" if self.speech_rate_wps < 2.0 else "moderate"
            lines.append(f"- Speaking pace: {pace} ({self.speech_rate_wps:.1f} words/s)")
        if self.loudness_var_db is not None:
            dyn = "animated" if self.loudness_var_db > 8 else "flat" if self.loudness_var_db < 4 else "moderately varied"
            lines.append(f"- Voice loudness: {dyn} (variation {self.loudness_var_db:.1f} dB), pauses {100 * (self.pause_ratio or 0):.0f}% of the time")
        if self.visual_motion is not None:
            mv = "a lot" if self.visual_motion > 20 else "little" if self.visual_motion < 5 else "somewhat"
            lines.append(f"- Visual movement between sampled frames: {mv} ({self.visual_motion:.1f})")
        return "\n".join(lines)


def audio_cues(wave: np.ndarray, sample_rate: int, n_words: int) -> dict:
    frame = int(0.025 * sample_rate)
    n = len(wave) // frame
    if n == 0:
        return {}
    rms = np.sqrt(np.mean(wave[: n * frame].reshape(n, frame) ** 2, axis=1) + 1e-12)
    db = 20 * np.log10(rms)
    voiced = db > max(db.max() - 35.0, -60.0)
    voiced_s = voiced.sum() * 0.025
    return {
        "loudness_db": float(db[voiced].mean()) if voiced.any() else float(db.mean()),
        "loudness_var_db": float(db[voiced].std()) if voiced.sum() > 1 else 0.0,
        "pause_ratio": float(1 - voiced.mean()),
        "speech_rate_wps": float(n_words / voiced_s) if voiced_s > 0.5 and n_words else None,
    }


def extract_cues(transcript: str, wave: np.ndarray | None, sample_rate: int, frames: np.ndarray | None) -> Cues:
    cues = Cues()
    if transcript.strip():
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

        cues.sentiment = SentimentIntensityAnalyzer().polarity_scores(transcript)
    if wave is not None and len(wave):
        for k, v in audio_cues(wave, sample_rate, len(transcript.split())).items():
            setattr(cues, k, v)
    if frames is not None and len(frames) > 1:
        small = frames[:, ::4, ::4].astype(np.float32)
        cues.visual_motion = float(np.abs(np.diff(small, axis=0)).mean())
    return cues
