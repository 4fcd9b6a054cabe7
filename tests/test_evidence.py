"""The one path: Evidence pipeline, prompt builder, reasoning filter, label scorer (tiny parts)."""

from __future__ import annotations

import json

import numpy as np
import pytest


@pytest.fixture
def pipeline(tmp_path):
    from tiny import FixedTranscriber

    from deemo_llama.evidence import EvidencePipeline
    from deemo_llama.tools import ToolCache

    def make(profile="fast", **kw):
        return EvidencePipeline(profile, transcriber=FixedTranscriber("I am so happy today, this is wonderful."), cache=ToolCache(tmp_path / "cache"), **kw)

    return make


def test_evidence_record_is_json_and_non_identifying(pipeline, media_dir):
    from deemo_llama.evidence import Evidence

    ev = pipeline("fast").run(media_dir / "talk.mp4")
    d = ev.to_dict()
    assert set(ev.experts) == {"analyze_facial_expression", "analyze_voice", "analyze_transcript"} and not ev.failures
    assert d["transcript"] == "I am so happy today, this is wonderful." and d["sentiment"]["compound"] > 0.5
    words = ev.experts["analyze_transcript"]["estimates"]
    assert words["sentiment"] == d["sentiment"] and words["cue_words"]["joy"] == ["happy", "wonderful"]  # the words' cues
    assert {"decode", "deid", "transcribe", "analyze_facial_expression", "analyze_voice", "analyze_transcript", "total"} <= set(d["timings"])
    assert d["deid"]["audio"]["mcadams_alpha"] == 0.8 and d["deid"]["video"]["frames_forwarded"] == 0
    assert "media" not in d and Evidence.from_dict(json.loads(json.dumps(d))) == ev  # round trip, no media
    assert str(media_dir) not in json.dumps(d)  # the clip's path is not in the record, only its name


def test_profiles(pipeline, media_dir):
    assert set(pipeline("none").run(media_dir / "talk.mp4").experts) == {"analyze_transcript"}  # text only: in every profile
    ev = pipeline("fast").run(media_dir / "speech.wav")  # audio only: no face expert to run
    assert set(ev.experts) == {"analyze_voice", "analyze_transcript"} and ev.inputs_used == {"video": False, "audio": True}
    from deemo_llama.errors import DeemoError

    with pytest.raises(DeemoError, match="unknown experts profile"):
        pipeline("context")


def test_a_transcript_without_words_is_no_signal_not_a_failed_clip(tmp_path, media_dir):
    """Whisper on anonymised speech it cannot read can give digits only ("1, 2, 3, 4, 5, 6, 7, 8, 6",
    seen on a corpus clip): the transcript expert has no words to read (no_signal) and the clip's
    Evidence is still made; it used to fail the clip (KeyError on the missing sentiment)."""
    from tiny import FixedTranscriber

    from deemo_llama.evidence import EvidencePipeline
    from deemo_llama.tools import ToolCache

    ev = EvidencePipeline("none", transcriber=FixedTranscriber("1, 2, 3, 4, 5, 6, 7, 8, 6"), cache=ToolCache(tmp_path / "cache")).run(media_dir / "talk.mp4")
    assert ev.transcript == "1, 2, 3, 4, 5, 6, 7, 8, 6" and ev.experts["analyze_transcript"]["status"] == "no_signal" and ev.sentiment is None and not ev.failures


@pytest.mark.parametrize("source", ["anonymised", "raw"])
def test_the_transcript_is_made_from_the_audio_the_checkpoint_was_trained_with(pipeline, media_dir, source):
    """``transcribe_from``: Whisper hears the McAdams audio, or the raw audio inside the boundary; either
    way only the words leave it, and the record says which."""
    from deemo_llama.media import load_clip

    p = pipeline("none", transcribe_from=source)
    ev = p.run(media_dir / "speech.wav")
    raw = load_clip(media_dir / "speech.wav", num_frames=1).audio
    heard = p.transcriber.heard
    assert heard.shape == raw.shape
    assert np.array_equal(heard, raw) == (source == "raw")  # McAdams changes every stretch of speech
    assert ev.clip["transcript_source"] == f"whisper ({source} audio)" and ev.transcript
    from deemo_llama.errors import DeemoError

    with pytest.raises(DeemoError, match="transcribe_from must be one of anonymised, raw, not 'original'"):
        pipeline("none", transcribe_from="original")


def test_the_model_reads_the_media_the_data_builder_stores(pipeline, media_dir, tmp_path):
    """One way to make the model's media: the clip de-identified to a file (as `deemo data build` stores
    a row's media), decoded the checkpoint's way. What `deemo analyze` and the gateway forward is,
    pixel for pixel and sample for sample, what training reads from that file."""
    import numpy as np

    p = pipeline("fast", forward_media=True, model_frames=(3, "uniform", 1.0))
    ev = p.run(media_dir / "talk.mp4")
    assert ev.media.frames.shape[0] == 3 and ev.deid["model_media"]["frames_forwarded"] == 3 and ev.deid["model_media"]["audio_forwarded"]
    assert ev.deid["model_media"]["frames_with_faces"] >= 1  # CenterFace found the face in the clip ...
    report, stored = p.deidentify_to(media_dir / "talk.mp4", tmp_path / "row", key="talk.mp4")
    assert stored.name == "video.mp4" and report["options"]["max_fps"] == p.video_fps
    row = p.media_of(stored)  # what training decodes from a built row's media
    assert np.array_equal(row.frames, ev.media.frames) and np.array_equal(row.audio, ev.media.audio)
    from deemo_llama.privacy.faces import HaarFaceDetector

    haar = HaarFaceDetector()
    assert not any(haar(f) for f in ev.media.frames)  # ... and no detectable face is in what the model sees


def test_a_failing_expert_is_recorded_and_the_rest_goes_on(pipeline, media_dir, monkeypatch):
    from deemo_llama.tools.voice import AnalyzeVoice

    def boom(self, *a, **k):
        raise RuntimeError("opensmile exploded")

    monkeypatch.setattr(AnalyzeVoice, "analyze_audio", boom)
    ev = pipeline("fast").run(media_dir / "talk.mp4")
    assert "analyze_voice" in ev.failures and "opensmile exploded" in ev.failures["analyze_voice"]
    assert "analyze_facial_expression" in ev.experts
    from deemo_llama.prompting import build_messages

    text = build_messages(ev, ("happy", "sad"))[-1]["content"][-1]["text"]
    assert "- Face:" in text and "Voice" not in text  # a failed expert is never named to the model


def test_prompt_names_only_the_experts_that_ran():
    from deemo_llama.evidence import Evidence
    from deemo_llama.prompting import build_messages, content_free_messages, finding_lines

    face = {"status": "ok", "estimates": {"dominant_expression": "happy", "mean_probabilities": {"happy": 0.8, "neutral": 0.15, "sad": 0.05}, "counts": {"micro_expressions": 1, "macro_expressions": 0}, "au_proxies": {"lip_corner_pull": {"active_share": 0.4}}}, "events": [], "summary": "x."}
    ev = Evidence(profile="fast", clip={"has_video": True, "has_audio": True}, deid={}, transcript="Great news.", experts={"analyze_facial_expression": face})
    lines = finding_lines(ev)
    assert lines == ["- Face: mostly happy (0.80), then neutral (0.15); 1 micro- and 0 macro-expression(s); active: lip corner pull."]
    msgs = build_messages(ev, ("happy", "sad"))
    text = msgs[-1]["content"][-1]["text"]
    assert 'The person says: "Great news."' in text and "Voice" not in text and "Body" not in text
    free = content_free_messages(("happy", "sad"))[-1]["content"][-1]["text"]
    assert "nothing audible" in free and "- none available" in free


@pytest.mark.parametrize("pieces,expected", [
    ([" The person", " smiles. They are", " happy. The person smiles. More"], "The person smiles. They are happy."),  # repeated sentence stops it
    ([" Pitch 0.82 rises. Then it"], "Pitch 0.82 rises."),  # a number's dot is no sentence end; the tail is cut
    ([" no full stop at all"], "no full stop at all."),  # nothing complete: the tail is closed
    ([""], ""),
])
def test_reasoning_ends_at_a_sentence_and_does_not_loop(pieces, expected):
    from deemo_llama.prompting import ReasoningFilter, read_reasoning

    assert read_reasoning(pieces).text == expected
    f = ReasoningFilter()
    streamed = "".join(f.feed(p) for p in pieces) + f.finish()
    assert streamed.strip() == expected


def test_reasoning_opens_with_an_observed_modality_only():
    from deemo_llama.evidence import Evidence
    from deemo_llama.prompting import ReasoningFilter, reasoning_lead

    ev = Evidence(profile="fast", clip={}, deid={}, transcript="hi", experts={"analyze_facial_expression": {"status": "no_signal"}, "analyze_voice": {"status": "ok"}})
    assert reasoning_lead(ev) == "Their voice"  # no face was read, so the face is not named
    assert reasoning_lead(Evidence(profile="none", clip={}, deid={})) == ""
    f = ReasoningFilter("Their voice")
    assert f.feed(" is loud. Their") == "Their voice is loud." and f.finish() == ""


def _ev_happy_face_positive_words():
    from deemo_llama.evidence import Evidence

    return Evidence(profile="fast", clip={}, deid={}, transcript="What a great day.", sentiment={"compound": 0.62, "neg": 0.0, "neu": 0.4, "pos": 0.6},
                    experts={"analyze_facial_expression": {"status": "ok", "estimates": {"dominant_expression": "happy", "mean_probabilities": {"happy": 0.9, "neutral": 0.1}}},
                             "analyze_transcript": {"status": "ok", "estimates": {"cue_words": {"joy": ["great"]}, "emotion_weights": {"joy": 1.0}}}})


def test_cue_verdicts_follow_the_composed_training_explanations():
    """One rule decides whether the face and the words fit a label, for the training rows and for
    the check of generated explanations; the label set's synonyms map the face into it."""
    from deemo_llama.data.labels import label_set_for
    from deemo_llama.prompting import compose_reasoning, cue_verdicts

    ev = _ev_happy_face_positive_words()
    assert cue_verdicts(ev, "happy") == {"face": True, "words": True}
    assert cue_verdicts(ev, "sad") == {"face": False, "words": False}
    assert cue_verdicts(ev, "neutral") == {"face": False, "words": False}  # positive words are not neutral
    mafw = label_set_for(("anger", "disgust", "fear", "happiness", "neutral", "sadness", "surprise", "contempt", "anxiety", "helplessness", "disappointment"))
    assert mafw.name == "mafw" and cue_verdicts(ev, "happiness", mafw.normalise)["face"] is True  # "happy" -> "happiness"
    assert label_set_for(("calm", "fear")).normalise("fearful") == "fear"  # a custom set keeps the synonyms into it
    assert compose_reasoning(ev, "happy").endswith("Their face and their words point to happy.")
    assert "which does not fit sad" in compose_reasoning(ev, "sad") and "point to" not in compose_reasoning(ev, "sad")


@pytest.mark.parametrize("generated,expected,fixed", [
    # the words' verdict stated against the Evidence, and a closing that leaves out a fitting cue
    (' is mostly happy (0.90), which fits happy. Their words, "What a great day", read positive, which does not fit happy. Their words point to happy.',
     'Their face is mostly happy (0.90), which fits happy. Their words, "What a great day", read positive, which fits happy. Their face and their words point to happy.',
     ["words", "closing"]),
    # the face's verdict, another label in the verdict, and lexicon emotions the expert did not find
    (' is mostly happy (0.90), which does not fit happy. Their words, "What a great day", read positive, with fear words (day), which fits sad.',
     'Their face is mostly happy (0.90), which fits happy. Their words, "What a great day", read positive, with joy words (great), which fits happy.',
     ["face", "word emotions", "words"]),
    # right as generated: nothing changes
    (' is mostly happy (0.90), which fits happy. Their words are upbeat.',
     'Their face is mostly happy (0.90), which fits happy. Their words are upbeat.', []),
])
def test_reasoning_filter_sets_the_cue_verdicts_right(generated, expected, fixed):
    from deemo_llama.prompting import ReasoningFilter, read_reasoning, reasoning_checks

    ev = _ev_happy_face_positive_words()
    checks = reasoning_checks(ev, "happy", ("neutral", "angry", "happy", "sad", "worried", "surprise"), forwarded=True)
    whole = read_reasoning(["Their face", generated], **checks)
    assert whole.text == expected and [c["cue"] for c in whole.corrected] == fixed, (whole.text, whole.corrected)
    f = ReasoningFilter("Their face", **checks)  # streamed in small pieces: the same text, the same list
    streamed = "".join(f.feed(generated[i : i + 7]) for i in range(0, len(generated), 7)) + f.finish()
    assert streamed.strip() == expected and f.corrected == whole.corrected


def test_a_closing_that_names_no_fitting_cue_is_dropped():
    from deemo_llama.prompting import read_reasoning, reasoning_checks

    checks = reasoning_checks(_ev_happy_face_positive_words(), "sad", ("neutral", "happy", "sad"))
    f = read_reasoning([' Their words are few. Their face points to sad.'], **checks)
    assert f.text == "Their words are few." and f.corrected == [{"cue": "closing", "said": "Their face points to sad.", "now": ""}]


def test_calibration_removes_a_biased_prior():
    """A model that prefers "happy" whatever the input: the content-free prompt cancels its bias."""
    from deemo_llama.scoring import calibrated

    bias = np.log(np.array([0.7, 0.1, 0.1, 0.1]))
    evidence = np.log(np.array([0.2, 0.6, 0.1, 0.1]))  # the clip's evidence favours "sad"
    cond = bias + evidence
    scores = calibrated(cond, bias, ("happy", "sad", "angry", "neutral"))
    assert max(scores, key=scores.get) == "sad" and abs(sum(scores.values()) - 1) < 1e-3
    raw = dict(zip(("happy", "sad", "angry", "neutral"), cond))
    assert max(raw, key=raw.get) == "happy"  # uncalibrated, the prior wins


def test_only_an_untrained_checkpoint_is_calibrated(tiny):
    """Content-free calibration corrects a zero-shot LLM's prior; a trained checkpoint has learned
    its data's prior and is scored on its raw answer log-probabilities (else a confident trained
    model's content-free answer would flip its choices). The gateway's scorer follows the same rule."""
    from deemo_llama.prompting import build_messages, label_answer
    from deemo_llama.scoring import HFLabelScorer, calibrated, calibrates

    model, proc = tiny
    msgs, labels = build_messages(None, ("happy", "sad")), ("happy", "sad")
    cond = HFLabelScorer(model, proc).answer_logprobs(msgs, [label_answer(x) for x in labels])
    assert calibrates(model.config) and HFLabelScorer(model, proc).calibrate
    assert HFLabelScorer(model, proc).score(msgs, labels) != calibrated(cond, np.zeros(2), labels)  # the content-free prompt moved it
    model.config.projectors_trained = True
    try:
        assert not calibrates(model.config)
        assert HFLabelScorer(model, proc).score(msgs, labels) == calibrated(cond, np.zeros(2), labels)
        assert HFLabelScorer(model, proc, calibrate=True).score(msgs, labels) != calibrated(cond, np.zeros(2), labels)
    finally:
        model.config.projectors_trained = False


def test_hf_scorer_matches_full_forward(tiny):
    """The KV-cache-repeat scorer equals summing log-probs of a full forward per answer."""
    import torch

    from deemo_llama.prompting import build_messages, label_answer
    from deemo_llama.scoring import HFLabelScorer

    model, proc = tiny
    msgs = build_messages(None, ("happy", "sad"))
    got = HFLabelScorer(model, proc).answer_logprobs(msgs, [label_answer("happy"), label_answer("sad")])
    prompt = proc.render(msgs, add_generation_prompt=True)
    for g, a in zip(got, [label_answer("happy"), label_answer("sad")]):
        p = proc.tokenizer(prompt, add_special_tokens=False).input_ids
        full = proc.tokenizer(prompt + a, add_special_tokens=False).input_ids
        with torch.no_grad():
            logp = torch.log_softmax(model.language_model(input_ids=torch.tensor([full])).logits[0].float(), -1)
        want = sum(float(logp[i - 1, full[i]]) for i in range(len(p), len(full)))
        assert abs(g - want) < 1e-3
