"""Does the model use its media? Label accuracy per group of rows, with modalities' tokens zeroed.

    with zero_modalities(model, ["audio"]):      # every audio placeholder gets a zero vector
        acc = label_accuracy(model, processor, examples, features)

``media_ablation`` runs the four conditions (none, audio, video, both zeroed) on the same
checkpoint and reports accuracy per group (e.g. the synthetic corpus' ``meta.kind``: wording,
voice, video), so a modality's effect shows on the rows whose label only it carries. Labels are
chosen by the one label scorer (scoring.HFLabelScorer), as ``deemo analyze`` chooses them.
``feature_probe`` asks the question before any training: is the label in the frozen encoders'
features at all (a linear probe per modality, held out)?
"""

from __future__ import annotations

from collections import defaultdict
from typing import Callable, Sequence

from .llm import predict_labels, zero_modalities

ABLATIONS: dict[str, tuple[str, ...]] = {"none": (), "audio zeroed": ("audio",), "video zeroed": ("video",), "both zeroed": ("audio", "video")}


def media_ablation(model, processor, examples: Sequence, features, group: Callable[[dict], str]) -> dict[str, dict[str, float]]:
    """{condition: {group: accuracy, "all": accuracy}} over the recognition ``examples``."""
    rec = [e for e in examples if e.row.get("kind") == "recognition"]
    was = model.training
    model.eval()
    table: dict[str, dict[str, float]] = {}
    for cond, names in ABLATIONS.items():
        with zero_modalities(model, names):
            pred = predict_labels(model, processor, rec, features)
        hits: dict[str, list[bool]] = defaultdict(list)
        for e, p in zip(rec, pred):
            hits[group(e.row)].append(p == e.row["label"])
            hits["all"].append(p == e.row["label"])
        table[cond] = {g: sum(v) / len(v) for g, v in sorted(hits.items())}
    model.train(was)
    return table


def feature_probe(train: Sequence, test: Sequence, features, group: Callable[[dict], str], C: float = 0.1) -> dict[str, dict[str, float]]:
    """Is the label in the frozen encoders' features at all? A logistic regression per modality
    (scikit-learn) on each clip's pooled features (per-dimension mean, std and mean absolute step
    between tokens), fit on ``train``'s recognition rows, scored on ``test``'s: {modality: {group:
    accuracy, "all": ...}}. A reference for what a trained projector could read, not a model."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    def table(examples):
        rec = [e for e in examples if e.row.get("kind") == "recognition" and e.modalities]
        feats = [features.get(e.clip, sorted(set(e.modalities))) for e in rec]
        return rec, feats

    (tr, ftr), (te, fte) = table(train), table(test)
    out: dict[str, dict[str, float]] = {}
    for m in sorted({k for f in ftr for k in f}):
        def x(f):
            t = f[m].numpy()
            return np.concatenate([t.mean(0), t.std(0), np.abs(np.diff(t, axis=0)).mean(0) if len(t) > 1 else np.zeros(t.shape[1])])

        clf = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=2000)).fit([x(f) for f in ftr if m in f], [e.row["label"] for e, f in zip(tr, ftr) if m in f])
        pairs = [(e, f) for e, f in zip(te, fte) if m in f]
        pred = clf.predict([x(f) for _, f in pairs])
        hits: dict[str, list[bool]] = defaultdict(list)
        for (e, _), p in zip(pairs, pred):
            hits[group(e.row)].append(p == e.row["label"])
            hits["all"].append(p == e.row["label"])
        out[m] = {g: sum(v) / len(v) for g, v in sorted(hits.items())}
    return out
