"""``deemo data build MANIFEST OUT``: clips -> de-identified media, Evidence and instruction rows.

For each manifest row (one clip), inside the privacy boundary:

    clip ─ Deidentifier.file ─> OUT/clips/<id>/video.mp4 (blurred, McAdams audio) | audio.wav, report.json
         └ EvidencePipeline.run ─> OUT/clips/<id>/evidence.json (transcript of the anonymised audio, or of the raw one: --transcribe-from; experts)
         └ rows.make_rows ─> recognition / reasoning / tool-use rows  ─> OUT/clips/<id>/record.json

``record.json`` is written last and atomically: a clip with one is done, and a rebuild reuses it while
the manifest row, the clip file and the build options are unchanged (its ``key``). Killed at any
point, a rerun finishes the rest: no finished clip is redone, none is lost. When every clip is done,
subjects are split (deterministic, subject-independent) and OUT/{train,validation,test}.jsonl,
errors.json and build.json are written, each atomically; they are rebuilt from the records every
run, so rows are never duplicated. Raw media, face crops and voiceprints are never stored.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

from ..errors import DeemoError
from ..fsio import atomic_write_text
from ..evidence import EVIDENCE_VERSION, PROFILES, TRANSCRIBE_FROM
from ..prompting import PROMPT_VERSION
from .labels import LabelSet, get_label_set
from .manifest import SPLITS, ManifestError, ManifestRow, read_manifest
from .rows import KINDS, REASONING_SOURCES, SCHEMA_VERSION, TEMPLATE_VERSION, make_rows

BUILDER_VERSION = "3"  # 2: rows carry the annotated micro_expressions (spotting evaluation); 3: reasoning from the Evidence by default
RECORD = "record.json"


@dataclass
class BuildOptions:
    label_set: str | None = None  # None: the manifest's own label_set column
    labels: tuple[str, ...] | None = None  # for label_set "custom"
    kinds: tuple[str, ...] = KINDS
    experts: str = "fast"  # the Evidence profile (none|fast|all)
    workers: int = 1
    seed: int = 0
    ratios: tuple[float, float, float] = (0.8, 0.1, 0.1)  # train / validation / test, by clips
    transcript: str = "auto"  # auto: the manifest's transcript when given, else Whisper; whisper: always Whisper
    transcribe_from: str = "anonymised"  # the audio Whisper hears: anonymised (McAdams) or raw (inside the boundary)
    max_seconds: float = 600.0
    video_fps: float | None = 10.0  # frame rate of the stored de-identified video (None: the clip's own)
    reasoning: str = "evidence"  # evidence: answers explain what the Evidence holds; clues: the manifest's clues when given

    def __post_init__(self):
        if self.experts not in PROFILES:
            raise DeemoError(f"unknown experts profile {self.experts!r}; expected one of {', '.join(PROFILES)}")
        bad = sorted(set(self.kinds) - set(KINDS))
        if bad or not self.kinds:
            raise DeemoError(f"unknown row kind(s) {bad}; expected some of {', '.join(KINDS)}")
        if self.reasoning not in REASONING_SOURCES:
            raise DeemoError(f"--reasoning must be one of {', '.join(REASONING_SOURCES)}, not {self.reasoning!r}")
        if self.transcript not in ("auto", "whisper"):
            raise DeemoError(f"--transcript must be auto or whisper, not {self.transcript!r}")
        if self.transcribe_from not in TRANSCRIBE_FROM:
            raise DeemoError(f"--transcribe-from must be one of {', '.join(TRANSCRIBE_FROM)}, not {self.transcribe_from!r}")
        if len(self.ratios) != 3 or any(r < 0 for r in self.ratios) or sum(self.ratios) <= 0:
            raise DeemoError(f"split ratios must be three non-negative numbers, got {self.ratios}")
        if self.workers < 1:
            raise DeemoError("--workers must be at least 1")


@dataclass
class Job:
    row: ManifestRow
    src: str
    label: str
    work: str
    key: str


@dataclass
class BuildReport:
    out: Path
    clips: int
    built: int
    cached: int
    failed: int
    rows: dict[str, int]
    seconds: float
    errors: list[dict] = field(default_factory=list)

    @property
    def clips_per_s(self) -> float:
        return self.built / self.seconds if self.seconds > 0 else 0.0




def built_transcribe_from(folder: str | Path) -> str | None:
    """The audio a `deemo data build` folder's transcripts were made from (its build.json; a build
    from before the option: anonymised), or None when ``folder`` is not a build folder."""
    info = Path(folder) / "build.json"
    if not info.is_file():
        return None
    return json.loads(info.read_text()).get("options", {}).get("transcribe_from", BuildOptions.transcribe_from)


def transcript_source(rows_files: Sequence[Path], option: str = "data.train") -> str | None:
    """The audio the rows' transcripts were made from (their build folders' build.json), None when no
    rows file lies in a build folder; rows transcribed from different audio are an error (``option``
    names where they were given): a model is trained, and a fuser fitted, on one kind of transcript."""
    found = {f: src for f in rows_files if (src := built_transcribe_from(Path(f).parent))}
    if len(set(found.values())) > 1:
        raise DeemoError(f"{option}: the rows' transcripts were made from different audio (" + ", ".join(f"{Path(f).parent}: {src}" for f, src in found.items()) + "); build them with the same --transcribe-from")
    return next(iter(found.values()), None)


def safe_name(clip_id: str) -> str:
    """A folder name for a clip id (ids may hold slashes); a hash suffix keeps them distinct."""
    clean = re.sub(r"[^A-Za-z0-9._-]+", "_", clip_id).strip("._")[:80] or "clip"
    return f"{clean}-{hashlib.sha1(clip_id.encode()).hexdigest()[:8]}"


def resolve_label_set(rows: Sequence[ManifestRow], options: BuildOptions, manifest: Path) -> LabelSet:
    name = options.label_set or next((r.label_set for r in rows if r.label_set), None)
    if name is None:
        raise DeemoError(f"{manifest}: name the label set with --label-set (mer, dfew, mafw, bah, casme, custom) or a 'label_set' column")
    if options.label_set and any(r.label_set and r.label_set != options.label_set for r in rows):
        raise DeemoError(f"{manifest}: its rows name label set {next(r.label_set for r in rows if r.label_set)!r} but --label-set is {options.label_set!r}")
    return get_label_set(name, options.labels)


def _key(row: ManifestRow, src: Path, label_set: LabelSet, options: BuildOptions) -> str:
    """What a clip's record depends on: its manifest row (but not its split), the file, the options."""
    st = src.stat()
    d = {k: v for k, v in row.to_dict().items() if k != "split"}
    parts = {"row": d, "file": [str(src.resolve()), st.st_size, st.st_mtime_ns], "label_set": asdict(label_set) | {"synonyms": None}, "kinds": list(options.kinds), "experts": options.experts, "video_fps": options.video_fps, "transcript": options.transcript, "transcribe_from": options.transcribe_from, "reasoning": options.reasoning, "versions": [BUILDER_VERSION, SCHEMA_VERSION, PROMPT_VERSION, EVIDENCE_VERSION, TEMPLATE_VERSION]}
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def plan(manifest: Path, out: Path, options: BuildOptions) -> tuple[list[ManifestRow], LabelSet, list[Job]]:
    """Read and check the whole manifest before any work: one-line errors naming file and line."""
    rows = read_manifest(manifest)
    label_set = resolve_label_set(rows, options, manifest)
    root = manifest.parent
    jobs = []
    for r in rows:
        label = label_set.normalise(r.label)
        if label is None:
            raise ManifestError(f"{manifest}:{r.line}: label {r.label!r} is not in label set {label_set.name!r} ({', '.join(label_set.labels)})")
        src = r.clip_path(root)
        if not src.exists():
            raise ManifestError(f"{manifest}:{r.line}: clip {r.clip!r} does not exist (looked for {src})")
        if not src.is_file():
            raise ManifestError(f"{manifest}:{r.line}: clip {r.clip!r} is not a file")
        if not os.access(src, os.R_OK):
            raise ManifestError(f"{manifest}:{r.line}: clip {r.clip!r} is not readable")
        jobs.append(Job(r, str(src), label, str(out / "clips" / safe_name(r.id)), _key(r, src, label_set, options)))
    return rows, label_set, jobs


def load_record(job: Job) -> dict | None:
    p = Path(job.work) / RECORD
    try:
        rec = json.loads(p.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return rec if rec.get("key") == job.key else None


# -- one clip (in this process or a worker) ------------------------------------------------------------
_PIPELINE = None


def _init_worker(options: BuildOptions, cache_dir: str | None, threads: int | None, transcriber=None) -> None:
    global _PIPELINE
    if threads:
        import torch

        torch.set_num_threads(threads)
    from ..evidence import EvidencePipeline
    from ..privacy.deid import DeidOptions
    from ..tools import ToolCache

    deid = DeidOptions(audit=False, transcribe=False, max_seconds=options.max_seconds)
    _PIPELINE = EvidencePipeline(options.experts, transcriber=transcriber, deid_options=deid, cache=ToolCache(cache_dir) if cache_dir else None, max_seconds=options.max_seconds, video_fps=options.video_fps, transcribe_from=options.transcribe_from)


def process(job: Job, label_set: LabelSet, options: BuildOptions) -> dict:
    """De-identify, gather the Evidence and write the clip's rows; returns the record (or an error)."""
    t = time.perf_counter()
    work = Path(job.work)
    out = work.parent.parent
    try:
        _report, media = _PIPELINE.deidentify_to(job.src, work, key=job.row.id)  # the model's media, made as analyze and the gateway make them
        given = job.row.transcript if options.transcript == "auto" else None
        ev = _PIPELINE.run(job.src, key=job.row.id, transcript=given)
        atomic_write_text(work / "evidence.json", json.dumps(ev.to_dict(), indent=1) + "\n")
        rel = lambda p: p.relative_to(out).as_posix()  # noqa: E731
        rows = make_rows(job.row, ev, job.label, label_set, rel(media) if media else None, rel(work / "evidence.json"), options.kinds, options.reasoning)
    except Exception as e:  # a bad clip is reported in errors.json; the build goes on
        msg = str(e) if isinstance(e, DeemoError) else f"{type(e).__name__}: {e}"
        return {"clip_id": job.row.id, "error": msg, "line": job.row.line, "clip": job.row.clip}
    record = {"key": job.key, "clip_id": job.row.id, "seconds": round(time.perf_counter() - t, 3), "failures": ev.failures, "rows": rows}
    atomic_write_text(work / RECORD, json.dumps(record) + "\n")
    return record


# -- splits ------------------------------------------------------------------------------------------------
def assign_splits(clips: Sequence[tuple[str, str | None, str | None]], ratios: Sequence[float], seed: int = 0) -> dict[str, str]:
    """clip id -> split, for (clip id, subject, given split) triples.

    Given splits (official folds) are kept, and a subject's other clips follow them. Other clips are
    grouped by subject (each clip is its own group without one); groups are ordered by a hash of
    (seed, group) and each goes to the split furthest below its share of clips (the first ones seed
    validation and test, so that with at least three groups no split is empty). Deterministic, and
    no subject is in two splits unless the manifest's own splits put it there.
    """
    out: dict[str, str] = {}
    groups: dict[str, list[str]] = {}
    fixed: dict[str, str] = {}
    for cid, subject, split in clips:
        g = f"s:{subject}" if subject else f"c:{cid}"
        groups.setdefault(g, []).append(cid)
        if split:
            out[cid] = split
            fixed.setdefault(g, split)
    counts = {s: 0 for s in SPLITS}
    for cid in out:
        counts[out[cid]] += 1
    total = len(clips)
    target = {s: total * r / sum(ratios) for s, r in zip(SPLITS, ratios)}
    order = sorted(groups, key=lambda g: hashlib.sha1(f"{seed}:{g}".encode()).hexdigest())
    free = [g for g in order if g not in fixed]
    # every split with a share gets at least one group when there are enough (a small corpus would
    # otherwise put everything in train): the first groups in hash order seed the empty ones
    wanted = [s for s, r in zip(SPLITS, ratios) if r > 0]
    seeds: dict[str, str] = {}
    if len(free) >= len(wanted):
        for s in reversed(wanted):  # test, validation, train
            if counts[s] == 0 and s != "train":
                seeds[free[len(seeds)]] = s
    for g in order:
        todo = [c for c in groups[g] if c not in out]
        if not todo:
            continue
        split = fixed.get(g) or seeds.get(g) or max(SPLITS, key=lambda s: (target[s] - counts[s], -SPLITS.index(s)))
        for c in todo:
            out[c] = split
        counts[split] += len(todo)
    return out


# -- the build -----------------------------------------------------------------------------------------------
def build_dataset(manifest: str | Path, out: str | Path, options: BuildOptions | None = None, progress: bool = True, transcriber=None) -> BuildReport:
    """Build (or finish building) ``out`` from ``manifest``; see the module docstring."""
    from tqdm.auto import tqdm

    options = options or BuildOptions()
    manifest, out = Path(manifest), Path(out)
    t0 = time.perf_counter()
    rows, label_set, jobs = plan(manifest, out, options)
    out.mkdir(parents=True, exist_ok=True)
    records: dict[str, dict] = {}
    for j in jobs:
        if (rec := load_record(j)) is not None:
            records[j.row.id] = rec
    cached = len(records)
    pending = [j for j in jobs if j.row.id not in records]
    errors: dict[str, dict] = {}
    cache_dir = str(out / ".tool-cache")
    if pending:
        bar = tqdm(total=len(jobs), initial=cached, desc="building", unit="clip", disable=not progress)

        def done(rec: dict) -> None:
            if "error" in rec:
                errors[rec["clip_id"]] = rec
                bar.set_postfix(failed=len(errors))
            else:
                records[rec["clip_id"]] = rec
            bar.update(1)

        workers = min(options.workers, len(pending))
        if workers == 1:
            _init_worker(options, cache_dir, None, transcriber)
            for j in pending:
                done(process(j, label_set, options))
        else:
            import multiprocessing as mp

            threads = max(1, (os.cpu_count() or 2) // workers)
            with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=_init_worker, initargs=(options, cache_dir, threads)) as pool:
                futures = [pool.submit(process, j, label_set, options) for j in pending]
                for f in as_completed(futures):
                    done(f.result())
        bar.close()
    built = len(records) - cached
    splits = assign_splits([(j.row.id, j.row.subject, j.row.split) for j in jobs if j.row.id in records], options.ratios, options.seed)
    per_split: dict[str, list[str]] = {s: [] for s in SPLITS}
    for j in jobs:  # manifest order
        rec = records.get(j.row.id)
        if rec is None:
            continue
        for r in rec["rows"]:
            per_split[splits[j.row.id]].append(json.dumps({**r, "split": splits[j.row.id]}, ensure_ascii=False))
    for s, lines in per_split.items():
        atomic_write_text(out / f"{s}.jsonl", "".join(line + "\n" for line in lines))
    err_list = [errors[j.row.id] for j in jobs if j.row.id in errors]
    atomic_write_text(out / "errors.json", json.dumps(err_list, indent=1) + "\n")
    seconds = time.perf_counter() - t0
    report = BuildReport(out, len(jobs), built, cached, len(err_list), {s: len(v) for s, v in per_split.items()}, seconds, err_list)
    summary = {
        "schema_version": SCHEMA_VERSION,
        "builder_version": BUILDER_VERSION,
        "manifest": str(manifest.resolve()),
        "manifest_sha256": hashlib.sha256(manifest.read_bytes()).hexdigest(),
        "label_set": {"name": label_set.name, "labels": list(label_set.labels)},
        "options": {k: v for k, v in asdict(options).items()},
        "clips": len(jobs), "built": built, "cached": cached, "failed": len(err_list),
        "rows": report.rows,
        "clips_per_split": {s: sum(1 for c in splits.values() if c == s) for s in SPLITS},
        "subjects_per_split": {s: sorted({j.row.subject for j in jobs if j.row.subject and splits.get(j.row.id) == s}) for s in SPLITS},
        "seconds": round(seconds, 2),
        "versions": {"schema": SCHEMA_VERSION, "prompt": PROMPT_VERSION, "evidence": EVIDENCE_VERSION, "templates": TEMPLATE_VERSION, "builder": BUILDER_VERSION},
    }
    atomic_write_text(out / "build.json", json.dumps(summary, indent=1) + "\n")
    return report
