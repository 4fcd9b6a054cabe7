"""The main job, in process: clip -> Evidence -> prompt -> calibrated label -> reasoning.

    evidence.EvidencePipeline   decode once, de-identify, transcribe the anonymised audio, run the experts
    prompting.build_messages    the one prompt (evidence as text; media parts only with trained projectors)
    scoring.HFLabelScorer       the one label choice (calibrated log-likelihood over the label set)
    generation.stream_chat      greedy reasoning after "Emotion: <label>. Reasoning:", through ReasoningFilter

    fusion.decide               fused mode: the fuser combines the LLM's scores with the experts' estimates

The gateway (serving/gateway.py) runs the same steps against vLLM, so the CLI and the server give
the same label distribution for the same clip.

Modes (``--mode``; the default is the most trained one the checkpoint has):
- ``zero-shot``: the base LLM (no LoRA adapter) reads only the transcript and the experts' findings as
  text, and its label scores are calibrated (scoring.py). The only mode of an untrained checkpoint.
- ``trained``: the fine-tuned checkpoint (adapter on); the de-identified video/audio go in as media
  tokens too when its projectors were trained. The label is the LLM's.
- ``fused``: ``trained``, then the fuser saved beside the checkpoint (fusion.py, ``deemo fuser train``)
  combines the LLM's scores with the experts' estimates; the answer names the cues that drove it.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Literal

import torch

from .evidence import Evidence, EvidencePipeline, Profile, model_frames_of
from .penalties import DEFAULT_PENALTIES, logits_processors
from .prompting import DEFAULT_LABELS, ReasoningFilter, build_messages, finding_lines, forced_answer, reasoning_checks, reasoning_lead
from .fusion import decide
from .scoring import HFLabelScorer

Mode = Literal["zero-shot", "trained", "fused"]
MODES: tuple[str, ...] = ("zero-shot", "trained", "fused")
__all__ = ["DEFAULT_LABELS", "MODES", "AnalysisResult", "Analyzer", "analyze_clip", "checkpoint_labels", "resolve_mode"]


def resolve_mode(requested: str | None, projectors_trained: bool, has_adapter: bool, fuser) -> Mode:
    """The mode to run: ``requested``, checked against what the checkpoint has, or the default:
    fused when a fuser is saved beside it and its training chose fusion (``Fuser.default_mode``),
    trained when it was fine-tuned, else zero-shot."""
    from .errors import DeemoError

    trained = projectors_trained or has_adapter
    if requested is None:
        return "fused" if fuser is not None and trained and getattr(fuser, "default_mode", "fused") == "fused" else "trained" if trained else "zero-shot"
    if requested not in MODES:
        raise DeemoError(f"unknown mode {requested!r}; expected one of {', '.join(MODES)}")
    if requested in ("trained", "fused") and not trained:
        raise DeemoError(f"--mode {requested}: this checkpoint was never fine-tuned (no adapter, untrained projectors); use --mode zero-shot or a checkpoint from `deemo train`")
    if requested == "fused" and fuser is None:
        raise DeemoError("--mode fused: no fuser.json beside this checkpoint; train one with `deemo fuser train`")
    return requested  # type: ignore[return-value]


def checkpoint_labels(fuser, mode: str) -> tuple[str, ...]:
    """The labels a checkpoint answers over when none are asked for: the label set its fuser was fitted
    on (the rows it was trained on) when it runs fine-tuned, fused or not, since its LLM learned that
    set; else (zero-shot, or no fuser to say) DEFAULT_LABELS."""
    return tuple(fuser.labels) if fuser is not None and mode != "zero-shot" else DEFAULT_LABELS


@dataclass
class AnalysisResult:
    label: str
    scores: dict[str, float]
    reasoning: str
    transcript: str
    mode: Mode
    inputs_used: dict[str, bool]
    evidence: dict
    timings: dict[str, float]
    clip: dict
    checkpoint: str
    segments: list[dict] = field(default_factory=list)
    deidentified: bool = False
    deid: dict = field(default_factory=dict)
    findings: list[str] = field(default_factory=list)  # the evidence lines the model read
    fusion: dict | None = None  # fused mode: the LLM's own scores, the cues that drove the label, conflicts
    reasoning_corrections: list[dict] = field(default_factory=list)  # cue verdicts of the model's explanation set right to the Evidence (ReasoningFilter)

    def to_dict(self) -> dict:
        return asdict(self)


def media_parts(forward: bool, evidence: Evidence, modalities) -> tuple[list[dict], list, list]:
    """(content parts, videos, audios) the model sees: none unless media are ``forward``ed (trained
    projectors, not zero-shot)."""
    if not forward or evidence.media is None:
        return [], [], []
    parts, videos, audios = [], [], []
    if evidence.media.frames is not None and "video" in modalities:
        parts.append({"type": "video"})
        videos.append(evidence.media.frames)
    if evidence.media.audio is not None and "audio" in modalities:
        parts.append({"type": "audio"})
        audios.append(evidence.media.audio)
    return parts, videos, audios


class Analyzer:
    """Holds the loaded models; ``analyze(path)`` runs the whole pipeline on one clip."""

    def __init__(self, checkpoint: str | Path | None = None, whisper: str | Path | None = None, device: str = "cpu", dtype: torch.dtype = torch.float32, labels: tuple[str, ...] | None = None, max_seconds: float = 600.0, max_new_tokens: int = 64, deid: bool = True, deid_options=None, experts: Profile = "fast", cache=None, transcriber=None, mode: str | None = None):
        """``labels`` None: the checkpoint's own label set (:func:`checkpoint_labels`)."""
        from .assets import asset_dir, default_checkpoint
        from .build import load_checkpoint
        from .config import DeemoConfig
        from .fusion import find_fuser
        from .modeling import ADAPTER_DIR
        from .transcribe import Transcriber

        t0 = time.perf_counter()
        self.checkpoint = Path(checkpoint) if checkpoint else default_checkpoint()
        config = DeemoConfig.load(self.checkpoint)
        fuser = find_fuser(self.checkpoint)
        self.mode: Mode = resolve_mode(mode, bool(config.projectors_trained), (self.checkpoint / ADAPTER_DIR).is_dir(), fuser)
        self.fuser = fuser if self.mode == "fused" else None
        self.model, self.processor = load_checkpoint(self.checkpoint, dtype=dtype, device=device, load_adapter=self.mode != "zero-shot")
        self.labels = tuple(labels or checkpoint_labels(fuser, self.mode))
        self.max_new_tokens = max_new_tokens
        # The privacy boundary: the models below only ever see blurred frames, McAdams-anonymised
        # audio and a transcript (words only); Whisper (on the audio the checkpoint was trained with)
        # and the experts read the raw media inside it.
        self.deid = deid
        self.pipeline = EvidencePipeline(
            experts,
            transcriber=transcriber or Transcriber(whisper or asset_dir("whisper"), device=device),
            deid_options=deid_options,
            cache=cache,
            max_seconds=max_seconds,
            forward_media=self.mode != "zero-shot" and bool(config.projectors_trained),
            model_frames=model_frames_of(self.model.config),
            deidentify=deid,
            transcribe_from=config.transcribe_from,  # as the checkpoint's training rows were transcribed
        )
        # content-free calibration for the LLM that was never trained on the task (scoring.py); a
        # fine-tuned one has learned its data's label prior and is scored raw
        self.scorer = HFLabelScorer(self.model, self.processor, calibrate=self.mode == "zero-shot")
        self.load_s = time.perf_counter() - t0

    def messages(self, evidence: Evidence, question: str | None = None, labels: tuple[str, ...] | None = None) -> tuple[list[dict], list, list]:
        """The prompt for ``evidence`` (the gateway builds the same) and the media it references."""
        parts, videos, audios = media_parts(self.pipeline.forward_media, evidence, self.model.config.modalities)
        return build_messages(evidence, labels or self.labels, question, parts), videos, audios

    def stream_reasoning(self, messages: list[dict], videos, audios, label: str, flt: ReasoningFilter) -> Iterator[str]:
        """Greedy explanation of ``label``, opening with the filter's lead and read through it: yields
        whole sentences that cite only observed modalities, stops at a repeated one
        (``ReasoningFilter(reasoning_lead(ev), **reasoning_checks(...))`` also sets the face's and the
        words' verdicts right; its ``corrected`` says what it changed)."""
        from .generation import stream_chat

        from transformers import StoppingCriteria, StoppingCriteriaList

        lead = flt.lead

        class UntilFiltered(StoppingCriteria):  # generation runs on a thread: stop it when the filter is done
            def __call__(self, input_ids, scores, **kwargs):
                return torch.full((input_ids.shape[0],), flt.done, dtype=torch.bool, device=input_ids.device)

        stop = StoppingCriteriaList([UntilFiltered()])
        for piece in stream_chat(self.model, self.processor, messages, videos, audios, assistant_prefix=forced_answer(label, lead), max_new_tokens=self.max_new_tokens, logits_processor=logits_processors(**DEFAULT_PENALTIES), stopping_criteria=stop):
            if text := flt.feed(piece):
                yield text
            if flt.done:
                break
        if text := flt.finish():
            yield text

    def evidence_for(self, path: str | Path, evidence: Evidence | None = None, physiology=None, physio_args: dict | None = None) -> Evidence:
        """The clip's Evidence: run the pipeline, or take ``evidence`` computed already on the raw
        clip (a `deemo data build` record) with ``path`` its de-identified media, read as is."""
        if evidence is None:
            return self.pipeline.run(path, physiology=physiology, physio_args=physio_args)
        evidence.media = self.pipeline.media_of(path) if self.pipeline.forward_media else None
        return evidence

    def free_text(self, path: str | Path, question: str | None = None, labels: tuple[str, ...] | None = None, evidence: Evidence | None = None) -> tuple[str, Evidence]:
        """The model's unforced answer to the same prompt (no label scoring, no forced opening): the
        free-text baseline, whose label is read from the text (evaluation.extract)."""
        from .generation import stream_chat

        ev = self.evidence_for(path, evidence)
        messages, videos, audios = self.messages(ev, question, tuple(labels or self.labels))
        text = "".join(stream_chat(self.model, self.processor, messages, videos, audios, max_new_tokens=self.max_new_tokens, logits_processor=logits_processors(**DEFAULT_PENALTIES)))
        return text.strip(), ev

    def analyze(self, path: str | Path, on_reasoning: Callable[[str], None] | None = None, physiology: str | Path | None = None, physio_args: dict | None = None, question: str | None = None, labels: tuple[str, ...] | None = None, evidence: Evidence | None = None) -> AnalysisResult:
        """Run the pipeline on a file; ``on_reasoning`` gets the reasoning as it is generated;
        ``labels``: this clip's label set (default: the analyzer's); ``evidence``: computed already
        on the raw clip (see :meth:`evidence_for`)."""
        labels = tuple(labels or self.labels)
        t_all = time.perf_counter()
        ev = self.evidence_for(path, evidence, physiology, physio_args)
        timings = dict(ev.timings)
        messages, videos, audios = self.messages(ev, question, labels)
        t = time.perf_counter()
        scores = self.scorer.score(messages, labels, question, videos, audios)
        label, scores, fusion = decide(scores, ev, self.fuser)
        timings["llm_label"] = time.perf_counter() - t
        t = time.perf_counter()
        pieces = []
        flt = ReasoningFilter(reasoning_lead(ev), **reasoning_checks(ev, label, labels, self.pipeline.forward_media))
        for piece in self.stream_reasoning(messages, videos, audios, label, flt):
            pieces.append(piece)
            if on_reasoning:
                on_reasoning(piece)
        if fusion is not None:  # which cues drove the fused label, and where they conflicted
            pieces.append(" " + fusion["sentence"])
            if on_reasoning:
                on_reasoning(" " + fusion["sentence"])
        timings["llm_reasoning"] = time.perf_counter() - t
        timings["total"] = time.perf_counter() - t_all

        return AnalysisResult(
            label=label,
            scores=scores,
            reasoning="".join(pieces).strip(),
            transcript=ev.transcript,
            mode="trained" if self.mode == "fused" and fusion is None else self.mode,  # another label set than the fuser's: the LLM decided
            inputs_used=ev.inputs_used,
            evidence=ev.to_dict(),
            timings={k: round(v, 3) for k, v in timings.items()},
            clip={"path": str(path), **ev.clip},
            checkpoint=str(self.checkpoint),
            segments=ev.segments,
            deidentified=self.deid,
            deid=ev.deid,
            findings=finding_lines(ev),
            fusion=fusion,
            reasoning_corrections=flt.corrected,
        )


def analyze_clip(path: str | Path, checkpoint: str | Path | None = None, **kwargs) -> AnalysisResult:
    """One-shot convenience: load the (default) checkpoint and analyse ``path``."""
    return Analyzer(checkpoint, **kwargs).analyze(path)
