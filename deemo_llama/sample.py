"""Synthetic sample clips: scikit-image's astronaut photo (a real face) moving, with espeak-ng speech.

Used by ``deemo analyze --sample``, the tests and the benchmarks; nothing is downloaded.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from .errors import DeemoError

SAMPLE_TEXT = "I can't believe it, I got the job! This is the best news I have had all year. I am so happy."


def speak(text: str, sample_rate: int = 16000, pitch: int = 50, words_per_minute: int = 160, voice: str = "en-us") -> np.ndarray:
    """espeak-ng speech as float32 mono at ``sample_rate``."""
    import av

    if shutil.which("espeak-ng") is None:
        raise DeemoError("espeak-ng is not installed (apt-get install -y espeak-ng); it speaks the sample clip")
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "speech.wav"
        subprocess.run(["espeak-ng", "-v", voice, "-p", str(pitch), "-s", str(words_per_minute), "-w", str(wav), text], check=True, capture_output=True)
        with av.open(str(wav)) as c:
            rs = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
            chunks = [o.to_ndarray().reshape(-1) for f in c.decode(audio=0) for o in rs.resample(f)]
            chunks += [o.to_ndarray().reshape(-1) for o in rs.resample(None)]
    return np.concatenate(chunks).astype(np.float32)


def moving_face_frames(n_frames: int, size: tuple[int, int] = (640, 360), face_px: int = 320) -> np.ndarray:
    """[T, H, W, 3] uint8: the astronaut photo scaled to ``face_px`` sliding left to right on grey."""
    from skimage import data
    from skimage.transform import resize

    w, h = size
    face = (resize(data.astronaut(), (face_px, face_px), anti_aliasing=True) * 255).astype(np.uint8)
    frames = np.full((n_frames, h, w, 3), 96, dtype=np.uint8)
    xs = np.linspace(0, w - face_px, n_frames).astype(int)
    y = (h - face_px) // 2
    for i, x in enumerate(xs):
        frames[i, y : y + face_px, x : x + face_px] = face
    return frames


def write_clip(path: str | Path, frames: np.ndarray | None, audio: np.ndarray | None, fps: int = 25, sample_rate: int = 16000) -> Path:
    """Write a clip atomically: H.264 + AAC (mp4, mov, mkv), VP9 + Opus (webm), audio-only by extension (wav, flac, mp3, ogg)."""
    import av

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}{path.suffix}")
    with av.open(str(tmp), "w") as out:
        vs = as_ = None
        webm = path.suffix.lower() == ".webm"
        if frames is not None:
            vs = out.add_stream("libvpx-vp9" if webm else "libx264", rate=fps)
            vs.width, vs.height, vs.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        if audio is not None:
            codec = {".wav": "pcm_s16le", ".flac": "flac", ".mp3": "libmp3lame", ".webm": "libopus", ".ogg": "libopus"}.get(path.suffix.lower(), "aac")
            as_ = out.add_stream(codec, rate=sample_rate, layout="mono")
        if vs is not None:
            for img in frames:
                for pkt in vs.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                    out.mux(pkt)
            for pkt in vs.encode():
                out.mux(pkt)
        if as_ is not None:
            fmt = as_.codec_context.format.name
            pcm = np.clip(audio, -1, 1)
            step = as_.codec_context.frame_size or 1024
            for start in range(0, len(pcm), step):
                chunk = pcm[start : start + step]
                if fmt.startswith("s16"):
                    frame = av.AudioFrame.from_ndarray((chunk * 32767).astype(np.int16)[None], format="s16" if fmt == "s16" else fmt, layout="mono")
                else:
                    frame = av.AudioFrame.from_ndarray(chunk.astype(np.float32)[None], format="fltp" if fmt == "fltp" else "flt", layout="mono")
                frame.sample_rate, frame.pts = sample_rate, start
                for pkt in as_.encode(frame):
                    out.mux(pkt)
            for pkt in as_.encode():
                out.mux(pkt)
    os.replace(tmp, path)
    return path


def make_sample_clip(path: str | Path, seconds: float | None = None, text: str = SAMPLE_TEXT, fps: int = 25, audio: bool = True, video: bool = True, pitch: int = 50, words_per_minute: int = 160, voice: str = "en-us") -> Path:
    """A talking-astronaut clip. ``seconds`` None = as long as the speech; else speech repeated/cut to fit."""
    speech = speak(text, pitch=pitch, words_per_minute=words_per_minute, voice=voice) if audio or seconds is None else None
    if seconds is None:  # the speech once, then 0.3 s of silence
        seconds = len(speech) / 16000 + 0.3
        speech = np.concatenate([speech, np.zeros(int(0.3 * 16000), np.float32)])
    n = int(round(seconds * fps))
    wave = None
    if audio:
        reps = int(np.ceil(seconds * 16000 / len(speech)))
        wave = np.concatenate([speech] * reps)[: int(seconds * 16000)]
    frames = moving_face_frames(n) if video else None
    return write_clip(path, frames, wave, fps=fps)
