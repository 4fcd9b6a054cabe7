"""Decode clips with PyAV: sampled RGB frames and 16 kHz mono audio, with clear errors for bad input.

Containers: anything FFmpeg reads (mp4, mov, mkv, webm; wav, mp3, flac, ogg for audio only).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Literal

import numpy as np

from .errors import MediaError

SAMPLE_RATE = 16000
# A stream that decodes to less than this share of its declared duration is reported as truncated.
TRUNCATION_RATIO = 0.5
# Limits checked before anything is decoded (a decoded 8K frame is 100 MB): frames up to 4K DCI,
# audio up to 32 channels (7.1.4 surround has 12).
MAX_FRAME_PIXELS = 4096 * 2160
MAX_AUDIO_CHANNELS = 32


@dataclass
class Clip:
    """A decoded clip. frames: [T, H, W, 3] uint8 at ``frame_times`` (s); audio: [S] float32 16 kHz mono."""

    path: Path
    duration: float
    frames: np.ndarray | None = None
    frame_times: np.ndarray | None = None
    fps: float | None = None
    audio: np.ndarray | None = None
    sample_rate: int = SAMPLE_RATE
    notes: list[str] = field(default_factory=list)
    decode_s: float = 0.0

    @property
    def has_video(self) -> bool:
        return self.frames is not None and len(self.frames) > 0

    @property
    def has_audio(self) -> bool:
        return self.audio is not None and len(self.audio) > 0

    @property
    def inputs_used(self) -> dict[str, bool]:
        return {"video": self.has_video, "audio": self.has_audio}


def sample_times(duration: float, num_frames: int, sampling: Literal["uniform", "fps"] = "uniform", fps: float = 1.0) -> np.ndarray:
    """Frame timestamps to keep: ``uniform`` = segment centres; ``fps`` = every 1/fps s (at most num_frames, evenly thinned)."""
    if sampling == "fps":
        times = np.arange(0.5 / fps, max(duration, 1e-6), 1.0 / fps)
        if len(times) == 0:
            times = np.array([duration / 2])
        if len(times) > num_frames:
            times = times[np.linspace(0, len(times) - 1, num_frames).round().astype(int)]
        return times
    return (np.arange(num_frames) + 0.5) * duration / num_frames


def _check_file(path: Path) -> None:
    if not path.exists():
        raise MediaError(f"{path}: no such file")
    if path.is_dir():
        raise MediaError(f"{path}: is a directory, not a media file")
    if path.stat().st_size == 0:
        raise MediaError(f"{path}: file is empty (0 bytes)")


def _wav_header(path: Path) -> tuple[int | None, str | None]:
    """(channels the fmt chunk declares, why the file is truncated or None) of a RIFF/WAVE file;
    (None, None) for anything else. FFmpeg reports 0 channels for counts it refuses and reads past a
    data chunk that claims more bytes than the file holds as silence, so both are read here."""
    import struct

    size = path.stat().st_size
    channels = None
    with open(path, "rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return None, None
        pos = 12
        while pos + 8 <= size:
            f.seek(pos)
            cid, clen = struct.unpack("<4sI", f.read(8))
            if cid == b"fmt " and len(fmt := f.read(4)) == 4:
                channels = struct.unpack("<HH", fmt)[1]
            if cid == b"data":
                if clen in (0, 0xFFFFFFFF):  # streamed WAV: length unknown
                    return channels, None
                return channels, (f"holds {size - pos - 8} of the {clen} audio bytes its header declares" if pos + 8 + clen > size else None)
            pos += 8 + clen + (clen & 1)
    return channels, None


def stream_duration(stream, container) -> float | None:
    """Declared duration (s) of ``stream``, else of the container; None when neither says."""
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / 1_000_000
    return None


def _rotate(img: np.ndarray, degrees: int) -> np.ndarray:
    """Undo display-matrix rotation (phone video); degrees counter-clockwise as FFmpeg reports."""
    k = int(round(degrees / 90)) % 4
    return np.ascontiguousarray(np.rot90(img, k=k)) if k else img


class CorruptStream(MediaError):
    """FFmpeg failed while decoding a video stream; ``frames_decoded`` frames came out before.

    Callers decide whether a failure after some frames is fatal (de-identification) or the end of
    a damaged tail (sampling, analysis); the message is the same either way.
    """

    def __init__(self, message: str, frames_decoded: int = 0):
        super().__init__(message)
        self.frames_decoded = frames_decoded


class DecodedFrame:
    """One decoded video frame: ``t`` (s; from its timestamp, else index / frame rate), ``index``
    (decode order over the whole stream, 0-based), ``pts`` and ``time_base`` (the stream's, for
    re-encoding; pts may be None) and ``frame`` (the PyAV frame). ``rgb`` converts on first access:
    [H, W, 3] uint8 with the display rotation applied (frames that are skipped cost no conversion).
    """

    __slots__ = ("t", "index", "pts", "time_base", "frame", "_rgb", "_corrupt")

    def __init__(self, t: float, index: int, frame, corrupt_message: str):
        self.t, self.index, self.frame = t, index, frame
        self.pts, self.time_base = frame.pts, frame.time_base
        self._rgb: np.ndarray | None = None
        self._corrupt = corrupt_message

    @property
    def rgb(self) -> np.ndarray:
        if self._rgb is None:
            import av

            try:
                img = self.frame.to_ndarray(format="rgb24")
            except av.error.FFmpegError as e:
                raise CorruptStream(f"{self._corrupt} ({e.strerror or e})", self.index + 1) from None
            self._rgb = _rotate(img, getattr(self.frame, "rotation", 0) or 0)
        return self._rgb


def iter_frames(container, stream, *, start_s: float | None = None, end_s: float | None = None, max_fps: float | None = None, path: str | Path = "") -> Iterator[DecodedFrame]:
    """Decode ``stream`` of an open ``container`` (from :func:`open_media`) frame by frame: the one
    video decoder of the package (sampled clips, de-identification and the face tool use it).

    Frames before ``start_s`` are skipped, decoding stops at the first frame at or after ``end_s``
    (half-open window, 1 us tolerance), and with ``max_fps`` frames closer than 1/max_fps to the
    previous one kept are skipped (a quarter source period of slack, so a 30 fps clip keeps every
    frame at max_fps 30). An FFmpeg error raises :class:`CorruptStream` naming ``path``.
    """
    import av

    try:
        stream.thread_type = "AUTO"
    except RuntimeError:  # settable only before the codec opens: a second pass keeps the first's
        pass
    rate = float(stream.average_rate or 25)
    min_step = 1.0 / max_fps - 0.25 / max(rate, max_fps) if max_fps else None
    corrupt = f"{path}: video stream is corrupt" if str(path) else "video stream is corrupt"
    last, n = -np.inf, 0
    try:
        for frame in container.decode(stream):
            t = float(frame.time) if frame.time is not None else n / rate
            n += 1
            if (start_s is not None and t + 1e-6 < start_s) or (min_step is not None and t - last < min_step):
                continue
            if end_s is not None and t >= end_s - 1e-6:
                return
            last = t
            yield DecodedFrame(t, n - 1, frame, corrupt)
    except av.error.FFmpegError as e:
        raise CorruptStream(f"{corrupt} ({e.strerror or e})", n) from None


def _decode_video(container, stream, targets: np.ndarray | None, max_seconds: float, path: Path):
    """Keep the first frame at or after each target time (all frames when targets is None)."""
    kept, kept_t, last_t, n = [], [], 0.0, 0
    next_i = 0
    try:
        for f in iter_frames(container, stream, path=path):
            t = f.t
            n += 1
            last_t = max(last_t, t)
            if t > max_seconds + 1.0:
                raise MediaError(f"{path}: longer than the limit of {max_seconds:g} s (max_seconds)")
            take = targets is None
            while targets is not None and next_i < len(targets) and t + 1e-6 >= targets[next_i]:
                take, next_i = True, next_i + 1
            if take:
                kept.append(f.rgb)
                kept_t.append(t)
    except CorruptStream:
        if not kept:
            raise
    # Targets past the last decodable frame (rounding at the end): reuse the last frame.
    if targets is not None and kept and next_i < len(targets):
        kept += [kept[-1]] * (len(targets) - next_i)
        kept_t += [kept_t[-1]] * (len(targets) - next_i)
    return kept, kept_t, last_t, n


def _decode_audio(container, stream, max_seconds: float, path: Path) -> np.ndarray:
    import av

    resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
    chunks: list[np.ndarray] = []
    total = 0
    try:
        for frame in container.decode(stream):
            for out in resampler.resample(frame):
                arr = out.to_ndarray().reshape(-1)
                chunks.append(arr)
                total += len(arr)
            if total > (max_seconds + 1.0) * SAMPLE_RATE:
                raise MediaError(f"{path}: longer than the limit of {max_seconds:g} s (max_seconds)")
        for out in resampler.resample(None):
            chunks.append(out.to_ndarray().reshape(-1))
    except av.error.FFmpegError as e:
        if not chunks:
            raise MediaError(f"{path}: audio stream is corrupt ({e.strerror or e})") from None
    return np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)


def read_audio(container, stream, max_seconds: float, path: Path) -> np.ndarray | None:
    """The whole audio track as 16 kHz mono float32 (None if it has no samples); raises if truncated."""
    container.seek(0)
    wave = _decode_audio(container, stream, max_seconds, path)
    if len(wave) == 0:
        return None
    declared, got = stream_duration(stream, container), len(wave) / SAMPLE_RATE
    if declared and declared > 1.0 and got < TRUNCATION_RATIO * declared:
        raise MediaError(f"{path}: audio is truncated (decoded {got:.1f} s of {declared:.1f} s)")
    return wave


@contextlib.contextmanager
def open_media(path: Path, max_seconds: float):
    """Open ``path`` and yield (container, video stream or None, audio stream or None, declared seconds).

    All checks that need no decoding happen here: the file exists and is not empty, FFmpeg can read
    it, a WAV header matches the file, there is a usable stream, and it is not longer than the limit.
    """
    import av

    _check_file(path)
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, UnicodeDecodeError) as e:
        reason = getattr(e, "strerror", None) or str(e)
        raise MediaError(f"{path}: not a readable media file ({reason})") from None
    with container:
        if container.format.name == "wav":
            channels, why = _wav_header(path)
            if why:
                raise MediaError(f"{path}: audio is truncated (the file {why})")
            if (channels or 0) > MAX_AUDIO_CHANNELS:
                raise MediaError(f"{path}: audio has {channels} channels; the limit is {MAX_AUDIO_CHANNELS} (MAX_AUDIO_CHANNELS)")
        # Cover art in audio files is a single-frame "video" stream: not a video.
        vstreams = [s for s in container.streams.video if (s.codec_context.width or 0) > 0 and not (s.disposition & av.stream.Disposition.attached_pic)]
        astreams = [s for s in container.streams.audio if (s.codec_context.sample_rate or 0) > 0]
        if not vstreams and not astreams:
            raise MediaError(f"{path}: has neither a usable video nor audio stream")
        if vstreams and (w := vstreams[0].codec_context.width) * (h := vstreams[0].codec_context.height or 0) > MAX_FRAME_PIXELS:
            raise MediaError(f"{path}: video is {w}x{h}; the limit is {MAX_FRAME_PIXELS} pixels a frame (4096x2160, MAX_FRAME_PIXELS)")
        if astreams and (ch := astreams[0].codec_context.channels or 0) > MAX_AUDIO_CHANNELS:
            raise MediaError(f"{path}: audio has {ch} channels; the limit is {MAX_AUDIO_CHANNELS} (MAX_AUDIO_CHANNELS)")
        durations = [d for s in vstreams[:1] + astreams[:1] if (d := stream_duration(s, container)) is not None]
        declared = max(durations) if durations else None
        if declared is not None and declared > max_seconds:
            raise MediaError(f"{path}: clip is {declared:.1f} s long; the limit is {max_seconds:g} s (max_seconds)")
        yield container, (vstreams[0] if vstreams else None), (astreams[0] if astreams else None), declared


def load_clip(
    path: str | Path,
    num_frames: int = 8,
    sampling: Literal["uniform", "fps"] = "uniform",
    fps: float = 1.0,
    max_seconds: float = 600.0,
    video: bool = True,
    audio: bool = True,
) -> Clip:
    """Decode ``path``: ``num_frames`` sampled frames and the whole audio track (16 kHz mono).

    Raises MediaError (one line, names the problem) for a missing, empty, unreadable, truncated or
    too long file, or one with neither a usable video nor audio stream.
    """
    import time

    t0 = time.perf_counter()
    path = Path(path)
    with open_media(path, max_seconds) as (container, vs, as_, declared):
        clip = Clip(path=path, duration=declared or 0.0)
        if not video and as_ is None:
            raise MediaError(f"{path}: has no audio track (only its audio was asked for)")
        if not audio and vs is None:
            raise MediaError(f"{path}: has no video track (only its video was asked for)")
        if video and vs is not None:
            vd = stream_duration(vs, container)
            targets = sample_times(vd, num_frames, sampling, fps) if vd else None
            kept, kept_t, last_t, n = _decode_video(container, vs, targets, max_seconds, path)
            if n == 0 or not kept:
                clip.notes.append("video stream has no decodable frames")
            else:
                if targets is None:  # unknown duration: we decoded all frames, sample now
                    vd = last_t + 1.0 / float(vs.average_rate or 25)
                    idx = [min(int(np.searchsorted(kept_t, t)), len(kept) - 1) for t in sample_times(vd, num_frames, sampling, fps)]
                    kept, kept_t = [kept[i] for i in idx], [kept_t[i] for i in idx]
                elif vd and n > 1 and last_t < TRUNCATION_RATIO * vd:
                    raise MediaError(f"{path}: video is truncated (decoded {last_t:.1f} s of {vd:.1f} s)")
                clip.frames = np.stack(kept)
                clip.frame_times = np.asarray(kept_t, dtype=np.float64)
                clip.fps = float(vs.average_rate) if vs.average_rate else None
                clip.duration = max(clip.duration, vd or 0.0)
        if audio and as_ is not None:
            wave = read_audio(container, as_, max_seconds, path)
            if wave is None:
                clip.notes.append("audio stream has no decodable samples")
            else:
                clip.audio = wave
                clip.duration = max(clip.duration, len(wave) / SAMPLE_RATE)
    if not clip.has_video and not clip.has_audio:
        raise MediaError(f"{path}: no decodable video or audio ({'; '.join(clip.notes) or 'streams are empty'})")
    if clip.duration > max_seconds:
        raise MediaError(f"{path}: clip is {clip.duration:.1f} s long; the limit is {max_seconds:g} s (max_seconds)")
    clip.decode_s = time.perf_counter() - t0
    return clip


def load_clip_for(config, path: str | Path, max_seconds: float = 600.0) -> Clip:
    """Decode ``path`` with the frame sampling of a DeemoConfig's video encoder (defaults without video)."""
    enc = config.video.encoder if config.video is not None else None
    if enc is None:
        return load_clip(path, max_seconds=max_seconds)
    return load_clip(path, num_frames=enc.num_frames, sampling=enc.sampling, fps=enc.fps, max_seconds=max_seconds)
