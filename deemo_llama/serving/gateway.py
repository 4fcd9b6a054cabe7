"""The assistant gateway: an OpenAI-compatible API that is the privacy boundary in front of vLLM.

    client --raw video/audio--> gateway --de-identified media--> vLLM (our model)
                                   |  experts on the raw media (tool loop, cached per clip)

``POST /v1/chat/completions`` (streamed or not) and ``GET /v1/models``. Media parts are resolved
(data: URLs; local paths only under the allow-listed folder; no remote fetch unless enabled),
de-identified (faces blurred, voices McAdams-anonymised) in a RAM scratch folder that is deleted
with the request, and only the de-identified media are forwarded. The expert tools run server-side
on the raw clip: the model's tool calls execute against the clip's cached results, in bounded
rounds with a timeout; the trace comes back in the ``deemo`` extension field (and as stream chunks).
Errors use OpenAI's shape with a 4xx status; the server keeps serving.
"""


import asyncio
import base64
import json
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator, Literal

from ..errors import DeemoError
from .media_parts import GatewayError, MediaPolicy, RawMedia, collect_media, scratch_dir

ROLES = {"system", "user", "assistant", "tool"}
PART_TYPES = {"text", "video_url", "audio_url", "input_audio"}
FORWARDED = {"max_tokens", "max_completion_tokens", "temperature", "top_p", "seed", "stop", "presence_penalty", "frequency_penalty", "logprobs", "top_logprobs"}
Experts = Literal["tools", "context", "none"]
CLIP_TOOLS = ("analyze_facial_expression", "analyze_body_language", "analyze_voice")  # the experts a clip feeds


@dataclass
class GatewaySettings:
    backend_url: str  # the vLLM server's /v1
    models: tuple[str, ...] = ("deemo",)  # names clients may ask for (base and adapters), as vLLM serves them
    api_key: str | None = None
    media: MediaPolicy = field(default_factory=MediaPolicy)
    max_request_bytes: int = 96 << 20
    max_media_seconds: float = 120.0
    max_concurrency: int = 4
    max_tool_rounds: int = 3
    tool_timeout_s: float = 120.0
    max_tokens_limit: int = 2048
    experts: Experts = "tools"  # tools: the model calls them; context: summaries in the system turn
    face_mode: str = "blur"
    mcadams_alpha: float = 0.8
    backend_timeout_s: float = 600.0


@dataclass
class Prepared:
    """A request after the privacy boundary."""

    messages: list[dict]  # with de-identified media only
    clip: Path | None  # the raw clip the experts read (never leaves the gateway)
    deid: list[dict]  # per media part: what was done
    forwarded: list[dict] = field(default_factory=list)  # the de-identified parts, as sent to the model

    def extension(self, body: dict) -> dict:
        """The ``deemo`` field's start: what the boundary did (and, on request, the media it sent)."""
        ext = {"deidentification": self.deid}
        if (body.get("deemo") or {}).get("return_media"):
            ext["deidentified_media"] = [{"part": d["part"], "kind": d["kind"], "url": (p.get("video_url") or {}).get("url") or f"data:audio/wav;base64,{p['input_audio']['data']}"} for d, p in zip(self.deid, self.forwarded)]
        return ext


def _error_response(e: GatewayError):
    from fastapi.responses import JSONResponse

    return JSONResponse(e.body(), status_code=e.status)


def validate_request(body: Any, settings: GatewaySettings) -> dict:
    """Check the chat request's shape; raise GatewayError(400/404) naming the problem."""
    if not isinstance(body, dict):
        raise GatewayError(400, "the request body must be a JSON object")
    model = body.get("model")
    if not isinstance(model, str):
        raise GatewayError(400, "'model' is required", param="model")
    if model not in settings.models:
        raise GatewayError(404, f"the model {model!r} does not exist; available: {', '.join(settings.models)}", "not_found_error", "model", "model_not_found")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise GatewayError(400, "'messages' must be a non-empty list", param="messages")
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ROLES:
            raise GatewayError(400, f"messages[{i}] must be an object with a role in {sorted(ROLES)}", param=f"messages[{i}]")
        content = m.get("content")
        if content is None and not (m["role"] == "assistant" and m.get("tool_calls")):
            raise GatewayError(400, f"messages[{i}] has no content", param=f"messages[{i}].content")
        if isinstance(content, list):
            for j, part in enumerate(content):
                where = f"messages[{i}].content[{j}]"
                if not isinstance(part, dict) or part.get("type") not in PART_TYPES:
                    raise GatewayError(400, f"{where}: unsupported content part; expected a type in {sorted(PART_TYPES)}", param=where)
                if part["type"] == "text" and not isinstance(part.get("text"), str):
                    raise GatewayError(400, f"{where}: a text part needs a string 'text'", param=where)
                if part["type"] != "text" and m["role"] != "user":
                    raise GatewayError(400, f"{where}: media parts are accepted in user messages only", param=where)
        elif content is not None and not isinstance(content, str):
            raise GatewayError(400, f"messages[{i}].content must be a string or a list of parts", param=f"messages[{i}].content")
    if body.get("tools"):
        raise GatewayError(400, "client-side tools are not supported: the gateway offers the expert tools itself (see deemo.experts)", param="tools")
    if body.get("n", 1) != 1:
        raise GatewayError(400, "only n=1 is supported", param="n")
    mt = body.get("max_tokens", body.get("max_completion_tokens", 256))
    if not isinstance(mt, int) or isinstance(mt, bool) or not 1 <= mt <= settings.max_tokens_limit:
        raise GatewayError(400, f"max_tokens must be an integer in 1..{settings.max_tokens_limit}", param="max_tokens")
    ext = body.get("deemo") or {}
    if not isinstance(ext, dict) or ext.get("experts", settings.experts) not in ("tools", "context", "none"):
        raise GatewayError(400, "deemo.experts must be one of tools, context, none", param="deemo.experts")
    unknown = sorted(set(ext) - {"experts", "return_media"})
    if unknown:
        raise GatewayError(400, f"unknown deemo option(s) {unknown}; expected experts, return_media", param="deemo")
    return body


class Gateway:
    """Holds the de-identifier, the tool cache and the backend client; ``app`` is the FastAPI app."""

    def __init__(self, settings: GatewaySettings):
        from openai import AsyncOpenAI

        from ..privacy.deid import DeidOptions, Deidentifier
        from ..tools import ToolCache

        self.settings = settings
        self.deid = Deidentifier(DeidOptions(face_mode=settings.face_mode, alpha=settings.mcadams_alpha, transcribe=False, audit=False, max_seconds=settings.max_media_seconds))
        self.cache = ToolCache()
        self.backend = AsyncOpenAI(base_url=settings.backend_url, api_key="unused", timeout=settings.backend_timeout_s, max_retries=0)
        self.slots = asyncio.Semaphore(settings.max_concurrency)
        self.app = self._build_app()

    # -- HTTP ------------------------------------------------------------------------------------
    def _build_app(self):
        from fastapi import FastAPI, Request
        from fastapi.exceptions import RequestValidationError
        from fastapi.responses import JSONResponse

        app = FastAPI(title="deemo-llama gateway", version="1")

        @app.exception_handler(GatewayError)
        async def _gw(_: Request, e: GatewayError):
            return _error_response(e)

        @app.exception_handler(RequestValidationError)
        async def _val(_: Request, e: RequestValidationError):
            return _error_response(GatewayError(400, f"invalid request: {e.errors()[:1]}"))

        @app.exception_handler(404)
        async def _nf(request: Request, _e):
            return _error_response(GatewayError(404, f"no route {request.url.path}", "not_found_error"))

        @app.get("/health")
        async def health():
            return {"status": "ok"}

        @app.get("/v1/models")
        async def models(request: Request):
            self._auth(request)
            now = int(time.time())
            return {"object": "list", "data": [{"id": m, "object": "model", "created": now, "owned_by": "deemo-llama"} for m in self.settings.models]}

        @app.post("/v1/chat/completions")
        async def chat(request: Request):
            self._auth(request)
            body = validate_request(await self._read_json(request), self.settings)
            if self.slots.locked():
                raise GatewayError(429, f"the server is busy ({self.settings.max_concurrency} requests in flight); retry shortly", "rate_limit_error", code="too_many_requests")
            await self.slots.acquire()
            scratch = scratch_dir()
            try:
                prepared = await self._prepare(body, Path(scratch.name))
                if body.get("stream"):
                    from fastapi.responses import StreamingResponse

                    gen = self._stream(body, prepared, scratch)
                    scratch = None  # the stream owns it (and the slot) from here
                    return StreamingResponse(gen, media_type="text/event-stream")
                return JSONResponse(await self._complete(body, prepared))
            finally:
                if scratch is not None:
                    scratch.cleanup()
                    self.slots.release()

        return app

    def _auth(self, request) -> None:
        if self.settings.api_key is None:
            return
        if request.headers.get("authorization", "") != f"Bearer {self.settings.api_key}":
            raise GatewayError(401, "invalid or missing API key (Authorization: Bearer ...)", "authentication_error", code="invalid_api_key")

    async def _read_json(self, request) -> Any:
        declared = int(request.headers.get("content-length") or 0)
        if declared > self.settings.max_request_bytes:
            raise GatewayError(413, f"the request is {declared} bytes; the limit is {self.settings.max_request_bytes}", code="request_too_large")
        raw = await request.body()
        if len(raw) > self.settings.max_request_bytes:
            raise GatewayError(413, f"the request is {len(raw)} bytes; the limit is {self.settings.max_request_bytes}", code="request_too_large")
        try:
            return json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise GatewayError(400, f"the body is not valid JSON ({e.msg if hasattr(e, 'msg') else e})") from None

    # -- the privacy boundary ----------------------------------------------------------------------
    async def _prepare(self, body: dict, scratch: Path) -> Prepared:
        from starlette.concurrency import run_in_threadpool

        messages = json.loads(json.dumps(body["messages"]))
        media = collect_media(messages, self.settings.media, scratch)
        deid, clip, forwarded = [], None, []
        for i, j, raw in media:
            part, report = await run_in_threadpool(self._deidentify, raw, scratch)
            messages[i]["content"][j] = part
            deid.append(report)
            forwarded.append(part)
            if clip is None or (raw.kind == "video" and clip.suffix in (".wav", ".mp3", ".flac", ".ogg")):
                clip = raw.path  # the experts read the first video (or else the first audio)
        return Prepared(messages, clip, deid, forwarded)

    def _deidentify(self, raw: RawMedia, scratch: Path) -> tuple[dict, dict]:
        out = scratch / f"deid-{uuid.uuid4().hex[:8]}"
        try:
            report = self.deid.file(raw.path, out)
        except DeemoError as e:
            raise GatewayError(400, f"{raw.where}: {str(e).replace(str(raw.path), 'media')}", param=raw.where) from None
        summary = {"part": raw.where, "kind": raw.kind, "face_mode": self.settings.face_mode, "mcadams_alpha": report.get("audio", {}).get("mcadams_alpha")}
        if raw.kind == "video" and (out / "video.mp4").is_file():
            faces = report.get("video", {}).get("frames_with_faces")
            summary |= {"frames": report.get("video", {}).get("frames"), "frames_with_faces": faces}
            data = base64.b64encode((out / "video.mp4").read_bytes()).decode()
            return {"type": "video_url", "video_url": {"url": f"data:video/mp4;base64,{data}"}}, summary
        if (out / "audio.wav").is_file():
            data = base64.b64encode((out / "audio.wav").read_bytes()).decode()
            return {"type": "input_audio", "input_audio": {"data": data, "format": "wav"}}, summary
        raise GatewayError(400, f"{raw.where}: a {raw.kind} part without a usable {raw.kind} stream", param=raw.where)

    # -- the model and the tool loop ---------------------------------------------------------------
    def _session(self, body: dict, prepared: Prepared):
        from ..tools.loop import ToolSession

        mode = (body.get("deemo") or {}).get("experts", self.settings.experts)
        if prepared.clip is None or mode == "none":
            return mode, None
        return mode, ToolSession({"clip": prepared.clip}, cache=self.cache, names=CLIP_TOOLS, timeout_s=self.settings.tool_timeout_s)

    async def _context_messages(self, session, messages: list[dict]) -> tuple[list[dict], list]:
        """experts=context: run every offered tool now and put the summaries in the system turn."""
        from starlette.concurrency import run_in_threadpool

        steps = [await run_in_threadpool(session.call, spec["function"]["name"], {}) for spec in session.specs()]
        text = "Expert observations of the (raw, private) clip:\n" + "\n".join(f"- {s.name}: {s.summary}" for s in steps)
        if messages and messages[0]["role"] == "system" and isinstance(messages[0].get("content"), str):
            return [{"role": "system", "content": messages[0]["content"] + "\n\n" + text}] + messages[1:], steps
        return [{"role": "system", "content": "You are DEEMO, an assistant that recognises a person's emotion from de-identified video and audio and explains the cues behind it.\n\n" + text}] + messages, steps

    def _backend_kwargs(self, body: dict) -> dict:
        return {k: v for k, v in body.items() if k in FORWARDED}

    async def _backend(self, **kw):
        import openai

        try:
            return await self.backend.chat.completions.create(**kw)
        except openai.APIStatusError as e:
            msg = e.body.get("message") if isinstance(e.body, dict) else str(e)
            raise GatewayError(e.status_code if 400 <= e.status_code < 500 else 502, f"the model server answered {e.status_code}: {msg}", "invalid_request_error" if e.status_code < 500 else "upstream_error") from None
        except openai.APIConnectionError as e:
            raise GatewayError(502, f"the model server at {self.settings.backend_url} is unreachable ({e})", "upstream_error") from None

    async def _run_calls(self, session, calls) -> list:
        from starlette.concurrency import run_in_threadpool

        from ..tools.loop import ToolCallError

        steps = []
        for c in calls:
            try:
                steps.append(await run_in_threadpool(session.call, c["name"], c["arguments"], c["id"]))
            except ToolCallError as e:
                raise GatewayError(422, f"the model made an invalid tool call: {e}", "tool_call_error", code="invalid_tool_call") from None
        return steps

    async def _complete(self, body: dict, prepared: Prepared) -> dict:
        mode, session = self._session(body, prepared)
        messages, trace = prepared.messages, []
        if session is not None and mode == "context":
            messages, trace = await self._context_messages(session, messages)
        rounds = self.settings.max_tool_rounds if (session is not None and mode == "tools") else 0
        for round_ in range(rounds + 1):
            tools = session.specs() if round_ < rounds else None
            resp = await self._backend(model=body["model"], messages=messages, stream=False, **({"tools": tools} if tools else {}), **self._backend_kwargs(body))
            msg = resp.choices[0].message
            if not tools or not msg.tool_calls:
                break
            calls = [{"id": tc.id, "name": tc.function.name, "arguments": tc.function.arguments} for tc in msg.tool_calls]
            steps = await self._run_calls(session, calls)
            trace += steps
            messages = messages + [{"role": "assistant", "content": msg.content, "tool_calls": [{"id": s.id, "type": "function", "function": {"name": s.name, "arguments": json.dumps(s.arguments)}} for s in steps]}] + [s.message() for s in steps]
        out = resp.model_dump(exclude_none=True)
        out["deemo"] = {"experts": mode, "tool_trace": [s.to_dict() for s in trace], **prepared.extension(body)}
        return out

    async def _stream(self, body: dict, prepared: Prepared, scratch) -> AsyncIterator[bytes]:
        """SSE: content deltas as they come; each executed tool step as a chunk with ``deemo.tool_step``."""
        cid, created = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())

        def chunk(delta: dict | None = None, finish: str | None = None, deemo: dict | None = None) -> bytes:
            c: dict = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": body["model"], "choices": [{"index": 0, "delta": delta or {}, "finish_reason": finish}]}
            if deemo is not None:
                c["deemo"] = deemo
            return f"data: {json.dumps(c)}\n\n".encode()

        try:
            mode, session = self._session(body, prepared)
            messages = prepared.messages
            yield chunk({"role": "assistant"}, deemo={"experts": mode, **prepared.extension(body)})
            if session is not None and mode == "context":
                messages, steps = await self._context_messages(session, messages)
                for s in steps:
                    yield chunk(deemo={"tool_step": s.to_dict()})
            rounds = self.settings.max_tool_rounds if (session is not None and mode == "tools") else 0
            for round_ in range(rounds + 1):
                tools = session.specs() if round_ < rounds else None
                stream = await self._backend(model=body["model"], messages=messages, stream=True, **({"tools": tools} if tools else {}), **self._backend_kwargs(body))
                calls: dict[int, dict] = {}
                finish = None
                content = []
                async for c in stream:
                    if not c.choices:
                        continue
                    d = c.choices[0].delta
                    if d.content:
                        content.append(d.content)
                        yield chunk({"content": d.content})
                    for tc in d.tool_calls or []:
                        slot = calls.setdefault(tc.index, {"id": None, "name": "", "arguments": ""})
                        slot["id"] = tc.id or slot["id"]
                        if tc.function is not None:
                            slot["name"] += tc.function.name or ""
                            slot["arguments"] += tc.function.arguments or ""
                    finish = c.choices[0].finish_reason or finish
                if not tools or not calls:
                    yield chunk(finish=finish or "stop")
                    break
                ordered = [calls[k] for k in sorted(calls)]
                for k in ordered:
                    k["id"] = k["id"] or f"call_{uuid.uuid4().hex[:12]}"
                steps = await self._run_calls(session, ordered)
                for s in steps:
                    yield chunk(deemo={"tool_step": s.to_dict()})
                messages = messages + [{"role": "assistant", "content": "".join(content) or None, "tool_calls": [{"id": s.id, "type": "function", "function": {"name": s.name, "arguments": json.dumps(s.arguments)}} for s in steps]}] + [s.message() for s in steps]
            yield b"data: [DONE]\n\n"
        except GatewayError as e:  # the status line is sent already: the error goes in the stream
            yield f"data: {json.dumps(e.body())}\n\n".encode()
            yield b"data: [DONE]\n\n"
        finally:
            scratch.cleanup()
            self.slots.release()
