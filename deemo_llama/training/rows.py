"""Training rows: the validated JSONL of ``deemo data build``, tokenised once, and batches of them.

    examples = tokenize_file(train_jsonl, processor, kinds=["recognition"])   # memory-mapped, by datasets
    inputs = batch_inputs(examples[0:4], processor, feature_cache)            # padded ids + cached features
"""

from __future__ import annotations

import bisect
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from ..assets import cache_dir
from ..errors import DeemoError
from ..modeling import MediaInputs
from ..processing import DeemoProcessor, count_media
from .features import FeatureCache


def check_rows(path: Path) -> Path:
    """Check a JSONL instruction file (row.schema.json, as ``deemo data build`` writes it) with the one
    validator (``deemo data validate``), line by line; the first problem is the error, naming its line."""
    from ..data.validate import iter_problems

    path = Path(path)
    problems = [p for _, p in iter_problems(path, probe=False) if p is not None]
    if problems:
        more = f" (and {len(problems) - 1} more problem(s); run `deemo data validate {path}`)" if len(problems) > 1 else ""
        raise DeemoError(problems[0].format(path) + more)
    return path


def load_records(path: Path) -> list[dict]:
    """The rows of a checked JSONL instruction file, as dicts (small files: probes, tests)."""
    path = check_rows(path)
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not records:
        raise DeemoError(f"{path}: no records")
    return records


def encode_record(rec: dict, processor: DeemoProcessor, root: Path) -> dict:
    """Token ids + labels + decoded media for one record."""
    from ..media import load_clip_for

    ids, labels = processor.encode_for_training(rec["messages"], tools=rec.get("tools"))
    n = count_media(rec["messages"])
    videos, audios = [], []
    if n["video"] or n["audio"]:
        clip = load_clip_for(processor.config, root / rec["media"])
        if n["video"] and not clip.has_video:
            raise DeemoError(f"{rec['media']}: record asks for video but the file has none")
        if n["audio"] and not clip.has_audio:
            raise DeemoError(f"{rec['media']}: record asks for audio but the file has none")
        videos = [clip.frames] * n["video"]
        audios = [clip.audio] * n["audio"]
    return {"input_ids": ids, "labels": labels, "videos": videos, "audios": audios}



IGNORE = -100
TABLE_FORMAT = 2  # of tokenize_file's cached tables: part of their key, so an older format is never read


@dataclass
class Example:
    """One tokenised row; its media are fetched per batch (``modalities``: one entry per media part)."""

    id: str
    input_ids: list[int]
    labels: list[int]
    clip: str | None
    modalities: tuple[str, ...]
    row: dict


class TokenizedRows(Sequence[Example]):
    """Rows tokenised once into an Arrow table (``datasets``), memory-mapped when it came from a file:
    ``len()``, ``[i]`` and iteration give :class:`Example` objects, built on access, so a corpus of any
    size costs its token ids on disk, not its rows in RAM (the clips' features load per batch).

    The table holds each row's media path as the row wrote it; a relative one is resolved against
    ``root`` (the rows file's folder) here, on access, so a cached table serves identical rows read from
    another folder (a rebuilt or moved corpus) with that folder's clips, never the first reader's."""

    def __init__(self, table, root: Path):
        self.table = table
        self.root = Path(root)

    def __len__(self) -> int:
        return len(self.table)

    def _example(self, r: dict) -> Example:
        clip = str(self.root / r["clip"]) if r["clip"] else None  # an absolute media path stays as it is
        return Example(r["id"], r["input_ids"], r["labels"], clip, tuple(r["modalities"]), json.loads(r["row"]))

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self._example(r) for r in self.table.select(range(*i.indices(len(self))))]
        if not -len(self) <= i < len(self):
            raise IndexError(i)
        return self._example(self.table[i % len(self)])

    def __iter__(self):
        for r in self.table:
            yield self._example(r)


class ConcatRows(TokenizedRows):
    """Several files' :class:`TokenizedRows` as one, in order, each row's media resolved against its
    own file's folder; the tables are concatenated without a copy (still memory-mapped)."""

    def __init__(self, parts: Sequence[TokenizedRows]):
        import datasets

        super().__init__(datasets.concatenate_datasets([p.table for p in parts]), Path("/"))
        self.parts = list(parts)
        self.starts = [sum(len(p) for p in self.parts[:k]) for k in range(len(self.parts))]

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        if not -len(self) <= i < len(self):
            raise IndexError(i)
        i %= len(self)
        k = bisect.bisect_right(self.starts, i) - 1
        return self.parts[k][i - self.starts[k]]

    def __iter__(self):
        for part in self.parts:
            yield from part


def concat_rows(parts: Sequence[TokenizedRows]) -> TokenizedRows:
    """One file's rows as they are; several files' as a :class:`ConcatRows`."""
    return parts[0] if len(parts) == 1 else ConcatRows(parts)


def _tokenizer(processor: DeemoProcessor):
    def fn(batch: dict) -> dict:
        out: dict[str, list] = {"id": [], "input_ids": [], "labels": [], "clip": [], "modalities": []}
        for line in batch["row"]:
            rec = json.loads(line)
            ids, labels = processor.encode_for_training(rec["messages"], tools=rec.get("tools"))
            n = count_media(rec["messages"])
            clip = rec["media"] if n["video"] or n["audio"] else ""  # resolved on access (TokenizedRows)
            for k, v in (("id", rec["id"]), ("input_ids", ids), ("labels", labels), ("clip", clip), ("modalities", ["video"] * n["video"] + ["audio"] * n["audio"])):
                out[k].append(v)
        return out

    return fn


def _processor_fingerprint(processor: DeemoProcessor) -> str:
    """What the token ids of a row depend on: the tokenizer, the chat template, the media placeholders."""
    import hashlib

    tok = processor.tokenizer
    h = hashlib.sha256(json.dumps({"vocab": sorted(tok.get_vocab().items()), "template": tok.chat_template, "special": tok.all_special_tokens,
                                   "media": {n: [m.placeholder, m.placeholder_id, m.num_tokens] for n, m in sorted(processor.config.modalities.items())}}, default=str).encode())
    return h.hexdigest()[:16]


def tokenize_file(path: Path, processor: DeemoProcessor, kinds: Sequence[str] | None = None, cache: Path | None = None) -> TokenizedRows:
    """A validated rows file -> :class:`TokenizedRows`, streamed through ``datasets``: the JSONL is read
    line by line into an Arrow table under ``cache`` and tokenised once (``Dataset.map``); a rerun (or
    ``--resume``) on the same file, kinds and tokenizer reuses it."""
    import datasets

    from ..hashing import file_digest

    path = Path(path)
    # TABLE_FORMAT: tables of format 1 held media paths resolved against the first reader's folder
    key = f"{file_digest(path)[:16]}-{_processor_fingerprint(processor)}-{'+'.join(sorted(kinds or ())) or 'all'}-f{TABLE_FORMAT}"
    cache = Path(cache or cache_dir() / "rows").expanduser()
    cache.mkdir(parents=True, exist_ok=True)
    raw = datasets.Dataset.from_generator(_jsonl_lines, gen_kwargs={"path": str(path), "kinds": tuple(kinds or ()), "key": key}, features=datasets.Features({"row": datasets.Value("string")}),
                                          cache_dir=str(cache / "raw"))
    table = raw.map(_tokenizer(processor), batched=True, batch_size=256, cache_file_name=str(cache / f"tokens-{key}.arrow"), new_fingerprint=key, desc=f"tokenising {path.name}")
    return TokenizedRows(table, path.parent)


def _jsonl_lines(path: str, kinds: tuple[str, ...], key: str):
    """The rows of ``path`` (of ``kinds``), one JSON string each; ``key`` only fingerprints the file."""
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip() and (not kinds or json.loads(line).get("kind") in kinds):
                yield {"row": line.strip()}


def tokenize_rows(records: list[dict], processor: DeemoProcessor, root: Path) -> TokenizedRows:
    """In-memory rows (a test, a probe) -> :class:`TokenizedRows` by the same tokeniser as files."""
    import datasets

    raw = datasets.Dataset.from_dict({"row": [json.dumps(r) for r in records]})
    return TokenizedRows(raw.map(_tokenizer(processor), batched=True, batch_size=256, keep_in_memory=True, desc="tokenising") if records else raw, Path(root))


def batch_inputs(batch: list[Example], processor: DeemoProcessor, features: FeatureCache):
    """Pad the tokens; stack each modality's cached encoder features in prompt order."""
    inputs = processor.collate([{"input_ids": e.input_ids, "labels": e.labels} for e in batch])
    encoded: dict[str, list[torch.Tensor]] = {}
    for e in batch:
        if not e.modalities:
            continue
        feats = features.get(e.clip, sorted(set(e.modalities)))
        for m in e.modalities:
            encoded.setdefault(m, []).append(feats[m])
    if encoded:
        inputs.media = MediaInputs(encoded={k: torch.stack(v) for k, v in encoded.items()})
    return inputs
