"""A scripted OpenAI-compatible model server for gateway tests (a random-weight or 135M model does not
call tools on cue; the tool loop is tested against this, the model itself against real vLLM).

Behaviour per request (recorded in ``Script.requests``):
  - tools offered (tool_choice not "none") and no tool message yet -> a tool call to ``Script.call`` (name, arguments JSON)
  - otherwise -> ``"ANSWER: "`` + the last tool message's summary (or "no tools")
  - a user text containing "slow" sleeps ``Script.slow_s`` first
  - a label-scoring request (``prompt_logprobs``) is answered by ``Script.scorer`` (a tiny HF model,
    tests/hf_server.py) when set: the gateway's label scores are real log-probabilities
Streams (SSE) when asked, with the tool call or the answer split over several chunks.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from dataclasses import dataclass, field

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse


@dataclass
class Script:
    call: tuple[str, str] = ("analyze_voice", "{}")
    slow_s: float = 3.0
    requests: list[dict] = field(default_factory=list)
    scorer: object = None  # hf_server.HFScript for prompt_logprobs requests
    reply: str | None = None  # a forced answer text (instead of "ANSWER: <summary>")


def _reply(body: dict, script: Script) -> tuple[str | None, dict | None]:
    msgs = body["messages"]
    tool_msgs = [m for m in msgs if m["role"] == "tool"]
    if body.get("tools") and not tool_msgs and body.get("tool_choice") != "none":
        return None, {"id": f"call_{len(script.requests)}", "type": "function", "function": {"name": script.call[0], "arguments": script.call[1]}}
    summary = json.loads(tool_msgs[-1]["content"]).get("summary", "") if tool_msgs else "no tools"
    if script.reply is not None and not tool_msgs:
        return script.reply, None
    return f"ANSWER: {summary}", None


def make_app(script: Script) -> FastAPI:
    app = FastAPI()

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [{"id": "deemo", "object": "model", "created": 0, "owned_by": "test"}]}

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        body = await request.json()
        if body.get("prompt_logprobs") is not None and script.scorer is not None:
            from hf_server import hf_chat

            return await hf_chat(script.scorer, body)
        script.requests.append(body)
        texts = [p.get("text", "") for m in body["messages"] if isinstance(m.get("content"), list) for p in m["content"]] + [m["content"] for m in body["messages"] if isinstance(m.get("content"), str)]
        if any("slow" in t for t in texts):
            await asyncio.sleep(script.slow_s)
        content, call = _reply(body, script)
        base = {"id": "chatcmpl-test", "created": int(time.time()), "model": body["model"]}
        if not body.get("stream"):
            msg = {"role": "assistant", "content": content}
            if call:
                msg["tool_calls"] = [call]
            return JSONResponse({**base, "object": "chat.completion", "choices": [{"index": 0, "message": msg, "finish_reason": "tool_calls" if call else "stop"}], "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}})

        async def events():
            def chunk(delta, finish=None):
                return f"data: {json.dumps({**base, 'object': 'chat.completion.chunk', 'choices': [{'index': 0, 'delta': delta, 'finish_reason': finish}]})}\n\n"

            yield chunk({"role": "assistant"})
            if call:
                args = call["function"]["arguments"]
                yield chunk({"tool_calls": [{"index": 0, "id": call["id"], "type": "function", "function": {"name": call["function"]["name"], "arguments": args[: len(args) // 2]}}]})
                yield chunk({"tool_calls": [{"index": 0, "function": {"arguments": args[len(args) // 2 :]}}]})
                yield chunk({}, "tool_calls")
            else:
                for i in range(0, len(content), 7):
                    yield chunk({"content": content[i : i + 7]})
                yield chunk({}, "stop")
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    return app


class ServerThread:
    """uvicorn on loopback in a daemon thread."""

    def __init__(self, app, port: int):
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.port = port

    def __enter__(self):
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("server did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(10)
