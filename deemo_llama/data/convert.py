"""Converters: public emotion datasets' annotation layouts -> a build manifest (:mod:`.manifest`).

    convert("mer2023", Path("MER2023"), Path("mer.jsonl"))               # every *label*.csv under the folder
    convert("dfew", Path("DFEW"), Path("dfew_fold2.csv"), fold=2)        # EmoLabel_DataSplit/{train,test}(single-labeled)/set_2.csv
    convert("csv", Path("my.csv"), Path("m.jsonl"), columns={"clip": "path", "label": "emotion"}, label_set="mer")

Each converter reads the dataset's own annotation files, finds every clip's media file under ``src``
(one index of the tree, built once: ``<name>.<ext>`` for ext in :data:`MEDIA_EXTS`), normalises labels
with the label set (:mod:`.labels`), and writes the manifest atomically with :func:`write_manifest`.
Clip paths in the rows are absolute. Every row carries ``source`` (the dataset) and ``license``.

Errors are :class:`ManifestError` naming the annotation file (and line): a label outside the set, a
header that is not the layout's, a clip whose media file is not found (unless ``missing="skip"``: then
the row is left out and listed in the result's ``skipped``).

Options common to every format: ``missing`` ("error" | "skip"), ``source`` and ``license`` (override
the defaults), ``split`` (train | validation | test, for rows whose files give none), ``media_root``
(where the media are, when not under ``src``; default ``src``, or the folder of a ``src`` file).

Excel sheets (.xlsx/.xls, e.g. CASME II's coding sheet) are not read: export them as CSV (UTF-8).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import re
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from ..errors import DeemoError
from .labels import LabelSet, get_label_set
from .manifest import COLUMNS, SPLITS, ManifestError, ManifestRow, jsonl_objects, parse_row, write_manifest

log = logging.getLogger(__name__)

MEDIA_EXTS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".wav", ".flac", ".mp3")
_ANNOTATION_EXTS = {".csv", ".tsv", ".txt", ".json", ".jsonl", ".ndjson", ".xlsx", ".xls"}

FORMATS: dict[str, str] = {
    "mer2023": "MER2023 folder (or one label CSV): *label*.csv with `name,discrete,valence` (train-label.csv -> train, "
               "test*-label.csv -> test) + optional transcription CSV `name,chinese,english`; videos anywhere under SRC",
    "mer2024": "MER2024: same layout as mer2023",
    "dfew": "DFEW folder: EmoLabel_DataSplit/train(single-labeled)/set_N.csv and test(single-labeled)/set_N.csv "
            "(`video_name,label`, labels 1-7), option fold=N (1-5, default 1); clips 00001.mp4 ... under SRC",
    "mafw": "MAFW folder: single/.../set_N/train.txt and test.txt (`00025.mp4 anger` per line; or a CSV), "
            "option fold=N (1-5, default 1); or one label-list file; clips under SRC",
    "bah": "BAH folder (or one split file): train.txt / val.txt / test.txt, lines `video_path,label,transcript` "
           "(label 0/1); video paths relative to SRC (or option videos_root)",
    "merr": "Emotion-LLaMA MERR folder: `name n_frames label` .txt, a JSON {name: {smp_reason_caption|reason_caption|caption}}, "
            "transcripts CSV `name,sentence`; videos under SRC",
    "casme2": "CASME II: CSV export of the coding sheet `Subject,Filename,OnsetFrame,ApexFrame,OffsetFrame,Action Units,"
              "Estimated Emotion` (option fps, default 200); media sub01/EP02_01f.<ext> or the frame folder sub01/EP02_01f",
    "casme_sq": "CAS(ME)^2: headerless CSV `subject,video,onset,apex,offset,au,emotion,type,selfReport` (option fps, default 30), "
                "one row per expression interval; videos under SRC",
    "csv": "generic CSV/TSV/JSONL file: option columns={manifest column: file column} (default: same names), "
           "label_set=NAME (labels=a,b for custom), optional label_map={value: label}; clips relative to the file or by name",
}

_LICENSES = {
    "mer2023": "MER2023 EULA (research only)",
    "mer2024": "MER2024 EULA (research only)",
    "dfew": "DFEW licence (research only)",
    "mafw": "MAFW licence (non-commercial research only)",
    "bah": "BAH dataset licence (research only; see the dataset's licence)",
    "merr": "MERR annotations with MER2023 media: MER2023 EULA (research only)",
    "casme2": "CASME II licence (research only)",
    "casme_sq": "CAS(ME)^2 licence (research only)",
    "csv": "see the dataset's licence",
}
_SOURCES = {"mer2023": "MER2023", "mer2024": "MER2024", "dfew": "DFEW", "mafw": "MAFW", "bah": "BAH", "merr": "MERR",
            "casme2": "CASME II", "casme_sq": "CAS(ME)^2"}

_COMMON_OPTIONS = ("missing", "source", "license", "split", "media_root")
_SPLIT_SYNONYMS = {"train": "train", "training": "train", "trn": "train",
                   "validation": "validation", "valid": "validation", "val": "validation", "dev": "validation", "development": "validation",
                   "test": "test", "testing": "test", "tst": "test"}


class ConvertedRows(list):
    """The rows written (a list of :class:`ManifestRow`); ``skipped`` lists ``file:line: clip`` left out (missing="skip")."""

    def __init__(self, rows: Iterable[ManifestRow] = (), skipped: Sequence[str] = ()):
        super().__init__(rows)
        self.skipped: list[str] = list(skipped)


# ---------------------------------------------------------------- reading helpers

def _where(path: Path, line: int | None = None) -> str:
    return f"{path}:{line}" if line else str(path)


def _no_excel(path: Path) -> None:
    if path.suffix.lower() in (".xlsx", ".xls"):
        raise ManifestError(f"{path}: Excel sheets are not read (openpyxl is not a dependency); "
                            f"export the sheet as CSV (UTF-8) and convert that file")


def _read_text(path: Path) -> str:
    _no_excel(path)
    if not path.is_file():
        raise ManifestError(f"{path}: no such annotation file")
    data = path.read_bytes()
    for enc in ("utf-8-sig", "gb18030"):  # Excel exports of the Chinese datasets are often GBK
        try:
            return data.decode(enc)
        except UnicodeDecodeError:
            continue
    raise ManifestError(f"{path}: not UTF-8 (or GBK) text; save it as UTF-8")


def _csv_records(path: Path, delimiter: str | None = None) -> list[tuple[int, list[str]]]:
    """(first line number, cells) of every non-blank CSV record."""
    text = _read_text(path)
    if delimiter is None:
        delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    out, prev = [], 0
    try:
        for cells in reader:
            start, prev = prev + 1, reader.line_num
            if any(c.strip() for c in cells):
                out.append((start, [c.strip() for c in cells]))
    except csv.Error as e:
        raise ManifestError(f"{_where(path, reader.line_num)}: not valid CSV ({e})") from None
    return out


def _key(name: str) -> str:
    return re.sub(r"[\s_\-]+", "", name.strip().lower())


def _header_map(path: Path, header: list[str], expected: dict[str, Sequence[str]], required: Sequence[str], layout: str) -> dict[str, int]:
    """Map logical column -> index, matching header cells case/space-insensitively against ``expected`` aliases."""
    keys = [_key(h) for h in header]
    found: dict[str, int] = {}
    for col, aliases in expected.items():
        for a in aliases:
            if _key(a) in keys:
                found[col] = keys.index(_key(a))
                break
    missing = [c for c in required if c not in found]
    if missing:
        raise ManifestError(f"{path}: not the {layout} layout: expected columns {', '.join(required)}; "
                            f"found {', '.join(repr(h) for h in header) or 'no header'}")
    return found


def _cell(cells: list[str], idx: int | None) -> str:
    return cells[idx].strip() if idx is not None and idx < len(cells) else ""


def _split_of(path: Path) -> str | None:
    """Split named by a file's name: train-label.csv -> train, test2-label.csv -> test, val.txt -> validation."""
    stem = path.stem.lower()
    for word in re.split(r"[^a-z]+", stem):
        if word in _SPLIT_SYNONYMS:
            return _SPLIT_SYNONYMS[word]
    m = re.match(r"(train|test|val|valid|dev)\d*\b", stem)
    return _SPLIT_SYNONYMS.get(m.group(1)) if m else None


def _norm_split(value: str, where: str) -> str | None:
    v = value.strip().lower()
    if not v:
        return None
    if v in _SPLIT_SYNONYMS:
        return _SPLIT_SYNONYMS[v]
    raise ManifestError(f"{where}: split {value!r} is not one of {', '.join(SPLITS)} (or train/val/dev/test)")


def _fnum(value: str, what: str, where: str, *, optional: bool = False) -> float | None:
    v = value.strip()
    if optional and v in ("", "/", "-", "?", "nan", "NaN"):
        return None
    try:
        return float(v)
    except ValueError:
        raise ManifestError(f"{where}: {what} must be a number, got {value!r}") from None


def _bool_opt(value: Any, name: str) -> bool:
    if isinstance(value, bool):
        return value
    v = str(value).strip().lower()
    if v in ("1", "true", "yes", "on"):
        return True
    if v in ("0", "false", "no", "off", ""):
        return False
    raise ManifestError(f"option {name} must be true or false, not {value!r}")


def _mapping_opt(value: Any, name: str) -> dict[str, str]:
    """A dict, JSON object text, or ``a=b,c=d`` (what a command line passes)."""
    if value is None or value == "":
        return {}
    if isinstance(value, dict):
        return {str(k): str(v) for k, v in value.items()}
    text = str(value).strip()
    if text.startswith("{"):
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as e:
            raise ManifestError(f"option {name}: not valid JSON ({e.msg})") from None
        if isinstance(obj, dict):
            return {str(k): str(v) for k, v in obj.items()}
    out: dict[str, str] = {}
    for part in text.split(","):
        if not part.strip():
            continue
        if "=" not in part:
            raise ManifestError(f"option {name}: expected key=value pairs (e.g. clip=path,label=emotion), got {part.strip()!r}")
        k, v = part.split("=", 1)
        out[k.strip()] = v.strip()
    return out


# ---------------------------------------------------------------- media index

class _MediaIndex:
    """One walk of ``root``: media files by stem, folders by name, annotation files."""

    def __init__(self, root: Path):
        self.root = root
        self.files: dict[str, list[Path]] = {}
        self.files_lower: dict[str, list[Path]] = {}
        self.dirs: dict[str, list[Path]] = {}
        self.annotations: list[Path] = []
        seen: set[str] = set()
        for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
            real = os.path.realpath(dirpath)
            if real in seen:
                dirnames[:] = []
                continue
            seen.add(real)
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            base = Path(dirpath)
            for d in dirnames:
                self.dirs.setdefault(d, []).append(base / d)
            for f in sorted(filenames):
                if f.startswith("."):
                    continue
                p = base / f
                ext = p.suffix.lower()
                if ext in MEDIA_EXTS:
                    self.files.setdefault(p.stem, []).append(p)
                    self.files_lower.setdefault(p.stem.lower(), []).append(p)
                elif ext in _ANNOTATION_EXTS:
                    self.annotations.append(p)

    def annotation_files(self, pred: Callable[[Path], bool]) -> list[Path]:
        return sorted(p for p in self.annotations if pred(p))

    @staticmethod
    def _tail_matches(p: Path, parents: tuple[str, ...]) -> bool:
        dirs = p.parent.parts
        return len(dirs) >= len(parents) and tuple(d.lower() for d in dirs[len(dirs) - len(parents):]) == tuple(x.lower() for x in parents)

    def _pick(self, cands: list[Path]) -> Path:
        order = {e: i for i, e in enumerate(MEDIA_EXTS)}
        return min(cands, key=lambda p: (order.get(p.suffix.lower(), 99), len(p.parts), str(p)))

    def find(self, names: Sequence[str], *, base: Path | None = None, allow_dir: bool = False) -> Path | None:
        """The media file for the first name that resolves. A name may be a path (with or without extension);
        its folders must match the found file's parent folders. ``allow_dir``: a frame folder is accepted last."""
        bases = [b for b in (base, self.root) if b is not None]
        for name in names:
            if not name:
                continue
            p = Path(name)
            candidates = [p] if p.is_absolute() else [b / p for b in bases]
            for c in candidates:
                if c.is_file():
                    return c
            ext = p.suffix.lower()
            stem = p.stem if ext in MEDIA_EXTS else p.name
            parents = tuple(p.parent.parts) if str(p.parent) not in ("", ".") and not p.is_absolute() else ()
            cands = self.files.get(stem) or self.files_lower.get(stem.lower()) or []
            if ext in MEDIA_EXTS:
                cands = [c for c in cands if c.suffix.lower() == ext] or cands
            if parents:
                cands = [c for c in cands if self._tail_matches(c, parents)]
            if cands:
                return self._pick(cands)
        if allow_dir:
            for name in names:
                p = Path(name)
                for c in ([p] if p.is_absolute() else [b / p for b in bases]):
                    if c.is_dir():
                        return c
                parents = tuple(p.parent.parts) if str(p.parent) not in ("", ".") else ()
                dirs = [d for d in self.dirs.get(p.name, []) if not parents or self._tail_matches(d, parents)]
                if dirs:
                    return min(dirs, key=lambda d: (len(d.parts), str(d)))
        return None


# ---------------------------------------------------------------- the conversion context

class _Ctx:
    def __init__(self, fmt: str, src: Path, options: dict[str, Any], allowed: Sequence[str]):
        unknown = sorted(set(options) - set(_COMMON_OPTIONS) - set(allowed))
        if unknown:
            raise ManifestError(f"format {fmt!r}: unknown option(s) {', '.join(unknown)}; "
                                f"known: {', '.join(sorted(set(_COMMON_OPTIONS) | set(allowed)))}")
        self.fmt, self.src, self.opts = fmt, src, options
        missing = options.get("missing", "error")
        if missing not in ("error", "skip"):
            raise ManifestError(f"option missing must be 'error' or 'skip', not {missing!r}")
        self.skip_missing = missing == "skip"
        self.source = options.get("source") or _SOURCES.get(fmt) or src.stem
        self.license = options.get("license") or _LICENSES.get(fmt, "see the dataset's licence")
        self.split_default = _norm_split(str(options["split"]), "option split") if options.get("split") else None
        self.root = src if src.is_dir() else src.parent  # where annotation files are looked for
        self.media_root = self.root  # where media files are looked for (option media_root; BAH: videos_root)
        if options.get("media_root"):
            self.media_root = Path(options["media_root"]).expanduser()
            if not self.media_root.is_dir():
                raise ManifestError(f"option media_root: {self.media_root} is not a folder")
        self._indexes: dict[Path, _MediaIndex] = {}
        self.rows: list[ManifestRow] = []
        self.skipped: list[str] = []
        self._ids: dict[str, str] = {}

    def _index_of(self, root: Path) -> _MediaIndex:
        if root not in self._indexes:
            self._indexes[root] = _MediaIndex(root)
        return self._indexes[root]

    @property
    def index(self) -> _MediaIndex:
        """The annotation root's index (its media too, when media_root is the same folder)."""
        return self._index_of(self.root)

    def label_set(self, default: str | None) -> LabelSet:
        name = self.opts.get("label_set") or default
        if not name:
            raise ManifestError(f"format {self.fmt!r} needs option label_set (one of mer, dfew, mafw, bah, casme, custom)")
        labels = self.opts.get("labels")
        if isinstance(labels, str):
            labels = [x for x in labels.split(",") if x.strip()]
        try:
            return get_label_set(name, labels if name == "custom" else None)
        except ManifestError:
            raise
        except DeemoError as e:
            raise ManifestError(str(e)) from None

    def label(self, ls: LabelSet, value: str, where: str, numeric: bool = False) -> str:
        v = value.strip()
        if numeric and re.fullmatch(r"\d+", v) and 1 <= int(v) <= len(ls.labels):
            return ls.labels[int(v) - 1]
        got = ls.normalise(v) if v else None
        if got is None:
            raise ManifestError(f"{where}: label {value!r} is not in label set {ls.name!r} ({', '.join(ls.labels)})")
        return got

    def clip(self, names: Sequence[str], where: str, *, base: Path | None = None, allow_dir: bool = False) -> str | None:
        """Absolute media path, or None when skipping a missing clip (raises otherwise)."""
        found = self._index_of(self.media_root).find(names, base=base, allow_dir=allow_dir)
        if found is not None:
            return str(found.resolve())
        shown = next((n for n in names if n), "?")
        if self.skip_missing:
            self.skipped.append(f"{where}: {shown}")
            return None
        raise ManifestError(f"{where}: no media file for clip {shown!r} under {self.media_root} "
                            f"(looked for {shown}.{{{','.join(e[1:] for e in MEDIA_EXTS)}}}"
                            f"{' or a frame folder' if allow_dir else ''}); set option media_root if the media are elsewhere, "
                            f"or missing='skip' to leave such rows out")

    def add(self, where: str, line: int, **fields: Any) -> None:
        rid = fields.get("id") or Path(fields["clip"]).stem
        if rid in self._ids:
            raise ManifestError(f"{where}: duplicate clip id {rid!r} (first at {self._ids[rid]})")
        self._ids[rid] = where
        fields.setdefault("split", None)
        if fields["split"] is None:
            fields["split"] = self.split_default
        fields.setdefault("source", self.source)
        fields.setdefault("license", self.license)
        self.rows.append(ManifestRow(id=rid, line=line, **{k: v for k, v in fields.items() if k != "id"}))


# ---------------------------------------------------------------- MER2023 / MER2024

def _mer(ctx: _Ctx) -> None:
    ls = get_label_set("mer")
    lang = str(ctx.opts.get("transcript_language", "english")).lower()
    if lang not in ("english", "chinese"):
        raise ManifestError(f"option transcript_language must be 'english' or 'chinese', not {lang!r}")
    expected = {"name": ("name",), "discrete": ("discrete",), "valence": ("valence",)}
    if ctx.src.is_file():
        label_files = [ctx.src]
    else:
        named = ctx.index.annotation_files(lambda p: p.suffix.lower() == ".csv" and "label" in p.name.lower())
        label_files = [p for p in named if _looks_like(p, ("name", "discrete"))]
        if not label_files:
            xl = ctx.index.annotation_files(lambda p: p.suffix.lower() in (".xlsx", ".xls") and "label" in p.name.lower())
            if xl:
                _no_excel(xl[0])
            if named:  # a label file whose header is not MER's: say what it has
                recs = _csv_records(named[0])
                _header_map(named[0], recs[0][1] if recs else [], expected, ("name", "discrete"), "MER label (name,discrete,valence)")
            raise ManifestError(f"{ctx.src}: no MER label CSV (a *label*.csv with columns name,discrete[,valence]) found")
    transcripts: dict[str, str] = {}
    tfiles = [Path(ctx.opts["transcripts"])] if ctx.opts.get("transcripts") else \
        ctx.index.annotation_files(lambda p: p.suffix.lower() == ".csv" and "transcri" in p.name.lower())
    for tf in tfiles:
        recs = _csv_records(tf)
        if not recs:
            continue
        cols = _header_map(tf, recs[0][1], {"name": ("name",), "chinese": ("chinese",), "english": ("english",)},
                           ("name", lang), "MER transcription (name,chinese,english)")
        for _, cells in recs[1:]:
            name, text = _cell(cells, cols["name"]), _cell(cells, cols[lang])
            if name and text and name not in transcripts:
                transcripts[name] = text
    for lf in label_files:
        recs = _csv_records(lf)
        if not recs:
            raise ManifestError(f"{lf}: empty label file (expected a header name,discrete,valence)")
        cols = _header_map(lf, recs[0][1], expected, ("name", "discrete"), "MER label (name,discrete,valence)")
        split = _split_of(lf)
        for line, cells in recs[1:]:
            where = _where(lf, line)
            name = _cell(cells, cols["name"])
            if not name:
                raise ManifestError(f"{where}: empty name")
            label = ctx.label(ls, _cell(cells, cols["discrete"]), where)
            val = _fnum(_cell(cells, cols.get("valence")), "valence", where, optional=True) if "valence" in cols else None
            clip = ctx.clip([name], where)
            if clip is None:
                continue
            ctx.add(where, line, id=name, clip=clip, label=label, split=split, valence=val,
                    transcript=transcripts.get(name), label_set=ls.name)


def _looks_like(path: Path, needed: Sequence[str]) -> bool:
    try:
        with open(path, encoding="utf-8-sig", errors="replace") as f:
            first = f.readline()
    except OSError:
        return False
    keys = {_key(c) for c in next(csv.reader([first]), [])}
    return all(_key(n) in keys for n in needed)


# ---------------------------------------------------------------- DFEW

def _fold(ctx: _Ctx) -> int:
    try:
        fold = int(ctx.opts.get("fold", 1))
    except (TypeError, ValueError):
        raise ManifestError(f"option fold must be 1-5, not {ctx.opts.get('fold')!r}") from None
    if not 1 <= fold <= 5:
        raise ManifestError(f"option fold must be 1-5, not {fold}")
    return fold


def _file_split(path: Path) -> str | None:
    """A single split file's split, from its name or its folder's (``test(single-labeled)/set_1.csv`` -> test)."""
    m = re.fullmatch(r"(train|training|test|val|valid|validation|dev)(\(.*\))?", path.parent.name.lower())
    return _split_of(path) or (_SPLIT_SYNONYMS[m.group(1)] if m else None)


def _fold_files(ctx: _Ctx, dataset: str, find, pattern: str, expected: str = "") -> list[tuple[Path, str | None]]:
    """The (file, split) pairs of a 5-fold dataset: SRC itself when it is one split file, else the
    train and test files of option ``fold`` that ``find(split, fold)`` locates (exactly one each)."""
    if ctx.src.is_file():
        return [(ctx.src, _file_split(ctx.src))]
    fold = _fold(ctx)
    files = []
    for split in ("train", "test"):
        found = find(split, fold)
        if not found:
            raise ManifestError(f"{ctx.src}: no {dataset} split file {pattern.format(split=split, fold=fold)} found{expected}")
        if len(found) > 1:
            raise ManifestError(f"{ctx.src}: several {dataset} {split} files for fold {fold}: {', '.join(map(str, found))}; pass one file as SRC")
        files.append((found[0], split))
    return files


def _dfew(ctx: _Ctx) -> None:
    ls = get_label_set("dfew")

    def find(split: str, fold: int) -> list[Path]:
        def pred(p: Path) -> bool:
            par = p.parent.name.lower()
            return (p.suffix.lower() == ".csv" and par.startswith(split) and "single" in par
                    and p.stem.lower() in (f"set_{fold}", f"{split}_set_{fold}"))
        return ctx.index.annotation_files(pred)

    files = _fold_files(ctx, "DFEW", find, "{split}(single-labeled)/set_{fold}.csv",
                        " (expected EmoLabel_DataSplit/train(single-labeled)/set_N.csv and test(single-labeled)/set_N.csv)")
    for path, split in files:
        recs = _csv_records(path)
        if not recs:
            raise ManifestError(f"{path}: empty split file (expected a header video_name,label)")
        cols = _header_map(path, recs[0][1], {"name": ("video_name", "video", "name", "clip"), "label": ("label", "emotion")},
                           ("name", "label"), "DFEW split (video_name,label)")
        for line, cells in recs[1:]:
            where = _where(path, line)
            raw = _cell(cells, cols["name"])
            if not raw:
                raise ManifestError(f"{where}: empty video_name")
            name = f"{int(raw):05d}" if raw.isdigit() else raw
            label = ctx.label(ls, _cell(cells, cols["label"]), where, numeric=True)
            clip = ctx.clip([name, raw], where)
            if clip is None:
                continue
            ctx.add(where, line, id=name, clip=clip, label=label, split=split, label_set=ls.name)


# ---------------------------------------------------------------- MAFW

def _mafw(ctx: _Ctx) -> None:
    ls = get_label_set("mafw")

    def find(split: str, fold: int) -> list[Path]:
        found = ctx.index.annotation_files(lambda p: p.stem.lower() == split and p.suffix.lower() in (".txt", ".csv")
                                           and p.parent.name.lower() in (f"set_{fold}", f"set{fold}", f"fold_{fold}", f"fold{fold}"))
        found = [p for p in found if "single" in str(p.relative_to(ctx.root)).lower()] or found
        if len(found) > 1:
            found = [p for p in found if "no_caption" in str(p).lower()] or found
        return found

    files = _fold_files(ctx, "MAFW", find, ".../single/.../set_{fold}/{split}.txt")
    for path, split in files:
        for line, name, label_raw, rest in _mafw_lines(path):
            where = _where(path, line)
            label = ctx.label(ls, label_raw, where, numeric=True)
            stem = Path(name).stem if Path(name).suffix.lower() in MEDIA_EXTS else name
            clip = ctx.clip([name], where, base=path.parent)
            if clip is None:
                continue
            ctx.add(where, line, id=stem, clip=clip, label=label, split=split, label_set=ls.name,
                    clues=[rest] if rest else None)


def _mafw_lines(path: Path) -> list[tuple[int, str, str, str]]:
    """(line, clip, label, description) from a whitespace label list (``00025.mp4 anger``) or a CSV."""
    out: list[tuple[int, str, str, str]] = []
    if path.suffix.lower() in (".csv", ".tsv"):
        recs = _csv_records(path)
        if not recs:
            raise ManifestError(f"{path}: empty label list")
        head = [_key(c) for c in recs[0][1]]
        has_header = any(h in head for h in ("clip", "video", "videoname", "name", "path", "file")) and any(
            h in head for h in ("label", "emotion", "singlelabel"))
        if has_header:
            cols = _header_map(path, recs[0][1], {"name": ("clip", "video", "video_name", "name", "path", "file"),
                                                  "label": ("label", "emotion", "single_label"), "text": ("caption", "description", "text")},
                               ("name", "label"), "MAFW label list (clip,label)")
            recs = recs[1:]
        else:
            cols = {"name": 0, "label": 1, "text": 2}
        for line, cells in recs:
            if len(cells) < 2:
                raise ManifestError(f"{_where(path, line)}: expected `clip,label`, found {','.join(cells)!r}")
            out.append((line, _cell(cells, cols["name"]), _cell(cells, cols["label"]), _cell(cells, cols.get("text"))))
        return out
    for i, raw in enumerate(_read_text(path).splitlines(), 1):
        if not raw.strip():
            continue
        parts = raw.strip().split(None, 2)
        if len(parts) < 2:
            raise ManifestError(f"{_where(path, i)}: expected `clip label` (e.g. `00025.mp4 anger`), found {raw.strip()!r}")
        out.append((i, parts[0], parts[1], parts[2].strip() if len(parts) > 2 else ""))
    return out


# ---------------------------------------------------------------- BAH

_SPLIT_FILE = re.compile(r"^(train|training|val|valid|validation|dev|test)([_\-.].*)?$", re.I)


def _bah(ctx: _Ctx) -> None:
    ls = get_label_set("bah")
    if ctx.opts.get("videos_root"):
        ctx.media_root = Path(ctx.opts["videos_root"]).expanduser()
        if not ctx.media_root.is_dir():
            raise ManifestError(f"option videos_root: {ctx.media_root} is not a folder")
    videos_root = ctx.media_root
    by_folder = _bool_opt(ctx.opts.get("subject_from_folder", False), "subject_from_folder")
    if ctx.src.is_file():
        files = [ctx.src]
    else:
        files = ctx.index.annotation_files(lambda p: p.suffix.lower() in (".txt", ".csv") and bool(_SPLIT_FILE.match(p.stem)))
        if not files:
            raise ManifestError(f"{ctx.src}: no BAH split files (train.txt, val.txt, test.txt) found")
        splits: dict[str, list[Path]] = {}
        for f in files:
            splits.setdefault(_split_of(f) or "", []).append(f)
        dup = {s: fs for s, fs in splits.items() if len(fs) > 1}
        if dup:
            s, fs = next(iter(dup.items()))
            raise ManifestError(f"{ctx.src}: several BAH {s} split files: {', '.join(map(str, fs))}; pass one file as SRC")
    for path in files:
        split = _split_of(path)
        for i, raw in enumerate(_read_text(path).splitlines(), 1):
            if not raw.strip():
                continue
            where = _where(path, i)
            parts = raw.strip().split(",", 2)
            if len(parts) < 2:
                raise ManifestError(f"{where}: not the BAH layout: expected `video_path,label,transcript`, found {raw.strip()[:60]!r}")
            vpath, lab = parts[0].strip(), parts[1].strip()
            text = parts[2].strip() if len(parts) > 2 else ""
            if i == 1 and _key(vpath) in ("videopath", "video", "path") and _key(lab) == "label":
                continue  # a header line
            if len(text) >= 2 and text[0] == text[-1] == '"':
                text = text[1:-1].replace('""', '"')
            label = ctx.label(ls, lab, where)
            p = Path(vpath)
            clip = ctx.clip([vpath, p.name], where, base=videos_root)
            if clip is None:
                continue
            rid = p.with_suffix("").as_posix().replace("/", "_") if p.suffix.lower() in MEDIA_EXTS else p.as_posix().replace("/", "_")
            subject = p.parent.name if by_folder and str(p.parent) not in ("", ".") else None
            ctx.add(where, i, id=rid, clip=clip, label=label, split=split, transcript=text or None,
                    subject=subject, label_set=ls.name)


# ---------------------------------------------------------------- MERR (Emotion-LLaMA)

def _merr(ctx: _Ctx) -> None:
    ls = ctx.label_set("mer")
    if ctx.opts.get("annotations"):
        ann_files = [Path(ctx.opts["annotations"])]
    elif ctx.src.is_file():
        ann_files = [ctx.src]
    else:
        ann_files = [p for p in ctx.index.annotation_files(lambda p: p.suffix.lower() == ".txt") if _merr_txt(p)]
        if not ann_files:
            raise ManifestError(f"{ctx.src}: no MERR annotation .txt (lines `name n_frames label`) found")
    if ctx.opts.get("captions"):
        json_files = [Path(ctx.opts["captions"])]
    else:
        json_files = ctx.index.annotation_files(lambda p: p.suffix.lower() == ".json")
    captions: dict[str, str] = {}
    rank = {"smp_reason_caption": 0, "reason_caption": 1, "caption": 2}
    best: dict[str, int] = {}
    for jf in json_files:
        try:
            data = json.loads(_read_text(jf))
        except json.JSONDecodeError as e:
            raise ManifestError(f"{jf}: not valid JSON ({e.msg}, line {e.lineno})") from None
        if not isinstance(data, dict):
            if ctx.opts.get("captions"):
                raise ManifestError(f"{jf}: expected a JSON object {{name: {{\"smp_reason_caption\"|\"caption\": ...}}}}, found {type(data).__name__}")
            continue
        for name, entry in data.items():
            if not isinstance(entry, dict):
                continue
            for k, r in rank.items():
                v = entry.get(k)
                if isinstance(v, str) and v.strip() and r < best.get(name, 99):
                    captions[name], best[name] = v.strip(), r
    transcripts: dict[str, str] = {}
    if ctx.opts.get("transcripts"):
        tfiles = [Path(ctx.opts["transcripts"])]
    else:
        tfiles = [p for p in ctx.index.annotation_files(lambda p: p.suffix.lower() == ".csv") if _looks_like(p, ("name", "sentence"))]
    for tf in tfiles:
        recs = _csv_records(tf)
        if not recs:
            continue
        cols = _header_map(tf, recs[0][1], {"name": ("name",), "sentence": ("sentence", "transcript", "english")},
                           ("name", "sentence"), "MERR transcripts (name,sentence)")
        for _, cells in recs[1:]:
            n, s = _cell(cells, cols["name"]), _cell(cells, cols["sentence"])
            if n and s and n not in transcripts:
                transcripts[n] = s
    for af in ann_files:
        for i, raw in enumerate(_read_text(af).splitlines(), 1):
            if not raw.strip():
                continue
            where = _where(af, i)
            parts = raw.split()
            if len(parts) != 3 or not parts[1].isdigit():
                raise ManifestError(f"{where}: not the MERR layout: expected `name n_frames label`, found {raw.strip()[:60]!r}")
            name, n_frames, lab = parts
            label = ctx.label(ls, lab, where)
            clip = ctx.clip([name], where)
            if clip is None:
                continue
            cap = captions.get(name)
            ctx.add(where, i, id=name, clip=clip, label=label, transcript=transcripts.get(name),
                    clues=[cap] if cap else None, label_set=ls.name, meta={"n_frames": int(n_frames)})


def _merr_txt(path: Path) -> bool:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            first = next((ln for ln in f if ln.strip()), "")
    except OSError:
        return False
    parts = first.split()
    return len(parts) == 3 and parts[1].isdigit()


# ---------------------------------------------------------------- CASME II / CAS(ME)^2

def _fps(ctx: _Ctx, default: float) -> tuple[float, float]:
    try:
        fps = float(ctx.opts.get("fps", default))
        first = float(ctx.opts.get("first_frame", 0))
    except (TypeError, ValueError):
        raise ManifestError(f"options fps and first_frame must be numbers (got {ctx.opts.get('fps')!r}, {ctx.opts.get('first_frame')!r})") from None
    if fps <= 0:
        raise ManifestError(f"option fps must be positive, not {fps}")
    return fps, first


def _seconds(frame: float | None, fps: float, first: float) -> float | None:
    return None if frame is None else round((frame - first) / fps, 6)


def _subject_name(raw: str, prefix: str) -> str:
    v = raw.strip()
    if re.fullmatch(r"\d+", v):
        return f"{prefix}{int(v):02d}"
    return v


def _interval(onset: float, apex: float | None, offset: float | None, fps: float, first: float, where: str, **extra: Any) -> dict:
    if offset is not None and offset < onset:
        raise ManifestError(f"{where}: offset frame {offset:g} is before onset frame {onset:g}")
    if apex is not None and not (onset <= apex and (offset is None or apex <= offset)):
        raise ManifestError(f"{where}: apex frame {apex:g} is outside onset..offset ({onset:g}..{offset if offset is not None else '?'})")
    d: dict[str, Any] = {"onset_s": _seconds(onset, fps, first)}
    if apex is not None:
        d["apex_s"] = _seconds(apex, fps, first)
    if offset is not None:
        d["offset_s"] = _seconds(offset, fps, first)
    d.update({k: v for k, v in extra.items() if v not in (None, "")})
    d["onset_frame"] = int(onset) if onset.is_integer() else onset
    if apex is not None:
        d["apex_frame"] = int(apex) if apex.is_integer() else apex
    if offset is not None:
        d["offset_frame"] = int(offset) if offset.is_integer() else offset
    return d


def _casme_files(ctx: _Ctx, needed: Sequence[str] | None) -> list[Path]:
    if ctx.src.is_file():
        _no_excel(ctx.src)
        return [ctx.src]
    files = ctx.index.annotation_files(lambda p: p.suffix.lower() in (".csv", ".tsv"))
    if needed:
        files = [p for p in files if _looks_like(p, needed)]
    if not files:
        xl = ctx.index.annotation_files(lambda p: p.suffix.lower() in (".xlsx", ".xls"))
        if xl:
            _no_excel(xl[0])
    return files


def _casme2(ctx: _Ctx) -> None:
    """CASME II. The dataset ships image-sequence folders (``sub01/EP02_01f/img46.jpg``): when no video file
    ``EP02_01f.<ext>`` exists under a ``sub01`` folder, ``clip`` is that frame folder's path. Subjects are
    written ``sub01`` (the folder naming). Interval seconds are ``(frame - first_frame) / fps``."""
    ls = get_label_set("casme")
    fps, first = _fps(ctx, 200.0)
    expected = {"subject": ("subject", "sub"), "filename": ("filename", "file name", "file"), "onset": ("onsetframe", "onset"),
                "apex": ("apexframe", "apex"), "offset": ("offsetframe", "offset"), "aus": ("action units", "aus", "au"),
                "emotion": ("estimated emotion", "emotion")}
    files = _casme_files(ctx, None if ctx.src.is_file() else ("subject", "filename", "onsetframe"))
    if not files:
        raise ManifestError(f"{ctx.src}: no CASME II coding CSV (columns Subject, Filename, OnsetFrame, ApexFrame, OffsetFrame, "
                            f"Action Units, Estimated Emotion) found")
    template = ctx.opts.get("clip_template")
    for path in files:
        recs = _csv_records(path)
        if not recs:
            raise ManifestError(f"{path}: empty coding sheet")
        cols = _header_map(path, recs[0][1], expected, ("subject", "filename", "onset", "offset", "emotion"),
                           "CASME II (Subject, Filename, OnsetFrame, ApexFrame, OffsetFrame, Action Units, Estimated Emotion)")
        for line, cells in recs[1:]:
            where = _where(path, line)
            subj_raw, fname = _cell(cells, cols["subject"]), _cell(cells, cols["filename"])
            if not subj_raw or not fname:
                raise ManifestError(f"{where}: empty Subject or Filename")
            subject = _subject_name(subj_raw, "sub")
            label = ctx.label(ls, _cell(cells, cols["emotion"]), where)
            onset = _fnum(_cell(cells, cols["onset"]), "OnsetFrame", where)
            apex = _fnum(_cell(cells, cols.get("apex")), "ApexFrame", where, optional=True)
            offset = _fnum(_cell(cells, cols["offset"]), "OffsetFrame", where, optional=True)
            interval = _interval(onset, apex, offset, fps, first, where, aus=_cell(cells, cols.get("aus")) or None)
            names = ([template.format(subject=subject, subject_raw=subj_raw, filename=fname, video=fname)] if template else []) + [
                f"{subject}/{fname}", f"{subject}_{fname}", f"{subj_raw}/{fname}", f"s{subj_raw}/{fname}"]
            clip = ctx.clip(names, where, allow_dir=True)
            if clip is None:
                continue
            ctx.add(where, line, id=f"{subject}_{fname}", clip=clip, label=label, subject=subject,
                    micro_expressions=[interval], label_set=ls.name)


def _casme_sq(ctx: _Ctx) -> None:
    """CAS(ME)^2: one manifest row per annotated expression interval of a long video (ids
    ``s15_<video>_<onset>``; several rows may share one clip). ``type`` (macro/micro) is kept in the
    interval; ``selfReport`` goes to ``meta.self_report``. Apex/offset frames of 0 mean "not given"."""
    ls = get_label_set("casme")
    fps, first = _fps(ctx, 30.0)
    files = _casme_files(ctx, None)
    if not ctx.src.is_file():
        files = [p for p in files if _casme_sq_like(p)]
    if not files:
        raise ManifestError(f"{ctx.src}: no CAS(ME)^2 CSV (headerless `subject,video,onset,apex,offset,au,emotion,type,selfReport`) found")
    template = ctx.opts.get("clip_template")
    for path in files:
        recs = _csv_records(path)
        for n, (line, cells) in enumerate(recs):
            where = _where(path, line)
            if n == 0 and len(cells) >= 3 and not _is_num(cells[2]):
                if _key(cells[2]) in ("onset", "onsetframe"):
                    continue  # tolerate a header row
                raise ManifestError(f"{path}: not the CAS(ME)^2 layout: expected headerless rows `subject,video,onset,apex,offset,au,"
                                    f"emotion,type,selfReport`, found {','.join(cells)[:80]!r}")
            if len(cells) < 7:
                raise ManifestError(f"{where}: expected at least 7 cells `subject,video,onset,apex,offset,au,emotion[,type,selfReport]`, "
                                    f"found {len(cells)}")
            subj_raw, video = cells[0], cells[1]
            subject = _subject_name(subj_raw, "s")
            onset = _fnum(cells[2], "onset", where)
            apex = _fnum(cells[3], "apex", where, optional=True) or None
            offset = _fnum(cells[4], "offset", where, optional=True) or None
            label = ctx.label(ls, cells[6], where)
            etype = _expr_type(cells[7] if len(cells) > 7 else "")
            self_report = cells[8] if len(cells) > 8 else ""
            interval = _interval(onset, apex, offset, fps, first, where, aus=cells[5] or None, type=etype)
            names = ([template.format(subject=subject, subject_raw=subj_raw, video=video, filename=video)] if template else []) + [
                f"{subject}/{video}", f"{subj_raw}/{video}", f"{subj_raw}_{video}", f"{subject}_{video}", video]
            clip = ctx.clip(names, where)
            if clip is None:
                continue
            ctx.add(where, line, id=f"{subject}_{video}_{int(onset) if onset.is_integer() else onset}", clip=clip, label=label,
                    subject=subject, micro_expressions=[interval], label_set=ls.name,
                    meta={"self_report": self_report} if self_report else None)


def _is_num(v: str) -> bool:
    try:
        float(v)
        return True
    except ValueError:
        return False


def _expr_type(v: str) -> str | None:
    k = v.strip().lower()
    if not k:
        return None
    if k.startswith("macro"):
        return "macro"
    if k.startswith("micro"):
        return "micro"
    return k


def _casme_sq_like(path: Path) -> bool:
    try:
        with open(path, encoding="utf-8-sig", errors="replace") as f:
            lines = [ln for ln in (f.readline() for _ in range(2)) if ln.strip()]
    except OSError:
        return False
    for ln in lines:
        cells = next(csv.reader([ln]), [])
        if len(cells) >= 7 and _is_num(cells[2].strip()):
            return True
    return False


# ---------------------------------------------------------------- generic CSV / JSONL

def _generic(ctx: _Ctx) -> None:
    ls = ctx.label_set(None)
    if not ctx.src.is_file():
        raise ManifestError(f"{ctx.src}: format 'csv' reads one .csv, .tsv or .jsonl file")
    mapping = _mapping_opt(ctx.opts.get("columns"), "columns")
    bad = sorted(k for k in mapping if k not in COLUMNS)
    if bad:
        raise ManifestError(f"option columns: unknown manifest column(s) {', '.join(bad)}; known: {', '.join(COLUMNS)}")
    label_map = {k.strip().lower(): v for k, v in _mapping_opt(ctx.opts.get("label_map"), "label_map").items()}
    path = ctx.src
    suffix = path.suffix.lower()
    records: list[tuple[int, dict[str, Any]]] = []
    if suffix in (".jsonl", ".ndjson", ".json"):
        records += list(jsonl_objects(path, _read_text(path)))
        found_cols = sorted({k for _, r in records for k in r})
    elif suffix in (".csv", ".tsv"):
        recs = _csv_records(path)
        if not recs:
            raise ManifestError(f"{path}: empty file (no header row)")
        header = recs[0][1]
        found_cols = header
        for line, cells in recs[1:]:
            if len(cells) > len(header):
                raise ManifestError(f"{_where(path, line)}: more cells than header columns")
            records.append((line, {h: c for h, c in zip(header, cells) if c != ""}))
    else:
        _no_excel(path)
        raise ManifestError(f"{path}: format 'csv' reads .csv, .tsv or .jsonl, not {suffix or 'no extension'!r}")
    src_col = {c: mapping.get(c, c) for c in COLUMNS}
    need = [src_col["clip"], src_col["label"]]
    if not all(n in found_cols for n in need) and (records or suffix in (".csv", ".tsv")):
        raise ManifestError(f"{path}: expected columns {', '.join(repr(n) for n in need)} (clip, label; option columns maps them); "
                            f"found {', '.join(repr(c) for c in found_cols) or 'none'}")
    if not records:
        raise ManifestError(f"{path}: no rows")
    for line, rec in records:
        where = _where(path, line)
        raw: dict[str, Any] = {}
        for c in COLUMNS:
            v = rec.get(src_col[c])
            if v is not None and v != "":
                raw[c] = v
        clip_val = str(raw.get("clip", "")).strip()
        lab_val = str(raw.get("label", "")).strip()
        if not clip_val:
            raise ManifestError(f"{where}: column {src_col['clip']!r} (clip) is empty")
        if "split" in raw:
            raw["split"] = _norm_split(str(raw["split"]), where)
        raw["label"] = ctx.label(ls, label_map.get(lab_val.lower(), lab_val), where)
        clip = ctx.clip([clip_val], where, base=path.parent)
        if clip is None:
            continue
        raw["clip"] = clip
        row = parse_row(raw, where, line)
        fields = {k: getattr(row, k) for k in COLUMNS if k != "id" and getattr(row, k) not in (None, "", [], {})}
        fields["label_set"] = ls.name
        if ctx.opts.get("source") or not fields.get("source"):
            fields["source"] = ctx.source
        if ctx.opts.get("license") or not fields.get("license"):
            fields["license"] = ctx.license
        rid = str(rec.get(src_col["id"]) or "").strip() or Path(clip_val).stem
        ctx.add(where, line, id=rid, **fields)


# ---------------------------------------------------------------- entry point

_CONVERTERS: dict[str, tuple[Callable[[_Ctx], None], tuple[str, ...]]] = {
    "mer2023": (_mer, ("transcripts", "transcript_language")),
    "mer2024": (_mer, ("transcripts", "transcript_language")),
    "dfew": (_dfew, ("fold",)),
    "mafw": (_mafw, ("fold",)),
    "bah": (_bah, ("videos_root", "subject_from_folder")),
    "merr": (_merr, ("annotations", "captions", "transcripts", "label_set", "labels")),
    "casme2": (_casme2, ("fps", "first_frame", "clip_template")),
    "casme_sq": (_casme_sq, ("fps", "first_frame", "clip_template")),
    "csv": (_generic, ("columns", "label_set", "labels", "label_map")),
}


OPTIONS: dict[str, tuple[str, ...]] = {fmt: (*_COMMON_OPTIONS, *opts) for fmt, (_, opts) in _CONVERTERS.items()}


def convert(fmt: str, src: Path, out_manifest: Path, **options: Any) -> ConvertedRows:
    """Read ``src`` in layout ``fmt`` (see :data:`FORMATS`), write ``out_manifest`` (.jsonl or .csv), return the rows.

    The result is a list of :class:`ManifestRow` with a ``skipped`` attribute (clips left out by ``missing="skip"``).
    :data:`OPTIONS` names each format's options (besides the common ones: missing, source, license, split, media_root):

    - mer2023 / mer2024: ``transcripts`` (a CSV; default: every *transcri*.csv found), ``transcript_language``
      (english | chinese). Label set mer; valence kept as given.
    - dfew: ``fold`` 1-5 (default 1): train(single-labeled)/set_N.csv -> train, test(single-labeled)/set_N.csv -> test;
      numeric labels 1-7; ids zero-padded to 5 digits (00001). A single split file takes its split from its folder.
    - mafw: ``fold`` 1-5 (default 1), read from the single-expression set; numeric labels 1-11 in the set's order;
      text after the label on a line becomes the row's clue.
    - bah: ``videos_root`` (= media_root), ``subject_from_folder`` (the video path's folder is the subject; off by default).
    - merr: ``annotations`` (.txt), ``captions`` (.json), ``transcripts`` (.csv) override the files found;
      ``label_set``/``labels`` (default mer; MERR also uses fear, contempt, doubt: pass a custom set for those).
    - casme2: ``fps`` (default 200), ``first_frame`` (default 0: seconds = (frame - first_frame) / fps),
      ``clip_template`` (e.g. "{subject}/{filename}"). When no video exists, ``clip`` is the frame folder sub01/EP02_01f.
    - casme_sq: ``fps`` (default 30), ``first_frame``, ``clip_template`` ({subject}, {subject_raw}, {video}).
    - csv: ``columns`` {manifest column: file column} (or "clip=path,label=emotion"), ``label_set``, ``labels``,
      ``label_map`` {file value: label}.
    """
    key = fmt.strip().lower()
    if key not in _CONVERTERS:
        raise ManifestError(f"unknown dataset format {fmt!r}; expected one of {', '.join(FORMATS)}")
    src, out_manifest = Path(src).expanduser(), Path(out_manifest).expanduser()
    if not src.exists():
        raise ManifestError(f"{src}: no such file or folder")
    if out_manifest.suffix.lower() not in (".jsonl", ".csv"):
        raise ManifestError(f"{out_manifest}: write a manifest as .csv or .jsonl")
    fn, allowed = _CONVERTERS[key]
    ctx = _Ctx(key, src, {k: v for k, v in options.items() if v is not None}, allowed)
    fn(ctx)
    if ctx.skipped:
        log.warning("%s: %d clip(s) without media left out (missing='skip'), first: %s", src, len(ctx.skipped), ctx.skipped[0])
    if not ctx.rows:
        raise ManifestError(f"{src}: no rows to write" + (f" ({len(ctx.skipped)} clip(s) without media skipped)" if ctx.skipped else ""))
    write_manifest(ctx.rows, out_manifest)
    return ConvertedRows(ctx.rows, ctx.skipped)
