"""The server-side tool loop: specs without paths, errors, caching, and ONE loop suite run over both
transports: ``openai_transport`` (streamed and not) against the scripted OpenAI server, and
``hf_transport`` with ``generation.stream_chat`` scripted to the same behaviour in the chat
template's ``<tool_call>`` text format."""

from __future__ import annotations

import asyncio
import json
import socket

import pytest

import scripted_backend
from deemo_llama import generation
from deemo_llama.generation import hf_transport
from deemo_llama.serving.backend import backend_error, openai_transport
from deemo_llama.serving.media_parts import GatewayError
from deemo_llama.tools import ToolCache
from deemo_llama.tools.loop import AssistantTurn, LoopEvent, ToolCallError, ToolSession, llm_spec, run_tool_loop, tool_loop
from deemo_llama.tools.registry import get_tool
from scripted_backend import Script, ServerThread, make_app

USER = [{"role": "user", "content": "How do they sound?"}]
USAGE = {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}  # the scripted server's, per non-streamed response
KINDS = ["openai", "openai-stream", "hf"]


@pytest.fixture
def session(media_dir, tmp_path):
    return ToolSession({"clip": media_dir / "speech.wav"}, cache=ToolCache(tmp_path / "cache"), names=["analyze_voice", "analyze_physiology"])


def test_llm_spec_hides_path_arguments():
    spec = llm_spec(get_tool("analyze_voice"))["function"]
    assert "clip" not in spec["parameters"]["properties"] and "clip" not in spec["parameters"]["required"]
    assert "start_s" in spec["parameters"]["properties"]
    assert "clip" in get_tool("analyze_voice").parameters["properties"]  # the tool's own spec is untouched


def test_session_offers_only_tools_with_their_input(session, tmp_path):
    assert [s["function"]["name"] for s in session.specs()] == ["analyze_voice"]  # no recording given
    both = ToolSession({"clip": "a.mp4", "path": "r.npz"}, cache=ToolCache(tmp_path), names=["analyze_voice", "analyze_physiology"])
    assert {s["function"]["name"] for s in both.specs()} == {"analyze_voice", "analyze_physiology"}
    with pytest.raises(Exception, match="unknown tool"):
        ToolSession({"clip": "a.mp4"}, names=["analyze_mood_ring"])


def test_model_errors_are_tool_call_errors(session):
    with pytest.raises(ToolCallError, match="does not offer"):
        session.call("analyze_physiology", {})  # registered, but this request has no recording
    with pytest.raises(ToolCallError, match="does not offer"):
        session.call("rm_rf", {})
    with pytest.raises(ToolCallError, match="'start_s' must be number"):
        session.call("analyze_voice", {"start_s": "soon"})
    with pytest.raises(ToolCallError, match="supplied by the server"):
        session.call("analyze_voice", {"clip": "/etc/passwd"})
    with pytest.raises(ToolCallError, match="not valid JSON"):
        session.call("analyze_voice", "{start_s: 1")


def test_tool_failure_is_reported_to_the_model_not_raised(session):
    step = session.call("analyze_voice", {"start_s": 99.0})  # past the end of the clip
    assert step.status == "error" and "holds no audio" in step.summary
    assert json.loads(step.message()["content"])["status"] == "error"


def test_an_expert_that_crashes_or_hangs_is_an_error_step_not_a_failed_request(session, monkeypatch):
    import time as _time

    from deemo_llama.tools.voice import AnalyzeVoice

    def crash(self, *a, **k):
        raise RuntimeError("opensmile segfaulted politely")

    monkeypatch.setattr(AnalyzeVoice, "analyze_audio", crash)
    step = session.call("analyze_voice", {"start_s": 0.25})
    assert step.status == "error" and "RuntimeError: opensmile segfaulted politely" in step.summary
    assert json.loads(step.message()["content"])["status"] == "error"
    monkeypatch.setattr(AnalyzeVoice, "analyze_audio", lambda self, *a, **k: _time.sleep(3))
    session.timeout_s = 0.5
    step = session.call("analyze_voice", {"start_s": 0.5})
    assert step.status == "timeout" and "did not finish within 0.5 s" in step.summary


def test_chat_template_renders_specs_and_tool_results(tiny, session):
    _, processor = tiny
    step = session.call("analyze_voice", {})
    convo = [{"role": "user", "content": [{"type": "audio"}, {"type": "text", "text": "How do they sound?"}]},
             {"role": "assistant", "content": "", "tool_calls": [{"id": step.id, "type": "function", "function": {"name": "analyze_voice", "arguments": "{}"}}]},
             step.message()]
    text = processor.render(convo, tools=session.specs(), add_generation_prompt=True)
    assert '"name": "analyze_voice"' in text and '"clip"' not in text
    assert '<tool_call>\n{"name": "analyze_voice", "arguments": {}}\n</tool_call>' in text
    assert "<tool_response>" in text and "anonymised voice" in text


def test_cache_key_covers_every_input_file(tmp_path):
    """A tool reading two files (like the face tool's clip + OpenFace CSV): changing either one
    must give a new key, or the cache would answer with a stale result."""
    from deemo_llama.tools.base import Tool

    class TwoFiles(Tool):
        name, version, description, privacy = "two_files", "1", "test", "test"
        parameters = {"type": "object", "properties": {"clip": {"type": "string"}, "extra": {"type": "string"}}, "required": ["clip"]}
        path_arguments = ("clip", "extra")

        def run(self, **kw):  # pragma: no cover - not called
            raise AssertionError

    clip, extra = tmp_path / "c.bin", tmp_path / "e.csv"
    clip.write_bytes(b"clip")
    extra.write_text("a")
    cache, tool = ToolCache(tmp_path / "cache"), TwoFiles()
    args = {"clip": str(clip), "extra": str(extra)}
    k1 = cache.key(tool, clip, args)
    extra.write_text("b, changed")
    assert cache.key(tool, clip, args) != k1
    assert cache.key(tool, clip, {"clip": str(clip)}) != k1


def test_server_arguments_are_hidden_and_refused(tmp_path):
    """analyze_physiology's `model` loads a joblib directory: the LLM must neither see nor set it."""
    spec = llm_spec(get_tool("analyze_physiology"))["function"]["parameters"]["properties"]
    assert "model" not in spec and "path" not in spec and "trial" in spec
    session = ToolSession({"path": tmp_path / "r.npz"}, cache=ToolCache(tmp_path / "c"), names=["analyze_physiology"])
    with pytest.raises(ToolCallError, match="supplied by the server"):
        session.call("analyze_physiology", {"model": "/tmp/evil"})


def test_cache_key_covers_directory_contents(tmp_path):
    tool = get_tool("analyze_physiology")
    rec, model = tmp_path / "r.npz", tmp_path / "model"
    rec.write_bytes(b"x")
    model.mkdir()
    (model / "a.joblib").write_bytes(b"v1")
    cache = ToolCache(tmp_path / "c")
    args = {"path": str(rec), "model": str(model)}
    k1 = cache.key(tool, rec, args)
    (model / "a.joblib").write_bytes(b"v2 retrained")
    assert cache.key(tool, rec, args) != k1


# -- one tool-loop suite over both transports ----------------------------------------------------------
def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def script():
    return Script()


@pytest.fixture(scope="module")
def backend_url(script):
    with ServerThread(make_app(script), _port()) as srv:
        yield f"http://127.0.0.1:{srv.port}/v1"


class Harness:
    """One backend behind one transport, scripted alike: a tool call to ``call`` when tools are offered
    and no tool message exists yet (or always, with ``always``), otherwise "ANSWER: <last summary>"."""

    def __init__(self, kind: str, script: Script, url: str, monkeypatch):
        self.kind, self.script, self.url = kind, script, url
        self.always, self.preamble, self.hf_requests = False, "", []
        script.requests.clear()
        monkeypatch.setattr(script, "call", ("analyze_voice", "{}"))
        if kind == "hf":
            monkeypatch.setattr(generation, "stream_chat", self._stream_chat)
        else:
            original = scripted_backend._reply

            def reply(body, script_):
                if self.always and body.get("tools"):
                    return None, {"id": f"call_{len(script_.requests)}", "type": "function", "function": {"name": script_.call[0], "arguments": script_.call[1]}}
                return original(body, script_)

            monkeypatch.setattr(scripted_backend, "_reply", reply)

    def set_call(self, name: str, arguments: str) -> None:
        self.script.call = (name, arguments)

    def _stream_chat(self, model, processor, messages, videos=(), audios=(), tools=None, assistant_prefix="", max_new_tokens=128, **kw):
        self.hf_requests.append((json.loads(json.dumps(messages)), tools))
        tool_msgs = [m for m in messages if m["role"] == "tool"]
        if tools and (self.always or not tool_msgs):
            name, args = self.script.call
            text = self.preamble + f'<tool_call>\n{{"name": {json.dumps(name)}, "arguments": {args}}}\n</tool_call>'
        else:
            text = "ANSWER: " + (json.loads(tool_msgs[-1]["content"]).get("summary", "") if tool_msgs else "no tools")
        for i in range(0, len(text), 3):  # small chunks: the tag arrives split
            yield text[i : i + 3]

    def requests(self) -> list[tuple[list[dict], list[dict] | None]]:
        """What the backend was asked, per turn: (messages, tools or None)."""
        if self.kind == "hf":
            return self.hf_requests
        return [(r["messages"], r.get("tools")) for r in self.script.requests]

    @property
    def usage(self) -> dict | None:
        return USAGE if self.kind == "openai" else None  # the scripted stream and HF report none

    async def _events(self, messages, session, max_rounds, client_tools=None) -> list[LoopEvent]:
        if self.kind == "hf":
            return [ev async for ev in tool_loop(hf_transport(None, None, max_new_tokens=64), messages, session, max_rounds, client_tools)]
        from openai import AsyncOpenAI

        async with AsyncOpenAI(base_url=self.url, api_key="unused", max_retries=0, timeout=60) as client:
            transport = openai_transport(client, "deemo", stream=self.kind == "openai-stream", max_tokens=64)
            return [ev async for ev in tool_loop(transport, messages, session, max_rounds, client_tools)]

    def run(self, messages=USER, session=None, max_rounds: int = 3, client_tools=None) -> tuple[list[LoopEvent], LoopEvent]:
        events = asyncio.run(self._events(messages, session, max_rounds, client_tools))
        assert [e.kind for e in events].count("final") == 1 and events[-1].kind == "final"
        return events, events[-1]


@pytest.fixture(params=KINDS)
def harness(request, script, backend_url, monkeypatch):
    return Harness(request.param, script, backend_url, monkeypatch)


def _summed(usage: dict | None, n: int) -> dict | None:
    return None if usage is None else {k: v * n for k, v in usage.items()}


def test_loop_round_trip_runs_the_tool_on_the_bound_clip(harness, session):
    events, final = harness.run(USER, session)
    steps = final.steps
    assert len(steps) == 1 and steps[0].status == "ok" and not steps[0].cached
    assert steps[0].name == "analyze_voice" and steps[0].arguments == {} and steps[0].result["tool"] == "analyze_voice"
    assert [e.step for e in events if e.kind == "step"] == steps
    assert final.turn.content == "ANSWER: " + steps[0].summary and final.turn.tool_calls == []
    assert "".join(e.text for e in events if e.kind == "delta") == final.turn.content
    convo = final.messages
    assert [m["role"] for m in convo] == ["user", "assistant", "tool", "assistant"]
    assert convo[1]["tool_calls"][0]["function"]["name"] == "analyze_voice" and convo[1]["tool_calls"][0]["id"] == steps[0].id
    assert convo[2]["tool_call_id"] == steps[0].id and convo[2]["name"] == "analyze_voice"
    assert json.loads(convo[2]["content"])["summary"] == steps[0].summary
    assert convo[3] == {"role": "assistant", "content": final.turn.content}
    assert final.usage == _summed(harness.usage, 2) and final.rounds == 1
    reqs = harness.requests()
    assert len(reqs) == 2 and [t["function"]["name"] for t in reqs[0][1]] == ["analyze_voice"]
    assert reqs[1][0][-1]["role"] == "tool"
    assert '"clip"' not in json.dumps(reqs[0][1]) and session.inputs["clip"] not in json.dumps(reqs)  # no path reaches the model
    again = session.call("analyze_voice", {})  # the same call again comes from the per-clip cache
    assert again.cached and again.result == steps[0].result


def test_loop_rounds_are_bounded(harness, session):
    harness.always = True  # a model that never stops calling
    events, final = harness.run(USER, session, max_rounds=2)
    assert [bool(tools) for _, tools in harness.requests()] == [True, True, False]  # the last request offered no tools
    assert len(final.steps) == 2 and final.rounds == 2 and final.steps[1].cached
    assert [e.kind for e in events if e.kind != "delta"] == ["step", "step", "final"]
    assert final.turn.tool_calls == [] and final.turn.content.startswith("ANSWER: ")
    assert [m["role"] for m in final.messages] == ["user", "assistant", "tool", "assistant", "tool", "assistant"]
    assert [m["tool_call_id"] for m in final.messages if m["role"] == "tool"] == [m["tool_calls"][0]["id"] for m in final.messages[1:-1:2]] == [s.id for s in final.steps]
    assert final.usage == _summed(harness.usage, 3)


@pytest.mark.parametrize("max_rounds, with_session", [(0, True), (3, False)])
def test_loop_without_tools_is_one_plain_turn(harness, session, max_rounds, with_session):
    events, final = harness.run(USER, session if with_session else None, max_rounds)
    assert final.turn.content == "ANSWER: no tools" and final.steps == [] and final.rounds == 0
    assert [tools for _, tools in harness.requests()] == [None]
    assert "".join(e.text for e in events if e.kind == "delta") == "ANSWER: no tools"
    assert final.messages == USER + [{"role": "assistant", "content": "ANSWER: no tools"}]
    assert final.usage == harness.usage


@pytest.mark.parametrize("call, match", [(("rm_rf", "{}"), "does not offer"), (("analyze_voice", "{start_s: 1"), "not valid JSON|could not be parsed"), (("analyze_voice", '{"start_s": "soon"}'), "must be number"), (("analyze_voice", "[1, 2]"), "JSON object")])
def test_loop_invalid_tool_call_raises(harness, session, call, match):
    harness.set_call(*call)
    with pytest.raises(ToolCallError, match=match):
        harness.run(USER, session)
    assert len(harness.requests()) == 1  # nothing was run, no further turn


def test_loop_tool_failure_is_a_step_and_the_loop_goes_on(harness, session):
    harness.set_call("analyze_voice", '{"start_s": 99.0}')  # past the end of the clip
    _, final = harness.run(USER, session)
    (step,) = final.steps
    assert step.status == "error" and "holds no audio" in step.summary and step.arguments == {"start_s": 99.0}
    assert final.turn.content == "ANSWER: " + step.summary
    assert json.loads(final.messages[2]["content"])["status"] == "error"


def test_streamed_and_not_streamed_give_the_same_answer(script, backend_url, session, monkeypatch):
    finals = {}
    for kind in KINDS:
        with monkeypatch.context() as m:
            _, finals[kind] = Harness(kind, script, backend_url, m).run(USER, session)
    texts = {k: f.turn.content for k, f in finals.items()}
    assert len(set(texts.values())) == 1 and texts["openai"].startswith("ANSWER: The anonymised voice"), texts
    shape = {k: [(m["role"], m.get("content"), m.get("name")) for m in f.messages] for k, f in finals.items()}
    assert shape["openai"] == shape["openai-stream"] == shape["hf"]
    assert finals["openai"].turn.raw["choices"][0]["message"]["content"] == texts["openai"]  # the whole response, for the gateway
    assert finals["openai"].turn.finish_reason == finals["openai-stream"].turn.finish_reason == "stop"


def test_sync_run_tool_loop(script, backend_url, session, monkeypatch):
    Harness("hf", script, backend_url, monkeypatch)
    final = run_tool_loop(hf_transport(None, None), USER, session)
    assert final.kind == "final" and final.turn.content.startswith("ANSWER: ") and len(final.steps) == 1 and final.rounds == 1


# -- transport specifics ---------------------------------------------------------------------------
def test_openai_stream_asks_for_usage_and_forwards_kwargs(script, backend_url, monkeypatch):
    h = Harness("openai-stream", script, backend_url, monkeypatch)
    h.run(USER, None)
    assert script.requests[0]["stream_options"] == {"include_usage": True} and script.requests[0]["max_tokens"] == 64
    assert "tools" not in script.requests[0]


def test_openai_stream_accumulates_usage_and_call_fragments():
    """Fragments by index (the id only in the first), usage from the last chunk (choices=[])."""
    from openai.types.chat import ChatCompletionChunk

    def ck(delta=None, finish=None, usage=None):
        return ChatCompletionChunk.model_validate({"id": "x", "object": "chat.completion.chunk", "created": 0, "model": "m", "choices": [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}], "usage": usage})

    chunks = [ck({"role": "assistant", "content": "Hm. "}), ck({"tool_calls": [{"index": 1, "function": {"name": "b", "arguments": '{"x"'}}]}),
              ck({"tool_calls": [{"index": 0, "id": "call_a", "function": {"name": "a", "arguments": ""}}]}), ck({"tool_calls": [{"index": 1, "function": {"arguments": ": 1}"}}]}),
              ck({}, "tool_calls"), ck(usage=USAGE)]

    class Stream:
        closed = False

        def __aiter__(self):
            return self._gen()

        async def _gen(self):
            for c in chunks:
                yield c

        async def close(self):
            Stream.closed = True

    class Client:
        class chat:
            class completions:
                @staticmethod
                async def create(**kw):
                    Client.kw = kw
                    return Stream()

    async def go():
        return [x async for x in openai_transport(Client, "m", stream=True)([{"role": "user", "content": "q"}], [{"type": "function"}])]

    *deltas, turn = asyncio.run(go())
    assert deltas == ["Hm. "] and isinstance(turn, AssistantTurn) and Stream.closed
    assert turn.content == "Hm. " and turn.finish_reason == "tool_calls" and turn.usage == USAGE
    assert turn.tool_calls[0] == {"id": "call_a", "name": "a", "arguments": "{}"}
    assert turn.tool_calls[1]["name"] == "b" and turn.tool_calls[1]["arguments"] == '{"x": 1}' and turn.tool_calls[1]["id"].startswith("call_")
    assert Client.kw["tools"] == [{"type": "function"}] and Client.kw["stream"] is True


def test_backend_errors_map_to_gateway_errors(backend_url):
    from openai import AsyncOpenAI

    async def ask(url, stream):
        async with AsyncOpenAI(base_url=url, api_key="unused", max_retries=0, timeout=10) as client:
            return [x async for x in openai_transport(client, "deemo", stream=stream)(USER, None)]

    for stream in (False, True):
        with pytest.raises(GatewayError) as e:
            asyncio.run(ask(backend_url + "/nowhere", stream))  # the server answers 404
        assert e.value.status == 404 and "answered 404" in e.value.message and e.value.type == "invalid_request_error"
        with pytest.raises(GatewayError) as e:
            asyncio.run(ask(f"http://127.0.0.1:{_port()}/v1", stream))  # nothing listens there
        assert e.value.status == 503 and e.value.type == "service_unavailable" and "unavailable" in e.value.message and e.value.headers["Retry-After"]
    import httpx2
    import openai

    req = httpx2.Request("POST", "http://m/v1/chat/completions")
    err = backend_error(openai.InternalServerError("boom", response=httpx2.Response(503, request=req), body={"message": "overloaded"}))
    assert (err.status, err.type, err.message) == (502, "upstream_error", "the model server answered 503: overloaded")


def test_hf_transport_streams_content_until_the_tool_call(monkeypatch):
    text = 'Let me listen. \n<tool_call>\n{"name": "analyze_voice", "arguments": {"start_s": 1.0}}\n</tool_call>\nThen I answer.'
    seen = []

    def fake(model, processor, messages, videos=(), audios=(), tools=None, max_new_tokens=128, **kw):
        seen.append((tools, max_new_tokens, kw))
        yield from text  # one character at a time: "<tool" must be held back, not streamed

    monkeypatch.setattr(generation, "stream_chat", fake)

    async def go():
        return [x async for x in hf_transport(None, None, max_new_tokens=7, temperature=0.5)(USER, [{"type": "function"}])]

    *deltas, turn = asyncio.run(go())
    assert "<" not in "".join(deltas) and "".join(deltas) == turn.content == "Let me listen. \n\nThen I answer."
    assert deltas[-1] == " \n\nThen I answer."  # the text after the call comes once the turn is parsed
    assert [(c["name"], json.loads(c["arguments"])) for c in turn.tool_calls] == [("analyze_voice", {"start_s": 1.0})]
    assert turn.tool_calls[0]["id"].startswith("call_") and turn.finish_reason == "tool_calls"
    assert seen == [([{"type": "function"}], 7, {"temperature": 0.5})]


def test_hf_transport_keeps_the_content_before_a_call_in_the_conversation(script, backend_url, session, monkeypatch):
    h = Harness("hf", script, backend_url, monkeypatch)
    h.preamble = "Let me listen. "
    events, final = h.run(USER, session)
    assert final.messages[1]["content"] == "Let me listen."
    deltas = [e.text for e in events if e.kind == "delta"]
    assert "".join(deltas) == "Let me listen." + final.turn.content
    assert [e.kind for e in events].index("step") > 0 and "<" not in "".join(deltas)


def test_hf_transport_with_the_tiny_model(tiny):
    """The real stream_chat (random weights): deltas make up the turn, no tool offered -> plain."""
    model, processor = tiny
    events = asyncio.run(_collect(tool_loop(hf_transport(model, processor, max_new_tokens=6), USER, None)))
    final = events[-1]
    assert final.kind == "final" and final.turn.tool_calls == [] and final.steps == []
    assert "".join(e.text for e in events if e.kind == "delta") == final.turn.content


async def _collect(agen):
    return [x async for x in agen]


CALENDAR = {"type": "function", "function": {"name": "lookup_calendar", "description": "The user's appointments on a day.", "parameters": {"type": "object", "properties": {"day": {"type": "string"}}, "required": ["day"]}}}


def test_a_client_tool_call_ends_the_loop_and_goes_back_to_the_client(harness, session):
    """Client tools are offered beside the server's experts; the model's call of one is not run here:
    the loop ends with it in ``client_calls`` (and in the conversation as an assistant tool_calls turn)."""
    harness.set_call("lookup_calendar", '{"day": "monday"}')
    _events, final = harness.run(USER, session, client_tools=[CALENDAR])
    assert final.steps == [] and final.rounds == 0
    assert [(c["name"], json.loads(c["arguments"])) for c in final.client_calls] == [("lookup_calendar", {"day": "monday"})]
    assert final.messages[-1]["tool_calls"][0]["function"]["name"] == "lookup_calendar"
    offered = {t["function"]["name"] for t in harness.requests()[0][1]}
    assert {"lookup_calendar", "analyze_voice"} <= offered
    # with the server's rounds used up, the client's tools are still offered (and end the loop)
    harness.set_call("analyze_voice", "{}")
    harness.always = True
    _events, final = harness.run(USER, session, max_rounds=1, client_tools=[CALENDAR])
    last_offered = [t["function"]["name"] for t in harness.requests()[-1][1]]
    assert last_offered == ["lookup_calendar"] and final.client_calls == [] and len(final.steps) == 1


def test_a_turn_calling_client_and_server_tools_skips_the_server_calls(session):
    """Both kinds in one turn: the client's call goes back; the server's is not run (a skipped step),
    since the client must answer every call id of the turn it receives."""
    seen = []

    async def transport(messages, tools):
        seen.append(tools)
        yield AssistantTurn(None, [{"id": "c1", "name": "analyze_voice", "arguments": "{}"}, {"id": "c2", "name": "lookup_calendar", "arguments": '{"day": "monday"}'}], "tool_calls")

    final = run_tool_loop(transport, USER, session, max_rounds=3, client_tools=[CALENDAR])
    assert [c["id"] for c in final.client_calls] == ["c2"] and [m["id"] for m in final.messages[-1]["tool_calls"]] == ["c2"]
    assert [(s.name, s.status) for s in final.steps] == [("analyze_voice", "skipped")] and len(seen) == 1


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
@pytest.mark.parametrize("choice", ["named", "required"])
def test_a_forced_tool_choice_is_written_under_a_schema_and_read_back_as_the_call(script, backend_url, monkeypatch, stream, choice):
    """tool_choice "required" or a named function: the transport asks the server for the call as
    structured output (the tools stay in the prompt, tool_choice "none" so nothing is parsed as
    markup) and turns the JSON into the call; a cut-off JSON is no call, its text the answer."""
    from openai import AsyncOpenAI

    forced = {"type": "function", "function": {"name": "lookup_calendar"}} if choice == "named" else "required"
    written = '{"day": "monday"}' if choice == "named" else '{"name": "lookup_calendar", "arguments": {"day": "monday"}}'
    monkeypatch.setattr(script, "reply", written)
    script.requests.clear()

    async def turn():
        async with AsyncOpenAI(base_url=backend_url, api_key="unused", max_retries=0, timeout=60) as client:
            return await _collect(openai_transport(client, "deemo", stream=stream, tool_choice=forced, max_tokens=32)(USER, [CALENDAR]))

    items = asyncio.run(turn())
    sent = script.requests[-1]
    assert sent["tool_choice"] == "none" and sent["tools"] == [CALENDAR] and sent["response_format"]["type"] == "json_schema"
    schema = sent["response_format"]["json_schema"]["schema"]
    assert schema == CALENDAR["function"]["parameters"] if choice == "named" else schema["anyOf"][0]["properties"]["name"] == {"const": "lookup_calendar"}
    final = items[-1]
    assert items == [final] and final.finish_reason == "tool_calls"  # no text deltas: the JSON is the call
    assert [(c["name"], json.loads(c["arguments"])) for c in final.tool_calls] == [("lookup_calendar", {"day": "monday"})]
    monkeypatch.setattr(script, "reply", written[:9])  # cut off by max_tokens
    final = asyncio.run(turn())[-1]
    assert final.tool_calls == [] and final.content == written[:9]
