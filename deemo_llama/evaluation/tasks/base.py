"""What every task has: which rows it takes, what it asks, how it reads a reply, what it reports."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, Sequence

from ...data.labels import LabelSet, get_label_set


@dataclass
class Item:
    """One question to the system under test (built from one data row)."""

    id: str
    question: str
    labels: tuple[str, ...]
    media: str | None  # the clip (the row's de-identified media file)
    max_tokens: int = 96
    evidence: str | None = None  # the row's Evidence record (computed by the builder on the raw clip)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Reply:
    """What the system answered: its text, and its own label distribution when it gave one."""

    text: str
    label: str | None = None
    scores: dict[str, float] | None = None
    evidence: dict | None = None  # the findings the system read (for the report's worst-items table)
    raw: dict[str, Any] = field(default_factory=dict)  # the whole response, as received
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


ROW_FIELDS = ("id", "clip_id", "split", "subject", "label", "label_set", "transcript", "valence", "arousal", "clues", "demographics", "meta")


def label_set_of(row: dict) -> LabelSet:
    ls = row["label_set"]
    return get_label_set(ls["name"], ls["labels"] if ls["name"] == "custom" else None)


def gold_answer(row: dict) -> str:
    """The row's reference answer: its last assistant turn's text."""
    msg = next(m for m in reversed(row["messages"]) if m["role"] == "assistant")
    content = msg["content"]
    return content if isinstance(content, str) else " ".join(p.get("text", "") for p in content if p.get("type") == "text")


class Task:
    name: ClassVar[str] = ""
    kinds: ClassVar[tuple[str, ...]] = ()  # the row kinds it evaluates
    version: ClassVar[str] = "1"  # of its parsing and scoring (stored with each run)

    def accepts(self, row: dict) -> bool:
        return row.get("kind") in self.kinds

    def item(self, row: dict) -> Item:
        from ...data.rows import question

        ls = label_set_of(row)
        return Item(row["id"], question(row["kind"], row["clip_id"], ls)[0], ls.labels, row.get("media"), evidence=row.get("evidence"))

    def row_fields(self, row: dict) -> dict:
        """What of the row the report needs (the result line stores it beside the reply)."""
        return {k: row.get(k) for k in ROW_FIELDS} | {"reference": gold_answer(row)}

    def parse(self, row: dict, reply: dict) -> dict:
        """The prediction read from a stored reply (``Reply.to_dict()``); deterministic, re-runnable."""
        raise NotImplementedError

    def metrics(self, records: Sequence[dict], bootstrap: int = 1000) -> dict:
        """The task's figures over the result lines (each with ``row``, ``reply`` and ``prediction``)."""
        raise NotImplementedError

    def options(self) -> dict:
        return {}
