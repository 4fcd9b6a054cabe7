"""Media content parts of an OpenAI chat request -> raw files inside the privacy boundary.

Accepted parts (OpenAI shapes, as vLLM takes them):
    {"type": "video_url", "video_url": {"url": URL}}
    {"type": "audio_url", "audio_url": {"url": URL}}
    {"type": "input_audio", "input_audio": {"data": BASE64, "format": "wav" | "mp3" | ...}}
URL: a ``data:`` URL (base64); a local path or ``file://`` URL only under the allow-listed folder;
``http(s)://`` only when remote fetching is enabled. Raw bytes go to a per-request scratch folder
in RAM (/dev/shm when present), deleted when the request ends: no media is written to disk.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from ..fsio import scratch_dir  # noqa: F401  (re-exported: the gateway's per-request folder)

MEDIA_TYPES = {"video_url": "video", "audio_url": "audio", "input_audio": "audio"}
AUDIO_FORMATS = {"wav", "mp3", "flac", "ogg", "m4a", "webm"}
# a declared type (data: URL MIME type, input_audio format) -> the FFmpeg demuxer that must read it;
# types not listed (application/octet-stream, ...) claim nothing and are not checked
CONTAINER_OF = {
    **dict.fromkeys(("video/mp4", "video/quicktime", "video/3gpp", "audio/mp4", "audio/m4a", "audio/x-m4a", "m4a"), "mp4"),
    **dict.fromkeys(("video/webm", "audio/webm", "video/x-matroska", "audio/x-matroska", "webm"), "matroska"),
    **dict.fromkeys(("audio/wav", "audio/x-wav", "audio/wave", "audio/vnd.wave", "wav"), "wav"),
    **dict.fromkeys(("audio/mpeg", "audio/mp3", "mp3"), "mp3"),
    **dict.fromkeys(("audio/flac", "audio/x-flac", "flac"), "flac"),
    **dict.fromkeys(("audio/ogg", "video/ogg", "ogg"), "ogg"),
    **dict.fromkeys(("video/x-msvideo", "video/avi"), "avi"),
}


class GatewayError(Exception):
    """An error answered in OpenAI's shape: {"error": {"message", "type", "param", "code"}}."""

    def __init__(self, status: int, message: str, type_: str = "invalid_request_error", param: str | None = None, code: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type_, param, code
        self.headers = headers or {}  # e.g. Retry-After on a 429

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


@dataclass
class MediaPolicy:
    media_dir: Path | None = None  # local paths allowed only under here (None: no local paths)
    allow_remote: bool = False
    max_bytes: int = 64 << 20
    max_items: int = 4


@dataclass
class RawMedia:
    kind: str  # "video" | "audio"
    path: Path  # in the request's scratch folder, or the allow-listed original
    where: str  # messages[i].content[j], for error messages


def _decode_b64(data: str, where: str) -> bytes:
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise GatewayError(400, f"{where}: media data is not valid base64", param=where) from None


def _fetch(url: str, policy: MediaPolicy, where: str) -> bytes:
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=20) as r:
            data = r.read(policy.max_bytes + 1)
    except OSError as e:
        raise GatewayError(400, f"{where}: could not fetch {url} ({e})", param=where) from None
    return data


def _local(url: str, policy: MediaPolicy, where: str) -> Path:
    path = Path(unquote(urlparse(url).path) if url.startswith("file://") else url)
    if policy.media_dir is None:
        raise GatewayError(403, f"{where}: local media paths are not allowed on this server (no media folder is configured); send a data: URL", "permission_error", where)
    root = policy.media_dir.resolve()
    real = path.resolve()
    if real != root and root not in real.parents:
        raise GatewayError(403, f"{where}: {path} is outside the allowed media folder {root}", "permission_error", where)
    if not real.is_file():
        raise GatewayError(400, f"{where}: {path}: no such file", param=where)
    if real.stat().st_size > policy.max_bytes:
        raise GatewayError(413, f"{where}: {path} is {real.stat().st_size} bytes; the limit is {policy.max_bytes}", param=where)
    return real


def resolve_part(part: dict, policy: MediaPolicy, scratch: Path, where: str) -> RawMedia:
    """One media part -> RawMedia (raises GatewayError with an HTTP status)."""
    ptype = part.get("type")
    kind = MEDIA_TYPES[ptype]
    body = part.get(ptype)
    if not isinstance(body, dict):
        raise GatewayError(400, f"{where}: a {ptype} part needs a {ptype!r} object", param=where)
    if ptype == "input_audio":
        fmt = str(body.get("format", "wav")).lower()
        if fmt not in AUDIO_FORMATS:
            raise GatewayError(400, f"{where}: input_audio format {fmt!r} is not one of {sorted(AUDIO_FORMATS)}", param=where)
        if not isinstance(body.get("data"), str):
            raise GatewayError(400, f"{where}: input_audio needs base64 'data'", param=where)
        data, suffix, declared = _decode_b64(body["data"], where), "." + fmt, fmt
    else:
        url = body.get("url")
        if not isinstance(url, str) or not url:
            raise GatewayError(400, f"{where}: {ptype} needs a 'url'", param=where)
        if url.startswith("data:"):
            header, sep, payload = url[5:].partition(",")
            if not sep or ";base64" not in header:
                raise GatewayError(400, f"{where}: only base64 data: URLs are accepted", param=where)
            mime = declared = header.split(";")[0].lower()
            data, suffix = _decode_b64(payload, where), "." + (mime.split("/")[-1] if "/" in mime else "bin")
        elif url.startswith(("http://", "https://")):
            if not policy.allow_remote:
                raise GatewayError(403, f"{where}: remote media URLs are disabled on this server (start it with --allow-remote-media)", "permission_error", where)
            data, suffix, declared = _fetch(url, policy, where), Path(urlparse(url).path).suffix or ".bin", None
        else:
            return RawMedia(kind, _local(url, policy, where), where)
    if len(data) > policy.max_bytes:
        raise GatewayError(413, f"{where}: media is {len(data)} bytes; the limit is {policy.max_bytes}", param=where)
    if not data:
        raise GatewayError(400, f"{where}: media is empty", param=where)
    path = scratch / f"{len(list(scratch.iterdir()))}{suffix}"
    path.write_bytes(data)
    _check_declared_type(path, declared, where)
    return RawMedia(kind, path, where)


def _check_declared_type(path: Path, declared: str | None, where: str) -> None:
    """A data URL or input_audio whose declared type is not what the bytes are: a 400 (what the
    client says it sends is what the boundary must be processing)."""
    import av

    family = CONTAINER_OF.get(declared or "")
    if family is None:
        return
    try:
        with av.open(str(path)) as c:
            found = c.format.name
    except (av.error.FFmpegError, UnicodeDecodeError) as e:
        raise GatewayError(400, f"{where}: declared {declared} but the data is not a readable media file ({getattr(e, 'strerror', None) or e})", param=where) from None
    if family not in found.split(","):
        raise GatewayError(400, f"{where}: declared {declared} but the data is a {found.split(',')[0]} file; send it with its true type", param=where, code="media_type_mismatch")


def has_media(messages: list[dict]) -> bool:
    """Whether any message carries a media part (such requests take a slot of the media queue)."""
    return any(isinstance(m, dict) and isinstance(m.get("content"), list) and any(isinstance(p, dict) and p.get("type") in MEDIA_TYPES for p in m["content"]) for m in messages)


def collect_media(messages: list[dict], policy: MediaPolicy, scratch: Path) -> list[tuple[int, int, RawMedia]]:
    """(message index, part index, RawMedia) for every media part, in prompt order."""
    found = []
    for i, m in enumerate(messages):
        content = m.get("content")
        if not isinstance(content, list):
            continue
        for j, part in enumerate(content):
            if isinstance(part, dict) and part.get("type") in MEDIA_TYPES:
                if len(found) >= policy.max_items:
                    raise GatewayError(400, f"more than {policy.max_items} media parts in one request", param=f"messages[{i}].content[{j}]")
                found.append((i, j, resolve_part(part, policy, scratch, f"messages[{i}].content[{j}]")))
    return found


# -- the model's media, handed to vLLM exactly ----------------------------------------------------------
def lossless_video(frames) -> bytes:
    """uint8 RGB frames [T, H, W, 3] -> a Matroska file of FFV1 frames (lossless: vLLM's decoder gives
    back these exact pixels, so the served model reads what `deemo analyze` reads)."""
    import io

    import av

    buf = io.BytesIO()
    t, h, w = frames.shape[:3]
    with av.open(buf, "w", format="matroska") as out:
        stream = out.add_stream("ffv1", rate=1)
        stream.width, stream.height, stream.pix_fmt = w, h, "bgr0"
        for f in frames:
            out.mux(stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
        out.mux(stream.encode())
    return buf.getvalue()


def float_wav(audio, sample_rate: int = 16000) -> bytes:
    """float32 mono samples -> a 32-bit float WAV (lossless)."""
    import io

    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, audio, sample_rate, format="WAV", subtype="FLOAT")
    return buf.getvalue()


def model_media_parts(videos, audios) -> list[dict[str, Any]]:
    """The frames and audio the model sees (evidence.DeidMedia, chosen by analyze.media_parts) as
    OpenAI content parts for vLLM, encoded losslessly."""
    parts: list[dict[str, Any]] = []
    for v in videos:
        parts.append({"type": "video_url", "video_url": {"url": "data:video/x-matroska;base64," + base64.b64encode(lossless_video(v)).decode()}})
    for a in audios:
        parts.append({"type": "input_audio", "input_audio": {"data": base64.b64encode(float_wav(a)).decode(), "format": "wav"}})
    return parts
