"""Label sets: the field's class lists (domain.md), their default questions and label synonyms.

    get_label_set("mer").labels  -> ("neutral", "angry", "happy", "sad", "worried", "surprise")
    get_label_set("custom", ["calm", "tense"])
    normalise_label("Happiness", get_label_set("mafw")) -> "happiness"

A label set is named in every instruction row (``label_set``) with its options (``label_options``),
so a row can be validated on its own.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Sequence

from ..errors import DeemoError


@dataclass(frozen=True)
class LabelSet:
    name: str
    labels: tuple[str, ...]
    question: str = "Which emotion does the person most likely feel?"
    synonyms: dict[str, str] = field(default_factory=dict)  # lower-case alias -> label

    def normalise(self, value: str) -> str | None:
        """The set's label for ``value`` (case, spacing and known synonyms), or None."""
        key = re.sub(r"\s+", " ", str(value).strip().lower().replace("_", " "))
        if key in self.labels:
            return key
        return self.synonyms.get(key)


_BASIC_SYNONYMS = {
    "happiness": "happy", "joy": "happy", "sadness": "sad", "anger": "angry", "surprised": "surprise",
    "fearful": "fear", "afraid": "fear", "disgusted": "disgust", "calm": "neutral", "worry": "worried",
    "anxious": "worried", "anxiety": "worried",
}

LABEL_SETS: dict[str, LabelSet] = {
    # MER2023/2024 discrete classes (label CSV `name, discrete, valence`)
    "mer": LabelSet("mer", ("neutral", "angry", "happy", "sad", "worried", "surprise"), synonyms=_BASIC_SYNONYMS),
    # DFEW: 1 Happy 2 Sad 3 Neutral 4 Angry 5 Surprise 6 Disgust 7 Fear (the order of its numeric labels)
    "dfew": LabelSet("dfew", ("happy", "sad", "neutral", "angry", "surprise", "disgust", "fear"), synonyms={k: v for k, v in _BASIC_SYNONYMS.items() if v in ("happy", "sad", "neutral", "angry", "surprise", "disgust", "fear")}),
    # MAFW: 11 single-emotion classes
    "mafw": LabelSet("mafw", ("anger", "disgust", "fear", "happiness", "neutral", "sadness", "surprise", "contempt", "anxiety", "helplessness", "disappointment"),
                     synonyms={"angry": "anger", "happy": "happiness", "sad": "sadness", "surprised": "surprise", "anxious": "anxiety", "helpless": "helplessness", "disappointed": "disappointment", "disgusted": "disgust"}),
    # BAH: ambivalence/hesitancy present or not (its split lines carry 0/1)
    "bah": LabelSet("bah", ("not ambivalent", "ambivalent"), question="Does the person show ambivalence or hesitancy?",
                    synonyms={"0": "not ambivalent", "1": "ambivalent", "no": "not ambivalent", "yes": "ambivalent", "hesitant": "ambivalent", "not hesitant": "not ambivalent"}),
    # CASME II / CAS(ME)^2 estimated emotions of micro-expressions
    "casme": LabelSet("casme", ("happiness", "disgust", "repression", "surprise", "fear", "sadness", "others"),
                      synonyms={"happy": "happiness", "disgusted": "disgust", "surprised": "surprise", "sad": "sadness", "other": "others", "anger": "others", "negative": "others", "positive": "happiness"}),
}
LABEL_SET_NAMES = (*LABEL_SETS, "custom")


def label_set_for(labels: Sequence[str]) -> LabelSet:
    """The named set whose labels are exactly ``labels`` (so its synonyms apply), else a custom set of
    them that knows the basic synonyms pointing into it ("fearful" -> "fear" when "fear" is a label)."""
    labels = tuple(str(x).strip().lower() for x in labels)
    for ls in LABEL_SETS.values():
        if ls.labels == labels:
            return ls
    return LabelSet("custom", labels, synonyms={k: v for k, v in _BASIC_SYNONYMS.items() if v in labels})


def get_label_set(name: str, labels: Sequence[str] | None = None) -> LabelSet:
    """A named set, or ``custom`` with ``labels`` (lower-cased, unique, at least two)."""
    if name == "custom":
        clean = tuple(dict.fromkeys(str(x).strip().lower() for x in (labels or ()) if str(x).strip()))
        if len(clean) < 2:
            raise DeemoError("the custom label set needs at least two labels (--labels a,b,...)")
        return LabelSet("custom", clean)
    if name not in LABEL_SETS:
        raise DeemoError(f"unknown label set {name!r}; expected one of {', '.join(LABEL_SET_NAMES)}")
    if labels and tuple(x.lower() for x in labels) != LABEL_SETS[name].labels:
        raise DeemoError(f"label set {name!r} has fixed labels ({', '.join(LABEL_SETS[name].labels)}); use --label-set custom for your own")
    return LABEL_SETS[name]
