"""Rows and a scripted system for the evaluation tests (``deemo_llama.evaluation``).

``write_rows`` writes valid instruction rows (they pass ``deemo data validate``) over one media file;
``ScriptedBackend`` answers each item from a fixed table (the system under test is the runner, its
store and its metrics, not a model), optionally slowly, so a test can kill a run half way.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import sys
from pathlib import Path

MER = ["neutral", "angry", "happy", "sad", "worried", "surprise"]


def write_rows(path: Path, n: int, kind: str = "recognition", groups=("f", "m"), media: str = "clip.mp4") -> list[dict]:
    (path.parent / media).write_bytes(b"not decoded by these tests")
    rows = []
    for i in range(n):
        label = MER[i % len(MER)]
        answer = f"Emotion: {label}. Reasoning: Their face shows a smile and the voice pitch is raised." if kind == "reasoning" else f"Emotion: {label}."
        rows.append({
            "schema_version": "1", "id": f"c{i:03d}/{kind}", "clip_id": f"c{i:03d}", "kind": kind, "split": "test", "subject": f"s{i % 4}",
            "media": media, "label": label, "label_set": {"name": "mer", "labels": MER}, "transcript": f"sentence {i}",
            "demographics": {"gender": groups[i % len(groups)]} if groups else None, "clues": None, "template": f"{kind}/1/0",
            "messages": [{"role": "user", "content": [{"type": "text", "text": "How does the person feel?"}]},
                         {"role": "assistant", "content": [{"type": "text", "text": answer}]}],
        })
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return rows


def planted_label(item_id: str, truth: str, accuracy_mod: int = 3) -> str:
    """Right on 2 of every 3 items (by a hash of the id), else the next label: deterministic."""
    h = int(hashlib.sha1(item_id.encode()).hexdigest(), 16)
    return truth if h % accuracy_mod else MER[(MER.index(truth) + 1) % len(MER)]


def corrected(item_id: str) -> bool:
    return int(hashlib.md5(item_id.encode()).hexdigest(), 16) % 3 == 0


class ScriptedBackend:
    """Replies with calibrated-looking scores (``mode="scores"``) or text only (``mode="text"``)."""

    def __init__(self, truth: dict[str, str], mode: str = "scores", delay_s: float = 0.0, concurrency: int = 2, accuracy_mod: int = 3):
        self.truth, self.mode, self.delay_s, self.concurrency, self.accuracy_mod = truth, mode, delay_s, concurrency, accuracy_mod
        self.asked: list[str] = []

    def describe(self) -> dict:
        return {"kind": "scripted", "mode": self.mode, "accuracy_mod": self.accuracy_mod}

    async def ask(self, item):
        from deemo_llama.evaluation.tasks import Reply

        self.asked.append(item.id)
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        label = planted_label(item.id, self.truth[item.id], self.accuracy_mod)
        text = f"Emotion: {label}. Reasoning: The face shows a smile."
        if self.mode == "text":
            return Reply(f"I think the person is {label}, judging by the face.")
        scores = {x: (0.6 if x == label else 0.08) for x in item.labels}
        # every third item's explanation had a cue verdict set right (as `deemo analyze` reports it)
        fixed = [{"cue": "words", "said": "which fits sad", "now": "which does not fit sad"}] if corrected(item.id) else []
        return Reply(text, label, scores, raw={"reasoning_corrections": fixed})


if __name__ == "__main__":  # python eval_fixtures.py ROWS OUT DELAY: a run a test can SIGKILL
    from deemo_llama.evaluation.runner import run

    rows_file, out, delay = Path(sys.argv[1]), Path(sys.argv[2]), float(sys.argv[3])
    truth = {json.loads(line)["id"]: json.loads(line)["label"] for line in rows_file.read_text().splitlines()}
    s = run(rows_file, "recognition", out, ScriptedBackend(truth, delay_s=delay, concurrency=3), progress=False)
    print(json.dumps({"asked": s.asked, "done": s.done}))
