"""Run a task over a data file against a system, one result line per item, resumable.

    deemo eval run --data built/test.jsonl --task recognition --out runs/a --checkpoint DIR     (in process)
    deemo eval run --data built/test.jsonl --task recognition --out runs/b --endpoint URL/v1    (any OpenAI-compatible server)

Two backends ask the same :class:`~deemo_llama.evaluation.tasks.Item`:
- :class:`LocalBackend`: ``analyze.Analyzer`` in this process, the same Evidence pipeline, prompt
  and label scorer as ``deemo analyze`` (no server).
- :class:`EndpointBackend`: chat completions through the ``openai`` client (async, a bounded number
  in flight, its retries with exponential backoff on 429, 5xx and dropped connections, honouring
  Retry-After), temperature 0 and a fixed seed. The clip goes as a data URL video part; against
  the deemo gateway the ``deemo`` extension asks for the row's label set and returns the label
  distribution, so both backends pick labels the same way; any other server answers in text and
  the label is extracted from it.
Items whose request fails (after the retries) go to ``errors.jsonl`` and are asked again on the
next start; finished ones are never asked twice.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from ..errors import DeemoError
from ..fsio import append_jsonl
from .store import RunStore
from .tasks import Item, Reply, Task, get_task

SEED = 0


class Backend(Protocol):
    concurrency: int

    def describe(self) -> dict: ...

    async def ask(self, item: Item) -> Reply: ...


def evidence_summary(evidence: dict, forwarded: bool = False) -> dict:
    """What a reply keeps of the Evidence it answered from (the same for both backends): the
    findings the model read, the transcript, the modalities it observed (``forwarded``: the media
    went to the model too), and the face expert's spotted micro-expressions ([onset_s, offset_s];
    None when the face expert did not run)."""
    from ..evidence import Evidence
    from ..prompting import finding_lines, observed_modalities

    ev = Evidence.from_dict(evidence)
    face = ev.experts.get("analyze_facial_expression") or {}
    spotted = [[e["onset_s"], e["offset_s"]] for e in face.get("events") or [] if e.get("type") == "micro_expression"] if face.get("status") in ("ok", "no_signal") else None
    return {"findings": finding_lines(ev), "transcript": ev.transcript, "observed": sorted(observed_modalities(ev, forwarded)), "spotted": spotted}


class LocalBackend:
    """The checkpoint in this process (one item at a time, on a worker thread)."""

    concurrency = 1

    def __init__(self, checkpoint: str | Path | None = None, experts: str = "fast", device: str = "cpu", analyzer=None, mode: str | None = None, free_text: bool = False, zero_media: tuple[str, ...] = (), row_evidence: bool = True):
        """``analyzer``: an ``analyze.Analyzer`` already loaded (else one for ``checkpoint`` in ``mode``).
        ``free_text``: the model writes its answer unforced and the label is read from the text (the
        free-text baseline); ``zero_media``: modalities whose media tokens are zeroed (an ablation);
        ``row_evidence``: answer from a built row's Evidence record (computed on the raw clip) when it
        has one, else run the pipeline on the row's media, as a server does."""
        from ..analyze import Analyzer

        self.analyzer = analyzer or Analyzer(checkpoint, experts=experts, device=device, mode=mode)
        self.experts = self.analyzer.pipeline.spec.name if analyzer else experts
        self.free_text, self.zero_media, self.row_evidence = free_text, tuple(zero_media), row_evidence

    def describe(self) -> dict:
        from ..hashing import checkpoint_digest
        from ..modeling import ADAPTER_DIR

        # the content digest too: a checkpoint retrained (or a default re-prepared) at the same path
        # is another system, and its answers must not resume a run of the old one
        return {"kind": "checkpoint", "checkpoint": str(self.analyzer.checkpoint), "checkpoint_sha256": checkpoint_digest(self.analyzer.checkpoint, ADAPTER_DIR)[:16], "experts": self.experts, "mode": self.analyzer.mode, "free_text": self.free_text, "zero_media": list(self.zero_media),
                "evidence": "the row's Evidence record when it has one (computed on the raw clip by `deemo data build`), else the pipeline on the row's media" if self.row_evidence else "the pipeline on the row's media"}

    def _ask(self, item: Item) -> Reply:
        import json as _json

        from ..evidence import PHYSIO, PROFILE_SPECS, TRANSCRIPT, Evidence
        from ..prompting import answer_prefix
        from ..training.llm import zero_modalities

        t = time.perf_counter()
        self.analyzer.max_new_tokens = item.max_tokens
        ev = Evidence.from_dict(_json.loads(Path(item.evidence).read_text())) if item.evidence and self.row_evidence else None
        if ev is not None:  # the row's record, restricted to this run's expert profile (the words' expert is in every one)
            keep = set(PROFILE_SPECS[self.experts].experts) | {TRANSCRIPT, PHYSIO}
            ev.experts = {k: v for k, v in ev.experts.items() if k in keep}
            ev.profile = self.experts
        with zero_modalities(self.analyzer.model, self.zero_media):
            if self.free_text:
                text, used = self.analyzer.free_text(item.media, question=item.question, labels=item.labels, evidence=ev)
                return Reply(text, None, None, evidence_summary(used.to_dict(), self.analyzer.pipeline.forward_media), {"mode": f"{self.analyzer.mode} (free text)"}, time.perf_counter() - t)
            res = self.analyzer.analyze(item.media, question=item.question, labels=item.labels, evidence=ev)
        text = f"{answer_prefix(res.label)} {res.reasoning}".rstrip()  # the gateway's answer format
        return Reply(text, res.label, res.scores, evidence_summary(res.evidence, self.analyzer.pipeline.forward_media), {"mode": res.mode, "timings": res.timings, "fusion": res.fusion, "reasoning_corrections": res.reasoning_corrections}, time.perf_counter() - t)

    async def ask(self, item: Item) -> Reply:
        return await asyncio.to_thread(self._ask, item)


class EndpointBackend:
    """An OpenAI-compatible server; ``deemo_extension`` for the deemo gateway (label set, experts)."""

    def __init__(self, url: str, model: str = "deemo", api_key: str | None = None, concurrency: int = 4, retries: int = 5, timeout_s: float = 600.0, experts: str = "fast", deemo_extension: bool = True):
        from openai import AsyncOpenAI

        if concurrency < 1:
            raise DeemoError("--concurrency must be at least 1")
        self.url, self.model, self.experts, self.deemo_extension = url.rstrip("/"), model, experts, deemo_extension
        self.concurrency = concurrency
        self.client = AsyncOpenAI(base_url=self.url, api_key=api_key or "none", max_retries=retries, timeout=timeout_s)

    def describe(self) -> dict:
        return {"kind": "endpoint", "url": self.url, "model": self.model, "experts": self.experts if self.deemo_extension else None}

    def request(self, item: Item) -> dict:
        from ..serving.ui import user_content

        body: dict[str, Any] = {"model": self.model, "messages": [{"role": "user", "content": user_content(item.question, item.media, None)}],
                                "temperature": 0.0, "seed": SEED, "max_tokens": item.max_tokens}
        if self.deemo_extension:
            body["extra_body"] = {"deemo": {"labels": list(item.labels), "experts": self.experts}}
        return body

    async def ask(self, item: Item) -> Reply:
        t = time.perf_counter()
        resp = await self.client.chat.completions.create(**self.request(item))
        ext = (resp.model_extra or {}).get("deemo") or {}
        evidence = evidence_summary(ext["evidence"], ext.get("mode") in ("trained", "fused")) if ext.get("evidence") else None  # the gateway's Evidence
        raw = resp.model_dump(exclude={"deemo"}) | {"deemo": {k: v for k, v in ext.items() if k not in ("evidence", "deidentified_media")}}
        return Reply(resp.choices[0].message.content or "", ext.get("label"), ext.get("scores"), evidence, raw, time.perf_counter() - t)


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def load_task_rows(data: Path, task: Task, split: str | None = None, limit: int | None = None) -> list[dict]:
    """The rows of ``data`` the task evaluates (media paths resolved), checked first: a file that
    fails ``deemo data validate`` is refused naming its first bad row."""
    from ..data.dataset import load_rows
    from ..data.validate import validate_file

    if not data.is_file():
        raise DeemoError(f"--data {data}: no such file (give a rows file, e.g. built/test.jsonl)")
    n, problems = validate_file(data, probe=False)
    if problems:
        raise DeemoError(f"--data {problems[0].format(data)} ({len(problems)} problem(s); run `deemo data validate {data}`)")
    import datasets

    was = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()  # the run has its own bar; a 1-second load needs none
    try:
        rows = [r for r in load_rows(data, split=split) if task.accepts(r)]
    finally:
        if was:
            datasets.enable_progress_bars()
    if not rows:
        raise DeemoError(f"--data {data}: none of its {n} rows is a {'/'.join(task.kinds)} row{f' of split {split}' if split else ''}; build them with `deemo data build --kinds {task.kinds[0]}`")
    return rows[:limit] if limit else rows


@dataclass
class RunSummary:
    out: Path
    done: int
    asked: int
    errors: int
    seconds: float

    @property
    def items_per_s(self) -> float:
        return self.asked / self.seconds if self.seconds else 0.0


async def _run(store: RunStore, task: Task, rows: list[dict], backend: Backend, done: set[str], progress: bool) -> tuple[int, int]:
    from tqdm.auto import tqdm

    todo = [r for r in rows if r["id"] not in done]
    sem = asyncio.Semaphore(backend.concurrency)
    bar = tqdm(total=len(rows), initial=len(rows) - len(todo), desc=f"eval {task.name}", unit="item", disable=not progress)
    asked = errors = 0

    async def one(row: dict) -> None:
        nonlocal asked, errors
        item = task.item(row)
        async with sem:
            try:
                reply = await backend.ask(item)
            except Exception as e:  # noqa: BLE001  an item that fails is recorded and asked again next time
                errors += 1
                append_jsonl(store.path / "errors.jsonl", {"id": row["id"], "error": f"{type(e).__name__}: {str(e)[:500]}", "t": time.time()})
                bar.set_postfix(errors=errors)
                return
        fields = task.row_fields(row)
        reply_d = reply.to_dict()
        store.append({"id": row["id"], "task": task.name, "row": fields, "request": item.to_dict(), "reply": reply_d, "prediction": task.parse(fields, reply_d), "t": time.time()})
        asked += 1
        bar.update(1)

    await asyncio.gather(*(one(r) for r in todo))
    bar.close()
    return asked, errors


def run(data: str | Path, task_name: str, out: str | Path, backend: Backend, split: str | None = None, limit: int | None = None, progress: bool = True, report: bool = True) -> RunSummary:
    """Ask every row the task takes that ``out`` has no result for; then write the report."""
    data, out = Path(data), Path(out)
    task = get_task(task_name)
    rows = load_task_rows(data, task, split, limit)
    store = RunStore(out)
    identity = {"task": task.name, "task_version": task.version, "data": str(data.resolve()), "data_sha256": file_sha256(data),
                "backend": backend.describe(), "options": {"split": split, "limit": limit, "seed": SEED, **task.options()}}
    done = store.open(identity)
    t = time.perf_counter()
    asked, errors = asyncio.run(_run(store, task, rows, backend, done, progress))
    seconds = time.perf_counter() - t
    if report:
        from .report import write_report

        write_report(out)
    return RunSummary(out, len(done) + asked, asked, errors, seconds)


def records_of(out: str | Path) -> tuple[dict, Task, list[dict]]:
    """(run.json, the task, the result lines re-parsed by the task's current parser)."""
    store = RunStore(out)
    info = store.info()
    task = get_task(info["task"])
    from .judge import judgements

    recs = store.records()
    judged = judgements(out)
    for r in recs:
        r["prediction"] = task.parse(r["row"], r["reply"])
        if r["id"] in judged:
            r["judge"] = judged[r["id"]]
    return info, task, recs


def dumps(obj: Any) -> str:
    return json.dumps(obj, indent=2, ensure_ascii=False, default=float)
