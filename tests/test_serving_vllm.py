"""Our model served by a REAL vLLM server (the .venv-vllm environment) and the official openai client.

Stage 3 of scripts/test.sh (marker ``serving``): one server per module on loopback with the
embedded default checkpoint and a LoRA adapter; the same checkpoint in HF transformers is the
reference for greedy parity and for the adapter's logits.
"""

from __future__ import annotations

import base64
import socket
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

pytestmark = pytest.mark.serving

QUESTION = "How does the person feel?"
PROMPT = "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def hf():
    from deemo_llama.assets import base_checkpoint
    from deemo_llama.build import load_checkpoint

    ckpt = base_checkpoint()  # the plugin's parity with HF, on the architecture (serving the fine-tuned default: test_serve_e2e)
    model, processor = load_checkpoint(ckpt)
    return ckpt, model, processor


@pytest.fixture(scope="module")
def lora_dir(hf, tmp_path_factory):
    """An LLM-only peft adapter with random A and B (a zero-initialised B would change nothing)."""
    import copy

    import torch
    from peft import LoraConfig, get_peft_model

    _, model, _ = hf
    torch.manual_seed(0)
    lm = get_peft_model(copy.deepcopy(model.language_model), LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"], init_lora_weights=False, task_type="CAUSAL_LM"))
    out = tmp_path_factory.mktemp("lora")
    lm.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    """A still talking-face clip (every frame the same, so any frame sampling sees the same pixels)
    and a speech wav."""
    from deemo_llama.sample import make_sample_clip, moving_face_frames, speak, write_clip

    d = tmp_path_factory.mktemp("serving-media")
    frame = moving_face_frames(1)[0]
    write_clip(d / "still.mp4", np.stack([frame] * 50), speak("I am so happy today."), fps=25)
    make_sample_clip(d / "speech.wav", text="I am so happy today.", video=False)
    return d


@pytest.fixture(scope="module")
def server(hf, lora_dir, media):
    from deemo_llama.serving.vllm_server import VllmOptions, VllmServer

    ckpt = hf[0]
    srv = VllmServer(ckpt, VllmOptions(served_name="deemo", port=_free_port(), lora_modules={"deemo-lora": str(lora_dir)}, allowed_media_dir=str(media), kv_cache_gib=1, max_model_len=2048, dtype="float32"))  # fp32: compared with HF greedy
    srv.start()
    yield srv
    srv.stop()
    assert srv.proc.poll() is not None  # stopped for real


@pytest.fixture(scope="module")
def client(server):
    from openai import OpenAI

    return OpenAI(base_url=server.url, api_key="unused", timeout=300)


def _media_messages(media) -> list[dict]:
    wav = base64.b64encode((media / "speech.wav").read_bytes()).decode()
    return [{"role": "user", "content": [
        {"type": "video_url", "video_url": {"url": f"file://{media / 'still.mp4'}"}},
        {"type": "input_audio", "input_audio": {"data": wav, "format": "wav"}},
        {"type": "text", "text": QUESTION},
    ]}]


def _hf_greedy(hf, media, max_new_tokens: int) -> tuple[str, int]:
    from deemo_llama.media import load_clip

    _, model, processor = hf
    clip = load_clip(media / "still.mp4", num_frames=model.config.video.encoder.num_frames)
    speech = load_clip(media / "speech.wav")
    msgs = [{"role": "user", "content": [{"type": "video"}, {"type": "audio"}, {"type": "text", "text": QUESTION}]}]
    inputs = processor(msgs, videos=[clip.frames], audios=[speech.audio])
    out = model.generate(inputs.input_ids, media=inputs.media, max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=model.config.text_config["eos_token_id"])
    return processor.tokenizer.decode(out[0], skip_special_tokens=True), inputs.input_ids.shape[1]


def test_models_lists_the_checkpoint_and_its_adapter(client):
    assert {m.id for m in client.models.list().data} == {"deemo", "deemo-lora"}


def test_video_and_audio_chat_matches_hf_greedy(client, hf, media):
    r = client.chat.completions.create(model="deemo", messages=_media_messages(media), max_tokens=24, temperature=0)
    expected, n_prompt = _hf_greedy(hf, media, 24)
    assert r.usage.prompt_tokens == n_prompt  # same template, one placeholder expanded per item
    assert r.choices[0].message.content.strip() == expected.strip()
    assert len(expected.split()) >= 3


def test_streaming_gives_the_same_text(client, media):
    whole = client.chat.completions.create(model="deemo", messages=_media_messages(media), max_tokens=16, temperature=0).choices[0].message.content
    chunks = [c.choices[0].delta.content or "" for c in client.chat.completions.create(model="deemo", messages=_media_messages(media), max_tokens=16, temperature=0, stream=True) if c.choices]
    assert len([c for c in chunks if c]) > 3 and "".join(chunks) == whole


def test_lora_adapter_changes_logits_as_peft_does(client, hf, lora_dir):
    import torch
    from peft import PeftModel

    _, model, processor = hf
    first = {}
    for name in ("deemo", "deemo-lora"):
        r = client.completions.create(model=name, prompt=PROMPT, max_tokens=1, temperature=0, logprobs=5)
        first[name] = r.choices[0].logprobs.top_logprobs[0]
    ids = processor.tokenizer(PROMPT, add_special_tokens=False, return_tensors="pt").input_ids
    token = max(first["deemo"], key=first["deemo"].get)
    tid = processor.tokenizer.convert_tokens_to_ids(processor.tokenizer.tokenize(token))[0]
    with torch.no_grad():
        base = torch.log_softmax(model.language_model(ids).logits[0, -1], -1)[tid].item()
        peft = PeftModel.from_pretrained(__import__("copy").deepcopy(model.language_model), lora_dir)
        adapted = torch.log_softmax(peft(input_ids=ids).logits[0, -1], -1)[tid].item()
    assert abs(adapted - base) > 0.1  # the adapter matters ...
    assert first["deemo"][token] == pytest.approx(base, abs=2e-3)  # ... and vLLM applies it exactly
    assert first["deemo-lora"][token] == pytest.approx(adapted, abs=2e-3)


def test_tool_call_round_trip_through_the_hermes_parser(client):
    """Real weights, real parser: the reply is constrained (vLLM structured outputs) to the chat
    template's ``<tool_call>`` format, which vLLM's hermes parser must turn into an OpenAI tool call;
    the tool result then goes back as a ``tool`` message and the model answers."""
    import json

    tools = [{"type": "function", "function": {"name": "analyze_voice", "description": "Prosody of the voice in the clip.", "parameters": {"type": "object", "properties": {"start_s": {"type": "number"}}, "required": ["start_s"]}}}]
    msgs = [{"role": "user", "content": "Check the voice from second 2."}]
    fmt = r'<tool_call>\n\{"name": "analyze_voice", "arguments": \{"start_s": [0-9]\}\}\n</tool_call>'
    r = client.chat.completions.create(model="deemo", messages=msgs, tools=tools, max_tokens=40, temperature=0, extra_body={"structured_outputs": {"regex": fmt}})
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls" and not choice.message.content
    call = choice.message.tool_calls[0]
    assert call.function.name == "analyze_voice" and set(json.loads(call.function.arguments)) == {"start_s"}
    msgs += [
        {"role": "assistant", "content": None, "tool_calls": [{"id": call.id, "type": "function", "function": {"name": call.function.name, "arguments": call.function.arguments}}]},
        {"role": "tool", "tool_call_id": call.id, "name": "analyze_voice", "content": json.dumps({"summary": "The voice is loud and fast, with a rising pitch."})},
    ]
    final = client.chat.completions.create(model="deemo", messages=msgs, tools=tools, max_tokens=30, temperature=0)
    # the template put the call and the tool's result into the prompt (the 135M model's answer to it
    # may be empty: what it says is not under test here)
    assert final.usage.prompt_tokens > r.usage.prompt_tokens + 15
    assert final.choices[0].finish_reason in ("stop", "length") and not final.choices[0].message.tool_calls


def test_concurrent_requests_are_all_answered(client, media):
    def ask(i):
        msgs = _media_messages(media) if i % 2 else [{"role": "user", "content": f"Say a word about the number {i}."}]
        return client.chat.completions.create(model="deemo-lora" if i == 3 else "deemo", messages=msgs, max_tokens=8, temperature=0)

    with ThreadPoolExecutor(4) as pool:
        replies = list(pool.map(ask, range(4)))
    assert all(r.choices[0].message.content and r.usage.completion_tokens > 0 for r in replies)


def test_unknown_model_is_a_404_json_error(client):
    import openai

    with pytest.raises(openai.NotFoundError) as e:
        client.chat.completions.create(model="gpt-17", messages=[{"role": "user", "content": "hi"}], max_tokens=2)
    assert "gpt-17" in str(e.value)

