"""An OpenAI-compatible chat server over an in-process HF model, with the vLLM extensions the gateway
uses: ``prompt_logprobs``, ``continue_final_message`` / ``add_generation_prompt``, frequency and
presence penalties. Unit tests put the gateway in front of it and compare with ``deemo analyze`` on
the same tiny model; the serving stage does the same against the real vLLM.

The rendered prompt is tokenised as one text (as vLLM does); temperature 0 decodes greedily, and a
request without a temperature samples at 1.0, as vLLM would.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

import torch
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse


@dataclass
class HFScript:
    model: object
    processor: object
    requests: list[dict] = field(default_factory=list)


def _text_only(messages: list[dict]) -> list[dict]:
    """Media parts dropped: this test server reads text only (real media go to vLLM in the serving stage)."""
    return [{**m, "content": [p for p in m["content"] if p.get("type") == "text"]} if isinstance(m.get("content"), list) else m for m in messages]


def _render(processor, body: dict) -> str:
    cont = bool(body.get("continue_final_message"))
    return processor.tokenizer.apply_chat_template(
        _text_only(body["messages"]), tools=body.get("tools"), chat_template=processor.chat_template, tokenize=False,
        add_generation_prompt=body.get("add_generation_prompt", not cont), continue_final_message=cont,
    )


@torch.inference_mode()
def _prompt_logprobs(model, ids: list[int]) -> list[dict | None]:
    logits = model.language_model(input_ids=torch.tensor([ids])).logits[0].float()
    logp = torch.log_softmax(logits, -1)
    return [None] + [{str(t): {"logprob": float(logp[i, t]), "rank": 1, "decoded_token": ""}} for i, t in enumerate(ids[1:])]


@torch.inference_mode()
def _generate(model, processor, ids: list[int], body: dict) -> list[int]:
    from deemo_llama.penalties import logits_processors

    tok = processor.tokenizer
    # OpenAI's (and vLLM's) default temperature is 1: a request that does not ask for greedy decoding samples
    temperature = float(body.get("temperature", 1.0))
    sampling = {"do_sample": True, "temperature": temperature, "top_k": 0} if temperature > 0 else {"do_sample": False}
    out = model.generate(torch.tensor([ids]), max_new_tokens=int(body.get("max_tokens") or 16), **sampling,
                         eos_token_id=model.config.text_config.get("eos_token_id"), pad_token_id=tok.pad_token_id,
                         logits_processor=logits_processors(body.get("frequency_penalty", 0.0), body.get("presence_penalty", 0.0)))
    new = out[0].tolist()
    eos = model.config.text_config.get("eos_token_id")
    return new[: new.index(eos)] if eos in new else new


def make_hf_app(script: HFScript) -> FastAPI:
    app = FastAPI()

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [{"id": "deemo", "object": "model", "created": 0, "owned_by": "test"}]}

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        return await hf_chat(script, await request.json())

    return app


async def hf_chat(script: HFScript, body: dict):
    """One chat completion (streamed or not) of the HF model."""
    script.requests.append(body)
    tok = script.processor.tokenizer
    text = _render(script.processor, body)
    ids = tok(text, add_special_tokens=False).input_ids
    new = _generate(script.model, script.processor, ids, body)
    content = tok.decode(new, skip_special_tokens=True)
    usage = {"prompt_tokens": len(ids), "completion_tokens": len(new), "total_tokens": len(ids) + len(new)}
    base = {"id": "chatcmpl-hf", "created": int(time.time()), "model": body["model"]}
    if not body.get("stream"):
        resp = {**base, "object": "chat.completion", "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "length" if len(new) >= int(body.get("max_tokens") or 16) else "stop"}], "usage": usage}
        if body.get("prompt_logprobs") is not None:
            resp["prompt_logprobs"] = _prompt_logprobs(script.model, ids)
        return JSONResponse(resp)

    def events():
        pieces = [tok.decode(new[: i + 1], skip_special_tokens=True) for i in range(len(new))]
        prev = ""
        for p in pieces:
            if p[len(prev):]:
                yield f"data: {json.dumps({**base, 'object': 'chat.completion.chunk', 'choices': [{'index': 0, 'delta': {'content': p[len(prev):]}, 'finish_reason': None}]})}\n\n"
            prev = p
        yield f"data: {json.dumps({**base, 'object': 'chat.completion.chunk', 'choices': [{'index': 0, 'delta': {}, 'finish_reason': 'stop'}]})}\n\n"
        if (body.get("stream_options") or {}).get("include_usage"):
            yield f"data: {json.dumps({**base, 'object': 'chat.completion.chunk', 'choices': [], 'usage': usage})}\n\n"
        yield "data: [DONE]\n\n"

    return StreamingResponse(events(), media_type="text/event-stream")
