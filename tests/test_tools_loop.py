"""The server-side tool loop: specs without paths, scripted model turns, errors, caching, rounds."""

from __future__ import annotations

import json

import pytest

from deemo_llama.tools import ToolCache
from deemo_llama.tools.loop import ToolCallError, ToolSession, llm_spec, run_tool_loop
from deemo_llama.tools.registry import get_tool

CALL = '<tool_call>\n{"name": "analyze_voice", "arguments": {}}\n</tool_call>'


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


def test_scripted_round_trip_runs_the_tool_on_the_bound_clip(session):
    seen = []

    def generate(messages, tools):
        seen.append((json.loads(json.dumps(messages)), tools))
        if len(seen) == 1:
            return "Let me listen. " + CALL
        tool_msg = messages[-1]
        assert tool_msg["role"] == "tool" and tool_msg["name"] == "analyze_voice"
        return "The voice says: " + json.loads(tool_msg["content"])["summary"]

    text, steps, convo = run_tool_loop(generate, [{"role": "user", "content": "How do they sound?"}], session)
    assert len(steps) == 1 and steps[0].status == "ok" and not steps[0].cached
    assert steps[0].result["tool"] == "analyze_voice" and steps[0].arguments == {}
    assert text.startswith("The voice says: The anonymised voice's pitch")
    assert [m["role"] for m in convo] == ["user", "assistant", "tool", "assistant"]
    assert convo[1]["content"] == "Let me listen." and convo[1]["tool_calls"][0]["function"]["name"] == "analyze_voice"
    assert convo[2]["tool_call_id"] == convo[1]["tool_calls"][0]["id"]
    assert '"clip"' not in json.dumps(seen[0][1]) and str(session.inputs["clip"]) not in json.dumps(seen)  # no path reaches the model
    # the same call again comes from the per-clip cache
    again = session.call("analyze_voice", {})
    assert again.cached and again.result == steps[0].result


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
    with pytest.raises(ToolCallError, match="could not be parsed"):
        run_tool_loop(lambda m, t: '<tool_call>{"name": "analyze_voice", </tool_call>', [{"role": "user", "content": "x"}], session)


def test_tool_failure_is_reported_to_the_model_not_raised(session):
    step = session.call("analyze_voice", {"start_s": 99.0})  # past the end of the clip
    assert step.status == "error" and "holds no audio" in step.summary
    assert json.loads(step.message()["content"])["status"] == "error"


def test_rounds_are_bounded(session):
    offered = []

    def always_calls(messages, tools):
        offered.append(bool(tools))
        return CALL if tools else "Done."

    text, steps, _ = run_tool_loop(always_calls, [{"role": "user", "content": "x"}], session, max_rounds=2)
    assert text == "Done." and len(steps) == 2 and offered == [True, True, False]
    assert steps[1].cached


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
