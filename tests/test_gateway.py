"""The assistant gateway (privacy boundary, evidence, label, tool loop) with the official openai client,
on loopback, in front of a scripted model server whose label-scoring requests a tiny HF model answers
(the real-vLLM end to end is in test_serving_vllm.py)."""

from __future__ import annotations

import base64
import io
import json
import socket
import threading

import numpy as np
import pytest

from scripted_backend import Script, ServerThread, make_app


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def tiny_hf(tiny_checkpoint):
    from hf_server import HFScript

    from deemo_llama.build import load_checkpoint

    return HFScript(*load_checkpoint(tiny_checkpoint))


@pytest.fixture(scope="module")
def script(tiny_hf):
    return Script(scorer=tiny_hf)


@pytest.fixture(scope="module")
def backend(script):
    with ServerThread(make_app(script), _port()) as srv:
        yield f"http://127.0.0.1:{srv.port}/v1"


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    from deemo_llama.sample import make_sample_clip

    d = tmp_path_factory.mktemp("gw-media")
    make_sample_clip(d / "talk.mp4", seconds=2.0, text="I am so happy today.")
    make_sample_clip(d / "speech.wav", text="I am so happy today.", video=False)
    (d / "corrupt.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)
    return d


PLANTED = "I am furious about the broken heater."


@pytest.fixture(scope="module")
def tiny_paths(tiny_checkpoint):
    return {"checkpoint": tiny_checkpoint}


def _start_gateway(backend, clips, tiny_paths, **kw):
    from tiny import FixedTranscriber

    from deemo_llama.serving.gateway import Gateway, GatewaySettings
    from deemo_llama.serving.media_parts import MediaPolicy

    kw.setdefault("experts", "none")
    settings = GatewaySettings(backend_url=backend, media=MediaPolicy(media_dir=clips, max_bytes=kw.pop("max_bytes", 8 << 20)), **tiny_paths, **kw)
    return ServerThread(Gateway(settings, transcriber=FixedTranscriber(PLANTED)).app, _port())


@pytest.fixture(scope="module")
def gateway(backend, clips, tiny_paths):
    with _start_gateway(backend, clips, tiny_paths, max_concurrency=1, queue_depth=1) as srv:
        yield f"http://127.0.0.1:{srv.port}/v1"


@pytest.fixture(scope="module")
def client(gateway):
    from openai import OpenAI

    return OpenAI(base_url=gateway, api_key="unused", timeout=120, max_retries=0)


def _data_url(path, mime):
    return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode()}"


def _video_msg(url, text="How does the person feel?"):
    return [{"role": "user", "content": [{"type": "video_url", "video_url": {"url": url}}, {"type": "text", "text": text}]}]


def _faces(video_bytes: bytes) -> tuple[int, int]:
    import av

    from deemo_llama.privacy.faces import HaarFaceDetector

    haar = HaarFaceDetector()
    with av.open(io.BytesIO(video_bytes)) as c:
        flags = [bool(haar(f.to_ndarray(format="rgb24"))) for f in c.decode(video=0)]
    return sum(flags), len(flags)


def test_models(client):
    assert [m.id for m in client.models.list().data] == ["deemo"]


def _media_parts(request: dict) -> list[dict]:
    return [p for m in request["messages"] if isinstance(m.get("content"), list) for p in m["content"] if p.get("type") != "text"]


def test_untrained_checkpoint_gets_evidence_as_text_and_no_media(client, script, clips):
    """The embedded default's case: projectors untrained -> no media part reaches the model; the
    transcript and the evidence are in the prompt; the calibrated label comes with the answer."""
    script.requests.clear()
    r = client.chat.completions.create(model="deemo", messages=_video_msg(_data_url(clips / "talk.mp4", "video/mp4")), max_tokens=16, extra_body={"deemo": {"experts": "none", "return_media": True}})
    ext = r.model_extra["deemo"]
    sent = script.requests[-1]
    assert _media_parts(sent) == [] and "tools" not in sent
    user = next(m for m in sent["messages"] if m["role"] == "user")["content"][-1]["text"]
    assert f'The person says: "{PLANTED}"' in user and "How does the person feel?" in user and "Choose one of: neutral, happy" in user
    assert "Wording: negative" in user  # the planted wording's sentiment reached the prompt
    from deemo_llama.prompting import DEFAULT_LABELS

    assert list(ext["scores"]) == list(DEFAULT_LABELS) and abs(sum(ext["scores"].values()) - 1) < 1e-3
    assert ext["label"] == max(ext["scores"], key=ext["scores"].get) and ext["mode"] == "zero-shot"
    assert r.choices[0].message.content.startswith(f"Emotion: {ext['label']}. Reasoning:")
    # the answer continues the label and the reasoning's lead (the first observed modality: here the words)
    assert sent["messages"][-1] == {"role": "assistant", "content": f"Emotion: {ext['label']}. Reasoning: Their words"}
    assert r.choices[0].message.content.startswith(f"Emotion: {ext['label']}. Reasoning: Their words")
    # return_media: the de-identified clip for the client's preview; no detectable face left in it
    forwarded = base64.b64decode(ext["deidentified_media"][0]["url"].split(",", 1)[1])
    assert forwarded != (clips / "talk.mp4").read_bytes()
    faces, frames = _faces(forwarded)
    assert _faces((clips / "talk.mp4").read_bytes())[0] > 0 and frames >= 40 and faces == 0
    assert ext["deidentification"][0]["frames_with_faces"] > 0 and ext["deidentification"][0]["forwarded"] is False


def test_trained_checkpoint_gets_exactly_the_media_analyze_reads(backend, clips, tiny_paths, script, tmp_path):
    """Projectors trained: the model's frames and audio are made as `deemo analyze` makes them (the
    clip de-identified to a file, decoded the checkpoint's way) and handed to the backend losslessly:
    the same pixels and samples, no face left in them; the second (audio) part is not forwarded."""
    import shutil

    from deemo_llama.config import DeemoConfig
    from deemo_llama.evidence import EvidencePipeline
    from openai import OpenAI

    ckpt = tmp_path / "trained"
    shutil.copytree(tiny_paths["checkpoint"], ckpt)
    cfg = DeemoConfig.load(ckpt)
    cfg.projectors_trained = True
    cfg.save(ckpt)
    with _start_gateway(backend, clips, {**tiny_paths, "checkpoint": ckpt}) as srv:
        c = OpenAI(base_url=f"http://127.0.0.1:{srv.port}/v1", api_key="unused", timeout=120, max_retries=0)
        script.requests.clear()
        msgs = [{"role": "user", "content": [{"type": "video_url", "video_url": {"url": _data_url(clips / "talk.mp4", "video/mp4")}}, {"type": "audio_url", "audio_url": {"url": f"file://{clips / 'speech.wav'}"}}, {"type": "text", "text": "Listen."}]}]
        r = c.chat.completions.create(model="deemo", messages=msgs, max_tokens=8)
    import av
    import soundfile as sf

    ext = r.model_extra["deemo"]
    assert ext["mode"] == "trained" and [(d["kind"], d["forwarded"]) for d in ext["deidentification"]] == [("video", True), ("audio", False)]
    parts = _media_parts(script.requests[-1])
    assert [p["type"] for p in parts] == ["video_url", "input_audio"]
    with av.open(io.BytesIO(base64.b64decode(parts[0]["video_url"]["url"].split(",", 1)[1]))) as f:
        frames = np.stack([x.to_ndarray(format="rgb24") for x in f.decode(video=0)])
    audio, sr = sf.read(io.BytesIO(base64.b64decode(parts[1]["input_audio"]["data"])), dtype="float32")
    enc = cfg.video.encoder
    local, _ = EvidencePipeline("none", model_frames=(enc.num_frames, enc.sampling, enc.fps)).model_media(clips / "talk.mp4")
    assert len(frames) == enc.num_frames and np.array_equal(frames, local.frames)  # the analyzer's pixels, bit for bit
    assert sr == 16000 and np.array_equal(audio, local.audio)  # and its anonymised samples
    from deemo_llama.privacy.faces import HaarFaceDetector

    haar = HaarFaceDetector()
    assert _faces((clips / "talk.mp4").read_bytes())[0] > 0 and not any(haar(f) for f in frames)


def test_tool_loop_runs_the_expert_on_the_raw_clip(client, script, clips):
    script.requests.clear()
    script.call = ("analyze_voice", "{}")
    r = client.chat.completions.create(model="deemo", messages=_video_msg(_data_url(clips / "talk.mp4", "video/mp4")), max_tokens=16, extra_body={"deemo": {"tool_loop": True}})
    trace = r.model_extra["deemo"]["tool_trace"]
    assert [s["name"] for s in trace] == ["analyze_voice"] and trace[0]["status"] == "ok"
    assert r.choices[0].message.content == "ANSWER: " + trace[0]["summary"]
    first, second = script.requests[-2:]
    offered = {t["function"]["name"] for t in first["tools"]}
    assert offered == {"analyze_facial_expression", "analyze_body_language", "analyze_voice"}
    assert all("clip" not in t["function"]["parameters"]["properties"] for t in first["tools"])
    assert [m["role"] for m in second["messages"]] == ["system", "user", "assistant", "tool"]
    assert str(clips) not in json.dumps(first) + json.dumps(second)  # no raw path reaches the model
    assert r.usage.total_tokens == 30  # summed over the two rounds


def test_streamed_tool_loop(gateway, script, clips):
    """Raw SSE: the tool step arrives as a chunk with deemo.tool_step, then the answer's deltas."""
    import httpx

    script.call = ("analyze_voice", '{"start_s": 0.5}')
    body = {"model": "deemo", "messages": _video_msg(_data_url(clips / "talk.mp4", "video/mp4")), "max_tokens": 16, "stream": True, "deemo": {"tool_loop": True}}
    chunks = []
    with httpx.stream("POST", f"{gateway}/chat/completions", json=body, timeout=120) as resp:
        assert resp.status_code == 200
        for line in resp.iter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                chunks.append(json.loads(line[6:]))
    steps = [c["deemo"]["tool_step"] for c in chunks if "tool_step" in c.get("deemo", {})]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c.get("choices"))
    assert len(steps) == 1 and steps[0]["arguments"] == {"start_s": 0.5}
    assert text == "ANSWER: " + steps[0]["summary"] and len([c for c in chunks if c["choices"][0]["delta"].get("content")]) > 2
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


def test_openai_client_streams(client, script):
    deltas = [c.choices[0].delta.content for c in client.chat.completions.create(model="deemo", messages=[{"role": "user", "content": "Hello"}], max_tokens=8, stream=True) if c.choices and c.choices[0].delta.content]
    assert "".join(deltas) == "ANSWER: no tools"


BAD = [
    ("invalid JSON", b"{not json", 400, "not valid JSON"),
    ("no messages", {"model": "deemo", "messages": []}, 400, "non-empty list"),
    ("unknown model", {"model": "gpt-17", "messages": [{"role": "user", "content": "hi"}]}, 404, "does not exist"),
    ("bad role", {"model": "deemo", "messages": [{"role": "wizard", "content": "hi"}]}, 400, "role"),
    ("unknown part", {"model": "deemo", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]}, 400, "unsupported content part"),
    ("bad base64", {"model": "deemo", "messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "%%%", "format": "wav"}}]}]}, 400, "not valid base64"),
    ("outside allow-list", {"model": "deemo", "messages": _video_msg("file:///etc/passwd")}, 403, "outside the allowed media folder"),
    ("remote fetch off", {"model": "deemo", "messages": _video_msg("https://example.com/a.mp4")}, 403, "remote media URLs are disabled"),
    ("client tool named like an expert", {"model": "deemo", "messages": [{"role": "user", "content": "hi"}], "tools": [{"type": "function", "function": {"name": "analyze_voice"}}]}, 400, "server-side expert tool"),
    ("client tool without a name", {"model": "deemo", "messages": [{"role": "user", "content": "hi"}], "tools": [{"type": "function", "function": {"description": "x"}}]}, 400, "tools[0].function.name"),
    ("tool_choice naming no tool", {"model": "deemo", "messages": [{"role": "user", "content": "hi"}], "tools": [{"type": "function", "function": {"name": "a"}}], "tool_choice": {"type": "function", "function": {"name": "b"}}}, 400, "tool_choice"),
    ("tool_choice with a malformed function", {"model": "deemo", "messages": [{"role": "user", "content": "hi"}], "tools": [{"type": "function", "function": {"name": "a"}}], "tool_choice": {"type": "function", "function": "a"}}, 400, "tool_choice"),
    ("tool message without its call id", {"model": "deemo", "messages": [{"role": "user", "content": "hi"}, {"role": "tool", "content": "42"}]}, 400, "tool_call_id"),
    ("max_tokens", {"model": "deemo", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 0}, 400, "max_tokens"),
    ("deemo option", {"model": "deemo", "messages": [{"role": "user", "content": "hi"}], "deemo": {"expert": "tools"}}, 400, "unknown deemo option"),
    ("experts profile", {"model": "deemo", "messages": [{"role": "user", "content": "hi"}], "deemo": {"experts": "context"}}, 400, "none, fast, all"),
    ("labels", {"model": "deemo", "messages": [{"role": "user", "content": "hi"}], "deemo": {"labels": ["happy"]}}, 400, "deemo.labels"),
]


@pytest.mark.parametrize("name,body,status,text", BAD, ids=[b[0] for b in BAD])
def test_bad_input_is_a_4xx_openai_error(gateway, name, body, status, text):
    import httpx

    kw = {"content": body, "headers": {"content-type": "application/json"}} if isinstance(body, bytes) else {"json": body}
    r = httpx.post(f"{gateway}/chat/completions", timeout=60, **kw)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert text in err["message"] and {"message", "type", "param", "code"} <= set(err)


def test_corrupt_and_missing_media(gateway, clips):
    import httpx

    for url, status, text in ((_data_url(clips / "corrupt.mp4", "video/mp4"), 400, "messages[0].content[0]"), (f"file://{clips / 'nope.mp4'}", 400, "no such file")):
        r = httpx.post(f"{gateway}/chat/completions", json={"model": "deemo", "messages": _video_msg(url)}, timeout=60)
        assert r.status_code == status and text in r.json()["error"]["message"], r.text
        assert str(clips) not in r.json()["error"]["message"] or "no such file" in text


def test_bad_tool_calls_from_the_model_are_422(gateway, script, clips):
    import httpx

    for call, text in ((("rm_rf", "{}"), "does not offer"), (("analyze_voice", '{"start_s": "soon"}'), "must be number"), (("analyze_voice", '{"clip": "/etc/passwd"}'), "supplied by the server")):
        script.call = call
        r = httpx.post(f"{gateway}/chat/completions", json={"model": "deemo", "messages": _video_msg(_data_url(clips / "talk.mp4", "video/mp4")), "deemo": {"tool_loop": True}}, timeout=120)
        assert r.status_code == 422 and text in r.json()["error"]["message"], r.text
    script.call = ("analyze_voice", "{}")


def test_response_format_goes_to_the_model_server_and_drops_the_forced_opening(client, script, clips, gateway):
    """Structured output: the schema is passed to vLLM (which constrains the whole answer), so the
    answer does not open "Emotion: <label>." and no repetition penalty is added; the label and scores
    still come in the deemo field. A malformed response_format is a 400."""
    import httpx

    schema = {"type": "object", "properties": {"emotion": {"type": "string"}}, "required": ["emotion"]}
    rf = {"type": "json_schema", "json_schema": {"name": "emotion", "schema": schema}}
    script.requests.clear()
    r = client.chat.completions.create(model="deemo", messages=_video_msg(_data_url(clips / "talk.mp4", "video/mp4")), max_tokens=16, response_format=rf, extra_body={"deemo": {"experts": "none"}})
    sent = script.requests[-1]
    assert sent["response_format"] == rf and sent["messages"][-1]["role"] == "user" and "frequency_penalty" not in sent
    assert not r.choices[0].message.content.startswith("Emotion:") and r.model_extra["deemo"]["label"]
    bad = httpx.post(f"{gateway}/chat/completions", json={"model": "deemo", "messages": [{"role": "user", "content": "hi"}], "response_format": {"type": "json_schema"}})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "response_format.json_schema"


def _post_all(url: str, texts: dict[str, str], gap_s: float = 0.5) -> dict:
    """POST one text chat per name, each on its own thread, ``gap_s`` apart; name -> response."""
    import time

    import httpx

    out, threads = {}, []
    for name, text in texts.items():
        t = threading.Thread(target=lambda n=name, x=text: out.__setitem__(n, httpx.post(f"{url}/chat/completions", json={"model": "deemo", "messages": [{"role": "user", "content": x}]}, timeout=60)))
        t.start()
        threads.append(t)
        time.sleep(gap_s)
    for t in threads:
        t.join()
    return out


def test_requests_beyond_the_slots_wait_in_the_queue_and_get_429_only_when_it_is_full(gateway, client):
    """One model slot, a queue of one: a request that finds the slot taken waits and is answered; the
    next, with the queue full, gets a 429 with Retry-After at once; the server keeps serving."""
    import httpx

    r = _post_all(gateway, {"slow": "slow please", "queued": "hi", "refused": "hi too"})
    assert r["slow"].status_code == 200 and r["queued"].status_code == 200, (r["slow"].text, r["queued"].text)
    no = r["refused"]
    assert no.status_code == 429 and no.json()["error"]["type"] == "rate_limit_error" and int(no.headers["retry-after"]) >= 1
    assert "queue depth 1" in no.json()["error"]["message"]
    health = httpx.get(gateway.removesuffix("/v1") + "/health").json()
    assert health["admission"]["model"] | {} == {"in_use": 0, "slots": 1, "waiting": 0, "queue_depth": 1, "queue_timeout_s": 120.0}
    assert client.chat.completions.create(model="deemo", messages=[{"role": "user", "content": "still there?"}], max_tokens=4).choices[0].message.content


def test_a_client_that_goes_away_frees_its_slot_at_once(gateway):
    """The client gives up while the model is still working (the backend takes 3 s): the gateway
    cancels the backend call and frees the slot within a poll, not when the model would have finished."""
    import time

    import httpx

    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{gateway}/chat/completions", json={"model": "deemo", "messages": [{"role": "user", "content": "slow please"}]}, timeout=0.7)
    t0 = time.monotonic()
    health = gateway.removesuffix("/v1") + "/health"
    while httpx.get(health).json()["admission"]["model"]["in_use"] and time.monotonic() - t0 < 5:
        time.sleep(0.1)
    assert time.monotonic() - t0 < 1.5, "the slot was held after the client left"


def test_a_request_that_waits_past_the_queue_timeout_gets_429(backend, clips, tiny_paths):
    with _start_gateway(backend, clips, tiny_paths, max_concurrency=1, queue_timeout_s=0.5) as srv:
        r = _post_all(f"http://127.0.0.1:{srv.port}/v1", {"slow": "slow please", "late": "hi"}, gap_s=0.3)
    assert r["slow"].status_code == 200
    assert r["late"].status_code == 429 and "waited 0.5 s" in r["late"].json()["error"]["message"] and r["late"].headers["retry-after"]


def test_api_key_and_size_limits(backend, clips, tiny_paths):
    import httpx

    with _start_gateway(backend, clips, tiny_paths, api_key="s3cret", max_bytes=1000) as srv:
        url = f"http://127.0.0.1:{srv.port}/v1"
        assert httpx.get(f"{url}/models").status_code == 401
        ok = httpx.get(f"{url}/models", headers={"authorization": "Bearer s3cret"})
        assert ok.status_code == 200
        big = httpx.post(f"{url}/chat/completions", headers={"authorization": "Bearer s3cret"}, json={"model": "deemo", "messages": _video_msg(_data_url(clips / "talk.mp4", "video/mp4"))}, timeout=60)
        assert big.status_code == 413 and "limit" in big.json()["error"]["message"]


def test_media_length_limit(backend, clips, tiny_paths):
    import httpx

    with _start_gateway(backend, clips, tiny_paths, max_media_seconds=1.0) as srv:
        r = httpx.post(f"http://127.0.0.1:{srv.port}/v1/chat/completions", json={"model": "deemo", "messages": _video_msg(_data_url(clips / "talk.mp4", "video/mp4"))}, timeout=60)
        assert r.status_code == 400 and "the limit is 1 s" in r.json()["error"]["message"], r.text
        assert str(clips) not in r.text  # the scratch path is not echoed either


# -- one path: the CLI's Analyzer and the gateway give the same prompt, label distribution and answer --
@pytest.fixture(scope="module")
def hf_gateway(tiny_hf, clips, tiny_paths):
    """The gateway in front of the tiny model served as an OpenAI server (every request is real)."""
    from hf_server import make_hf_app

    with ServerThread(make_hf_app(tiny_hf), _port()) as be:
        with _start_gateway(f"http://127.0.0.1:{be.port}/v1", clips, tiny_paths, experts="fast") as gw:
            yield f"http://127.0.0.1:{gw.port}/v1"


def test_gateway_and_analyze_give_the_same_answer(hf_gateway, tiny_hf, tiny_paths, clips, tmp_path):
    from openai import OpenAI

    from deemo_llama.analyze import Analyzer
    from deemo_llama.tools import ToolCache

    c = OpenAI(base_url=hf_gateway, api_key="unused", timeout=300, max_retries=0)
    tiny_hf.requests.clear()
    r = c.chat.completions.create(model="deemo", messages=_video_msg(_data_url(clips / "talk.mp4", "video/mp4"), "How does the person feel?"), max_tokens=24)
    ext = r.model_extra["deemo"]
    from tiny import FixedTranscriber

    analyzer = Analyzer(tiny_paths["checkpoint"], transcriber=FixedTranscriber(PLANTED), experts="fast", max_new_tokens=24, cache=ToolCache(tmp_path / "cache"))
    local = analyzer.analyze(clips / "talk.mp4", question="How does the person feel?")
    served_prompt = tiny_hf.requests[-1]["messages"][:-1]  # minus the forced answer prefix
    local_messages, _, _ = analyzer.messages(analyzer.pipeline.run(clips / "talk.mp4"), "How does the person feel?")
    assert served_prompt == local_messages  # the same prompt, evidence lines included
    assert "analyze_facial_expression" in ext["evidence"]["experts"] and "analyze_voice" in ext["evidence"]["experts"]
    assert any(line.startswith("- Face:") for line in local.findings) and any(line.startswith("- Voice:") for line in local.findings)
    assert ext["label"] == local.label
    for k in local.scores:
        assert abs(ext["scores"][k] - local.scores[k]) < 2e-3, (k, ext["scores"], local.scores)
    assert r.choices[0].message.content == f"Emotion: {local.label}. Reasoning: {local.reasoning}".rstrip()


def test_eval_gives_the_same_numbers_through_the_gateway_and_in_process(hf_gateway, tiny_paths, clips, tmp_path):
    """`deemo eval run` both ways on the same (tiny) checkpoint: through the gateway (2 in flight) and
    in process (``analyze.Analyzer``): the same label, scores and findings per item, the same report."""
    import json

    from eval_fixtures import write_rows
    from tiny import FixedTranscriber

    from deemo_llama.analyze import Analyzer
    from deemo_llama.evaluation.runner import EndpointBackend, LocalBackend, run
    from deemo_llama.tools import ToolCache

    write_rows(tmp_path / "rows.jsonl", 4, media="talk.mp4")
    (tmp_path / "talk.mp4").write_bytes((clips / "talk.mp4").read_bytes())
    run(tmp_path / "rows.jsonl", "recognition", tmp_path / "served", EndpointBackend(hf_gateway, concurrency=2, retries=0), progress=False)
    analyzer = Analyzer(tiny_paths["checkpoint"], transcriber=FixedTranscriber(PLANTED), experts="fast", cache=ToolCache(tmp_path / "cache"))
    run(tmp_path / "rows.jsonl", "recognition", tmp_path / "local", LocalBackend(analyzer=analyzer), progress=False)
    a, b = ({r["id"]: r for r in map(json.loads, (tmp_path / d / "results.jsonl").read_text().splitlines())} for d in ("served", "local"))
    assert set(a) == set(b) and len(a) == 4
    for i in a:
        assert a[i]["prediction"]["label"] == b[i]["prediction"]["label"]
        for k, v in b[i]["reply"]["scores"].items():
            assert abs(a[i]["reply"]["scores"][k] - v) < 2e-3
        assert a[i]["reply"]["evidence"]["findings"] == b[i]["reply"]["evidence"]["findings"] and a[i]["reply"]["text"] == b[i]["reply"]["text"]
    ma, mb = (json.loads((tmp_path / d / "report.json").read_text())["metrics"] for d in ("served", "local"))
    assert ma == mb
    # the same checkpoint path with other content is another system: its run does not resume the old one
    import shutil

    import pytest

    from deemo_llama.errors import DeemoError
    from deemo_llama.fusion import Fuser

    ckpt = tmp_path / "ckpt"
    shutil.copytree(tiny_paths["checkpoint"], ckpt)

    def local_run():
        return run(tmp_path / "rows.jsonl", "recognition", tmp_path / "copy", LocalBackend(analyzer=Analyzer(ckpt, transcriber=FixedTranscriber(PLANTED), experts="fast", cache=ToolCache(tmp_path / "cache"))), progress=False)

    assert local_run().asked == 4
    (ckpt / "fuser_features.jsonl").write_text("{}\n")  # a cache, not part of what the checkpoint answers with: the run resumes
    assert local_run().asked == 0
    Fuser(["happy", "sad"], ["llm.happy"], [0.0], [1.0], [[1.0], [-1.0]], [0.0, 0.0]).save(ckpt)  # a fuser beside it now
    with pytest.raises(DeemoError, match="holds another run.*backend"):
        local_run()


def test_streamed_equals_non_streamed(hf_gateway, clips):
    from openai import OpenAI

    c = OpenAI(base_url=hf_gateway, api_key="unused", timeout=300, max_retries=0)
    kw = dict(model="deemo", messages=_video_msg(_data_url(clips / "talk.mp4", "video/mp4")), max_tokens=24, extra_body={"deemo": {"experts": "none"}})
    whole = c.chat.completions.create(**kw)
    chunks = list(c.chat.completions.create(stream=True, **kw))
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert text == whole.choices[0].message.content and text.startswith("Emotion: ")
    first = chunks[0].model_extra["deemo"]
    assert first["label"] == whole.model_extra["deemo"]["label"] and first["scores"] == whole.model_extra["deemo"]["scores"]


def test_a_backend_without_prompt_logprobs_is_a_502_json_error(clips, tiny_paths):
    """Label scores need vLLM's prompt_logprobs; a server without them is named in a JSON 502."""
    import httpx

    with ServerThread(make_app(Script()), _port()) as be:
        with _start_gateway(f"http://127.0.0.1:{be.port}/v1", clips, tiny_paths) as gw:
            r = httpx.post(f"http://127.0.0.1:{gw.port}/v1/chat/completions", json={"model": "deemo", "messages": _video_msg(_data_url(clips / "talk.mp4", "video/mp4"))}, timeout=120)
    assert r.status_code == 502 and "cannot score labels" in r.json()["error"]["message"], r.text


def test_a_failing_expert_is_recorded_and_the_answer_still_comes(hf_gateway, tmp_path, monkeypatch):
    from openai import OpenAI

    from deemo_llama.sample import make_sample_clip
    from deemo_llama.tools.voice import AnalyzeVoice

    def boom(self, *a, **k):
        raise RuntimeError("the voice expert crashed")

    monkeypatch.setattr(AnalyzeVoice, "analyze_audio", boom)
    clip = make_sample_clip(tmp_path / "fresh.mp4", seconds=1.5, text="A clip no cache has seen.")  # no cached result
    c = OpenAI(base_url=hf_gateway, api_key="unused", timeout=300, max_retries=0)
    r = c.chat.completions.create(model="deemo", messages=_video_msg(_data_url(clip, "video/mp4")), max_tokens=16)
    ev = r.model_extra["deemo"]["evidence"]
    assert "the voice expert crashed" in ev["failures"]["analyze_voice"] and "analyze_facial_expression" in ev["experts"]
    assert r.choices[0].message.content.startswith("Emotion: ")


def test_the_answer_never_cites_a_modality_that_was_not_observed(client, script, clips):
    """Forced model output that invents a face and a voice on a transcript-only request (experts
    none, untrained checkpoint: the model read only the words): those sentences are dropped, streamed
    or not; the sentence about the words stays."""
    script.reply = " sound cheerful. Their face shows a wide smile. Their voice is loud and fast. The words are upbeat."
    try:
        msgs = [{"role": "user", "content": [{"type": "audio_url", "audio_url": {"url": f"file://{clips / 'speech.wav'}"}}, {"type": "text", "text": "How do they feel?"}]}]
        r = client.chat.completions.create(model="deemo", messages=msgs, max_tokens=40)
        text = r.choices[0].message.content
        streamed = "".join(c.choices[0].delta.content or "" for c in client.chat.completions.create(model="deemo", messages=msgs, max_tokens=40, stream=True) if c.choices)
    finally:
        script.reply = None
    for answer in (text, streamed):
        assert answer.startswith("Emotion: ") and "Their words sound cheerful." in answer and "The words are upbeat." in answer, answer
        assert "face" not in answer and "voice" not in answer and "smile" not in answer, answer


def test_the_answer_states_the_evidences_verdicts_streamed_or_not(client, script, clips):
    """Forced model output that gives the words a verdict against the Evidence (and on another label):
    the answer states the Evidence's verdict, whole or streamed, and the ``deemo`` field lists the
    change, as `deemo analyze` does."""
    script.reply = ', "hello there", read neutral, which fits zzz. Their words point to zzz.'
    try:
        msgs = [{"role": "user", "content": [{"type": "audio_url", "audio_url": {"url": f"file://{clips / 'speech.wav'}"}}, {"type": "text", "text": "How do they feel?"}]}]
        r = client.chat.completions.create(model="deemo", messages=msgs, max_tokens=40)
        chunks = [c for c in client.chat.completions.create(model="deemo", messages=msgs, max_tokens=40, stream=True)]
    finally:
        script.reply = None
    label = r.model_extra["deemo"]["label"]
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    fixed = [c.model_extra["deemo"]["reasoning_corrections"] for c in chunks if "reasoning_corrections" in (c.model_extra or {}).get("deemo", {})]
    for answer in (r.choices[0].message.content, streamed):
        assert answer.startswith(f"Emotion: {label}. Reasoning: Their words") and "zzz" not in answer, answer
        assert f"which fits {label}." in answer or f"which does not fit {label}." in answer, answer
    for got in (r.model_extra["deemo"]["reasoning_corrections"], *fixed):
        assert got[0]["cue"] == "words" and got[0]["said"] == "which fits zzz" and got[-1]["cue"] == "closing", got
    assert len(fixed) == 1


def test_the_ui_shows_what_the_filter_set_right(client, script, clips):
    """The chat UI's turn (serving/ui.respond, through the gateway): the answer states the Evidence's
    verdict, and a collapsed note under it says what the model had written."""
    from deemo_llama.serving.ui import respond

    script.reply = ', "hello there", read neutral, which fits zzz.'
    try:
        *_, last = respond(client, "deemo", "How do they feel?", None, str(clips / "speech.wav"), "none", [], [])  # words only: the lead is "Their words"
    finally:
        script.reply = None
    history = last[0]
    answer = next(m for m in history if m.role == "assistant" and m.content.startswith("Emotion: "))
    note = history[-1]
    assert "zzz" not in answer.content and "which fits zzz" in note.content, (answer.content, note.content)
    assert note.metadata["title"].startswith("explanation checked against the Evidence: 1 part set right")


CALENDAR = {"type": "function", "function": {"name": "lookup_calendar", "description": "The user's appointments on a day.", "parameters": {"type": "object", "properties": {"day": {"type": "string"}}, "required": ["day"]}}}


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_client_tools_work_as_openais_api(client, script, stream):
    """The model's call of a client tool ends the turn (finish_reason tool_calls, the call in
    message.tool_calls); the client runs it and sends the result back; the model answers with it.
    Usage is reported and summed over the rounds."""
    script.call = ("lookup_calendar", '{"day": "monday"}')
    try:
        ask = [{"role": "user", "content": "Why might I feel tense on Monday?"}]
        if stream:
            chunks = list(client.chat.completions.create(model="deemo", messages=ask, tools=[CALENDAR], stream=True))
            calls = [tc for c in chunks if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
            assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["tool_calls"]
            call = calls[0]
        else:
            r = client.chat.completions.create(model="deemo", messages=ask, tools=[CALENDAR])
            assert r.choices[0].finish_reason == "tool_calls" and r.usage.total_tokens == 15
            call = r.choices[0].message.tool_calls[0]
        assert call.function.name == "lookup_calendar" and json.loads(call.function.arguments) == {"day": "monday"}
        sent = script.requests[-1]
        assert [t["function"]["name"] for t in sent["tools"]] == ["lookup_calendar"] and not sent["messages"][-1]["role"] == "assistant"
        assert "frequency_penalty" not in sent  # no prose penalties on JSON arguments
        back = [*ask, {"role": "assistant", "content": None, "tool_calls": [{"id": call.id, "type": "function", "function": {"name": "lookup_calendar", "arguments": call.function.arguments}}]},
                {"role": "tool", "tool_call_id": call.id, "content": json.dumps({"summary": "a performance review at 9"})}]
        answer = client.chat.completions.create(model="deemo", messages=back, tools=[CALENDAR])
        assert answer.choices[0].finish_reason == "stop" and answer.choices[0].message.content == "ANSWER: a performance review at 9"
        assert script.requests[-1]["messages"][-1] == back[-1]
    finally:
        script.call = ("analyze_voice", "{}")


def test_client_tools_beside_the_server_experts(client, script, clips):
    """A clip with the expert tool loop on and a client tool offered: the model is offered both; the
    server's expert runs here and the answer uses it; the forced "Emotion:" opening is off (the model
    may call the client's tool instead of answering); tool_choice "none" hides the client's tools."""
    script.requests.clear()
    r = client.chat.completions.create(model="deemo", messages=_video_msg(_data_url(clips / "talk.mp4", "video/mp4")), tools=[CALENDAR], extra_body={"deemo": {"tool_loop": True}})
    offered = [t["function"]["name"] for t in script.requests[0]["tools"]]
    assert "lookup_calendar" in offered and "analyze_voice" in offered
    assert r.choices[0].finish_reason == "stop" and r.choices[0].message.content.startswith("ANSWER:")
    assert [s["name"] for s in r.model_extra["deemo"]["tool_trace"]] == ["analyze_voice"] and r.usage.total_tokens == 30
    script.requests.clear()
    client.chat.completions.create(model="deemo", messages=[{"role": "user", "content": "hi"}], tools=[CALENDAR], tool_choice="none")
    assert "tools" not in script.requests[-1] and "tool_choice" not in script.requests[-1]


def _hostile_media(d, clips) -> list[tuple[str, str, int, str]]:
    """(name, url, status, text the error must contain) for each kind of hostile media the boundary meets."""
    import struct
    import zipfile
    from fractions import Fraction

    import av

    def video(path, w, h, times, rate=1):
        with av.open(str(path), "w") as out:
            s = out.add_stream("mpeg4", rate=rate)
            s.width, s.height, s.pix_fmt = w, h, "yuv420p"
            s.codec_context.time_base = Fraction(1, rate)
            for t in times:
                f = av.VideoFrame.from_ndarray(np.zeros((h, w, 3), np.uint8), format="rgb24")
                f.pts, f.time_base = t, Fraction(1, rate)
                for p in s.encode(f):
                    out.mux(p)
            for p in s.encode():
                out.mux(p)
        return path

    video(d / "8k.mp4", 7680, 4320, [0])
    video(d / "hours.mp4", 64, 64, [0, 3 * 3600])  # two frames three hours apart: 2 kB that declare 3 h
    with av.open(str(d / "empty.mp4"), "w") as out:  # a video stream with no frames at all
        s = out.add_stream("mpeg4", rate=25)
        s.width, s.height, s.pix_fmt = 64, 64, "yuv420p"
        out.start_encoding()
    data = np.zeros((160, 2000), np.int16).tobytes()  # 2000 channels, as the WAV header says
    (d / "channels.wav").write_bytes(b"RIFF" + struct.pack("<I", 36 + len(data)) + b"WAVE" + b"fmt " + struct.pack("<IHHIIHH", 16, 1, 2000, 16000, 16000 * 4000, 4000, 16) + b"data" + struct.pack("<I", len(data)) + data)
    with zipfile.ZipFile(d / "nested.zip", "w") as z:  # a container inside a container
        z.write(clips / "talk.mp4", "talk.mp4")
    (clips / "escape.mp4").unlink(missing_ok=True)
    (clips / "escape.mp4").symlink_to(d / "hours.mp4")  # inside the media folder, pointing out of it
    return [
        ("enormous resolution", _data_url(d / "8k.mp4", "video/mp4"), 400, "the limit is 8847360 pixels"),
        ("a declared duration of hours", _data_url(d / "hours.mp4", "video/mp4"), 400, "clip is 10801.0 s long; the limit is 120 s"),
        ("thousands of audio channels", _data_url(d / "channels.wav", "audio/wav"), 400, "audio has 2000 channels; the limit is 32"),
        ("a zero-length stream", _data_url(d / "empty.mp4", "video/mp4"), 400, "neither a usable video nor audio stream"),
        ("a container inside a container", _data_url(d / "nested.zip", "video/mp4"), 400, "not a readable media file"),
        ("a data URL that lies: mp4 as audio/wav", _data_url(clips / "talk.mp4", "audio/wav"), 400, "declared audio/wav but the data is a mov file"),
        ("a data URL that lies: wav as video/mp4", _data_url(clips / "speech.wav", "video/mp4"), 400, "declared video/mp4 but the data is a wav file"),
        ("a file: URL outside the allow-list", "file:///etc/hostname", 403, "outside the allowed media folder"),
        ("a remote URL (fetching off)", "http://169.254.169.254/latest/meta-data", 403, "remote media URLs are disabled"),
        ("a symlink out of the media folder", f"file://{clips / 'escape.mp4'}", 403, "outside the allowed media folder"),
    ]


def test_hostile_media_is_a_4xx_naming_the_limit_and_leaves_nothing_behind(gateway, client, clips, tmp_path):
    """Each hostile input: a 4xx whose message names the problem, nothing left in the RAM scratch
    folder, and the server goes on serving (the same gateway answers a clip afterwards)."""
    import glob
    import tempfile

    import httpx

    cases = _hostile_media(tmp_path, clips)
    roots = ["/dev/shm", tempfile.gettempdir()]
    before = {p for r in roots for p in glob.glob(f"{r}/deemo-gw-*")}
    try:
        for name, url, status, text in cases:
            r = httpx.post(f"{gateway}/chat/completions", json={"model": "deemo", "messages": _video_msg(url)}, timeout=60)
            assert r.status_code == status and text in r.json()["error"]["message"], (name, r.status_code, r.text[:300])
            assert r.json()["error"]["param"] == "messages[0].content[0]", name
    finally:
        (clips / "escape.mp4").unlink(missing_ok=True)
    assert {p for r in roots for p in glob.glob(f"{r}/deemo-gw-*")} <= before, "a request left its scratch folder behind"
    ok = client.chat.completions.create(model="deemo", messages=_video_msg(_data_url(clips / "talk.mp4", "video/mp4")), max_tokens=8)
    assert ok.choices[0].message.content


def test_fuzzed_gateway_gives_no_server_error_and_keeps_its_schema(hf_gateway):
    """schemathesis, generating requests from the gateway's OpenAPI schema (valid and invalid ones),
    against the gateway in front of the tiny model served over HTTP."""
    import os

    import httpx
    from fuzzing import generated, schemathesis_run

    r = schemathesis_run(hf_gateway.removesuffix("/v1"), max_examples=int(os.environ.get("DEEMO_FUZZ_EXAMPLES", "40")))
    print(r.stdout[-1500:])
    assert r.returncode == 0, r.stdout[-6000:]
    assert generated(r.stdout) >= 100, r.stdout[-2000:]
    ok = httpx.post(f"{hf_gateway}/chat/completions", json={"model": "deemo", "messages": [{"role": "user", "content": "still there?"}], "max_tokens": 4}, timeout=60)
    assert ok.status_code == 200
