"""Chat-level generation: messages (+ media) -> text, whole or streamed. Greedy by default.

:func:`hf_transport` wraps :func:`stream_chat` as a tool-loop transport (``tools.loop.tool_loop``),
reading the model's tool calls from the chat template's ``<tool_call>`` text.
"""

from __future__ import annotations

import asyncio
import json
from threading import Thread
from typing import TYPE_CHECKING, AsyncIterator, Iterator, Sequence

import numpy as np

from .modeling import DeemoLlamaForConditionalGeneration
from .processing import DeemoProcessor, Message

if TYPE_CHECKING:
    from .tools.loop import AssistantTurn, Transport


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
    try:
        yield from streamer
    finally:
        # also when the caller stops reading early (a stopping criterion ends the generation): a
        # generation thread still inside torch when the interpreter exits aborts the process
        thread.join()
    if errors:
        raise errors[0]


def chat(model, processor, messages, videos=(), audios=(), tools=None, max_new_tokens: int = 128, **kw) -> str:
    """The whole reply as one string (same tokens as :func:`stream_chat`)."""
    return "".join(stream_chat(model, processor, messages, videos, audios, tools, max_new_tokens=max_new_tokens, **kw))


def _visible(text: str, start: str) -> str:
    """The part of the text generated so far that is surely content: up to the first tool-call tag,
    less a tail that may be the tag's beginning, stripped (trailing whitespace waits for more text)."""
    i = text.find(start)
    if i >= 0:
        text = text[:i]
    else:
        for k in range(min(len(start) - 1, len(text)), 0, -1):
            if text.endswith(start[:k]):
                text = text[:-k]
                break
    return text.strip()


def hf_transport(model, processor, videos: Sequence[np.ndarray] = (), audios: Sequence[np.ndarray] = (), max_new_tokens: int = 128, **gen_kwargs) -> "Transport":
    """A tool-loop transport over :func:`stream_chat` (in-process HF generation).

    Content is streamed until the text holds the start of a ``<tool_call>`` (from there on it is
    buffered); the whole text is then parsed (``processing.parse_tool_calls``; a malformed call ->
    ToolCallError) into the turn's content and calls. Generation runs in a worker thread, so the
    event loop is not blocked. ``usage`` is not reported (None).
    """
    from .processing import parse_tool_calls
    from .tools.loop import AssistantTurn, ToolCallError, new_call_id

    config = getattr(model, "config", None)
    start, end = getattr(config, "tool_call_start", "<tool_call>"), getattr(config, "tool_call_end", "</tool_call>")

    async def transport(messages: list[dict], tools: list[dict] | None) -> AsyncIterator[str | AssistantTurn]:
        gen = stream_chat(model, processor, messages, videos, audios, tools=tools, max_new_tokens=max_new_tokens, **gen_kwargs)
        done = object()
        text, emitted = "", ""
        try:
            while (chunk := await asyncio.to_thread(next, gen, done)) is not done:
                text += chunk
                visible = _visible(text, start)
                if len(visible) > len(emitted):
                    yield visible[len(emitted):]
                    emitted = visible
        finally:
            try:
                gen.close()
            except ValueError:  # cancelled while a worker thread is inside next(): it ends on its own
                pass
        try:
            content, calls = parse_tool_calls(text, start, end)
        except ValueError as e:
            if tools:
                raise ToolCallError(f"the model's tool call could not be parsed: {e}") from None
            content, calls = text.strip(), []  # no tools offered: the text is the answer as it stands
        if content.startswith(emitted) and len(content) > len(emitted):
            yield content[len(emitted):]  # the rest (text after a tool call, or the held-back tail)
        turn_calls = [{"id": new_call_id(), "name": c["name"], "arguments": c["arguments"] if isinstance(c["arguments"], str) else json.dumps(c["arguments"])} for c in calls]
        yield AssistantTurn((content or None) if turn_calls else content, turn_calls, "tool_calls" if turn_calls else "stop")

    return transport
