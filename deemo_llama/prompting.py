"""The ONE prompt builder and answer format: Evidence + question + label set -> chat messages.

Everything that asks the model about a clip (``deemo analyze``, the gateway, the instruction data,
the evaluation runner) builds its messages here, so the label scorer, the reasoning generator and
the training rows see the same text:

    system   SYSTEM_PROMPT
    user     [video] [audio]            (only when the checkpoint's projectors are trained)
             The person says: "<the transcript>"
             Observations (expert tools, inside the privacy boundary):
             - Face: ...                (one short line per expert that ran)
             - Voice: ...
             <question> Choose one of: <labels>. Answer as "Emotion: <label>. Reasoning: <...>".
    assistant Emotion: <label>. Reasoning: <the observations that support it>

:class:`ReasoningFilter` makes generated reasoning end at a sentence boundary and stops it at the
first sentence that repeats an earlier one (small models loop).
"""

from __future__ import annotations

import re
from typing import Any, Sequence

from .evidence import BODY, FACE, PHYSIO, TRANSCRIPT, VOICE, Evidence

PROMPT_VERSION = "1"
SYSTEM_PROMPT = (
    "You are DEEMO, an assistant that recognises a person's emotion from de-identified video and audio "
    "and explains the cues behind it. Use only the observations you are given."
)
DEFAULT_QUESTION = "Which emotion does the person most likely feel?"
# MER2023/2024 classes plus the basic-emotion extras of DFEW/MAFW (domain.md).
DEFAULT_LABELS = ("neutral", "happy", "sad", "angry", "surprise", "fear", "disgust", "worried")
EXPERT_NAMES = {FACE: "Face", VOICE: "Voice", BODY: "Body", PHYSIO: "Physiology"}


def label_answer(label: str) -> str:
    """The scored part of the answer: the label scorer compares these continuations."""
    return f"Emotion: {label}."


def answer_prefix(label: str) -> str:
    """Forced at the start of the generated answer; the reasoning continues it."""
    return f"{label_answer(label)} Reasoning:"


def reasoning_lead(evidence: Evidence | None) -> str:
    """The words the reasoning is forced to open with: the first OBSERVED cue's modality ("Their
    face" when the face expert read a face, else "Their voice", else "Their words"; "" when nothing
    was observed). A small model that starts from an observation goes on to describe it (measured on
    the embedded default: "Their face is mostly happy, their voice is loud ..." instead of "The person
    most likely feels happy."), and it can only name a modality that was observed."""
    if evidence is None:
        return ""
    if (evidence.experts.get(FACE) or {}).get("status") == "ok":
        return "Their face"
    if (evidence.experts.get(VOICE) or {}).get("status") == "ok":
        return "Their voice"
    return "Their words" if evidence.transcript.strip() else ""


def forced_answer(label: str, lead: str) -> str:
    """What the assistant turn is forced to start with: the label, then the reasoning's lead."""
    return f"{answer_prefix(label)} {lead}" if lead else answer_prefix(label)


# -- evidence as text -------------------------------------------------------------------------------
def _face_line(env: dict) -> str | None:
    est = env.get("estimates") or {}
    if env.get("status") != "ok":
        return "no face visible" if env.get("status") == "no_signal" else None
    probs = est.get("mean_probabilities") or est.get("prototype_scores") or {}
    dom = est.get("dominant_expression")
    bits = []
    if dom and probs:
        ranked = sorted(probs, key=lambda k: -probs[k])
        second = next((k for k in ranked if k != dom), None)
        bits.append(f"mostly {dom} ({probs.get(dom, 0):.2f})" + (f", then {second} ({probs[second]:.2f})" if second else ""))
    elif dom:
        bits.append(f"mostly {dom}")
    counts = est.get("counts") or {}
    micro, macro = counts.get("micro_expressions", 0), counts.get("macro_expressions", 0)
    if micro or macro:
        bits.append(f"{micro} micro- and {macro} macro-expression(s)")
    au = est.get("au_proxies") or {}
    active = sorted((k for k, v in au.items() if v.get("active_share", 0) >= 0.1), key=lambda k: -au[k]["active_share"])[:2]
    if active:
        bits.append("active: " + ", ".join(a.replace("_", " ") for a in active))
    return "; ".join(bits) or None


def _voice_line(env: dict) -> str | None:
    est = env.get("estimates") or {}
    if env.get("status") != "ok":
        return "no voiced speech" if env.get("status") == "no_signal" else None
    iqr, rate = est.get("pitch_iqr_semitones"), est.get("syllable_rate_per_s")
    bits = []
    if iqr is not None:
        bits.append("pitch " + ("varies a lot" if iqr > 4 else "fairly flat" if iqr < 1.5 else "varies moderately") + f" (IQR {iqr:.1f} semitones)")
    if rate is not None:
        bits.append(("fast" if rate > 6.0 else "slow" if rate < 3.5 else "moderate") + f" speech ({rate:.1f} syllables/s)")
    if est.get("loudness_mean") is not None:
        bits.append(f"loudness {est['loudness_mean']:.2f} sones")
    marked = [e for e in env.get("events", []) if "z" in e]
    if marked:
        e = max(marked, key=lambda e: abs(e["z"]))
        bits.append(f"{e['type'].replace('_', ' ')} at {e['start_s']:.1f} s")
    return ", ".join(bits) or None


def _tone(compound: float) -> str:
    """VADER's conventional thresholds (Hutto & Gilbert 2014): >= 0.05 positive, <= -0.05 negative."""
    return "positive" if compound >= 0.05 else "negative" if compound <= -0.05 else "neutral"


def _summary_line(env: dict) -> str | None:
    if env.get("status") not in ("ok", "no_signal"):
        return None
    first = re.split(r"(?<=[.!?])\s+", env.get("summary", "").strip())[0]
    return first.rstrip(".") or None


LINE_MAKERS = {FACE: _face_line, VOICE: _voice_line}


def finding_lines(evidence: Evidence) -> list[str]:
    """One short line per expert that ran and returned something (failed experts are not named)."""
    from .tools.transcript import transcript_line

    lines = []
    words = evidence.experts.get(TRANSCRIPT)
    if words is not None and (text := transcript_line(words)):
        lines.append(f"- Wording: {text}.")
    elif evidence.sentiment is not None:
        c = evidence.sentiment["compound"]
        lines.append(f"- Wording: {_tone(c)} (sentiment {c:+.2f}).")
    for name in (FACE, VOICE, BODY, PHYSIO):
        env = evidence.experts.get(name)
        if env is None:
            continue
        text = LINE_MAKERS.get(name, _summary_line)(env)
        if text:
            lines.append(f"- {EXPERT_NAMES[name]}: {text}.")
    return lines


def evidence_text(evidence: Evidence | None, labels: Sequence[str], question: str | None = None) -> str:
    """The user turn's text. ``evidence`` None gives the content-free prompt (calibration)."""
    if evidence is None or not evidence.transcript.strip():
        said = "The person says nothing audible."
    else:
        said = f'The person says: "{evidence.transcript.strip()}"'
    lines = finding_lines(evidence) if evidence is not None else []
    obs = "Observations (expert tools, inside the privacy boundary):\n" + ("\n".join(lines) if lines else "- none available")
    ask = (question or DEFAULT_QUESTION).strip()
    return f'{said}\n{obs}\n{ask} Choose one of: {", ".join(labels)}. Answer as "Emotion: <label>. Reasoning: <the observations that support it>".'


def build_messages(evidence: Evidence | None, labels: Sequence[str], question: str | None = None, media_parts: Sequence[dict] = (), history: Sequence[dict] = ()) -> list[dict[str, Any]]:
    """System + (earlier turns) + the evidence turn. ``media_parts`` (e.g. ``{"type": "video"}`` or
    de-identified ``video_url`` parts) go first in the user turn, only for checkpoints whose
    projectors are trained."""
    content = [*media_parts, {"type": "text", "text": evidence_text(evidence, labels, question)}]
    return [{"role": "system", "content": SYSTEM_PROMPT}, *history, {"role": "user", "content": content}]


def content_free_messages(labels: Sequence[str], question: str | None = None) -> list[dict[str, Any]]:
    """The same template with no transcript, no observations and no media (Zhao et al. 2021)."""
    return build_messages(None, labels, question)


# -- the cue vocabulary: which modality an explanation's words cite ---------------------------------
NEGATIONS = frozenset("not no never neither nor without hardly barely isn't aren't wasn't weren't don't doesn't didn't cannot can't nothing none".split())
# cue terms (word prefixes) of the field's vocabulary; each maps to one clue
CUES = {
    "smile": "smile", "grin": "smile", "laugh": "smile", "frown": "frown", "brow": "brow", "eyebrow": "brow",
    "tear": "tears", "cry": "tears", "crie": "tears", "grimace": "grimace", "jaw": "jaw", "lip": "lips", "mouth": "mouth",
    "eye": "eyes", "gaze": "eyes", "stare": "eyes", "blink": "eyes", "face": "face", "facial": "face", "expression": "face",
    "pitch": "pitch", "loud": "loudness", "quiet": "loudness", "soft": "loudness", "volume": "loudness", "trembl": "tremor",
    "shak": "tremor", "tremor": "tremor", "fast": "tempo", "slow": "tempo", "pace": "tempo", "rapid": "tempo", "speed": "tempo",
    "monoton": "flat voice", "flat": "flat voice", "even": "flat voice", "tone": "tone", "voice": "voice", "sigh": "sigh",
    "posture": "posture", "slump": "posture", "lean": "posture", "gestur": "gesture", "fidget": "fidget", "shrug": "shrug",
    "arm": "arms", "head": "head", "nod": "head", "withdraw": "withdrawal", "shrink": "withdrawal", "draw": "withdrawal",
    "hand": "hands", "word": "words", "said": "words", "says": "words", "sentence": "words", "transcript": "words",
}
_CUE_TOKEN = re.compile(r"[a-z]+")


def cue_set(text: str) -> set[str]:
    words = _CUE_TOKEN.findall((text or "").lower())
    out = set()
    for i, w in enumerate(words):
        if any(n in NEGATIONS for n in words[max(0, i - 2) : i]):
            continue
        for stem, cue in CUES.items():
            if w.startswith(stem) and (len(stem) >= 4 or w == stem or w.rstrip("s") == stem):
                out.add(cue)
                break
    return out


# which modality each cue belongs to, for the grounding proxy (a cue of a modality that was not observed is ungrounded)
CUE_MODALITY = {
    **{c: "face" for c in ("smile", "frown", "brow", "tears", "grimace", "jaw", "lips", "mouth", "eyes", "face")},
    **{c: "voice" for c in ("pitch", "loudness", "tremor", "tempo", "flat voice", "tone", "voice", "sigh")},
    **{c: "body" for c in ("posture", "gesture", "fidget", "shrug", "arms", "head", "withdrawal", "hands")},
    "words": "words",
}


def cited_modalities(text: str) -> set[str]:
    """The modalities (face, voice, body, words) whose cues ``text`` names (negated mentions left out)."""
    return {CUE_MODALITY[c] for c in cue_set(text) if c in CUE_MODALITY}


def observed_modalities(evidence: Evidence, forwarded: bool = False) -> set[str]:
    """The modalities an explanation may cite: the experts that returned a finding, the words when
    something was said, and what the model itself was shown (de-identified frames: the face and the
    body's movement; audio: the voice) when ``forwarded`` to a trained checkpoint."""
    out = {m for name, m in ((FACE, "face"), (VOICE, "voice"), (BODY, "body"), (PHYSIO, "physiology")) if (evidence.experts.get(name) or {}).get("status") == "ok"}
    if forwarded and evidence.clip.get("has_video"):
        out |= {"face", "body"}
    if forwarded and evidence.clip.get("has_audio"):
        out |= {"voice"}
    return out | ({"words"} if evidence.transcript.strip() else set())


# -- generated reasoning ----------------------------------------------------------------------------
_END = re.compile(r"[.!?](?=\s|$)")


def _norm(sentence: str) -> str:
    return re.sub(r"[^a-z0-9 ]", "", sentence.lower()).strip()


class ReasoningFilter:
    """Feed generated pieces; get back only whole sentences, and nothing after a repeated one.

    ``feed(piece) -> str`` returns the text that is now final (complete sentences); ``finish()``
    returns what remains: nothing if the tail is an unfinished sentence and at least one sentence
    was given, else the tail closed with a full stop. ``done`` turns true at the first repeated
    sentence, after which generation can stop. ``allowed``: the modalities that were observed
    (:func:`observed_modalities`); a sentence whose cues name another one (a face when no face
    was read) is dropped, so the explanation never cites evidence that does not exist.

    ``verdicts`` and ``label`` (:func:`reasoning_checks`): whether the face and the words fit the
    answer's label, decided from the Evidence as the training rows decide it (:func:`cue_verdicts`).
    A sentence about the face or the words that says the opposite ("Their words ... read neutral,
    which does not fit neutral"), and a closing "Their face and their words point to ..." that names
    cues which do not fit, are set right, and so are the words' emotions named from the lexicon
    (``word_cue``: ", with anger words (cross)", :func:`word_cue`) when the model names others; each
    change is listed in ``corrected`` (what the model said, what the Evidence says), so a caller can
    report how often the model got it wrong.
    """

    def __init__(self, lead: str = "", allowed: set[str] | None = None, verdicts: dict[str, bool] | None = None, label: str | None = None, word_cue: str | None = None):
        self.lead = lead  # the forced opening words (reasoning_lead): part of the first sentence
        self.buffer = lead
        self.allowed = allowed
        self.verdicts = verdicts if label else None
        self.label = label
        self.word_cue = word_cue
        self.out: list[str] = []
        self.seen: set[str] = set()
        self.dropped: list[str] = []
        self.corrected: list[dict[str, str]] = []
        self.done = False

    def _checked(self, sentence: str) -> str:
        """``sentence`` with its cue verdict set to the Evidence's ("" drops a closing sentence that
        names no fitting cue)."""
        if not self.verdicts:
            return sentence
        if (m := _CLOSING.match(sentence)) and not _VERDICT.search(sentence):
            right = fitting_sentence([c for c in VERDICT_CUES if self.verdicts.get(c)], self.label)
            said = m.group(0).strip()
            if _norm(said) != _norm(right):
                self.corrected.append({"cue": "closing", "said": said, "now": right})
                return (" " + right) if right and sentence[:1].isspace() else right
            return sentence
        cue = _subject(sentence)
        if cue == "words" and self.word_cue is not None and (m := _WORD_CUE.search(sentence)) and m.group(0) != self.word_cue:
            self.corrected.append({"cue": "word emotions", "said": m.group(0).removeprefix(", "), "now": self.word_cue.removeprefix(", ")})
            sentence = sentence[: m.start()] + self.word_cue + sentence[m.end() :]
        m = _VERDICT.search(sentence)
        if m is None or cue not in self.verdicts:
            return sentence
        right = _fit(self.verdicts[cue], self.label)
        if m.group(0) != right:
            self.corrected.append({"cue": cue, "said": m.group(0).removeprefix(", "), "now": right.removeprefix(", ")})
            return sentence[: m.start()] + right + sentence[m.end() :]
        return sentence

    def _grounded(self, sentence: str) -> bool:
        if self.allowed is None or cited_modalities(sentence) <= self.allowed:
            return True
        self.dropped.append(sentence.strip())
        return False

    def feed(self, piece: str) -> str:
        if self.done:
            return ""
        self.buffer += piece
        emitted = []
        while not self.done and (m := _END.search(self.buffer)):
            sentence, self.buffer = self.buffer[: m.end()], self.buffer[m.end() :]
            key = _norm(sentence)
            if key and key in self.seen:
                self.done = True
                self.buffer = ""
                break
            self.seen.add(key)
            if self._grounded(sentence) and (sentence := self._checked(sentence)):
                emitted.append(sentence)
        text = "".join(emitted)
        if text:
            self.out.append(text)
        return text

    def finish(self) -> str:
        tail = self.buffer.strip()
        self.buffer = ""
        if self.done or not tail or self.out or not self._grounded(tail):
            return ""
        tail = self._checked((" " if not tail.startswith(" ") else "") + tail.rstrip(",;:- ") + ".")
        if tail:
            self.out.append(tail)
        return tail

    @property
    def text(self) -> str:
        return "".join(self.out).strip()


def read_reasoning(pieces, **checks) -> ReasoningFilter:
    """Whole generated text -> the filter that read it (``.text``: the filtered reasoning,
    ``.corrected``: what it set right), for non-streamed use; ``checks``: :class:`ReasoningFilter`'s
    keywords (:func:`reasoning_checks`)."""
    f = ReasoningFilter(**checks)
    for p in pieces if not isinstance(pieces, str) else [pieces]:
        f.feed(p)
        if f.done:
            break
    f.finish()
    return f


# -- reasoning composed from the evidence (instruction data) ---------------------------------------
# valence of the common emotion labels (for "which fits <label>" in composed reasoning)
POSITIVE = {"happy", "happiness", "surprise"}
NEGATIVE = {"angry", "anger", "sad", "sadness", "worried", "fear", "disgust", "anxiety", "contempt", "helplessness", "disappointment", "repression"}


def _tone_fits(tone: str, label: str) -> bool | None:
    if label in POSITIVE:
        return tone == "positive"
    if label in NEGATIVE:
        return tone == "negative"
    if label == "neutral":
        return tone == "neutral"
    return None  # a label with no valence (e.g. BAH): no verdict


# the verdict phrase of the composed explanations; _VERDICT reads it back (with the model's variants)
FITS, DOES_NOT_FIT = ", which fits", ", which does not fit"


def _fit(fits: bool | None, label: str) -> str:
    return "" if fits is None else f"{FITS} {label}" if fits else f"{DOES_NOT_FIT} {label}"


# the cues an explanation gives a verdict on ("..., which fits <label>"), in the order it names them
VERDICT_CUES = ("face", "words")
_VERDICT = re.compile(rf"(?:{re.escape(DOES_NOT_FIT)}|{re.escape(FITS)}|, which doesn't fit|, which fit) [\w-]+(?: [\w-]+)?(?=[.!?]?\s*$)")
_CLOSING = re.compile(r"^\s*(?:their )?(?:face|words)(?: and (?:their )?(?:face|words))? points? to [\w -]+?[.!?]?\s*$", re.I)
_SUBJECT = re.compile(r"^\s*their (face|words)\b", re.I)
_WORD_CUE = re.compile(r", with [\w-]+ words \([^)]*\)")


def _subject(sentence: str) -> str | None:
    """The cue a sentence is about, by its opening ("Their face ...", "Their words, ..."), as the
    composed explanations open them; None for any other sentence."""
    m = _SUBJECT.match(sentence)
    return m.group(1).lower() if m else None


def cue_verdicts(evidence: Evidence, label: str, normalise=None) -> dict[str, bool]:
    """Whether each observed verdict cue fits ``label``: ``face`` when the face expert's dominant
    expression (mapped into the label set by ``normalise``) is the label; ``words`` when the
    transcript's VADER tone has the label's valence (:func:`_tone_fits`). A cue that was not observed,
    or a label with no valence for the words, gets no entry. The composed training explanations and
    the check of generated ones (:class:`ReasoningFilter`) both decide here."""
    normalise = normalise or (lambda x: x)
    out: dict[str, bool] = {}
    face = evidence.experts.get(FACE) or {}
    if face.get("status") == "ok" and (dom := (face.get("estimates") or {}).get("dominant_expression")):
        out["face"] = normalise(dom) == label
    if evidence.transcript.strip() and evidence.sentiment is not None:
        fits = _tone_fits(_tone(evidence.sentiment["compound"]), label)
        if fits is not None:
            out["words"] = fits
    return out


def word_cue(evidence: Evidence) -> str:
    """The words' strongest NRC emotion and its first trigger words (", with joy words (happy,
    wonderful)"), as the explanation states it; "" when the lexicon expert found none."""
    est = (evidence.experts.get(TRANSCRIPT) or {}).get("estimates") or {}
    top = max(est.get("cue_words") or {}, key=lambda e: est["emotion_weights"][e], default=None)
    return f", with {top} words ({', '.join(est['cue_words'][top][:2])})" if top else ""


def fitting_sentence(fitting: Sequence[str], label: str) -> str:
    """The closing sentence of an explanation: the cues that fit the label ("Their face and their
    words point to happy."), or "" when none does."""
    if not fitting:
        return ""
    names = " and ".join(f"their {c}" for c in fitting)
    return f"{names[0].upper()}{names[1:]} {'points' if list(fitting) == ['face'] else 'point'} to {label}."


def reasoning_checks(evidence: Evidence, label: str, labels: Sequence[str], forwarded: bool = False) -> dict[str, Any]:
    """The :class:`ReasoningFilter` keywords for an explanation of ``label`` from ``evidence``: the
    modalities it may cite and the cue verdicts it must state (the label set's synonyms map the
    face's expression into ``labels``)."""
    from .data.labels import label_set_for

    return {"allowed": observed_modalities(evidence, forwarded), "verdicts": cue_verdicts(evidence, label, label_set_for(labels).normalise), "label": label,
            "word_cue": word_cue(evidence) if evidence.transcript.strip() else None}


def _sentence(text: str) -> str:
    text = text.strip()
    return text if not text or text[-1] in ".!?" else text + "."


def compose_reasoning(evidence: Evidence, label: str, normalise=None, annotations: Sequence[str] = ()) -> str:
    """The explanation of ``label`` from what WAS observed, as the model should write it: it opens
    with :func:`reasoning_lead` (the first observed modality), says per cue whether it fits the label,
    and names no cue that is absent. ``normalise`` maps an expert's label (e.g. the face's "happy")
    into the label set; ``annotations`` are sentences from the dataset (body-language events,
    micro-expression intervals) appended as observed."""
    verdicts = cue_verdicts(evidence, label, normalise)
    fitting = [c for c in VERDICT_CUES if verdicts.get(c)]
    out = []
    face = evidence.experts.get(FACE) or {}
    if face.get("status") == "ok":
        est = face.get("estimates") or {}
        probs = est.get("mean_probabilities") or est.get("prototype_scores") or {}
        dom = est.get("dominant_expression")
        if dom:
            share = f" ({probs[dom]:.2f})" if dom in probs else ""
            out.append(f"Their face is mostly {dom}{share}{_fit(verdicts['face'], label)}.")
        micro = (est.get("counts") or {}).get("micro_expressions", 0)
        if micro:
            out.append(f"It shows {micro} micro-expression{'s' if micro > 1 else ''}.")
    voice = evidence.experts.get(VOICE) or {}
    if voice.get("status") == "ok" and (line := _voice_line(voice)):
        out.append(f"Their voice: {line}.")
    if evidence.transcript.strip():
        words = evidence.transcript.strip().split()
        quote = " ".join(words[:14]) + (" ..." if len(words) > 14 else "")
        tone = _tone(evidence.sentiment["compound"]) if evidence.sentiment is not None else None
        fits = verdicts.get("words")
        out.append(f'Their words, "{quote.rstrip(".!?")}", read {tone}{word_cue(evidence)}{_fit(fits, label)}.' if tone else f'They say "{quote}".')
    for name, title in ((BODY, "Body language"), (PHYSIO, "Physiology")):
        env = evidence.experts.get(name) or {}
        if env.get("status") == "ok" and (line := _summary_line(env)):
            out.append(f"{title}: {line}.")
    out += [_sentence(a) for a in annotations if a.strip()]
    if fitting:
        out.append(fitting_sentence(fitting, label))
    return " ".join(out)


def reasoning_answer(label: str, reasoning: str) -> str:
    """A whole assistant answer in the one format."""
    return f"{answer_prefix(label)} {reasoning.strip()}" if reasoning.strip() else label_answer(label)
