"""Two runs of the same task on the same items: which is better, by how much, and is it more than noise.

    deemo eval compare RUN_A RUN_B [--plot FILE]

The items both runs finished are compared; each figure's difference A - B comes with a 95 % interval
and a two-sided p-value from a paired bootstrap (the same resampled items for both runs).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .. import metrics as M
from ..errors import DeemoError


def _figures(task: str):
    """{name: fn(records subset) -> float} per task."""
    if task in ("recognition", "ambivalence"):
        from sklearn.metrics import f1_score

        def pair(recs):
            return [r["row"]["label"] for r in recs], [r["prediction"]["label"] for r in recs]

        return {
            "accuracy": lambda recs: M.war(*pair(recs)),
            "uar": lambda recs: M.uar(*pair(recs)),
            "macro_f1": lambda recs: float(f1_score(*pair(recs), labels=recs[0]["row"]["label_set"]["labels"], average="macro", zero_division=0)),
        }
    if task == "reasoning":
        figs = {k: (lambda recs, k=k: float(np.mean([r["prediction"][k] for r in recs]))) for k in ("label_set_f1", "clue_set_f1")}
        for k in ("clue_overlap", "label_overlap"):
            figs[f"judge_{k}"] = lambda recs, k=k: _judge_mean(recs, k)
        return figs
    if task == "spotting":
        from .tasks.spotting import SpottingTask

        return {"spotting_f1": lambda recs: SpottingTask().metrics(recs)["spotting"]["f1"]}
    if task == "valence_arousal":
        from .tasks.valence_arousal import ValenceArousalTask

        return {f"{d}_ccc": (lambda recs, d=d: (ValenceArousalTask().metrics(recs, bootstrap=1).get(d) or {}).get("ccc", {}).get("value", float("nan"))) for d in ("valence", "arousal")}
    raise DeemoError(f"no comparison for task {task!r}")


def compare(run_a: str | Path, run_b: str | Path, n: int = 1000) -> dict:
    from .runner import records_of

    info_a, _, ra = records_of(run_a)
    info_b, _, rb = records_of(run_b)
    if info_a["task"] != info_b["task"]:
        raise DeemoError(f"{run_a} is a {info_a['task']} run and {run_b} a {info_b['task']} run; compare runs of one task")
    ia, ib = {r["id"]: r for r in ra}, {r["id"]: r for r in rb}
    ids = sorted(set(ia) & set(ib))
    if not ids:
        raise DeemoError(f"{run_a} and {run_b} have no finished item in common")
    a, b = [ia[i] for i in ids], [ib[i] for i in ids]
    out = {"task": info_a["task"], "a": str(run_a), "b": str(run_b), "items": len(ids), "only_a": len(ia) - len(ids), "only_b": len(ib) - len(ids), "figures": {}}
    for name, fn in _figures(info_a["task"]).items():
        va, vb = fn(a), fn(b)
        if np.isnan(va) or np.isnan(vb):
            continue
        d = M.paired_bootstrap(lambda ix, fn=fn: fn([a[i] for i in ix]), lambda ix, fn=fn: fn([b[i] for i in ix]), len(ids), n=n)
        out["figures"][name] = {"a": va, "b": vb, **d}
    return out


def plot(result: dict, path: str | Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(result["figures"])
    d = [result["figures"][k] for k in names]
    fig, ax = plt.subplots(figsize=(5.5, 0.6 + 0.5 * len(names)))
    y = np.arange(len(names))
    ax.errorbar([x["diff"] for x in d], y, xerr=[[x["diff"] - x["low"] for x in d], [x["high"] - x["diff"] for x in d]], fmt="o", capsize=4)
    ax.axvline(0, color="grey", lw=1)
    ax.set_yticks(y, [f"{k} (p={x['p']:.3f})" for k, x in zip(names, d)])
    ax.set_xlabel("A - B (95 % paired bootstrap CI)")
    ax.set_title(f"{Path(result['a']).name} vs {Path(result['b']).name}, {result['items']} items")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _judge_mean(recs: list[dict], key: str) -> float:
    """The mean judge score over the items the judge scored (0 is a score; unparsed replies are not)."""
    scores = [sc for r in recs if (sc := ((r.get("judge") or {}).get(key) or {}).get("score")) is not None]
    return float(np.mean(scores)) if scores else float("nan")
