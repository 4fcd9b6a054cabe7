"""The tool loop: the model's tool calls run server-side against the request's own inputs.

The model never sees file paths: a :class:`ToolSession` binds each tool's path argument (``clip``
for the media tools, ``path`` for a physiology recording) to the request's inputs and offers the
model specs without those arguments. Each call is validated (unknown tool, bad arguments ->
:class:`ToolCallError`, which the gateway answers with a 4xx), run through the per-file
:class:`ToolCache` with a timeout, and returned to the model as a compact ``tool`` message.

    session = ToolSession({"clip": Path("clip.mp4")})
    text, steps, messages = run_tool_loop(generate, messages, session, max_rounds=3)

``generate(messages, tools) -> str`` is any chat backend whose output uses the chat template's
``<tool_call>`` format (HF ``generation.chat`` or a vLLM server).
"""

from __future__ import annotations

import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

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
        # a tool is offered only when the request holds the input it reads
        self.tools = {n: t for n in wanted if (t := get_tool(n)).path_arguments[0] in self.inputs}

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
        finally:
            pool.shutdown(wait=False)
        return ToolStep(call_id, name, arguments, result["status"], result["summary"], time.perf_counter() - t0, cached, result)


def run_tool_loop(
    generate: Callable[[list[dict], list[dict]], str],
    messages: Sequence[dict],
    session: ToolSession,
    max_rounds: int = 3,
) -> tuple[str, list[ToolStep], list[dict]]:
    """Generate; while the reply holds tool calls (and rounds remain), run them and generate again.

    Returns (final reply text, executed steps, the whole conversation including tool turns). After
    ``max_rounds`` rounds of calls the model is asked once more with no tools offered, so the loop
    always ends with a plain answer.
    """
    from ..processing import parse_tool_calls

    messages = list(messages)
    steps: list[ToolStep] = []
    for round_ in range(max_rounds + 1):
        tools = session.specs() if round_ < max_rounds else []
        text = generate(messages, tools)
        try:
            content, calls = parse_tool_calls(text)
        except ValueError as e:
            raise ToolCallError(f"the model's tool call could not be parsed: {e}") from None
        if not calls or not tools:
            return content if calls else text.strip(), steps, messages + [{"role": "assistant", "content": content if calls else text.strip()}]
        done = [session.call(c["name"], c["arguments"]) for c in calls]
        steps += done
        messages.append({"role": "assistant", "content": content, "tool_calls": [{"id": s.id, "type": "function", "function": {"name": s.name, "arguments": json.dumps(s.arguments)}} for s in done]})
        messages += [s.message() for s in done]
    raise AssertionError("unreachable")  # the last round offers no tools and returns
