"""Chat-level generation: messages (+ media) -> text, whole or streamed. Greedy by default."""

from __future__ import annotations

from threading import Thread
from typing import Iterator, Sequence

import numpy as np

from .modeling import DeemoLlamaForConditionalGeneration
from .processing import DeemoProcessor, Message


def stream_chat(
    model: DeemoLlamaForConditionalGeneration,
    processor: DeemoProcessor,
    messages: Sequence[Message],
    videos: Sequence[np.ndarray] = (),
    audios: Sequence[np.ndarray] = (),
    tools: list[dict] | None = None,
    assistant_prefix: str = "",
    max_new_tokens: int = 128,
    **gen_kwargs,
) -> Iterator[str]:
    """Yield the reply's text as it is generated. ``assistant_prefix`` is forced at the reply's start
    (and not repeated in the output)."""
    from transformers import TextIteratorStreamer

    inputs = processor(messages, videos=videos, audios=audios, tools=tools)
    ids = inputs.input_ids
    if assistant_prefix:
        import torch

        extra = processor.tokenizer(assistant_prefix, add_special_tokens=False, return_tensors="pt").input_ids
        ids = torch.cat([ids, extra], 1)
    tok = processor.tokenizer
    streamer = TextIteratorStreamer(tok, skip_prompt=False, skip_special_tokens=True)
    kwargs = dict(do_sample=False, eos_token_id=model.config.text_config.get("eos_token_id"), pad_token_id=tok.pad_token_id)
    kwargs.update(gen_kwargs)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            model.generate(ids.to(model.device), media=inputs.media, max_new_tokens=max_new_tokens, streamer=streamer, **kwargs)
        except BaseException as e:  # surfaced in the caller's thread below
            errors.append(e)
            streamer.end()

    thread = Thread(target=run, daemon=True)
    thread.start()
    yield from streamer
    thread.join()
    if errors:
        raise errors[0]


def chat(model, processor, messages, videos=(), audios=(), tools=None, max_new_tokens: int = 128, **kw) -> str:
    """The whole reply as one string (same tokens as :func:`stream_chat`)."""
    return "".join(stream_chat(model, processor, messages, videos, audios, tools, max_new_tokens=max_new_tokens, **kw))
