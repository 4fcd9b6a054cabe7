"""Content digests of files, memoised per (path, mtime, size): the keys of every on-disk cache."""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path


@lru_cache(maxsize=65536)
def _digest(path: str, mtime_ns: int, size: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 22):
            h.update(block)
    return h.hexdigest()


def file_digest(path: str | Path) -> str:
    """sha256 of the file's bytes (recomputed only when its mtime or size changes)."""
    p = Path(path).resolve()
    st = p.stat()
    return _digest(str(p), st.st_mtime_ns, st.st_size)
