"""A label from free text, for endpoints that return only text (the calibrated scores are preferred).

    extract_label("Emotion: joy. The smile ...", get_label_set("mer"))      -> Extraction("happy", "answer")
    extract_label("They are not happy at all.", mer)                          -> Extraction(None, "none named")
    extract_label("Happy or sad, hard to say.", mer)                          -> Extraction(None, "several: happy, sad")

Rules, in order: an explicit answer line (``Emotion: X`` / ``Label: X`` / ``Answer: X``, the form
our prompts ask for) decides when X names a label; otherwise every mention of a label or one of its
synonyms (whole words, longest first, so "not ambivalent" is one mention) that is not negated (a
negation word within the three words before it: "not", "never", "hardly", "isn't", ..., but not
"not just"/"not only") counts, and
exactly one distinct label must remain. Several distinct labels, or none, give no label (the item
counts as unparsed, which scores as wrong) with the reason stored for the report.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..data.labels import LabelSet

from ..prompting import NEGATIONS  # noqa: E402,F401  (the one list)
_ANSWER = re.compile(r"\b(?:emotion|label|answer|prediction)\s*[:=-]\s*([a-z][a-z _-]{0,40})", re.I)
_NOT_NEGATING = frozenset("just only merely simply".split())  # "not just happy" still says happy
_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


@dataclass(frozen=True)
class Extraction:
    label: str | None
    how: str  # "answer" | "mention" | "none named" | "several: a, b"


def _negated(words: list[str], i: int) -> bool:
    """A negation word within the three words before ``words[i]``, not as "not just"/"not only"."""
    for j in range(max(0, i - 3), i):
        if (words[j] in NEGATIONS or words[j].endswith("n't")) and (j + 1 >= len(words) or words[j + 1] not in _NOT_NEGATING):
            return True
    return False


def _aliases(label_set: LabelSet) -> list[tuple[tuple[str, ...], str]]:
    names = {label: label for label in label_set.labels} | dict(label_set.synonyms)
    return sorted(((tuple(_WORD.findall(alias.lower())), label) for alias, label in names.items() if _WORD.findall(alias.lower())), key=lambda a: -len(a[0]))


def extract_label(text: str, label_set: LabelSet) -> Extraction:
    text = (text or "").lower().replace("’", "'")
    for m in _ANSWER.finditer(text):
        words = _WORD.findall(m.group(1))
        for n in range(min(len(words), 3), 0, -1):  # "Emotion: not ambivalent." / "Emotion: happy, because ..."
            if (label := label_set.normalise(" ".join(words[:n]))) is not None:
                return Extraction(label, "answer")
    found = mentions(text, label_set)
    if len(found) == 1:
        return Extraction(found[0], "mention")
    return Extraction(None, "none named" if not found else "several: " + ", ".join(found))


# Common emotion words beyond the label sets' own synonyms, mapped to the basic labels (a word maps
# only where the label set has that label or a synonym of it)
EMOTION_LEXICON = {
    "cheerful": "happy", "delighted": "happy", "glad": "happy", "pleased": "happy", "excited": "happy",
    "upset": "sad", "unhappy": "sad", "sorrow": "sad", "grief": "sad", "depressed": "sad", "disappointed": "sad",
    "furious": "angry", "annoyed": "angry", "irritated": "angry", "mad": "angry", "frustrated": "angry", "rage": "angry",
    "nervous": "worried", "tense": "worried", "uneasy": "worried", "concerned": "worried", "scared": "fear", "frightened": "fear",
    "astonished": "surprise", "amazed": "surprise", "shocked": "surprise", "startled": "surprise", "indifferent": "neutral",
}


def mentions(text: str, label_set: LabelSet, lexicon: bool = False) -> list[str]:
    """The distinct labels a text names, in order of first mention: whole-word label names and
    synonyms (longest first, so "not ambivalent" is one mention), negated mentions left out; with
    ``lexicon``, also the common emotion words of :data:`EMOTION_LEXICON`."""
    words = _WORD.findall((text or "").lower().replace("’", "'"))
    aliases = _aliases(label_set)
    if lexicon:
        aliases += [((w,), label) for w, v in EMOTION_LEXICON.items() if (label := label_set.normalise(v)) is not None]
    taken = [False] * len(words)
    found: dict[int, str] = {}
    for alias, label in aliases:
        k = len(alias)
        for i in range(len(words) - k + 1):
            if tuple(words[i : i + k]) != alias or any(taken[i : i + k]):
                continue
            taken[i : i + k] = [True] * k
            if alias[0] in NEGATIONS or not _negated(words, i):
                found.setdefault(i, label)
    return list(dict.fromkeys(found[i] for i in sorted(found)))


def emotion_words(text: str, label_set: LabelSet) -> set[str]:
    """The labels a text names, common emotion words included: the judge-free label-overlap proxy."""
    return set(mentions(text, label_set, lexicon=True))
