"""Reports of a run: ``report.json`` (every figure), ``report.md`` (the tables a person reads) and
``report.html`` (one self-contained page: the tables and the plots inline, no external files).

    write_report(RUN_DIR)            re-scores the stored replies with the task's current parser first
    figures(report, records)         {name: matplotlib Figure} (the notebook draws the same)
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Sequence

from ..fsio import atomic_write_json, atomic_write_text, read_jsonl

WORST = 10  # items in the report's table of wrong answers


def build_report(out: str | Path, bootstrap: int = 1000) -> tuple[dict, list[dict]]:
    from .runner import records_of

    info, task, recs = records_of(out)
    errors = read_jsonl(Path(out) / "errors.jsonl")
    done = {r["id"] for r in recs}
    pending = sorted({e["id"] for e in errors} - done)
    seconds = [r["reply"].get("seconds") or 0.0 for r in recs]
    report = {"run": info, "n": len(recs), "failed_items": pending, "seconds_per_item": sum(seconds) / len(seconds) if seconds else None,
              "metrics": task.metrics(recs, bootstrap=bootstrap)}
    return plain(report), recs


def plain(obj):
    """JSON-ready: numpy scalars as Python numbers, NaN (a figure with no data) as None."""
    import math

    if isinstance(obj, dict):
        return {str(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    if hasattr(obj, "item") and not isinstance(obj, (str, bytes)):
        obj = obj.item()
    if isinstance(obj, float) and math.isnan(obj):
        return None
    return obj


def _fmt(v) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, dict) and "value" in v:
        return f"{v['value']:.3f} [{_fmt(v['low'])}, {_fmt(v['high'])}]" if v["value"] is not None else "n/a"
    if isinstance(v, float):
        return f"{v:.3f}"
    return str(v)


def _table(head: Sequence[str], rows: Sequence[Sequence]) -> str:
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    out += ["| " + " | ".join(_fmt(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def worst_items(report: dict, recs: list[dict]) -> list[dict]:
    """Wrong recognitions with the least confidence in the true label; for reasoning the lowest clue F1."""
    if "accuracy" in report["metrics"]:
        wrong = [r for r in recs if r["prediction"]["label"] != r["row"]["label"]]
        key = lambda r: (r["prediction"].get("scores") or {}).get(r["row"]["label"], 0.0)  # noqa: E731
        return sorted(wrong, key=key)[:WORST]
    if report["run"]["task"] == "reasoning":
        return sorted(recs, key=lambda r: r["prediction"]["clue_set_f1"])[:WORST]
    return []


def _cell(text: str | None, n: int) -> str:
    text = " ".join((text or "").split()).replace("|", "/")
    return text if len(text) <= n else text[: n - 1] + "…"


def _evidence(r: dict) -> str:
    """The transcript and the experts' findings the system answered from (as the reply stored them)."""
    ev = r["reply"].get("evidence") or {}
    said = ev.get("transcript") or r["row"].get("transcript") or ""
    return " ".join([f'Said: "{said}".' if said else "", *(x.lstrip("- ") for x in ev.get("findings") or [])]).strip()


def markdown(report: dict, recs: list[dict]) -> str:
    m, run = report["metrics"], report["run"]
    b = run["backend"]
    lines = [f"# Evaluation: {run['task']} on {Path(run['data']).name}", "",
             f"System: {b.get('checkpoint') or b.get('url')} ({b['kind']}{', model ' + b['model'] if b.get('model') else ''}). "
             f"{report['n']} items; {len(report['failed_items'])} failed and not scored. Intervals: 95 % bootstrap over items.", ""]
    if "accuracy" in m:
        lines += ["## Recognition", "", _table(["metric", "value [95 % CI]"], [[k, m[k]] for k in ("accuracy", "uar", "weighted_f1", "macro_f1")]
                                                + [["largest share of predictions", m["top_prediction_share"]], ["unparsed replies", m["unparsed"]], ["explanations citing only observed evidence", "n/a" if m.get("cites_only_observed") is None else m["cites_only_observed"]], ["explanations whose cue verdicts were set right to the Evidence", "n/a" if m.get("verdicts_corrected") is None else m["verdicts_corrected"]], ["label read from", ", ".join(f"{k} {v}" for k, v in m["parsed_from"].items())]]), ""]
        lines += ["### Per class", "", _table(["label", "precision", "recall", "f1", "support", "share of predictions"], [[c, d["precision"], d["recall"], d["f1"], d["support"], d["predicted"]] for c, d in m["per_class"].items()]), ""]
        lines += ["### Confusion (rows true, columns predicted)", "", _table(["", *m["labels"]], [[c, *row] for c, row in zip(m["labels"], m["confusion"])]), ""]
        for col, f in m.get("fairness", {}).items():
            lines += [f"### Fairness across `{col}` (from the data's metadata)", "",
                      _table(["group", "n", "UAR [CI]", "WAR [CI]"], [[g, int(d["n"]), *({"value": d[k], "low": d[f"{k}_low"], "high": d[f"{k}_high"]} for k in ("uar", "war"))] for g, d in f["per_group"].items()]), "",
                      _table(["gap (0 = equal)", "value [95 % CI]"], list(f["gaps"].items())), "",
                      f"Data bias: representational {f['data_bias']['representational']:.3f} (0 = balanced groups), stereotypical {f['data_bias']['stereotypical']:.3f} (Cramer's V of label x group).", ""]
    if m.get("bah"):
        lines += ["## Ambivalence / hesitancy (BAH)", "", _table(["metric", "value"], [["macro-F1", m["bah"]["macro_f1"]], ["average precision (ambivalent)", m["bah"]["ap_positive"]]]), ""]
    if any(d in m for d in ("valence", "arousal")):
        rows = [[d, m[d]["scale"], m[d]["n"], m[d]["ccc"], m[d]["pearson"], m[d]["mae"], m[d]["high_low_accuracy"], m[d]["high_low_f1"]] for d in ("valence", "arousal") if d in m]
        lines += ["## Valence / arousal (from the label distribution)", "", _table(["", "scale", "n", "CCC [CI]", "Pearson r", "MAE", "high/low accuracy", "high/low F1"], rows), ""]
    if m.get("spotting"):
        sp = m["spotting"]
        lines += ["## Micro-expression spotting (MEGC, IoU >= 0.5)", "", _table(["TP", "FP", "FN", "precision", "recall", "F1", "STRS"], [[sp["tp"], sp["fp"], sp["fn"], sp["precision"], sp["recall"], sp["f1"], m["strs"]["strs"]]]), "",
                  f"Rows where the face expert did not run: {m['face_expert_missing']}; annotated onsets without an offset (left out): {m['intervals_incomplete']}.", ""]
    if run["task"] == "reasoning" and m.get("n"):
        rows = [["label-set F1 (judge-free)", m["label_set_f1"]], ["clue-set F1 (judge-free)", m["clue_set_f1"]]]
        j = m.get("judge")
        if j:
            rows += [[f"{k.replace('_', ' ')} 0-10 (judge {j['model']}, prompt v{j['prompt_version']})", j[k]] for k in ("clue_overlap", "label_overlap") if k in j]
            rows += [["judge replies without a score", f"{j['clue_overlap_unparsed']} / {j['label_overlap_unparsed']}"]]
        lines += ["## Reasoning", "", _table(["metric", "value [95 % CI]"], rows), ""]
    worst = worst_items(report, recs)
    if worst:
        lines += [f"## {'Wrong answers, least confident first' if 'accuracy' in m else 'Lowest clue overlap'}", "",
                  _table(["item", "true", "predicted", "answer", "evidence the system read"], [[r["id"], r["row"]["label"], r["prediction"].get("label", ""), _cell(r["reply"]["text"], 160), _cell(_evidence(r), 240)] for r in worst]), ""]
    return "\n".join(lines)


def figures(report: dict, recs: list[dict]) -> dict:
    """The run's plots as matplotlib Figures (confusion, per-class recall, per-group bars, judge scores)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    m, figs = report["metrics"], {}
    if "confusion" in m:
        cm = np.array(m["confusion"], dtype=float)
        norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
        fig, ax = plt.subplots(figsize=(4.8, 4.2))
        ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
        ax.set_xticks(range(len(m["labels"])), m["labels"], rotation=45, ha="right")
        ax.set_yticks(range(len(m["labels"])), m["labels"])
        for i in range(len(cm)):
            for j in range(len(cm)):
                ax.text(j, i, int(cm[i, j]), ha="center", va="center", color="white" if norm[i, j] > 0.5 else "black", fontsize=8)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(f"Confusion (accuracy {m['accuracy']['value']:.2f})")
        fig.tight_layout()
        figs["confusion"] = fig
        fig, ax = plt.subplots(figsize=(5, 3))
        rec = [m["per_class"][c]["recall"] for c in m["labels"]]
        ax.bar(m["labels"], rec, color="#4c72b0")
        ax.axhline(1 / len(m["labels"]), color="grey", ls="--", lw=1, label="chance")
        ax.set_ylim(0, 1)
        ax.set_ylabel("recall")
        ax.legend()
        ax.tick_params(axis="x", rotation=45)
        fig.tight_layout()
        figs["per_class_recall"] = fig
        for col, f in m.get("fairness", {}).items():
            fig, ax = plt.subplots(figsize=(5, 3))
            groups = list(f["per_group"])
            x = np.arange(len(groups))
            for k, (metric, colour) in enumerate((("uar", "#4c72b0"), ("war", "#dd8452"))):
                v = np.array([f["per_group"][g][metric] for g in groups])
                err = np.array([[v[i] - f["per_group"][g][f"{metric}_low"], f["per_group"][g][f"{metric}_high"] - v[i]] for i, g in enumerate(groups)]).T
                ax.bar(x + (k - 0.5) * 0.38, v, 0.38, yerr=err, capsize=3, color=colour, label=metric.upper())
            ax.set_xticks(x, groups)
            ax.set_ylim(0, 1)
            ax.set_title(f"Per {col} (95 % CI)")
            ax.legend()
            fig.tight_layout()
            figs[f"fairness_{col}"] = fig
    judge = m.get("judge") or {}
    if any(k in judge for k in ("clue_overlap", "label_overlap")):
        fig, ax = plt.subplots(figsize=(5, 3))
        for k, (key, colour) in enumerate((("clue_overlap", "#4c72b0"), ("label_overlap", "#dd8452"))):
            if key in judge:
                ax.bar(np.arange(11) + (k - 0.5) * 0.4, judge[key]["histogram"], 0.4, color=colour, label=key.replace("_", " "))
        ax.set_xticks(range(11))
        ax.set_xlabel("judge score")
        ax.set_ylabel("items")
        ax.legend()
        fig.tight_layout()
        figs["judge_scores"] = fig
    return figs


def png_bytes(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    return buf.getvalue()


def _png(fig) -> str:
    return base64.b64encode(png_bytes(fig)).decode()


def write_report(out: str | Path, bootstrap: int = 1000) -> dict:
    """report.json, report.md, report.html and a PNG per plot in ``out``; returns the report."""
    import matplotlib.pyplot as plt

    out = Path(out)
    report, recs = build_report(out, bootstrap)
    md = markdown(report, recs)
    figs = figures(report, recs)
    imgs = "".join(f'<figure><img alt="{html.escape(k)}" src="data:image/png;base64,{_png(f)}"><figcaption>{html.escape(k.replace("_", " "))}</figcaption></figure>' for k, f in figs.items())
    for k, f in figs.items():
        f.savefig(out / f"{k}.png", dpi=110)
        plt.close(f)
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(report['run']['task'])} evaluation</title>
<style>body{{font-family:system-ui,sans-serif;max-width:1000px;margin:2em auto;padding:0 1em}}table{{border-collapse:collapse;margin:1em 0}}
td,th{{border:1px solid #ccc;padding:3px 8px;font-size:90%}}figure{{display:inline-block;margin:0 1em 1em 0}}pre{{white-space:pre-wrap}}</style></head>
<body>{_md_to_html(md, imgs)}</body></html>"""
    atomic_write_json(out / "report.json", report)
    atomic_write_text(out / "report.md", md + "\n")
    atomic_write_text(out / "report.html", page)
    return report


def _md_to_html(md: str, imgs: str) -> str:
    """Our report Markdown (headings, tables, paragraphs) as HTML; the plots after the first heading."""
    parts, table = [], []

    def flush():
        if table:
            head, *body = table
            parts.append("<table><tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in head) + "</tr>" + "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in body) + "</table>")
            table.clear()

    for line in md.splitlines():
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            if not all(set(c) <= {"-"} for c in cells):
                table.append(cells)
            continue
        flush()
        if line.startswith("#"):
            level = len(line) - len(line.lstrip("#"))
            parts.append(f"<h{level}>{html.escape(line[level:].strip())}</h{level}>")
            if level == 1:
                parts.append("__PLOTS__")
        elif line.strip():
            parts.append(f"<p>{html.escape(line).replace('`', '')}</p>")
    flush()
    body = "\n".join(parts)
    return body.replace("__PLOTS__", f"<div>{imgs}</div>", 1) if "__PLOTS__" in body else body + imgs
