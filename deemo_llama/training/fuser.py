"""``deemo fuser train``: fit the late-fusion model (fusion.py) for a fine-tuned checkpoint.

    rows (a `deemo data build` split the LLM was NOT trained on, normally validation)
      -> per recognition row: the checkpoint's label scores (the one scorer, on the row's prompt and
         de-identified media) + the experts' estimates from the row's Evidence (computed on the raw
         clip by the builder, as `deemo analyze` computes them)
      -> fuser_features.jsonl (appended per row: a killed run resumes where it stopped)
      -> regularisation and cue groups chosen by subject-grouped cross-validation, then one fit on all
         rows; the whole choice is also repeated inside each outer fold (nested) for an honest score
      -> CHECKPOINT/fuser.json with its feature list and held-out (cross-validated) scores

Cue groups (words, voice, face, body, physiology) whose removal raises the cross-validated accuracy
are dropped one at a time (backward elimination; the LLM's scores always stay): on little or noisy
data a group can only add variance. The held-out scores compare, on the same rows and folds, the
fuser with the LLM alone, with each cue alone and with each kept cue left out, so the card says what
each cue adds; they are optimistic for the kept set (it was chosen on those folds).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..errors import DeemoError
from ..fsio import append_jsonl, read_jsonl
from ..fusion import FUSER_FILE, Fuser, choose_c, clip_features, fit

FEATURES_FILE = "fuser_features.jsonl"


def rows_files(data: str | Path, splits: str) -> list[Path]:
    """The rows files of ``splits`` (comma-separated) in a build folder, or ``data`` itself (a file)."""
    data = Path(data)
    if not data.exists():
        raise DeemoError(f"--data {data}: no such file or folder (give a `deemo data build` folder or a rows file)")
    if data.is_file():
        return [data]
    paths = [data / f"{s.strip()}.jsonl" for s in splits.split(",") if s.strip()]
    for path in paths:
        if not path.is_file():
            raise DeemoError(f"--data {data}: no {path.name} in it (build the {path.stem} split with `deemo data build`)")
    return paths


def collect(checkpoint: str | Path, rows_paths: Sequence[Path], cache: Path, progress: bool = True, feature_cache: Path | None = None) -> list[dict]:
    """[{id, subject, label, labels, features}] for the recognition rows of ``rows_paths`` (resumable);
    the encoders' features come from training's cache (``feature_cache``, default <cache>/features)."""
    from tqdm.auto import tqdm

    from ..assets import cache_dir
    from ..build import load_checkpoint
    from ..scoring import HFLabelScorer
    from .features import FeatureCache
    from .rows import batch_inputs, tokenize_rows

    rows, root = [], {}
    for rows_path in rows_paths:
        got = [r for r in read_jsonl(rows_path) if r.get("kind") == "recognition"]
        if not got:
            raise DeemoError(f"{rows_path}: no recognition rows (build them with `deemo data build --kinds recognition`)")
        missing = [r["id"] for r in got if not r.get("evidence")]
        if missing:
            raise DeemoError(f"{rows_path}: row {missing[0]} has no Evidence record; rebuild the rows with `deemo data build`")
        twice = next((r["id"] for r in got if r["id"] in root), None)
        if twice:
            raise DeemoError(f"{rows_path}: row {twice} is also in {root[twice]} (give each rows file once)")
        rows += got
        root |= {r["id"]: rows_path.parent for r in got}
    cache.parent.mkdir(parents=True, exist_ok=True)
    # the cache holds the LLM's scores (the costly part); the experts' features are read from the
    # Evidence records each time, so a change of the feature list needs no re-scoring
    done = {d["id"]: d for d in read_jsonl(cache, repair=True) if "llm_scores" in d} if cache.is_file() else {}
    todo = [r for r in rows if r["id"] not in done]
    if todo:
        model, processor = load_checkpoint(checkpoint)
        scorer = HFLabelScorer(model, processor)
        feats = FeatureCache(feature_cache or cache_dir() / "features", model, processor)
        examples = [e for folder in dict.fromkeys(root[r["id"]] for r in todo) for e in tokenize_rows([r for r in todo if root[r["id"]] == folder], processor, folder)]
        for e in tqdm(examples, desc="fuser features", unit="row", disable=not progress):
            media = batch_inputs([e], processor, feats).media
            scores = scorer.score(e.row["messages"][:-1], e.row["label_set"]["labels"], media=media)
            rec = {"id": e.row["id"], "subject": e.row.get("subject"), "label": e.row["label"], "labels": e.row["label_set"]["labels"], "llm_scores": scores}
            append_jsonl(cache, rec)
            done[rec["id"]] = rec
    out = []
    for r in rows:
        evidence = json.loads((root[r["id"]] / r["evidence"]).read_text())
        out.append(done[r["id"]] | {"features": clip_features(evidence, done[r["id"]]["llm_scores"])})
    return out


def _in_groups(groups) -> Callable[[str], bool]:
    """Feature name -> whether its cue group (the part before the first dot) is in ``groups``."""
    return lambda f: f.split(".", 1)[0] in groups


def _cv_predictions(records: Sequence[dict], labels: Sequence[str], C: float, keep=lambda f: True) -> list[str]:
    """Subject-grouped 5-fold out-of-fold predictions with the features ``keep`` selects."""
    from sklearn.model_selection import GroupKFold

    y = np.array([r["label"] for r in records])
    groups = np.array([str(r["subject"]) for r in records])
    X = [{k: v for k, v in r["features"].items() if keep(k)} for r in records]
    pred = [""] * len(records)
    for tr, te in GroupKFold(n_splits=min(5, len(set(groups)))).split(np.zeros(len(y)), y, groups):
        f = fit([X[i] for i in tr], y[tr], labels, C)
        for i in te:
            p = f.predict(X[i])
            pred[i] = max(p, key=p.get)
    return pred


def held_out_scores(y: Sequence[str], pred: Sequence[str], labels: Sequence[str]) -> dict[str, float]:
    from sklearn.metrics import f1_score

    from ..metrics import uar

    share = max(sum(p == lab for p in pred) for lab in labels) / len(pred)
    return {"accuracy": round(float(np.mean(np.array(y) == np.array(pred))), 4), "uar": round(float(uar(y, pred)), 4), "macro_f1": round(float(f1_score(y, pred, labels=list(labels), average="macro", zero_division=0)), 4), "top_label_share": round(share, 4)}


def _scores_where_predicted(y: Sequence[str], pred: Sequence[str], labels: Sequence[str]) -> dict | None:
    """:func:`held_out_scores` on the rows that got a prediction (a nested fold whose training part
    has one subject or one label predicts nothing), with how many that was; None if none did."""
    got = [i for i, p in enumerate(pred) if p]
    return held_out_scores([y[i] for i in got], [pred[i] for i in got], labels) | {"rows": len(got)} if got else None


def _select(records: Sequence[dict], labels: Sequence[str], C: float | None = None) -> tuple[float, dict, set[str], dict]:
    """The fuser's model choice on ``records``: (C, {C: accuracy}, cue groups kept, groups dropped).

    C by subject-grouped cross-validation (unless given); then backward elimination of cue groups
    (the LLM's scores always stay): a group whose removal raises the cross-validated accuracy by more
    than half a point is dropped, one at a time, and C is chosen again for what is left."""
    y = [r["label"] for r in records]
    subjects = [str(r["subject"]) for r in records]
    fixed = C is not None
    C, grid = (C, {}) if fixed else choose_c([r["features"] for r in records], y, subjects, labels)

    def acc(keep_groups) -> float:
        return held_out_scores(y, _cv_predictions(records, labels, C, _in_groups(keep_groups)), labels)["accuracy"]

    kept, dropped = {k.split(".", 1)[0] for r in records for k in r["features"]}, {}
    while True:
        base = acc(kept)
        trials = {g: acc(kept - {g}) for g in sorted(kept - {"llm"})}
        best = max(trials, key=trials.get, default=None)
        if best is None or trials[best] <= base + 0.005:
            break
        kept.discard(best)
        dropped[best] = {"accuracy_with": base, "accuracy_without": trials[best]}
    if dropped and not fixed:
        C, grid = choose_c([{k: v for k, v in r["features"].items() if _in_groups(kept)(k)} for r in records], y, subjects, labels)
    return C, grid, kept, dropped


def _nested_predictions(records: Sequence[dict], labels: Sequence[str], C: float | None = None) -> list[str]:
    """Out-of-fold predictions where each outer fold's model choice (:func:`_select`) saw only that
    fold's training subjects: what the procedure does for subjects it never saw ("" where a fold's
    training part cannot be fitted)."""
    from sklearn.model_selection import GroupKFold

    y = np.array([r["label"] for r in records])
    groups = np.array([str(r["subject"]) for r in records])
    pred = [""] * len(records)
    for tr, te in GroupKFold(n_splits=min(5, len(set(groups)))).split(np.zeros(len(y)), y, groups):
        inner = [records[i] for i in tr]
        if len({r["subject"] for r in inner}) < 2 or len(set(y[tr])) < 2:
            continue
        c, _, kept, _ = _select(inner, labels, C)
        keep = _in_groups(kept)
        f = fit([{k: v for k, v in r["features"].items() if keep(k)} for r in inner], y[tr], labels, c)
        for i in te:
            p = f.predict({k: v for k, v in records[i]["features"].items() if keep(k)})
            pred[i] = max(p, key=p.get)
    return pred


def choose_default_mode(y: Sequence[str], nested: Sequence[str], llm_alone: Sequence[str]) -> dict[str, Any]:
    """Whether a checkpoint runs fused by default, decided on the fuser's own training rows.

    On the rows the nested procedure predicted (:func:`_nested_predictions`: subjects no part of the
    fuser's choice saw), the per-clip gain of the fused prediction over the LLM alone (+1 where only
    the fused one is right, -1 where only the LLM is) gives a paired mean and its standard error.
    Fusion is the default only when the gain exceeds one standard error: the one-standard-error rule
    (Hastie, Tibshirani and Friedman, The Elements of Statistical Learning, 7.10), which keeps the
    simpler system unless the more complex one is better by more than the noise of the estimate.
    Without a nested estimate (too few subjects) the fuser stays the default, as before."""
    got = [i for i, p in enumerate(nested) if p]
    if len(got) < 2:
        return {"mode": "fused", "reason": "no nested estimate (too few subjects or labels per fold)"}
    d = np.array([float(nested[i] == y[i]) - float(llm_alone[i] == y[i]) for i in got])
    gain, se = float(d.mean()), float(d.std(ddof=1) / np.sqrt(len(d)))
    mode = "fused" if gain > se else "trained"
    why = "exceeds" if mode == "fused" else "does not exceed"
    return {"mode": mode, "gain": round(gain, 4), "se": round(se, 4), "rows": len(got),
            "reason": f"fusion's nested gain over the LLM alone ({gain:+.3f} accuracy, paired over {len(got)} clips) {why} one standard error ({se:.3f})"}


def train_fuser(checkpoint: str | Path, data: str | Path | Sequence[str | Path], split: str = "validation", C: float | None = None, out: str | Path | None = None, progress: bool = True, feature_cache: str | Path | None = None) -> tuple[Fuser, Path]:
    """Fit and save the fuser for ``checkpoint`` on ``data``'s ``split`` (comma-separated splits: their
    rows together; ``data`` a build folder or rows file, or several: all their rows); returns (fuser, path)."""
    from ..data.build import transcript_source

    checkpoint = Path(checkpoint)
    if not (checkpoint / "config.json").is_file():
        raise DeemoError(f"--checkpoint {checkpoint}: not a checkpoint folder (no config.json)")
    datas = [data] if isinstance(data, (str, Path)) else list(data)
    if not datas:
        raise DeemoError("--data: give a `deemo data build` folder or a rows file")
    paths = [p for d in datas for p in rows_files(d, split)]
    path = paths[0] if len(paths) == 1 else ", ".join(map(str, datas))  # what the errors below name
    out = Path(out) if out else checkpoint
    source = transcript_source(paths, "--data")  # the checkpoint is then run with it (_transcribe_as)
    t0 = time.perf_counter()
    records = collect(checkpoint, paths, out / FEATURES_FILE, progress, Path(feature_cache) if feature_cache else None)
    label_sets = {tuple(r["labels"]) for r in records}
    if len(label_sets) != 1:
        raise DeemoError(f"{path}: the rows use {len(label_sets)} label sets; a fuser is for one")
    labels = list(next(iter(label_sets)))
    y = [r["label"] for r in records]
    subjects = [str(r["subject"]) for r in records]
    given_c = C
    if len(set(subjects)) < 2:
        raise DeemoError(f"{path}: the rows come from one subject; subject-grouped validation needs at least two")
    groups = sorted({k.split(".", 1)[0] for r in records for k in r["features"]})
    C, grid, kept, dropped = _select(records, labels, C)
    use = _in_groups(kept)
    llm_alone = [max(labels, key=lambda k: r["features"].get(f"llm.{k}", 0.0)) for r in records]
    nested_pred = _nested_predictions(records, labels, given_c)
    nested = _scores_where_predicted(y, nested_pred, labels)
    held_out = {"fused": held_out_scores(y, _cv_predictions(records, labels, C, use), labels), **({"fused, nested": nested} if nested else {}), "llm alone": held_out_scores(y, llm_alone, labels)}
    for group in groups:
        if group == "llm":
            continue
        held_out[f"{group} only"] = held_out_scores(y, _cv_predictions(records, labels, C, lambda f, g=group: f.startswith(g + ".")), labels)
        if group in kept:
            held_out[f"without {group}"] = held_out_scores(y, _cv_predictions(records, labels, C, lambda f, g=group: use(f) and not f.startswith(g + ".")), labels)
    fuser = fit([{k: v for k, v in r["features"].items() if use(k)} for r in records], y, labels, C)
    fuser.info |= {"trained_on": [str(p) for p in paths], "split": split, "subjects": len(set(subjects)), "subject_ids": sorted(set(subjects)), "C_grid": {str(k): v for k, v in grid.items()},
                   "groups": sorted(kept), "dropped_groups": dropped, "default_mode": choose_default_mode(y, nested_pred, llm_alone),
                   "held_out": held_out, "held_out_method": "subject-grouped 5-fold cross-validation on the training rows (each subject's clips held out together). 'fused': the kept groups and C were chosen on the same folds, so it is optimistic; 'fused, nested': the whole choice (C, groups) redone inside each outer fold's training subjects, an honest estimate for subjects the fuser never saw. The held-out benchmark is benchmarks/bench_default.py",
                   "checkpoint": checkpoint.name, "transcribe_from": source, "seconds": round(time.perf_counter() - t0, 1)}
    saved = fuser.save(out)
    if source and out == checkpoint:
        _transcribe_as(checkpoint, source)
    return fuser, saved


def _transcribe_as(checkpoint: Path, source: str) -> None:
    """Make ``checkpoint`` transcribe clips from ``source`` audio, as its fuser's rows were (its config's
    ``transcribe_from``; ``deemo analyze`` and the server read it), written atomically."""
    from ..config import DeemoConfig
    from ..fsio import atomic_write_json

    cfg = DeemoConfig.load(checkpoint)
    if cfg.transcribe_from != source:
        cfg.transcribe_from = source
        atomic_write_json(checkpoint / "config.json", cfg.to_dict())


__all__ = ["FEATURES_FILE", "FUSER_FILE", "choose_default_mode", "collect", "held_out_scores", "train_fuser"]
