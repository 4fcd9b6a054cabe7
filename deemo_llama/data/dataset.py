"""Instruction rows as a Hugging Face ``datasets.Dataset``, media paths resolved.

    from deemo_llama.data import load_rows
    ds = load_rows("built/")                    # DatasetDict: train / validation / test
    train = load_rows("built/train.jsonl")      # one Dataset
    train.filter(lambda r: r["kind"] == "reasoning").map(...)

Plain ``datasets.load_dataset("json", data_files="built/train.jsonl")`` reads the same rows (every
message content is a list of parts, so each column has one Arrow type); ``load_rows`` adds absolute
``media`` and ``evidence`` paths so the rows work from any working directory.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import DeemoError
from .manifest import SPLITS


def _resolve(root: Path):
    def fn(row: dict) -> dict:
        out = {}
        for col in ("media", "evidence"):
            ref = row.get(col)
            if ref:
                p = Path(ref)
                out[col] = str(p if p.is_absolute() else (root / p).resolve())
        return out

    return fn


def load_rows(path: str | Path, split: str | None = None, resolve_media: bool = True):
    """A JSONL file -> ``datasets.Dataset``; a built folder -> ``DatasetDict`` of its split files
    (or the one ``split``)."""
    import datasets

    path = Path(path)
    if path.is_dir():
        files = {s: str(path / f"{s}.jsonl") for s in SPLITS if (path / f"{s}.jsonl").is_file() and (path / f"{s}.jsonl").stat().st_size}
        if split is not None:
            if split not in files:
                raise DeemoError(f"{path}: no non-empty {split}.jsonl (found: {', '.join(files) or 'none'})")
            files = {split: files[split]}
        if not files:
            raise DeemoError(f"{path}: no split files ({', '.join(s + '.jsonl' for s in SPLITS)}); build one with `deemo data build`")
        root = path
    elif path.is_file():
        files, root = {"train": str(path)}, path.parent
    else:
        raise DeemoError(f"{path}: no such file or folder")
    try:
        dd = datasets.load_dataset("json", data_files=files)
    except Exception as e:  # datasets wraps Arrow errors; name the file and tell what to run
        raise DeemoError(f"{path}: datasets cannot read these rows ({type(e).__name__}: {str(e)[:200]}); run `deemo data validate` on it") from None
    if resolve_media:
        dd = dd.map(_resolve(root), desc="resolving media")
    if path.is_file():
        ds = dd["train"]
        return ds.filter(lambda r: r["split"] == split) if split else ds
    return dd[split] if split else dd
