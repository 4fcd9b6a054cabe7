"""Readers for facial-behaviour files: OpenFace 2 AU tracks and micro-expression annotation tables.

- :func:`read_openface_csv`: OpenFace 2 ``FeatureExtraction`` CSV -> :class:`AUTrack` (timestamps,
  success mask, AU intensity ``AUxx_r`` 0-5 and presence ``AUxx_c`` 0/1 series). OpenFace writes a
  space after every comma, so its column names start with one (`` timestamp``); both forms are read.
- :func:`read_casme2`: the CASME II coding table (``Subject, Filename, OnsetFrame, ApexFrame,
  OffsetFrame, Action Units, Estimated Emotion``; xlsx or csv). One CASME II apex is written ``/``.
- :func:`read_casme_sq`: the headerless CAS(ME)^2 table (``subject, video, onset, apex, offset, au,
  emotion, type, selfReport``; type macro-expression / micro-expression). An offset of 0 means the
  offset was not annotated: as in the MEGC reference code (SoftNet, MEAN) the interval then ends at
  the apex, and ``offset_known`` is False.
- :func:`to_intervals`: annotations -> ``{video: [(onset, offset[, label]), ...]}`` for
  ``deemo_llama.metrics.spotting_f1`` / ``strs`` (frames, as annotated).

Every malformed file raises :class:`DeemoError` with a one-line message naming the problem.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...errors import DeemoError
from .spotting import frame_rate

CASME2_COLUMNS = ("Subject", "Filename", "OnsetFrame", "ApexFrame", "OffsetFrame", "Action Units", "Estimated Emotion")
CASME_SQ_COLUMNS = ("subject", "video", "onset", "apex", "offset", "au", "emotion", "type", "selfReport")
_AU_R = re.compile(r"^AU(\d+)_r$")
_AU_C = re.compile(r"^AU(\d+)_c$")


@dataclass
class AUTrack:
    """One face's OpenFace 2 AU track. Series are [T]; ``intensity`` is 0-5, ``presence`` 0/1."""

    path: Path
    times: np.ndarray  # [T] s (OpenFace's timestamp column)
    frames: np.ndarray  # [T] int, 1-based as OpenFace writes them
    success: np.ndarray  # [T] bool: the tracker converged on this frame
    confidence: np.ndarray  # [T] 0-1
    intensity: dict[str, np.ndarray]  # "AU12" -> [T]
    presence: dict[str, np.ndarray]  # "AU12" -> [T]
    face_id: int = 0

    @property
    def fps(self) -> float:
        """Frame rate from the timestamps (0 when they do not advance)."""
        return frame_rate(self.times) if np.any(np.diff(self.times) > 0) else 0.0


@dataclass
class MEAnnotation:
    """One annotated facial expression (frames as in the table; apex None when not annotated)."""

    subject: str
    video: str
    onset: int
    apex: int | None
    offset: int
    aus: str
    emotion: str
    kind: str  # "micro" or "macro"
    offset_known: bool = True

    @property
    def key(self) -> str:
        """The video key of :func:`to_intervals`: ``subject/video``."""
        return f"{self.subject}/{self.video}"


def _check_file(path: Path, what: str) -> None:
    if not path.exists():
        raise DeemoError(f"{path}: no such file (expected {what})")
    if path.is_dir():
        raise DeemoError(f"{path}: is a directory, not {what}")
    if path.stat().st_size == 0:
        raise DeemoError(f"{path}: file is empty (expected {what})")


def _read_table(path: Path, what: str, header: bool, sep: str | None = None, usecols=None):
    """A csv/tsv/xlsx file as a pandas DataFrame of strings (one clear error per failure).

    ``sep`` None sniffs the delimiter (spreadsheet exports use ',', ';' or tabs): fine for small
    annotation tables; OpenFace files are large and always comma-separated.
    """
    import pandas as pd

    _check_file(path, what)
    kw = {"header": 0 if header else None, "dtype": str, "usecols": usecols}
    suffix = path.suffix.lower()
    try:
        if suffix in (".xlsx", ".xlsm", ".xls"):
            engine = "xlrd" if suffix == ".xls" else "openpyxl"  # named, so a missing reader is reported as such
            try:
                return pd.read_excel(path, engine=engine, **kw)
            except ImportError:
                raise DeemoError(f"{path}: reading {suffix} files needs the package {engine} (pip install {engine}), or export the sheet to CSV") from None
        return pd.read_csv(path, sep=sep, engine="c" if sep else "python", skipinitialspace=True, **kw)
    except DeemoError:
        raise
    except Exception as e:  # pandas raises ParserError, ValueError, UnicodeDecodeError, zipfile errors ...
        raise DeemoError(f"{path}: cannot be read as {what} ({type(e).__name__}: {(str(e).splitlines() or [''])[0][:120]})") from None


def _numeric(df, column: str, path: Path) -> np.ndarray:
    import pandas as pd

    values = pd.to_numeric(df[column], errors="coerce").to_numpy(dtype=float)
    bad = np.flatnonzero(np.isnan(values))
    if len(bad):
        raise DeemoError(f"{path}: column {column!r} has a non-numeric value {df[column].iloc[bad[0]]!r} in data row {bad[0] + 1}")
    return values


def read_openface_csv(path: str | Path, face_id: int | None = None) -> AUTrack:
    """Read an OpenFace 2 FeatureExtraction CSV (run with AU output, e.g. ``-aus``).

    With several faces (``face_id`` column) the one with the most successful frames is kept unless
    ``face_id`` is given. Rows are sorted by timestamp.
    """
    path = Path(path)
    # OpenFace writes ~700 columns (landmarks, pose, gaze ...): read only the ones used here
    wanted = {"frame", "face_id", "timestamp", "confidence", "success"}
    df = _read_table(path, "an OpenFace 2 FeatureExtraction CSV", header=True, sep=",", usecols=lambda c: c.strip() in wanted or bool(_AU_R.match(c.strip()) or _AU_C.match(c.strip())))
    df.columns = [str(c).strip() for c in df.columns]
    if "timestamp" not in df.columns:
        raise DeemoError(f"{path}: no 'timestamp' column; not an OpenFace 2 FeatureExtraction CSV (columns: {', '.join(df.columns[:6])} ...)")
    au_r = sorted((c for c in df.columns if _AU_R.match(c)), key=lambda c: int(_AU_R.match(c).group(1)))
    if not au_r:
        raise DeemoError(f"{path}: no AU intensity columns (AU01_r ... AU45_r); run OpenFace FeatureExtraction with AU output (-aus)")
    if len(df) == 0:
        raise DeemoError(f"{path}: has a header but no frames")
    if "face_id" in df.columns:
        ids = _numeric(df, "face_id", path).astype(int)
        ok = _numeric(df, "success", path) > 0 if "success" in df.columns else np.ones(len(df), bool)
        if face_id is None:
            face_id = int(max(set(ids), key=lambda i: (int(np.sum(ok[ids == i])), -i)))
        if face_id not in set(ids):
            raise DeemoError(f"{path}: no face_id {face_id} (the file holds {sorted(set(ids))})")
        df = df[ids == face_id]
    df = df.iloc[np.argsort(_numeric(df, "timestamp", path), kind="stable")]
    n = len(df)
    times = _numeric(df, "timestamp", path)
    frames = _numeric(df, "frame", path).astype(int) if "frame" in df.columns else np.arange(1, n + 1)
    success = _numeric(df, "success", path) > 0 if "success" in df.columns else np.ones(n, bool)
    confidence = _numeric(df, "confidence", path) if "confidence" in df.columns else success.astype(float)
    intensity = {f"AU{int(_AU_R.match(c).group(1)):02d}": _numeric(df, c, path) for c in au_r}
    presence = {f"AU{int(_AU_C.match(c).group(1)):02d}": _numeric(df, c, path) for c in df.columns if _AU_C.match(c)}
    return AUTrack(path, times, frames, success, confidence, intensity, presence, int(face_id or 0))


def _frame(value, column: str, row: int, path: Path, allow_missing: bool = False) -> int | None:
    """An annotated frame number; None for '/', '-' or blank when ``allow_missing``."""
    text = "" if value is None else str(value).strip()
    if text in ("", "/", "-", "nan", "NaN", "None") and allow_missing:
        return None
    try:
        number = float(text)
    except ValueError:
        raise DeemoError(f"{path}: {column} {text!r} in data row {row} is not a frame number") from None
    if number != int(number) or number < 0:
        raise DeemoError(f"{path}: {column} {text!r} in data row {row} is not a frame number")
    return int(number)


def _check_order(a: MEAnnotation, row: int, path: Path) -> MEAnnotation:
    if a.offset < a.onset:
        raise DeemoError(f"{path}: data row {row} has offset {a.offset} before onset {a.onset}")
    if a.apex is not None and not a.onset <= a.apex <= a.offset:
        raise DeemoError(f"{path}: data row {row} has apex {a.apex} outside onset {a.onset} - offset {a.offset}")
    return a


def _text(value) -> str:
    return "" if value is None or str(value) == "nan" else str(value).strip()


def read_casme2(path: str | Path) -> list[MEAnnotation]:
    """CASME II coding table -> micro-expression annotations keyed ``subNN/Filename`` (the
    dataset's folder layout, e.g. ``sub01/EP02_01f``)."""
    path = Path(path)
    df = _read_table(path, "a CASME II coding table", header=True)
    df.columns = [str(c).strip() for c in df.columns]
    missing = [c for c in CASME2_COLUMNS if c not in df.columns]
    if missing:
        raise DeemoError(f"{path}: missing CASME II column(s) {missing} (found {list(df.columns)[:8]})")
    out = []
    for i, r in enumerate(df.itertuples(index=False), start=1):
        row = dict(zip(df.columns, r))
        subject = _text(row["Subject"])
        if not subject:
            continue  # blank spreadsheet rows
        sid = f"sub{int(float(subject)):02d}" if subject.replace(".", "", 1).isdigit() else subject
        a = MEAnnotation(sid, _text(row["Filename"]), _frame(row["OnsetFrame"], "OnsetFrame", i, path), _frame(row["ApexFrame"], "ApexFrame", i, path, allow_missing=True), _frame(row["OffsetFrame"], "OffsetFrame", i, path), _text(row["Action Units"]), _text(row["Estimated Emotion"]), "micro")
        out.append(_check_order(a, i, path))
    if not out:
        raise DeemoError(f"{path}: the CASME II table has no annotation rows")
    return out


def _kind(text: str, row: int, path: Path) -> str:
    low = text.lower()
    if low.startswith("micro"):
        return "micro"
    if low.startswith("macro"):
        return "macro"
    raise DeemoError(f"{path}: type {text!r} in data row {row} is neither micro-expression nor macro-expression")


def read_casme_sq(path: str | Path) -> list[MEAnnotation]:
    """Headerless CAS(ME)^2 table -> macro- and micro-expression annotations keyed ``subject/video``.

    Offset 0 (not annotated): the interval ends at the apex (``offset_known`` False).
    """
    path = Path(path)
    df = _read_table(path, "a CAS(ME)^2 annotation table", header=False)
    if df.shape[1] < 8:
        raise DeemoError(f"{path}: {df.shape[1]} column(s); a CAS(ME)^2 table has {len(CASME_SQ_COLUMNS)} ({', '.join(CASME_SQ_COLUMNS)})")
    out = []
    for i, r in enumerate(df.itertuples(index=False), start=1):
        row = dict(zip(CASME_SQ_COLUMNS, r))
        subject = _text(row["subject"])
        if not subject:
            continue
        if i == 1 and subject.lower() == "subject":
            raise DeemoError(f"{path}: has a header row; the CAS(ME)^2 table is headerless (remove the first line)")
        onset = _frame(row["onset"], "onset", i, path)
        apex = _frame(row["apex"], "apex", i, path, allow_missing=True) or None  # frames are 1-based: 0 = not annotated
        offset = _frame(row["offset"], "offset", i, path)
        known = offset != 0
        if not known:
            if not apex:
                raise DeemoError(f"{path}: data row {i} has neither an offset nor an apex frame")
            offset = apex
        a = MEAnnotation(subject, _text(row["video"]), onset, apex, offset, _text(row["au"]), _text(row["emotion"]), _kind(_text(row["type"]), i, path), known)
        out.append(_check_order(a, i, path))
    if not out:
        raise DeemoError(f"{path}: the CAS(ME)^2 table has no annotation rows")
    return out


def to_intervals(annotations: list[MEAnnotation], kinds: tuple[str, ...] = ("micro", "macro"), label: bool = False) -> dict[str, list[tuple]]:
    """``{video key: [(onset, offset), ...]}`` (frames), or ``(onset, offset, emotion)`` with
    ``label``; only annotations whose kind is in ``kinds``. Input to metrics.spotting_f1 / strs."""
    out: dict[str, list[tuple]] = {}
    for a in annotations:
        if a.kind in kinds:
            out.setdefault(a.key, []).append((a.onset, a.offset, a.emotion) if label else (a.onset, a.offset))
    return out
