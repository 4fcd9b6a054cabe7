"""The judge LLM of the reasoning metrics (domain.md): clue overlap and label overlap, 0-10.

    deemo eval judge RUN_DIR --endpoint URL/v1 --model NAME

Any OpenAI-compatible server judges, at temperature 0 with a fixed seed. The prompts are versioned
(:data:`JUDGE_VERSION`; a change of wording is a new version, and scores are comparable only under
the same judge and version). Every raw reply is stored in ``RUN_DIR/judge.jsonl`` (one line per
item and metric, appended as it comes, so a killed judging resumes); the score is the first number
of the reply, and a reply without a number in 0-10 counts as unparsed (reported, never guessed).
"""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

from ..fsio import append_jsonl, read_jsonl

JUDGE_VERSION = "1"
JUDGE_FILE = "judge.jsonl"
METRICS = ("clue_overlap", "label_overlap")

PROMPTS = {
    "clue_overlap": (
        "You grade an explanation of a person's emotion against a reference explanation.\n"
        "Compare the emotional cues (facial expression, voice, body, words) that each text names, and score how much the "
        "prediction's cues overlap with the reference's: 0 means no cue in common, 10 means the same cues.\n"
        "Start your reply with the score (an integer from 0 to 10), then one sentence of justification.\n\n"
        "Reference: {reference}\n\nPrediction: {prediction}"
    ),
    "label_overlap": (
        "You grade an explanation of a person's emotion against a reference explanation.\n"
        "Extract the emotion words of each text (such as happy, angry, worried), then score how well the two sets of emotion "
        "words overlap: 0 means none in common, 10 means the same emotions.\n"
        "Start your reply with the score (an integer from 0 to 10), then list the two sets of words.\n\n"
        "Reference: {reference}\n\nPrediction: {prediction}"
    ),
}
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def parse_score(reply: str) -> float | None:
    """The first number of the reply when it is a score in 0-10; else None (unparsed)."""
    m = _NUMBER.search(reply or "")
    if not m:
        return None
    v = float(m.group())
    return v if 0 <= v <= 10 else None


def judgements(out: str | Path) -> dict[str, dict]:
    """{item id: {"model", "version", metric: {"score", "reply"}}} from the run's judge log (the
    last judge model and prompt version that judged it)."""
    found: dict[str, dict] = {}
    for j in read_jsonl(Path(out) / JUDGE_FILE):
        d = found.setdefault(j["id"], {})
        if (d.get("model"), d.get("version")) != (j["model"], j["version"]):
            d.clear()
            d.update(model=j["model"], version=j["version"])
        d[j["metric"]] = {"score": parse_score(j["reply"]), "reply": j["reply"]}
    return found


async def _judge(out: Path, records: list[dict], client, model: str, concurrency: int, progress: bool) -> int:
    from tqdm.auto import tqdm

    have = {(j["id"], j["metric"]) for j in read_jsonl(out / JUDGE_FILE, repair=True) if j["model"] == model and j["version"] == JUDGE_VERSION}
    todo = [(r, k) for r in records for k in METRICS if (r["id"], k) not in have]
    sem = asyncio.Semaphore(concurrency)
    bar = tqdm(total=len(todo), desc=f"judge {model}", unit="reply", disable=not progress)

    async def one(r: dict, metric: str) -> None:
        prompt = PROMPTS[metric].format(reference=r["row"]["reference"], prediction=r["reply"]["text"])
        async with sem:
            resp = await client.chat.completions.create(model=model, messages=[{"role": "user", "content": prompt}], temperature=0.0, seed=0, max_tokens=48)
        append_jsonl(out / JUDGE_FILE, {"id": r["id"], "metric": metric, "model": model, "version": JUDGE_VERSION, "prompt": prompt, "reply": resp.choices[0].message.content or "", "t": time.time()})
        bar.update(1)

    await asyncio.gather(*(one(r, k) for r, k in todo))
    bar.close()
    return len(todo)


def judge_run(out: str | Path, url: str, model: str, api_key: str | None = None, concurrency: int = 4, retries: int = 5, progress: bool = True) -> int:
    """Judge every reasoning item of the run not yet judged by ``model`` under this prompt version;
    the number of judge calls made. The report is rewritten after."""
    from openai import AsyncOpenAI

    from ..errors import DeemoError
    from .report import write_report
    from .runner import records_of

    out = Path(out)
    info, _task, recs = records_of(out)
    if info["task"] != "reasoning":
        raise DeemoError(f"{out} is a {info['task']} run; the judge scores reasoning runs (deemo eval run --task reasoning)")
    client = AsyncOpenAI(base_url=url.rstrip("/"), api_key=api_key or "none", max_retries=retries)
    n = asyncio.run(_judge(out, recs, client, model, concurrency, progress))
    write_report(out)
    return n
