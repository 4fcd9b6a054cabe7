"""Chat template (tools, tool calls, media parts), tool-call parsing and label masking."""

from __future__ import annotations

import json

import pytest

from deemo_llama.processing import IGNORE_INDEX, parse_tool_calls

TOOLS = [{"type": "function", "function": {"name": "analyze_voice", "description": "Voice features", "parameters": {"type": "object", "properties": {"clip": {"type": "string"}}, "required": ["clip"]}}}]
CONVERSATION = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": [{"type": "video_url", "video_url": {"url": "file:///x.mp4"}}, {"type": "text", "text": "How do they feel?"}]},
    {"role": "assistant", "content": "", "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "analyze_voice", "arguments": '{"clip": "a.mp4"}'}}]},
    {"role": "tool", "tool_call_id": "c1", "name": "analyze_voice", "content": '{"pitch": "high"}'},
    {"role": "assistant", "content": "Happy: high pitch."},
]
EXPECTED = """<|im_start|>system
Be brief.

# Tools
You may call one or more functions. Their signatures, one JSON object per line:
<tools>
{"name": "analyze_voice", "description": "Voice features", "parameters": {"type": "object", "properties": {"clip": {"type": "string"}}, "required": ["clip"]}}
</tools>
To call a function, reply with one JSON object per call inside <tool_call></tool_call> tags:
<tool_call>
{"name": <function-name>, "arguments": <args-json-object>}
</tool_call><|im_end|>
<|im_start|>user
<|video|>How do they feel?<|im_end|>
<|im_start|>assistant
<tool_call>
{"name": "analyze_voice", "arguments": {"clip": "a.mp4"}}
</tool_call><|im_end|>
<|im_start|>tool
<tool_response>
{"name": "analyze_voice", "content": "{\\"pitch\\": \\"high\\"}"}
</tool_response><|im_end|>
<|im_start|>assistant
Happy: high pitch.<|im_end|>
"""


def test_chat_template_renders_tools_calls_and_results(tiny):
    _, proc = tiny
    assert proc.render(CONVERSATION, tools=TOOLS) == EXPECTED


def test_chat_template_default_system_and_generation_prompt(tiny):
    _, proc = tiny
    text = proc.render([{"role": "user", "content": "hi"}], add_generation_prompt=True)
    assert text.startswith("<|im_start|>system\nYou are DEEMO")
    assert text.endswith("<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n")


def test_tool_call_arguments_as_dict_render_the_same(tiny):
    _, proc = tiny
    conv = json.loads(json.dumps(CONVERSATION))
    conv[2]["tool_calls"][0]["function"]["arguments"] = {"clip": "a.mp4"}
    assert proc.render(conv, tools=TOOLS) == EXPECTED


def test_rendered_tool_call_parses_back():
    block = EXPECTED.split("<|im_start|>assistant\n")[1].split("<|im_end|>")[0]
    content, calls = parse_tool_calls(block)
    assert content == "" and calls == [{"name": "analyze_voice", "arguments": {"clip": "a.mp4"}}]
    content, calls = parse_tool_calls('Let me check.\n<tool_call>\n{"name": "a", "arguments": {}}\n</tool_call>\n<tool_call>\n{"name": "b", "arguments": {"x": 1}}\n</tool_call>')
    assert content == "Let me check." and [c["name"] for c in calls] == ["a", "b"]
    with pytest.raises(ValueError, match="not valid JSON"):
        parse_tool_calls("<tool_call>{oops}</tool_call>")
    with pytest.raises(ValueError, match="unterminated"):
        parse_tool_calls('<tool_call>{"name": "a"}')


def test_tool_tokens_are_single_tokens(tiny):
    _, proc = tiny
    for t in ("<tool_call>", "</tool_call>", "<|video|>", "<|audio|>", "<|im_start|>", "<|im_end|>"):
        assert len(proc.tokenizer(t, add_special_tokens=False).input_ids) == 1, t


def test_labels_cover_exactly_the_assistant_replies(tiny):
    _, proc = tiny
    ids, labels = proc.encode_for_training(CONVERSATION, tools=TOOLS)
    assert len(ids) == len(labels)
    tok = proc.tokenizer
    # Contiguous labelled runs, decoded, are the assistant turns including their <|im_end|>.
    runs, cur = [], []
    for i, lab in zip(ids, labels):
        if lab == IGNORE_INDEX:
            if cur:
                runs.append(cur)
                cur = []
        else:
            assert lab == i
            cur.append(i)
    if cur:
        runs.append(cur)
    decoded = [tok.decode(r) for r in runs]
    assert decoded == ['<tool_call>\n{"name": "analyze_voice", "arguments": {"clip": "a.mp4"}}\n</tool_call><|im_end|>', "Happy: high pitch.<|im_end|>"]
    # The video placeholder was expanded and is not a label.
    vid = tok.convert_tokens_to_ids("<|video|>")
    assert ids.count(vid) == 4 and all(lab != vid for lab in labels)


def test_collate_pads_with_ignored_labels(tiny):
    _, proc = tiny
    a = dict(zip(("input_ids", "labels"), proc.encode_for_training([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "happy"}])))
    b = dict(zip(("input_ids", "labels"), proc.encode_for_training([{"role": "user", "content": "a longer question here"}, {"role": "assistant", "content": "sad"}])))
    batch = proc.collate([a, b])
    assert batch.input_ids.shape[0] == 2 and batch.media is None
    short = len(a["input_ids"])
    assert batch.attention_mask[0, short:].sum() == 0 and (batch.labels[0, short:] == IGNORE_INDEX).all()
