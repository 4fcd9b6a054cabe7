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


# the files of a checkpoint folder that decide its answers (its adapter folder counts whole); caches
# (fuser_features.jsonl), training logs and plots do not
CHECKPOINT_CONTENT = ("config.json", "model.safetensors", "fuser.json", "chat_template.jinja", "tokenizer.json", "tokenizer_config.json", "preprocessor_config.json")


def checkpoint_digest(checkpoint: str | Path, adapter_dir: str = "adapter") -> str:
    """sha256 over the content files of a checkpoint folder (names and digests): two folders answer
    alike only if these agree, whatever their paths (a checkpoint retrained in place changes it)."""
    root = Path(checkpoint)
    files = [root / n for n in CHECKPOINT_CONTENT if (root / n).is_file()]
    if (root / adapter_dir).is_dir():
        files += sorted(p for p in (root / adapter_dir).rglob("*") if p.is_file())
    h = hashlib.sha256()
    for f in files:
        h.update(f"{f.relative_to(root)}\0{file_digest(f)}\0".encode())
    return h.hexdigest()
