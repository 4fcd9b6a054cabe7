"""Evidence: one clip (and optionally a physiology recording) -> one typed, non-identifying record.

This is the ONE path from a clip to what the language model is told, shared by ``deemo analyze``,
the gateway, the instruction-data builder and the evaluation runner:

    decode once (PyAV, at the profile's frame rate) ──┬─ audio -> McAdams -> Whisper transcript of the ANONYMISED audio
                                                       │    (or of the raw audio, inside the boundary: ``transcribe_from="raw"``)
                                                       ├─ experts on the raw decoded media (inside the privacy boundary):
                                                       │    face (frames), body (frames), voice (audio)
                                                       └─ physiology from its own recording, when given
    the media the model sees, only when they are forwarded (a checkpoint with trained projectors):
        the clip de-identified to a file (every frame at MODEL_VIDEO_FPS blurred, H.264; McAdams audio,
        AAC) -> decoded the checkpoint's way (frames sampled, 16 kHz audio)
    -> Evidence(deid report, transcript + segments, each expert's envelope, failures, timings)

The model's media are made ONE way for every caller: the data builder stores that de-identified
file as a row's media and training decodes it; ``deemo analyze`` and the gateway make the same file
and decode it the same way, and the gateway hands vLLM exactly those frames and that audio. So a
checkpoint sees at inference, bit for bit, what it would have seen in training.

Nothing identity-bearing is in the record: envelopes hold probabilities, event times and aggregate
figures; the de-identified media the model may see live in :attr:`Evidence.media`, which is never
serialised. An expert that fails is recorded in ``failures`` and the answer is still given.

Profiles (``--experts``): ``none`` (transcript only), ``fast`` (the default: the facial expression at
5 frames/s and the voice, which fit real time on a 2-core laptop CPU), ``all`` (the face at up to
30 frames/s, body language at 10 frames/s, the voice).
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal

import numpy as np

from .errors import DeemoError
from .media import Clip, load_clip

EVIDENCE_VERSION = "2"  # 2: the transcript expert (analyze_transcript) runs on every transcript
Profile = Literal["none", "fast", "all"]
PROFILES: tuple[str, ...] = ("none", "fast", "all")
FACE, BODY, VOICE, PHYSIO = "analyze_facial_expression", "analyze_body_language", "analyze_voice", "analyze_physiology"
TRANSCRIPT = "analyze_transcript"  # runs on every transcript, in every profile (text only: no media)
# Frames kept in memory are downscaled to this longer side (a 1080p frame is 6 MB; 640x360 is 0.7 MB).
MAX_FRAME_SIDE = 960
# Frame rate of the de-identified video the model's frames are decoded from (the data builder's stored
# video: `deemo data build --video-fps`): at most this many frames per second are blurred and encoded.
MODEL_VIDEO_FPS = 10.0
# Which audio Whisper transcribes. Only the words leave the boundary either way; "raw" transcribes
# the original audio inside the boundary (an expert that needs the raw voice, like the face and voice
# experts), "anonymised" the McAdams audio the model also hears. A checkpoint records the one its
# training rows were made with (DeemoConfig.transcribe_from) and is run the same way.
TRANSCRIBE_FROM: tuple[str, ...] = ("anonymised", "raw")


@dataclass(frozen=True)
class ProfileSpec:
    """Which experts run, and at which frame rates (frames/s of the decoded clip)."""

    name: str
    face_fps: float | None = None  # None: the expert does not run
    body_fps: float | None = None
    voice: bool = False

    @property
    def decode_fps(self) -> float | None:
        rates = [r for r in (self.face_fps, self.body_fps) if r]
        return max(rates) if rates else None

    @property
    def experts(self) -> tuple[str, ...]:
        return tuple(n for n, on in ((FACE, self.face_fps), (BODY, self.body_fps), (VOICE, self.voice)) if on)


PROFILE_SPECS = {
    "none": ProfileSpec("none"),
    # measured on a 10 s, 25 fps clip, 2-core CPU: face mesh ~70 ms/frame -> 5 fps is ~3.5 s; pose
    # (140-380 ms/frame) does not fit real time next to the face, so body language is in "all" only
    "fast": ProfileSpec("fast", face_fps=5.0, voice=True),
    "all": ProfileSpec("all", face_fps=30.0, body_fps=10.0, voice=True),
}


@dataclass
class DeidMedia:
    """What the model may see: blurred frames [T, H, W, 3] uint8 and McAdams audio [S] float32 16 kHz."""

    frames: np.ndarray | None = None
    audio: np.ndarray | None = None


@dataclass
class Evidence:
    """The non-identifying record of one clip. ``experts`` maps a tool name to its envelope (dict)."""

    profile: str
    clip: dict[str, Any]
    deid: dict[str, Any]
    transcript: str = ""
    segments: list[dict] = field(default_factory=list)
    sentiment: dict[str, float] | None = None  # VADER polarity of the transcript (the transcript expert's)
    experts: dict[str, dict] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    version: str = EVIDENCE_VERSION
    media: DeidMedia | None = field(default=None, repr=False, compare=False)  # never serialised

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("media")
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Evidence":
        if str(d.get("version")) != EVIDENCE_VERSION:
            raise DeemoError(f"evidence version {d.get('version')!r} is not {EVIDENCE_VERSION!r}; rebuild it")
        known = {f for f in cls.__dataclass_fields__ if f != "media"}
        return cls(**{k: v for k, v in d.items() if k in known})

    @property
    def inputs_used(self) -> dict[str, bool]:
        return {"video": bool(self.clip.get("has_video")), "audio": bool(self.clip.get("has_audio"))}


def model_frames_of(config) -> tuple[int, str, float]:
    """(num_frames, sampling, fps) of a checkpoint's video encoder (DeemoConfig): how its frames are picked."""
    enc = config.video.encoder if config.video is not None else None
    return (enc.num_frames, enc.sampling, enc.fps) if enc else (8, "uniform", 1.0)


def _downscale(frames: np.ndarray) -> np.ndarray:
    h, w = frames.shape[1:3]
    if max(h, w) <= MAX_FRAME_SIDE:
        return frames
    import cv2

    s = MAX_FRAME_SIDE / max(h, w)
    size = (max(2, round(w * s)), max(2, round(h * s)))
    return np.stack([cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in frames])


def thin(times: np.ndarray, fps: float) -> np.ndarray:
    """Indices that keep at most ``fps`` frames per second (a frame at least 1/fps after the last kept)."""
    keep, last = [], -np.inf
    for i, t in enumerate(times):
        if t - last >= 1.0 / fps - 1e-6:
            keep.append(i)
            last = t
    return np.asarray(keep, dtype=int)


class EvidencePipeline:
    """Holds the de-identifier, the transcriber and the experts; ``run(path)`` -> :class:`Evidence`.

    ``model_frames``: (num_frames, sampling, fps) of the checkpoint's video encoder, used when
    ``forward_media`` is on (a checkpoint with trained projectors): the clip is de-identified to a
    file (:meth:`deidentify_to`, ``video_fps``) and those frames and its audio are decoded from it
    (:meth:`media_of`) into ``Evidence.media``.
    """

    def __init__(
        self,
        profile: Profile = "fast",
        *,
        transcriber=None,
        deid_options=None,
        cache=None,
        max_seconds: float = 600.0,
        forward_media: bool = False,
        model_frames: tuple[int, str, float] = (8, "uniform", 1.0),
        physio_model: str | None = None,
        deidentify: bool = True,
        deidentifier=None,
        video_fps: float | None = MODEL_VIDEO_FPS,
        transcribe_from: str = "anonymised",
    ):
        from .privacy.deid import DeidOptions, Deidentifier
        from .tools import ToolCache

        if profile not in PROFILE_SPECS:
            raise DeemoError(f"unknown experts profile {profile!r}; expected one of {', '.join(PROFILES)}")
        if transcribe_from not in TRANSCRIBE_FROM:
            raise DeemoError(f"transcribe_from must be one of {', '.join(TRANSCRIBE_FROM)}, not {transcribe_from!r}")
        self.spec = PROFILE_SPECS[profile]
        self.transcribe_from = transcribe_from
        # ``deidentifier``: share one (its CenterFace session) between pipelines, e.g. the gateway's profiles
        self.deidentifier = deidentifier or Deidentifier(deid_options or DeidOptions(audit=False, transcribe=False, max_seconds=max_seconds))
        self._transcriber = transcriber
        self.cache = cache if cache is not None else ToolCache()
        self.max_seconds = max_seconds
        self.forward_media = forward_media
        self.model_frames = model_frames
        self.physio_model = physio_model
        self.deidentify = deidentify  # False only for clips that are de-identified already (--no-deid)
        self.video_fps = video_fps
        self._tools: dict[str, Any] = {}

    @property
    def transcriber(self):
        if self._transcriber is None:
            from .assets import asset_dir
            from .transcribe import Transcriber

            self._transcriber = Transcriber(asset_dir("whisper"))
        return self._transcriber

    def tool(self, name: str):
        if name not in self._tools:
            from .tools import get_tool

            self._tools[name] = get_tool(name)
        return self._tools[name]

    # -- the pipeline ------------------------------------------------------------------------------
    def run(self, path: str | Path, physiology: str | Path | None = None, physio_args: dict | None = None, key: str | None = None, transcript: str | None = None) -> Evidence:
        """Decode ``path`` once, de-identify, transcribe (the anonymised audio, or the raw audio inside
        the boundary: ``transcribe_from``), run the profile's
        experts and the transcript expert; raises MediaError (one line) for unusable media, records failing experts.

        ``transcript``: what is said, when it is known already (a dataset's transcription); Whisper
        is then not run and ``clip["transcript_source"]`` says "given"."""
        t_all = time.perf_counter()
        path = Path(path)
        timings: dict[str, float] = {}
        clip = self._decode(path)
        timings["decode"] = clip.decode_s
        t = time.perf_counter()
        media, deid = self._deidentify(clip, key or path.name)
        timings["deid"] = time.perf_counter() - t

        experts: dict[str, dict] = {}
        failures: dict[str, str] = {}
        jobs = self._jobs(path, clip, physiology, physio_args or {})
        # Whisper (torch) and the experts (mediapipe, onnxruntime, openSMILE) release the GIL: the
        # transcript is made on this thread while the experts run on another.
        with ThreadPoolExecutor(max_workers=1) as pool:
            futures = {name: pool.submit(self._timed, fn) for name, fn in jobs.items()}
            t = time.perf_counter()
            tr = None
            heard = clip.audio if self.transcribe_from == "raw" else media.audio
            if transcript is None and heard is not None:
                tr = self.transcriber(heard)
            timings["transcribe"] = time.perf_counter() - t
            for name, fut in futures.items():
                ok, value, seconds = fut.result()
                timings[name] = seconds
                if ok:
                    experts[name] = value
                else:
                    failures[name] = value
        if self.forward_media and (clip.has_video or clip.has_audio):
            # after the experts (as the data builder does it): the encoder's threads do not compete
            # with the experts' on a 2-core machine
            t = time.perf_counter()
            media, deid["model_media"] = self.model_media(path, key or path.name)
            timings["deid_media"] = time.perf_counter() - t
        said = transcript.strip() if transcript is not None else tr.text if tr else ""
        t = time.perf_counter()
        if said:  # the words' cues: lexicon emotions with negation, and VADER polarity
            experts[TRANSCRIPT] = self.tool(TRANSCRIPT).analyze_text(said).to_dict()
            timings[TRANSCRIPT] = time.perf_counter() - t
        timings["total"] = time.perf_counter() - t_all
        return Evidence(
            profile=self.spec.name,
            clip={"name": path.name, "duration_s": round(clip.duration, 2), "fps": clip.fps, "has_video": clip.has_video, "has_audio": clip.has_audio, "frames_decoded": 0 if clip.frames is None else len(clip.frames), "notes": clip.notes, "transcript_source": "given" if transcript is not None else f"whisper ({self.transcribe_from} audio)" if tr else "none"},
            deid=deid,
            transcript=said,
            segments=[asdict(s) for s in tr.segments] if tr else [],
            sentiment=(experts.get(TRANSCRIPT) or {}).get("estimates", {}).get("sentiment"),
            experts=experts,
            failures=failures,
            timings={k: round(v, 3) for k, v in timings.items()},
            media=media,
        )

    def media_of(self, path: str | Path) -> DeidMedia:
        """The frames and audio the model sees, from a file that is de-identified already (a built
        row's media, or :meth:`deidentify_to`'s): decoded the checkpoint's way, nothing blurred or
        anonymised again."""
        n, sampling, fps = self.model_frames
        clip = load_clip(Path(path), num_frames=n, sampling=sampling, fps=fps, max_seconds=self.max_seconds)
        return DeidMedia(clip.frames if clip.has_video else None, clip.audio if clip.has_audio else None)

    def deidentify_to(self, path: str | Path, out_dir: str | Path, key: str | None = None) -> tuple[dict, Path]:
        """De-identify ``path`` into ``out_dir`` the way the model's media are made (the data builder
        stores this file as a row's media): (the de-identification report, the media file: video.mp4,
        which carries the anonymised audio too, else audio.wav)."""
        out_dir = Path(out_dir)
        report = self.deidentifier.file(path, out_dir, key=key, max_fps=self.video_fps)
        media = next((out_dir / n for n in ("video.mp4", "audio.wav") if n in report.get("outputs", [])), None)
        if media is None:
            raise DeemoError(f"{Path(path).name}: de-identification produced no video or audio")
        return report, media

    def model_media(self, path: str | Path, key: str | None = None) -> tuple[DeidMedia, dict]:
        """(the frames and audio the model sees, a summary): :meth:`deidentify_to` into a temporary
        folder, then :meth:`media_of`. Input declared de-identified already (``deidentify=False``) is
        decoded as is."""
        if not self.deidentify:
            return self.media_of(path), {"source": "the input as given (declared de-identified)"}
        from .fsio import scratch_dir

        with scratch_dir("deemo-media-") as tmp:
            report, file = self.deidentify_to(path, tmp, key)
            media = self.media_of(file)
        video = report.get("video") or {}
        summary = {"video_fps": self.video_fps, "frames_blurred": video.get("frames"), "frames_with_faces": video.get("frames_with_faces"),
                   "frames_forwarded": 0 if media.frames is None else len(media.frames), "audio_forwarded": media.audio is not None}
        return media, summary

    def _decode(self, path: Path) -> Clip:
        """Frames at the rate the profile's experts need (else one frame: has_video), and the whole audio track."""
        rate = self.spec.decode_fps
        if rate is None:
            return load_clip(path, num_frames=1, max_seconds=self.max_seconds)
        cap = int(self.max_seconds * rate) + 2
        clip = load_clip(path, num_frames=cap, sampling="fps", fps=rate, max_seconds=self.max_seconds)
        if clip.has_video:
            clip.frames = _downscale(clip.frames)
        return clip

    def _deidentify(self, clip: Clip, key: str) -> tuple[DeidMedia, dict[str, Any]]:
        """(the anonymised audio, which the transcript is made from unless ``transcribe_from`` is raw,
        the deid report). The model's media, when
        forwarded, are made afterwards from the de-identified file (:meth:`model_media`)."""
        if not self.deidentify:
            return DeidMedia(None, clip.audio), {"skipped": "the input is declared de-identified already (--no-deid)"}
        media = DeidMedia()
        deid: dict[str, Any] = {"face_mode": self.deidentifier.options.face_mode}
        if clip.has_audio:
            media.audio, alpha = self.deidentifier.audio(clip.audio, key)
            deid["audio"] = {"mcadams_alpha": round(float(alpha), 4), "forwarded": self.forward_media}
        if clip.has_video and self.forward_media:
            deid["video"] = {"forwarded": True, "margin": self.deidentifier.options.margin, "note": "the model's frames are decoded from the de-identified video (model_media)"}
        elif clip.has_video:
            deid["video"] = {"frames_forwarded": 0, "note": "no frames reach the model (its projectors are untrained); the experts read the raw frames inside the boundary"}
        return media, deid

    def _jobs(self, path: Path, clip: Clip, physiology, physio_args: dict) -> dict[str, Callable[[], dict]]:
        """name -> a call returning the envelope dict; each through the per-content tool cache."""
        spec, jobs = self.spec, {}
        if spec.face_fps and clip.has_video:
            keep = thin(clip.frame_times, spec.face_fps)

            def face():
                return self.tool(FACE).analyze_frames(clip.frames[keep], clip.frame_times[keep], clip.fps or spec.face_fps)

            jobs[FACE] = self._cached(FACE, path, {"max_fps": spec.face_fps}, face)
        if spec.body_fps and clip.has_video:
            keep_b = thin(clip.frame_times, spec.body_fps)
            jobs[BODY] = self._cached(BODY, path, {"fps": spec.body_fps}, lambda: self.tool(BODY).analyze_frames(clip.frames[keep_b], clip.frame_times[keep_b]))
        if spec.voice and clip.has_audio:
            jobs[VOICE] = self._cached(VOICE, path, {}, lambda: self.tool(VOICE).analyze_audio(clip.audio, clip.sample_rate))
        if physiology is not None:
            args = {"path": str(physiology), **physio_args}
            if self.physio_model:
                args["model"] = self.physio_model
            jobs[PHYSIO] = lambda: self.cache.run(self.tool(PHYSIO), args)[0]
        return jobs

    def _cached(self, name: str, path: Path, args: dict, compute: Callable[[], Any]) -> Callable[[], dict]:
        # "source: evidence" keeps these apart from the tool's own file decoding (frames are picked
        # by a different sampler), so a cached result always means the same computation
        return lambda: self.cache.run(self.tool(name), {"clip": str(path), **args}, compute=compute, key_extra={"source": "evidence", "version": EVIDENCE_VERSION})[0]

    @staticmethod
    def _timed(fn: Callable[[], dict]) -> tuple[bool, Any, float]:
        t = time.perf_counter()
        try:
            return True, fn(), time.perf_counter() - t
        except Exception as e:  # an expert that fails is recorded; the answer is still given
            return False, f"{type(e).__name__}: {e}" if not isinstance(e, DeemoError) else str(e), time.perf_counter() - t
