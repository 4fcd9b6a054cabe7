"""Writes that a crash cannot leave half done: the one implementation the project uses.

    atomic_write_text(path, text)     a temporary beside it, fsync, os.replace: the old or the new file, never a torn one
    atomic_write_json(path, obj)
    append_jsonl(path, record)        one line, flushed and fsync'd before it returns (a result log a kill cannot lose)
    read_jsonl(path)                  the complete lines; a torn last line (the writer was killed mid-line) is dropped
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


def atomic_write_text(path: str | Path, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def append_jsonl(path: str | Path, record: dict) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record, ensure_ascii=False) + "\n")
        f.flush()
        os.fsync(f.fileno())


def read_jsonl(path: str | Path, repair: bool = False) -> list[dict]:
    """The records of a JSONL log. A last line without its newline is a write cut short: it is
    dropped, and with ``repair`` cut from the file, so the next append starts on a clean line."""
    path = Path(path)
    if not path.exists():
        return []
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1
    if repair and end < len(data):
        with open(path, "r+b") as f:
            f.truncate(end)
    return [json.loads(line) for line in data[:end].decode("utf-8").splitlines() if line.strip()]


def scratch_dir(prefix: str = "deemo-") -> tempfile.TemporaryDirectory:
    """A temporary folder in RAM when the machine has /dev/shm (tmpfs), else the temp dir: media in
    flight (a request's upload, the model's de-identified media) are never written to disk."""
    root = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
    return tempfile.TemporaryDirectory(prefix=prefix, dir=root)
