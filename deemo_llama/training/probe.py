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
from contextlib import contextmanager
from typing import Callable, Iterable, Mapping, Sequence

import torch

ABLATIONS: dict[str, tuple[str, ...]] = {"none": (), "audio zeroed": ("audio",), "video zeroed": ("video",), "both zeroed": ("audio", "video")}


@contextmanager
def zero_modalities(model, names: Iterable[str], items: Mapping[str, torch.Tensor] | None = None):
    """Replace the named modalities' projected tokens by zeros (forward hooks on the projectors):
    every item's, or, where ``items`` names the modality, only the items whose flag is true (a bool
    per item of the batch, in prompt order; training's modality dropout zeroes them as the ablation does)."""

    def hook(name: str):
        def fn(_m, _i, out):
            if items is None or name not in items:
                return torch.zeros_like(out)
            keep = (~items[name]).to(device=out.device, dtype=out.dtype)
            return out * keep.view(-1, *([1] * (out.dim() - 1)))

        return fn

    handles = [model.projectors[n].register_forward_hook(hook(n)) for n in names if n in model.projectors]
    try:
        yield model
    finally:
        for h in handles:
            h.remove()


def media_ablation(model, processor, examples: Sequence, features, group: Callable[[dict], str]) -> dict[str, dict[str, float]]:
    """{condition: {group: accuracy, "all": accuracy}} over the recognition ``examples``."""
    from .llm import predict_labels

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
