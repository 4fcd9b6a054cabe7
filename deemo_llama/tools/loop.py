"""The tool loop: the model's tool calls run server-side against the request's own inputs.

The model never sees file paths: a :class:`ToolSession` binds each tool's path argument (``clip``
for the media tools, ``path`` for a physiology recording) to the request's inputs and offers the
model specs without those arguments. Each call is validated (unknown tool, bad arguments ->
:class:`ToolCallError`, which the gateway answers with a 4xx), run through the per-file
:class:`ToolCache` with a timeout, and returned to the model as a compact ``tool`` message.

One loop, :func:`tool_loop`, serves every backend: a *transport* produces one assistant turn per
call (content deltas as they are generated, then an :class:`AssistantTurn` with the parsed tool
calls). ``serving.backend.openai_transport`` talks to vLLM (or any OpenAI-compatible server),
``generation.hf_transport`` to an in-process HF model.

    session = ToolSession({"clip": Path("clip.mp4")})
    final = run_tool_loop(hf_transport(model, processor, audios=[wav]), messages, session, max_rounds=3)
    final.turn.content, final.steps, final.messages

    async for ev in tool_loop(openai_transport(client, "deemo", stream=True), messages, session):
        ...  # ev.kind: "delta" (ev.text), "step" (ev.step), then one "final"

Client-side tools (OpenAI's ``tools`` in an API request) are offered beside the server's experts in
every round. The client runs them, so a turn that calls one ends the loop: the final event carries
those calls (``client_calls``) and the API answers ``finish_reason: "tool_calls"``. Rules: a client
tool may not take a server tool's name (the gateway answers 400); in a turn that calls both kinds, the
server calls are not run (steps with status ``skipped``) and the model may repeat them in the next
request, once the client has sent its results back.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator, Callable, Literal, Sequence

from ..errors import DeemoError
from .base import Tool, ToolArgumentError
from .registry import ToolCache, get_tool, tool_names

MAX_EVENTS_IN_MESSAGE = 12  # the model reads the summary first; a long event list wastes context


class ToolCallError(DeemoError):
    """The model asked for a tool that does not exist here, or with invalid arguments."""


@dataclass
class ToolStep:
    """One executed call: what the model asked for and what came back (the trace the API returns)."""

    id: str
    name: str
    arguments: dict[str, Any]
    status: str  # the envelope's status, or "error" / "timeout"
    summary: str
    seconds: float
    cached: bool = False
    result: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def message(self) -> dict[str, Any]:
        """The ``tool`` chat message the model reads next."""
        if self.result is None:
            content = {"status": self.status, "summary": self.summary}
        else:
            r = self.result
            content = {k: r[k] for k in ("status", "summary", "window", "estimates") if k in r}
            content["events"] = r.get("events", [])[:MAX_EVENTS_IN_MESSAGE]
            if len(r.get("events", [])) > MAX_EVENTS_IN_MESSAGE:
                content["events_omitted"] = len(r["events"]) - MAX_EVENTS_IN_MESSAGE
        return {"role": "tool", "tool_call_id": self.id, "name": self.name, "content": json.dumps(content)}


def llm_spec(tool: Tool) -> dict[str, Any]:
    """The tool's OpenAI spec without its path and server arguments (the session supplies those)."""
    params = json.loads(json.dumps(tool.parameters))
    hidden = set(tool.path_arguments) | set(tool.server_arguments)
    for arg in hidden:
        params.get("properties", {}).pop(arg, None)
    params["required"] = [r for r in params.get("required", []) if r not in hidden]
    return {"type": "function", "function": {"name": tool.name, "description": tool.description, "parameters": params}}


class ToolSession:
    """The tools one request may call, bound to its inputs (``{"clip": path, "path": path}``)."""

    def __init__(self, inputs: dict[str, str | Path], cache: ToolCache | None = None, names: Sequence[str] | None = None, timeout_s: float = 300.0):
        self.inputs = {k: str(v) for k, v in inputs.items() if v is not None}
        self.cache = cache or ToolCache()
        self.timeout_s = timeout_s
        wanted = tool_names() if names is None else list(names)
        unknown = sorted(set(wanted) - set(tool_names()))
        if unknown:
            raise DeemoError(f"unknown tool(s) {unknown}; available: {', '.join(tool_names())}")
        # a tool is offered only when the request holds the input it reads (a text tool always)
        self.tools = {n: t for n in wanted if not (t := get_tool(n)).path_arguments or t.path_arguments[0] in self.inputs}

    def specs(self) -> list[dict[str, Any]]:
        return [llm_spec(t) for t in self.tools.values()]

    def call(self, name: str, arguments: dict[str, Any] | str | None, call_id: str | None = None) -> ToolStep:
        """Run one call. Raises ToolCallError for an unknown/unavailable tool or invalid arguments;
        a tool that fails on the input or runs out of time gives a step with status error/timeout."""
        call_id = call_id or f"call_{uuid.uuid4().hex[:12]}"
        if name not in self.tools:
            raise ToolCallError(f"the model called tool {name!r}, which this request does not offer (offered: {', '.join(self.tools) or 'none'})")
        tool = self.tools[name]
        if isinstance(arguments, str):  # OpenAI carries arguments as a JSON string
            try:
                arguments = json.loads(arguments or "{}")
            except json.JSONDecodeError:
                raise ToolCallError(f"{name}: arguments are not valid JSON: {arguments[:80]!r}") from None
        arguments = dict(arguments or {})
        given_paths = sorted(set(arguments) & (set(tool.path_arguments) | set(tool.server_arguments)))
        if given_paths:
            raise ToolCallError(f"{name}: argument(s) {given_paths} are supplied by the server, not the model")
        full = {**arguments, **{a: self.inputs[a] for a in tool.path_arguments if a in self.inputs}}
        try:
            tool.validate(full)
        except ToolArgumentError as e:
            raise ToolCallError(str(e)) from None
        t0 = time.perf_counter()
        pool = ThreadPoolExecutor(max_workers=1)
        future = pool.submit(self.cache.run, tool, full)
        try:
            result, cached = future.result(timeout=self.timeout_s)
        except FutureTimeout:
            return ToolStep(call_id, name, arguments, "timeout", f"{name} did not finish within {self.timeout_s:g} s.", time.perf_counter() - t0)
        except DeemoError as e:
            return ToolStep(call_id, name, arguments, "error", f"{name} could not analyse this input: {e}", time.perf_counter() - t0)
        except Exception as e:  # the expert itself crashed: the model is told, the request goes on
            return ToolStep(call_id, name, arguments, "error", f"{name} failed ({type(e).__name__}: {e}); answer without it.", time.perf_counter() - t0)
        finally:
            pool.shutdown(wait=False)
        return ToolStep(call_id, name, arguments, result["status"], result["summary"], time.perf_counter() - t0, cached, result)


@dataclass
class AssistantTurn:
    """One model turn as a transport returns it."""

    content: str | None  # the visible text of the turn (tool-call markup removed)
    tool_calls: list[dict]  # [{"id": str, "name": str, "arguments": str (JSON text)}], [] if none
    finish_reason: str | None = None
    usage: dict | None = None  # {"prompt_tokens", "completion_tokens", "total_tokens"} when reported
    raw: dict | None = None  # the backend's whole non-streamed response (model_dump), if any


# A transport produces one assistant turn for (messages, tools-or-None): it yields content deltas
# (str) as they are generated and, LAST, exactly one AssistantTurn.
Transport = Callable[[list[dict], list[dict] | None], AsyncIterator[str | AssistantTurn]]

USAGE_KEYS = ("prompt_tokens", "completion_tokens", "total_tokens")


@dataclass
class LoopEvent:
    """What :func:`tool_loop` yields: content deltas, executed tool steps, and one final event."""

    kind: Literal["delta", "step", "final"]
    text: str = ""  # delta
    step: ToolStep | None = None  # step (an executed tool call)
    turn: AssistantTurn | None = None  # final: the last turn
    messages: list[dict] | None = None  # final: the whole conversation incl. tool turns and the final assistant message
    steps: list[ToolStep] = field(default_factory=list)  # final: every executed step
    usage: dict | None = None  # final: usage summed over all rounds (None if no round reported usage)
    rounds: int = 0  # final: how many rounds ran tool calls
    client_calls: list[dict] = field(default_factory=list)  # final: calls of client tools, for the client to run


def new_call_id() -> str:
    return f"call_{uuid.uuid4().hex[:12]}"


def _add_usage(total: dict | None, usage: dict | None) -> dict | None:
    if not usage:
        return total
    total = dict(total or {k: 0 for k in USAGE_KEYS})
    for k in USAGE_KEYS:
        total[k] = total.get(k, 0) + int(usage.get(k) or 0)
    return total


def _check_arguments(call: dict) -> None:
    """Arguments that are JSON but not an object are the model's error (bad JSON: session.call says so)."""
    args = call.get("arguments")
    if isinstance(args, str) and args.strip():
        try:
            parsed = json.loads(args)
        except json.JSONDecodeError:
            return
        if not isinstance(parsed, dict):
            raise ToolCallError(f"{call.get('name')}: arguments must be a JSON object, got {args[:80]!r}")


async def _one_turn(transport: Transport, messages: list[dict], tools: list[dict] | None) -> AsyncIterator[str | AssistantTurn]:
    turn = None
    async for item in transport(messages, tools):
        if turn is not None:
            raise RuntimeError("the transport yielded after its AssistantTurn")
        if isinstance(item, AssistantTurn):
            turn = item
        elif item:
            yield item
    if turn is None:
        raise RuntimeError("the transport ended without an AssistantTurn")
    yield turn


async def tool_loop(transport: Transport, messages: Sequence[dict], session: ToolSession | None, max_rounds: int = 3, client_tools: Sequence[dict] | None = None) -> AsyncIterator[LoopEvent]:
    """Generate; while the turn holds tool calls (and rounds remain), run them and generate again.

    ``session`` None or ``max_rounds`` 0 -> one plain turn (no server tools offered). Tool calls run
    via ``session.call`` in a worker thread, in order; ToolCallError propagates (the gateway answers
    422). After ``max_rounds`` rounds of calls the model is asked once more without the server tools,
    so the loop always ends with a plain answer or, when ``client_tools`` (OpenAI tool specs) are
    offered, with calls of those for the client to run (``final.client_calls``). Yields "delta" events
    as the transport streams, a "step" event per executed call, and finally one "final" event with
    the last turn and the whole conversation.
    """
    messages = list(messages)
    client_tools = list(client_tools or [])
    client_names = {t["function"]["name"] for t in client_tools}
    steps: list[ToolStep] = []
    usage: dict | None = None
    rounds = max_rounds if session is not None else 0
    for round_ in range(rounds + 1):
        server = (session.specs() or []) if round_ < rounds else []
        tools = (server + client_tools) or None
        turn: AssistantTurn | None = None
        async for item in _one_turn(transport, messages, tools):
            if isinstance(item, AssistantTurn):
                turn = item
            else:
                yield LoopEvent("delta", text=item)
        assert turn is not None
        usage = _add_usage(usage, turn.usage)
        for_client = [c for c in turn.tool_calls if c["name"] in client_names]
        if for_client:  # the client runs these; server calls beside them wait for the next request
            for c in turn.tool_calls:
                if c["name"] not in client_names:
                    step = ToolStep(c.get("id") or new_call_id(), c["name"], {}, "skipped", f"{c['name']} was not run: the same turn called a client tool, so it went back to the client.", 0.0)
                    steps.append(step)
                    yield LoopEvent("step", step=step)
            final = messages + [{"role": "assistant", "content": turn.content, "tool_calls": [_call_message(c) for c in for_client]}]
            yield LoopEvent("final", turn=turn, messages=final, steps=steps, usage=usage, rounds=round_, client_calls=for_client)
            return
        if not server or not turn.tool_calls:
            # a call the model makes anyway when none was offered is dropped: the answer is its text
            final = messages + [{"role": "assistant", "content": turn.content}]
            yield LoopEvent("final", turn=turn, messages=final, steps=steps, usage=usage, rounds=round_)
            return
        done = []
        for c in turn.tool_calls:
            _check_arguments(c)
            step = await asyncio.to_thread(session.call, c["name"], c["arguments"], c.get("id") or new_call_id())
            done.append(step)
            steps.append(step)
            yield LoopEvent("step", step=step)
        messages.append({"role": "assistant", "content": turn.content, "tool_calls": [_call_message({"id": s.id, "name": s.name, "arguments": json.dumps(s.arguments)}) for s in done]})
        messages += [s.message() for s in done]
    raise AssertionError("unreachable")  # the last round offers no server tools and returns


def _call_message(call: dict) -> dict:
    """A loop call ({"id", "name", "arguments"}) in OpenAI's ``tool_calls`` shape."""
    return {"id": call["id"], "type": "function", "function": {"name": call["name"], "arguments": call["arguments"]}}


def run_tool_loop(transport: Transport, messages: Sequence[dict], session: ToolSession | None, max_rounds: int = 3, client_tools: Sequence[dict] | None = None) -> LoopEvent:
    """:func:`tool_loop` run to its end with ``asyncio.run`` (not from inside a running event loop);
    returns the final event."""

    async def _run() -> LoopEvent:
        final = None
        async for ev in tool_loop(transport, messages, session, max_rounds, client_tools):
            if ev.kind == "final":
                final = ev
        assert final is not None
        return final

    return asyncio.run(_run())
