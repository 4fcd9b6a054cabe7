"""Instruction data: manifests in, validated JSON Lines rows out (``deemo data ...``).

    manifest.py  read/write build manifests (CSV or JSONL: clip, label, subject, transcript, clues, ...)
    labels.py    the field's label sets (MER, DFEW, MAFW, BAH, CASME, custom)
    rows.py      recognition / reasoning / tool-use rows from a clip's Evidence (the one prompt builder)
    build.py     ``deemo data build``: cached, resumable, subject-independent splits
    validate.py  ``deemo data validate``: every bad row with its line and reason
    dataset.py   rows as a ``datasets.Dataset`` with media resolved
    stats.py     ``deemo data stats``: labels per split and subject (table + PNG)
    convert.py   ``deemo data convert``: public dataset layouts -> manifests
    synth.py     ``deemo data synth``: a synthetic corpus whose clips each carry the label in one modality
"""

from __future__ import annotations


def load_rows(path, split=None, resolve_media=True):
    """See :func:`deemo_llama.data.dataset.load_rows`."""
    from .dataset import load_rows as _load

    return _load(path, split, resolve_media)


__all__ = ["load_rows"]
