"""Instruction rows from one clip's Evidence: recognition, reasoning and tool use.

Every row's conversation is built by :func:`deemo_llama.prompting.build_messages` (the prompt the
analyzer and the server send) and answered in the one format ``Emotion: <label>. Reasoning: ...``;
the tool-use row's tool turns are :meth:`ToolStep.message` (what the server's tool loop sends the
model). So what is trained on is what is served. Row layout: ``row.schema.json`` (SCHEMA_VERSION).

Question wordings vary per clip (picked by a hash of the clip id, so a rebuild gives the same row);
they are versioned by TEMPLATE_VERSION, recorded in every row.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path
from typing import Any, Sequence

from ..evidence import BODY, EVIDENCE_VERSION, FACE, PROFILE_SPECS, VOICE, Evidence
from ..prompting import PROMPT_VERSION, build_messages, compose_reasoning, label_answer, reasoning_answer
from .labels import LabelSet
from .manifest import ManifestRow

SCHEMA_VERSION = "1"
TEMPLATE_VERSION = "1"
KINDS = ("recognition", "reasoning", "tool_use")
# where an answer's reasoning comes from. evidence (the default): composed from what the Evidence
# holds, so the model learns to explain what it is shown and nothing else; clues: the manifest's gold
# clues when a row has them (for datasets whose clues describe what the de-identified clip shows).
REASONING_SOURCES = ("evidence", "clues")
SCHEMA_FILE = Path(__file__).with_name("row.schema.json")

# {q}: the label set's own question (e.g. BAH's "Does the person show ambivalence or hesitancy?")
TEMPLATES: dict[str, tuple[str, ...]] = {
    "recognition": (
        "{q}",
        "What emotion is the person expressing?",
        "How does this person feel?",
        "Identify the person's emotional state in this clip.",
        "Judge the emotion the person shows.",
    ),
    "reasoning": (
        "{q} Explain which cues show it.",
        "What is the person feeling? Justify the answer with the observed cues.",
        "Describe the emotional cues in the video and audio and name the emotion.",
        "Which emotion does the person feel, and why?",
    ),
    "tool_use": (
        "Use the expert tools to inspect the clip, then answer: {q}",
        "Check the clip with the available tools. {q}",
        "Call the tools you need and tell me how the person feels.",
    ),
}
# a label set whose question is not about an emotion keeps its own question only
EMOTION_SETS = {"mer", "dfew", "mafw", "casme", "custom"}
CLIP_TOOLS = (FACE, BODY, VOICE)


def _pick(clip_id: str, kind: str, n: int) -> int:
    return int(hashlib.sha1(f"{TEMPLATE_VERSION}:{kind}:{clip_id}".encode()).hexdigest(), 16) % n


def question(kind: str, clip_id: str, label_set: LabelSet) -> tuple[str, str]:
    """(question text, template id "kind/version/index")."""
    options = TEMPLATES[kind] if label_set.name in EMOTION_SETS else tuple(t for t in TEMPLATES[kind] if "{q}" in t)
    i = _pick(clip_id, kind, len(options))
    return options[i].format(q=label_set.question), f"{kind}/{TEMPLATE_VERSION}/{i}"


def annotation_sentences(row: ManifestRow) -> list[str]:
    """The dataset's own observations as sentences: body-language events, micro-expression intervals."""
    out = []
    for e in row.body_language or []:
        what = e.get("label") or e.get("type") or "a body-language event"
        when = f" from {float(e['start_s']):.1f} s to {float(e['end_s']):.1f} s" if "start_s" in e and "end_s" in e else ""
        out.append(f"Body language (annotated): {what}{when}.")
    for m in row.micro_expressions or []:
        kind = m.get("type", "micro")
        when = f" from {float(m['onset_s']):.2f} s to {float(m['offset_s']):.2f} s" if "onset_s" in m and "offset_s" in m else ""
        aus = f" (AU {m['aus']})" if m.get("aus") else ""
        out.append(f"A {kind}-expression (annotated){when}{aus}.")
    return out


def _tool_spec(name: str) -> dict:
    from ..tools import get_tool
    from ..tools.loop import llm_spec

    return llm_spec(get_tool(name))


def tool_turns(evidence: Evidence, clip_id: str) -> tuple[list[dict], list[dict], list[str]]:
    """(assistant tool-call turn + tool turns, specs of the offered tools, names called) from the
    experts that ran; the results are what the tool loop would have returned for the same clip."""
    from ..tools.loop import ToolStep

    spec = PROFILE_SPECS.get(evidence.profile, PROFILE_SPECS["fast"])
    # the arguments the evidence profile ran the experts with
    arguments = {FACE: {"max_fps": spec.face_fps}, BODY: {"fps": spec.body_fps}, VOICE: {}}
    called = [n for n in CLIP_TOOLS if (evidence.experts.get(n) or {}).get("status") in ("ok", "no_signal")]
    steps = []
    for name in called:
        env = evidence.experts[name]
        call_id = "call_" + hashlib.sha1(f"{clip_id}:{name}".encode()).hexdigest()[:12]
        steps.append(ToolStep(call_id, name, arguments[name], env["status"], env.get("summary", ""), 0.0, False, env))
    if not steps:
        return [], [], []
    offered = [n for n in CLIP_TOOLS if n in called or n in (FACE, VOICE)]
    call = {"role": "assistant", "content": None, "tool_calls": [{"id": s.id, "type": "function", "function": {"name": s.name, "arguments": json.dumps(s.arguments)}} for s in steps]}
    return [call, *[s.message() for s in steps]], [_tool_spec(n) for n in offered], called


def as_parts(messages: Sequence[dict]) -> list[dict]:
    """Every message's content as a list of parts (a string becomes one text part; a tool-call turn's
    None stays None): one Arrow type per column, so ``datasets.load_dataset("json", ...)`` reads the
    rows. The chat template renders both forms identically."""
    out = []
    for m in messages:
        m = dict(m)
        if isinstance(m.get("content"), str):
            m["content"] = [{"type": "text", "text": m["content"]}]
        out.append(m)
    return out


def make_rows(row: ManifestRow, evidence: Evidence, label: str, label_set: LabelSet, media: str | None, evidence_path: str | None, kinds: Sequence[str] = KINDS, reasoning_from: str = "evidence") -> list[dict[str, Any]]:
    """The rows of one clip (``split`` is filled in later, when every clip's subject is known).
    The gold clues are kept in ``clues`` (the reasoning proxy's reference) whatever ``reasoning_from`` is."""
    media_parts = []
    if media:
        media_parts += [{"type": "video"}] if evidence.clip.get("has_video") else []
        media_parts += [{"type": "audio"}] if evidence.clip.get("has_audio") else []
    labels = label_set.labels
    gold = [c.strip() for c in row.clues or [] if c.strip()]
    base = {
        "schema_version": SCHEMA_VERSION,
        "clip_id": row.id,
        "split": row.split,
        "subject": row.subject,
        "media": media,
        "evidence": evidence_path,
        "transcript": evidence.transcript,
        "label": label,
        "label_set": {"name": label_set.name, "labels": list(labels)},
        "valence": row.valence,
        "arousal": row.arousal,
        "clues": gold or None,
        "demographics": row.demographics,
        "micro_expressions": row.micro_expressions,
        "source": {"dataset": row.source or "user", "license": row.license or "unknown", "clip": Path(row.clip).name},
        "versions": {"schema": SCHEMA_VERSION, "prompt": PROMPT_VERSION, "evidence": EVIDENCE_VERSION, "templates": TEMPLATE_VERSION},
        "meta": row.meta,
    }
    annotations = annotation_sentences(row)
    silver = compose_reasoning(evidence, label, label_set.normalise, annotations)
    if reasoning_from == "clues" and gold:
        reasoning, source = " ".join(c if c[-1] in ".!?" else c + "." for c in gold), "gold"
    else:
        reasoning, source = silver, "silver"
    out = []
    for kind in kinds:
        q, template = question(kind, row.id, label_set)
        rec = {**base, "id": f"{row.id}/{kind}", "kind": kind, "template": template, "reasoning": None}
        if kind == "recognition":
            rec["messages"] = [*build_messages(evidence, labels, q, media_parts), {"role": "assistant", "content": label_answer(label)}]
        elif kind == "reasoning":
            rec["reasoning"] = source
            rec["messages"] = [*build_messages(evidence, labels, q, media_parts), {"role": "assistant", "content": reasoning_answer(label, reasoning)}]
        elif kind == "tool_use":
            turns, specs, called = tool_turns(evidence, row.id)
            if not turns:
                continue  # no expert ran on this clip: nothing to call
            rec["reasoning"] = source
            # the user turn holds the words only: the observations come back through the tools
            bare = replace(evidence, experts={}, media=None)
            rec["tools"] = specs
            rec["messages"] = [*build_messages(bare, labels, q, media_parts), *turns, {"role": "assistant", "content": reasoning_answer(label, reasoning)}]
        else:
            raise ValueError(f"unknown row kind {kind!r}")
        rec["messages"] = as_parts(rec["messages"])
        out.append(rec)
    return out
