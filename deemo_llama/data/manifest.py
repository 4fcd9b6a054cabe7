"""Manifests: what ``deemo data build`` reads (CSV or JSON Lines, one clip per row).

Columns (``clip`` and ``label`` required, the rest optional):

    clip              media file, relative to the manifest's folder or absolute
    label             the clip's label (a label of the build's label set, or a known synonym)
    id                unique clip id (default: the clip's file stem)
    subject           speaker/participant id: splits never put one subject in two splits
    split             train | validation | test (official folds; otherwise the builder assigns)
    transcript        what is said (used instead of Whisper's transcript when given)
    clues             gold emotional clues: a list of strings (CSV: a JSON list, or text split on " | ")
    valence, arousal  numbers
    body_language     DEEMO-NFBL events: [{"type": "self-manipulation", "label": "touching face", "start_s": 1.0, "end_s": 2.2}]
    micro_expressions spotted intervals: [{"onset_s": .., "apex_s": .., "offset_s": .., "aus": "4+7"}]
    demographics      {"gender": "f", "age_group": "18-30"} from the dataset's metadata (never inferred from faces)
    source            dataset name;  license: its licence
    label_set         the set the label belongs to (mer, dfew, mafw, bah, casme, custom); one per manifest
    meta              free-form object carried into the rows unchanged

CSV cells holding lists/objects are JSON text. Errors name the file and row (line) and never leave a
half-written manifest (:func:`write_manifest` is atomic).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

from ..errors import DeemoError

COLUMNS = ("id", "clip", "label", "subject", "split", "transcript", "clues", "valence", "arousal", "body_language", "micro_expressions", "demographics", "source", "license", "label_set", "meta")
REQUIRED = ("clip", "label")
SPLITS = ("train", "validation", "test")
_JSON_COLUMNS = ("clues", "body_language", "micro_expressions", "demographics", "meta")


class ManifestError(DeemoError):
    """A manifest row is malformed: the message names the file and line."""


@dataclass
class ManifestRow:
    clip: str
    label: str
    id: str = ""
    subject: str | None = None
    split: str | None = None
    transcript: str | None = None
    clues: list[str] | None = None
    valence: float | None = None
    arousal: float | None = None
    body_language: list[dict] | None = None
    micro_expressions: list[dict] | None = None
    demographics: dict[str, Any] | None = None
    source: str | None = None
    license: str | None = None
    label_set: str | None = None
    meta: dict[str, Any] | None = None
    line: int = field(default=0, compare=False)  # where it came from (1-based; CSV counts the header)

    def to_dict(self) -> dict[str, Any]:
        """The row's non-empty columns (what write_manifest stores)."""
        return {k: v for k, v in asdict(self).items() if k != "line" and v not in (None, "", [], {})}

    def clip_path(self, root: Path) -> Path:
        p = Path(self.clip).expanduser()
        return p if p.is_absolute() else root / p


def _where(path: Path, line: int) -> str:
    return f"{path}:{line}"


def _parse_json_cell(value: Any, column: str, where: str) -> Any:
    if not isinstance(value, str):
        return value
    text = value.strip()
    if not text:
        return None
    if text[0] in "[{":
        try:
            return json.loads(text)
        except json.JSONDecodeError as e:
            raise ManifestError(f"{where}: column {column!r} is not valid JSON ({e.msg})") from None
    if column == "clues":
        return [c.strip() for c in text.split(" | ") if c.strip()]
    raise ManifestError(f"{where}: column {column!r} must be JSON (a list or an object), got {text[:40]!r}")


def _number(value: Any, column: str, where: str) -> float | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise ManifestError(f"{where}: column {column!r} must be a number, got {value!r}") from None
    if not math.isfinite(x):
        raise ManifestError(f"{where}: column {column!r} must be finite, got {value!r}")
    return x


def parse_row(raw: dict[str, Any], where: str, line: int) -> ManifestRow:
    """One raw row (CSV strings or JSON values) -> ManifestRow; raises ManifestError naming ``where``."""
    unknown = sorted(k for k in raw if k not in COLUMNS)
    if unknown:
        raise ManifestError(f"{where}: unknown column(s) {', '.join(map(repr, unknown))}; known: {', '.join(COLUMNS)}")
    vals = {k: (v.strip() if isinstance(v, str) else v) for k, v in raw.items()}
    for col in REQUIRED:
        if vals.get(col) in (None, ""):
            raise ManifestError(f"{where}: column {col!r} is empty or missing")
    for col in _JSON_COLUMNS:
        vals[col] = _parse_json_cell(vals.get(col), col, where)
    for col in ("valence", "arousal"):
        vals[col] = _number(vals.get(col), col, where)
    if vals.get("clues") is not None and not (isinstance(vals["clues"], list) and all(isinstance(c, str) for c in vals["clues"])):
        raise ManifestError(f"{where}: 'clues' must be a list of strings")
    for col in ("body_language", "micro_expressions"):
        v = vals.get(col)
        if v is not None and not (isinstance(v, list) and all(isinstance(e, dict) for e in v)):
            raise ManifestError(f"{where}: {col!r} must be a list of objects")
    for col in ("demographics", "meta"):
        v = vals.get(col)
        if v is not None and not isinstance(v, dict):
            raise ManifestError(f"{where}: {col!r} must be an object")
    if vals.get("split") not in (None, "") and vals["split"] not in SPLITS:
        raise ManifestError(f"{where}: split {vals['split']!r} is not one of {', '.join(SPLITS)}")
    for col in ("id", "clip", "label", "subject", "split", "transcript", "source", "license", "label_set"):
        v = vals.get(col)
        if v is not None and not isinstance(v, str):
            if col in ("id", "subject", "label") and isinstance(v, (int, float)) and not isinstance(v, bool):
                vals[col] = str(v)
            else:
                raise ManifestError(f"{where}: column {col!r} must be text")
        if vals.get(col) == "":
            vals[col] = None
    row = ManifestRow(**{k: vals.get(k) for k in COLUMNS if vals.get(k) is not None}, line=line)
    if not row.id:
        row.id = Path(row.clip).stem
    return row


def jsonl_objects(path: Path, text: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line, object) of each non-blank JSON Lines line; ManifestError naming file:line otherwise."""
    for i, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
        except json.JSONDecodeError as e:
            raise ManifestError(f"{_where(path, i)}: not valid JSON ({e.msg})") from None
        if not isinstance(raw, dict):
            raise ManifestError(f"{_where(path, i)}: a row must be a JSON object")
        yield i, raw


def read_manifest(path: str | Path) -> list[ManifestRow]:
    """Read a CSV (header row) or JSON Lines manifest; one ManifestError per problem, naming file:line."""
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"{path}: no such manifest file")
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ManifestError(f"{path}: not UTF-8 text (byte {e.start})") from None
    rows: list[ManifestRow] = []
    if path.suffix.lower() in (".jsonl", ".json", ".ndjson"):
        rows += [parse_row(raw, _where(path, i), i) for i, raw in jsonl_objects(path, text)]
    elif path.suffix.lower() in (".csv", ".tsv"):
        reader = csv.DictReader(io.StringIO(text), delimiter="\t" if path.suffix.lower() == ".tsv" else ",")
        if not reader.fieldnames:
            raise ManifestError(f"{path}: empty manifest (no header row)")
        for i, raw in enumerate(reader, 2):
            if None in raw:
                raise ManifestError(f"{_where(path, i)}: more cells than header columns")
            if not any((v or "").strip() for v in raw.values()):
                continue
            rows.append(parse_row({k: v for k, v in raw.items() if (v or "").strip()}, _where(path, i), i))
    else:
        raise ManifestError(f"{path}: a manifest is .csv, .tsv or .jsonl, not {path.suffix or 'no extension'!r}")
    if not rows:
        raise ManifestError(f"{path}: empty manifest (no rows)")
    seen: dict[str, int] = {}
    for r in rows:
        if r.id in seen:
            raise ManifestError(f"{_where(path, r.line)}: duplicate clip id {r.id!r} (first on line {seen[r.id]})")
        seen[r.id] = r.line
    sets = {r.label_set for r in rows if r.label_set}
    if len(sets) > 1:
        raise ManifestError(f"{path}: rows name different label sets ({', '.join(sorted(sets))}); one per manifest")
    return rows


def write_manifest(rows: Iterable[ManifestRow | dict], path: str | Path) -> Path:
    """Write rows atomically; ``.jsonl`` as JSON objects, ``.csv`` with JSON text for list/object cells."""
    path = Path(path)
    dicts = [r.to_dict() if isinstance(r, ManifestRow) else {k: v for k, v in r.items() if v not in (None, "", [], {})} for r in rows]
    for i, d in enumerate(dicts, 1):  # what we write must read back
        parse_row(d, f"{path} (row {i} being written)", i)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    if path.suffix.lower() == ".csv":
        cols = [c for c in COLUMNS if any(c in d for d in dicts)]
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=cols)
            w.writeheader()
            for d in dicts:
                w.writerow({k: json.dumps(v, ensure_ascii=False) if isinstance(v, (list, dict)) else v for k, v in d.items()})
    elif path.suffix.lower() == ".jsonl":
        with open(tmp, "w", encoding="utf-8") as f:
            for d in dicts:
                f.write(json.dumps(d, ensure_ascii=False) + "\n")
    else:
        raise ManifestError(f"{path}: write a manifest as .csv or .jsonl")
    os.replace(tmp, path)
    return path
