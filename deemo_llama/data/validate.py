"""``deemo data validate FILE``: every bad row of a JSON Lines instruction file, with its line.

Checks, per row: UTF-8 text, JSON, the row schema (row.schema.json), the label inside its label set,
the media and evidence files present and readable (and holding the streams the conversation's
video/audio parts need), a well-formed conversation (a user turn, a final non-empty assistant
answer, every tool call answered by a tool turn and no tool turn without a call), unique ids.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator

from ..errors import DeemoError
from .labels import LABEL_SETS
from .rows import SCHEMA_FILE


@dataclass(frozen=True)
class Problem:
    line: int
    id: str | None
    reason: str

    def format(self, path: Path) -> str:
        return f"{path}:{self.line}: " + (f"{self.id}: " if self.id else "") + self.reason


@lru_cache(maxsize=1)
def row_validator():
    from jsonschema import Draft202012Validator

    schema = json.loads(SCHEMA_FILE.read_text())
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def _schema_errors(row: dict) -> list[str]:
    out = []
    for e in sorted(row_validator().iter_errors(row), key=lambda e: list(e.absolute_path)):
        where = "/".join(str(p) for p in e.absolute_path) or "row"
        msg = e.message if len(e.message) < 160 else e.message[:157] + "..."
        out.append(f"{where}: {msg}")
    return out


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text") or "" for p in content if isinstance(p, dict) and p.get("type") == "text")
    return ""


def _media_parts(messages: list[dict]) -> dict[str, int]:
    n = {"video": 0, "audio": 0}
    for m in messages:
        for p in m.get("content") if isinstance(m.get("content"), list) else []:
            t = p.get("type") if isinstance(p, dict) else None
            if t in ("video", "video_url"):
                n["video"] += 1
            elif t in ("audio", "audio_url", "input_audio"):
                n["audio"] += 1
    return n


def conversation_problems(messages: list[dict]) -> list[str]:
    """What is wrong with a conversation (OpenAI chat format), in order."""
    out = []
    roles = [m.get("role") for m in messages]
    if "user" not in roles:
        out.append("conversation has no user turn")
    if not roles or roles[-1] != "assistant":
        out.append("conversation does not end with an assistant answer")
    elif not _text(messages[-1].get("content")).strip() or messages[-1].get("tool_calls"):
        out.append("the final assistant answer is empty (or is a tool call)")
    if "system" in roles[1:]:
        out.append("a system turn after the first message")
    pending: dict[str, str] = {}
    for i, m in enumerate(messages):
        role = m.get("role")
        if role == "user" and not _text(m.get("content")).strip() and not any(_media_parts([m]).values()):
            out.append(f"message {i} (user) is empty")
        if role == "assistant":
            if pending:
                out.append(f"message {i}: tool call(s) {', '.join(sorted(pending))} have no tool result before the next assistant turn")
                pending = {}
            for c in m.get("tool_calls") or []:
                fn = c.get("function") or {}
                try:
                    args = json.loads(fn.get("arguments") or "{}")
                except (TypeError, json.JSONDecodeError):
                    args = None
                if not isinstance(args, dict):
                    out.append(f"message {i}: tool call {c.get('id')!r} arguments are not a JSON object")
                pending[str(c.get("id"))] = str(fn.get("name"))
        elif role == "tool":
            cid = m.get("tool_call_id")
            if cid not in pending:
                out.append(f"message {i}: tool result {cid!r} answers no earlier tool call")
            else:
                pending.pop(cid)
    if pending:
        out.append(f"tool call(s) {', '.join(sorted(pending))} have no tool result")
    return out


@lru_cache(maxsize=4096)
def _probe(path: str) -> tuple[bool, bool] | str:
    """(has video, has audio) of a media file, or why it cannot be read."""
    import av

    try:
        with av.open(path) as c:
            return bool(c.streams.video), bool(c.streams.audio)
    except Exception as e:  # PyAV raises many error types for unreadable files
        return f"cannot be read as media ({type(e).__name__})"


def _file_problem(root: Path, ref: str, what: str) -> tuple[Path | None, str | None]:
    p = Path(ref)
    p = p if p.is_absolute() else root / p
    if not p.exists():
        return None, f"{what} {ref!r} does not exist"
    if not p.is_file():
        return None, f"{what} {ref!r} is not a file"
    if not os.access(p, os.R_OK):
        return None, f"{what} {ref!r} is not readable"
    if p.stat().st_size == 0:
        return None, f"{what} {ref!r} is empty"
    return p, None


def row_problems(row: Any, root: Path, probe: bool = True) -> list[str]:
    """Problems of one parsed row (without the duplicate-id check, which needs the whole file)."""
    if not isinstance(row, dict):
        return ["a row must be a JSON object"]
    out = _schema_errors(row)
    ls = row.get("label_set")
    if isinstance(ls, dict) and isinstance(ls.get("labels"), list):
        options = ls["labels"]
        if isinstance(row.get("label"), str) and row["label"] not in options:
            out.append(f"label {row['label']!r} is not in label set {ls.get('name')!r} ({', '.join(map(str, options))})")
        for extra in row.get("labels") or []:
            if extra not in options:
                out.append(f"labels: {extra!r} is not in label set {ls.get('name')!r}")
        known = LABEL_SETS.get(ls.get("name"))
        if known is not None and tuple(options) != known.labels:
            out.append(f"label_set {known.name!r} must list {', '.join(known.labels)} (in that order); a different list is a 'custom' set")
    messages = row.get("messages")
    if isinstance(messages, list) and all(isinstance(m, dict) for m in messages):
        out += conversation_problems(messages)
        n = _media_parts(messages)
        media = row.get("media")
        if (n["video"] or n["audio"]) and not media:
            out.append("messages have video/audio parts but the row has no 'media'")
        if isinstance(media, str):
            path, bad = _file_problem(root, media, "media")
            if bad:
                out.append(bad)
            elif probe:
                streams = _probe(str(path))
                if isinstance(streams, str):
                    out.append(f"media {media!r} {streams}")
                else:
                    if n["video"] and not streams[0]:
                        out.append(f"messages have a video part but media {media!r} has no video stream")
                    if n["audio"] and not streams[1]:
                        out.append(f"messages have an audio part but media {media!r} has no audio stream")
    if isinstance(row.get("evidence"), str):
        _, bad = _file_problem(root, row["evidence"], "evidence")
        if bad:
            out.append(bad)
    return out


def iter_problems(path: str | Path, probe: bool = True) -> Iterator[tuple[int, Problem | None]]:
    """(line, problem or None) for every non-blank line; several problems of a line come one by one."""
    path = Path(path)
    if not path.is_file():
        raise DeemoError(f"{path}: no such file")
    root = path.parent
    seen: dict[str, int] = {}
    with open(path, "rb") as f:
        for i, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                yield i, Problem(i, None, f"not UTF-8 text (byte {e.start} of the line)")
                continue
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                yield i, Problem(i, None, f"not valid JSON ({e.msg} at column {e.colno})")
                continue
            rid = row.get("id") if isinstance(row, dict) and isinstance(row.get("id"), str) else None
            problems = row_problems(row, root, probe)
            if rid is not None:
                if rid in seen:
                    problems.append(f"duplicate id (first on line {seen[rid]})")
                else:
                    seen[rid] = i
            if not problems:
                yield i, None
            for reason in problems:
                yield i, Problem(i, rid, reason)


def validate_file(path: str | Path, probe: bool = True) -> tuple[int, list[Problem]]:
    """(rows read, problems)."""
    lines, problems = set(), []
    for line, p in iter_problems(path, probe):
        lines.add(line)
        if p is not None:
            problems.append(p)
    return len(lines), problems
