"""``deemo data stats FILE``: labels per split and per subject, as a table and a PNG."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path

from ..errors import DeemoError
from .manifest import SPLITS


def read_rows(path: Path) -> list[dict]:
    """Rows of a JSONL file or of a built folder's split files (bad lines: run validate)."""
    files = [path / f"{s}.jsonl" for s in SPLITS if (path / f"{s}.jsonl").is_file()] if path.is_dir() else [path]
    if not files or not files[0].exists():
        raise DeemoError(f"{path}: no such file (or no split files in the folder)")
    rows = []
    for f in files:
        for i, line in enumerate(f.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError:
                    raise DeemoError(f"{f}:{i}: not valid JSON; run `deemo data validate {f}`") from None
    if not rows:
        raise DeemoError(f"{path}: no rows")
    return rows


def compute_stats(rows: list[dict]) -> dict:
    """Counts of labels per split, per subject and per kind (one row per clip and kind)."""
    labels = list(dict.fromkeys(l for r in rows for l in (r.get("label_set") or {}).get("labels", [])))
    labels += sorted({r.get("label") for r in rows} - set(labels) - {None})
    by_split: dict[str, Counter] = defaultdict(Counter)
    by_subject: dict[str, Counter] = defaultdict(Counter)
    kinds: Counter = Counter()
    clips: dict[str, set] = defaultdict(set)
    subject_splits: dict[str, set] = defaultdict(set)
    for r in rows:
        split = r.get("split") or "?"
        kinds[r.get("kind") or "?"] += 1
        key = r.get("clip_id") or r.get("id")
        if key in clips[split]:
            continue  # count clips, not rows: a clip has one row per kind
        clips[split].add(key)
        by_split[split][r.get("label")] += 1
        subj = r.get("subject") or "(none)"
        by_subject[subj][r.get("label")] += 1
        subject_splits[subj].add(split)
    leaks = sorted(s for s, sp in subject_splits.items() if len(sp) > 1 and s != "(none)")
    return {"labels": labels, "splits": {s: dict(c) for s, c in by_split.items()}, "subjects": {s: dict(c) for s, c in sorted(by_subject.items())}, "kinds": dict(kinds), "rows": len(rows), "clips": sum(len(v) for v in clips.values()), "subjects_in_several_splits": leaks}


def print_stats(stats: dict, console=None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    labels = stats["labels"]
    order = [s for s in SPLITS if s in stats["splits"]] + sorted(set(stats["splits"]) - set(SPLITS))
    t = Table(title=f"clips per label and split ({stats['clips']} clips, {stats['rows']} rows)")
    t.add_column("label")
    for s in order:
        t.add_column(s, justify="right")
    t.add_column("all", justify="right")
    for l in labels:
        counts = [stats["splits"][s].get(l, 0) for s in order]
        t.add_row(l, *map(str, counts), str(sum(counts)))
    t.add_row("[b]all[/b]", *(str(sum(stats["splits"][s].values())) for s in order), str(stats["clips"]))
    console.print(t)
    subj = stats["subjects"]
    t2 = Table(title=f"clips per label and subject ({len(subj)} subjects)")
    t2.add_column("subject")
    for l in labels:
        t2.add_column(l, justify="right")
    for s, c in subj.items():
        t2.add_row(s, *(str(c.get(l, 0)) for l in labels))
    console.print(t2)
    console.print("rows per kind: " + ", ".join(f"{k} {v}" for k, v in sorted(stats["kinds"].items())))
    if stats["subjects_in_several_splits"]:
        console.print(f"[yellow]subjects in more than one split (not subject-independent): {', '.join(stats['subjects_in_several_splits'])}[/yellow]")


def plot_stats(stats: dict, png: Path) -> Path:
    """Two panels: stacked bars of labels per split, and a label x subject heat map."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    labels = stats["labels"]
    order = [s for s in SPLITS if s in stats["splits"]] + sorted(set(stats["splits"]) - set(SPLITS))
    subjects = list(stats["subjects"])
    fig, (a, b) = plt.subplots(1, 2, figsize=(12, max(4, 0.25 * len(subjects) + 2)), gridspec_kw={"width_ratios": [1, 1.4]})
    bottom = np.zeros(len(order))
    for l in labels:
        vals = np.array([stats["splits"][s].get(l, 0) for s in order])
        a.bar(order, vals, bottom=bottom, label=l)
        bottom += vals
    a.set_ylabel("clips")
    a.set_title("labels per split")
    a.legend(fontsize=8)
    m = np.array([[stats["subjects"][s].get(l, 0) for l in labels] for s in subjects]) if subjects else np.zeros((1, len(labels)))
    im = b.imshow(m, aspect="auto", cmap="viridis")
    b.set_xticks(range(len(labels)), labels, rotation=45, ha="right", fontsize=8)
    b.set_yticks(range(len(subjects)), subjects, fontsize=7)
    b.set_title("labels per subject")
    fig.colorbar(im, ax=b, label="clips")
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    tmp = png.with_name(f".{png.stem}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(png)
    return png
