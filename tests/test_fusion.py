"""The transcript expert, learned fusion, modes, the held-out spoken set, calibration of a biased
toy model, and grounded reasoning (tiny parts; no real weights)."""

from __future__ import annotations

import json

import numpy as np
import pytest


# -- analyze_transcript ------------------------------------------------------------------------------
def test_transcript_expert_handles_negation_and_intensifiers():
    from deemo_llama.tools import get_tool

    tool = get_tool("analyze_transcript")
    neg = tool.run(text="I am not happy at all.").to_dict()
    est = neg["estimates"]
    assert neg["status"] == "ok" and est["emotion_weights"]["joy"] == 0 and est["negated_words"] == ["happy"]
    assert est["sentiment"]["compound"] < -0.05 and est["lexicon_polarity"] == {"positive": 0.0, "negative": 1.0}  # polarity flipped
    assert [e["type"] for e in neg["events"]] == ["negated_cue"] and "negated ones: happy" in neg["summary"]
    plain = tool.run(text="I am happy.").to_dict()["estimates"]["emotion_weights"]["joy"]
    boosted = tool.run(text="I am very happy.").to_dict()["estimates"]["emotion_weights"]["joy"]
    damped = tool.run(text="I am slightly happy.").to_dict()["estimates"]["emotion_weights"]["joy"]
    assert damped < plain < boosted
    # a clause boundary ends the negation's reach: "not sad, but happy" keeps the joy
    mixed = tool.run(text="I am not sad, but I am delighted.").to_dict()["estimates"]
    assert mixed["emotion_weights"]["joy"] > 0 and mixed["emotion_weights"]["sadness"] == 0 and mixed["negated_words"] == ["sad"]
    # only lexicon words leave the tool: a name in the transcript is not in the envelope
    named = tool.run(text="Margaret says the funeral was terrible.").to_dict()
    assert "margaret" not in json.dumps(named).lower() and "terrible" in json.dumps(named["estimates"]["cue_words"])
    assert tool.run(text="   ").to_dict()["status"] == "no_signal"


def test_transcript_expert_reads_meaning_where_no_lexicon_word_is(tmp_path, monkeypatch):
    """Sentences with no NRC emotion word, written for this test (none is a template's): the sentence
    encoder puts each nearest its class's centroid; the figures reach the fuser as words.meaning.*;
    the centroids are cached on disk, and a damaged cache file is recomputed, not trusted."""
    from deemo_llama.fusion import clip_features
    from deemo_llama.tools import get_tool
    from deemo_llama.tools import transcript as T

    said = {"Nobody noticed that I moved out last month.": "sad", "Who said you could borrow my car?": "angry", "We are getting married in June!": "happy",
            "The bins go out on Thursday.": "neutral", "You took my seat again, get up now!": "angry"}
    tool = get_tool("analyze_transcript")
    for text, label in said.items():
        env = tool.run(text=text).to_dict()
        m = env["estimates"]["meaning"]
        assert not [c for c in T.lexicon_cues(text) if c["emotions"]] and max(m, key=m.get) == label, (text, m)
        assert set(m) == {"neutral", "angry", "happy", "sad", "worried", "surprise"} and all(-1 <= v <= 1 for v in m.values())
        assert clip_features({"experts": {"analyze_transcript": env}}, None)[f"words.meaning.{label}"] == m[label]
    monkeypatch.setenv("DEEMO_HOME", str(tmp_path))
    T.class_centroids.cache_clear()
    try:
        labels, c = T.class_centroids()
        (path,) = (tmp_path / "sentence-centroids").glob("*.json")  # written once, atomically
        assert json.loads(path.read_text())["labels"] == list(labels) and np.allclose(np.linalg.norm(c, axis=1), 1)
        path.write_text("{broken")
        T.class_centroids.cache_clear()
        assert np.allclose(T.class_centroids()[1], c) and json.loads(path.read_text())["centroids"]
    finally:
        T.class_centroids.cache_clear()


def test_transcript_expert_is_a_text_tool_in_the_tool_loop_and_cli(tmp_path):
    from deemo_llama.tools import ToolCache
    from deemo_llama.tools.loop import ToolSession

    session = ToolSession({}, cache=ToolCache(tmp_path / "cache"))  # no clip: only the text tool is offered
    assert [s["function"]["name"] for s in session.specs()] == ["analyze_transcript"]
    step = session.call("analyze_transcript", json.dumps({"text": "I am furious!"}))
    assert step.status == "ok" and step.result["estimates"]["emotion_weights"]["anger"] > 0


# -- the fuser -----------------------------------------------------------------------------------
def _planted(n=300, seed=0):
    """Three labels; feature a strongly and b weakly tied to the label, c pure noise."""
    rng = np.random.default_rng(seed)
    labels = ["happy", "sad", "angry"]
    y = rng.integers(0, 3, n)
    onehot = np.eye(3)[y]
    rows = []
    for i in range(n):
        rows.append({**{f"voice.a{k}": 3.0 * onehot[i, k] + rng.normal() for k in range(3)},
                     **{f"words.b{k}": 0.8 * onehot[i, k] + rng.normal() for k in range(3)},
                     **{f"face.c{k}": rng.normal() for k in range(3)}})
    return rows, [labels[k] for k in y], labels


def test_fuser_recovers_the_planted_weights_ranking():
    from deemo_llama.fusion import fit

    rows, y, labels = _planted()
    f = fit(rows, y, labels, C=1.0)
    w = np.abs(np.asarray(f.coef))
    strength = {g: w[:, [j for j, n in enumerate(f.features) if n.startswith(g)]].mean() for g in ("voice.a", "words.b", "face.c")}
    assert strength["voice.a"] > strength["words.b"] > strength["face.c"], strength
    # each strong feature's largest weight is on its own label
    for k, lab in enumerate(labels):
        assert labels[int(np.argmax(np.asarray(f.coef)[:, f.features.index(f"voice.a{k}")]))] == lab
    hits = np.mean([max(p := f.predict(r), key=p.get) == t for r, t in zip(*_planted(100, seed=1)[:2])])
    assert hits > 0.8  # held-out rows of the same process


def test_fuser_round_trips_with_its_feature_list(tmp_path):
    from sklearn.linear_model import LogisticRegression

    from deemo_llama.errors import DeemoError
    from deemo_llama.fusion import Fuser, find_fuser, fit

    rows, y, labels = _planted(120)
    f = fit(rows, y, labels, C=0.5)
    f.info["held_out"] = {"fused": {"accuracy": 0.9}}
    path = f.save(tmp_path)
    g = find_fuser(tmp_path)
    assert path.name == "fuser.json" and g.features == f.features and g.labels == labels and g.coef == f.coef and g.info == f.info
    assert g.predict(rows[0]) == f.predict(rows[0])
    # the same numbers as scikit-learn's own model on the standardised features
    X = np.array([[r[k] for k in f.features] for r in rows])
    Z = (X - np.array(f.means)) / np.array(f.scale)
    ref = LogisticRegression(C=0.5, max_iter=5000, random_state=0).fit(Z, y)
    want = dict(zip(ref.classes_, ref.predict_proba(Z[:1])[0]))
    assert all(abs(g.predict(rows[0])[k] - want[k]) < 1e-3 for k in labels)
    # a missing feature takes its training mean; an unknown extra one is ignored
    partial = {k: v for k, v in rows[0].items() if not k.startswith("face.")} | {"body.new": 5.0}
    assert abs(sum(g.predict(partial).values()) - 1) < 1e-3
    bad = json.loads(path.read_text())
    bad["coef"] = bad["coef"][:-1]
    path.write_text(json.dumps(bad))
    with pytest.raises(DeemoError, match="do not match"):
        Fuser.load(tmp_path)


def test_decide_names_the_drivers_and_the_conflicts():
    from deemo_llama.evidence import Evidence
    from deemo_llama.fusion import decide, fit

    labels = ["happy", "sad"]
    rng = np.random.default_rng(0)
    rows, y = [], []
    for i in range(200):
        lab = i % 2
        rows.append({"llm.happy": 0.5 + 0.1 * rng.normal(), "llm.sad": 0.5, "voice.present": 1.0, "voice.pitch_iqr_semitones": 3 + 4 * (1 - lab) + rng.normal(), "words.present": 1.0,
                     "words.sentiment.compound": (0.6 if lab == 0 else -0.6) + 0.3 * rng.normal()})
        y.append(labels[lab])
    f = fit(rows, y, labels)
    ev = {"experts": {"analyze_voice": {"status": "ok", "estimates": {"pitch_iqr_semitones": 8.0}},
                      "analyze_transcript": {"status": "ok", "estimates": {"sentiment": {"compound": -0.7}}}}}
    label, scores, fusion = decide({"happy": 0.5, "sad": 0.5}, ev, f)
    assert fusion["llm_scores"] == {"happy": 0.5, "sad": 0.5} and set(scores) == set(labels)
    cues = [d["cue"] for d in fusion["drivers"]]
    other = "sad" if label == "happy" else "happy"
    # the wide pitch range says happy, the negative words say sad: whichever wins, the other is a conflict
    assert cues and fusion["conflicts"] and set(fusion["conflicts"].values()) == {other} and fusion["sentence"].startswith("Fused, ")
    # no fuser, or a request for another label set: the LLM's own choice, untouched
    assert decide({"happy": 0.3, "sad": 0.7}, Evidence(profile="none", clip={}, deid={}), None) == ("sad", {"happy": 0.3, "sad": 0.7}, None)
    assert decide({"calm": 0.6, "tense": 0.4}, ev, f)[2] is None


def test_a_cue_that_states_its_label_is_not_said_to_point_elsewhere():
    """The face states its own reading (its dominant expression): a fuser whose weights count the
    face's figures toward sad does not say "the face pointed to sad" of a face the Evidence calls
    happy; of a face it calls sad it does."""
    from deemo_llama.fusion import Fuser, decide

    labels = ["happy", "sad", "surprise"]
    # the face's happy probability pushes sad up; the voice's pitch range pushes surprise up
    f = Fuser(labels, ["face.mean_probabilities.happy", "voice.pitch_iqr_semitones"], [0.5, 3.0], [0.2, 1.0],
              [[0.0, 0.0], [3.0, 0.0], [0.0, 4.0]], [0.0, 0.0, 0.0])

    def ev(dominant):
        return {"experts": {"analyze_facial_expression": {"status": "ok", "estimates": {"dominant_expression": dominant, "mean_probabilities": {"happy": 1.0}}},
                            "analyze_voice": {"status": "ok", "estimates": {"pitch_iqr_semitones": 6.0}}}}

    assert f.explain({"face.mean_probabilities.happy": 1.0, "voice.pitch_iqr_semitones": 6.0}, "surprise")["conflicts"] == {"face": "sad"}  # the weights alone
    label, _, fusion = decide({lab: 1 / 3 for lab in labels}, ev("happy"), f)
    assert label == "surprise" and fusion["conflicts"] == {} and "face" not in fusion["sentence"], fusion
    label, _, fusion = decide({lab: 1 / 3 for lab in labels}, ev("sad"), f)
    assert label == "surprise" and fusion["conflicts"] == {"face": "sad"} and fusion["sentence"].endswith("The face pointed to sad."), fusion


def test_features_flatten_the_experts_envelopes():
    from deemo_llama.fusion import clip_features

    ev = {"experts": {"analyze_voice": {"status": "ok", "estimates": {"pitch_iqr_semitones": 2.5, "method": "x", "pitch_median_semitones": 40.1, "loudness_mean": 0.8}},
                      "analyze_facial_expression": {"status": "no_signal", "estimates": {}},
                      "analyze_transcript": {"status": "ok", "estimates": {"sentiment": {"compound": 0.4}, "cue_words": {"joy": ["glad"]}}}}}
    f = clip_features(ev, {"happy": 0.7, "sad": 0.3})
    assert f["llm.happy"] == 0.7 and f["voice.pitch_iqr_semitones"] == 2.5 and f["voice.present"] == 1.0
    assert f["face.present"] == 0.0 and f["words.sentiment.compound"] == 0.4 and not any("cue_words" in k or "method" in k for k in f)
    # the speaker's absolute pitch level and the recording's loudness describe the voice, not the emotion
    assert "voice.pitch_median_semitones" not in f and "voice.loudness_mean" not in f


# -- modes -----------------------------------------------------------------------------------------
def test_modes_follow_what_the_checkpoint_has():
    from deemo_llama.analyze import resolve_mode
    from deemo_llama.errors import DeemoError

    from deemo_llama.fusion import Fuser

    fuser = object()
    assert resolve_mode(None, False, False, None) == "zero-shot"
    assert resolve_mode(None, True, True, None) == "trained" and resolve_mode(None, True, True, fuser) == "fused"
    assert resolve_mode("zero-shot", True, True, fuser) == "zero-shot"
    # a fuser whose training found fusion no better than the LLM alone: trained by default, fused on request
    within_noise = Fuser(["a", "b"], ["llm.a"], [0.0], [1.0], [[1.0], [-1.0]], [0.0, 0.0], {"default_mode": {"mode": "trained", "reason": "..."}})
    assert within_noise.default_mode == "trained" and resolve_mode(None, True, True, within_noise) == "trained"
    assert resolve_mode("fused", True, True, within_noise) == "fused"
    assert Fuser(["a", "b"], ["llm.a"], [0.0], [1.0], [[1.0], [-1.0]], [0.0, 0.0]).default_mode == "fused"  # saved before the choice
    # the labels a checkpoint answers over unasked: the set it was trained on (its fuser's), in trained
    # mode too (it used to fall back to the 8 default labels, two of them never seen in training)
    from deemo_llama.analyze import DEFAULT_LABELS, checkpoint_labels

    assert checkpoint_labels(within_noise, "trained") == checkpoint_labels(within_noise, "fused") == ("a", "b")
    assert checkpoint_labels(within_noise, "zero-shot") == checkpoint_labels(None, "trained") == DEFAULT_LABELS and len(DEFAULT_LABELS) == 8
    with pytest.raises(DeemoError, match="never fine-tuned"):
        resolve_mode("trained", False, False, None)
    with pytest.raises(DeemoError, match="no fuser.json"):
        resolve_mode("fused", True, True, None)
    with pytest.raises(DeemoError, match="unknown mode"):
        resolve_mode("psychic", True, True, None)


def test_the_server_runs_the_mode_asked_or_the_checkpoint_default(tiny_checkpoint, tmp_path):
    """`deemo serve --mode` is checked as `deemo analyze --mode` is; without it the checkpoint's
    default (its fuser's recorded choice) runs, and zero-shot is refused for a fine-tuned checkpoint
    (the model server serves the fine-tuned weights)."""
    import shutil

    from deemo_llama.errors import DeemoError
    from deemo_llama.fusion import Fuser
    from deemo_llama.modeling import ADAPTER_DIR
    from deemo_llama.serving.gateway import serving_mode

    ckpt = tmp_path / "ckpt"
    shutil.copytree(tiny_checkpoint, ckpt)
    assert serving_mode(ckpt) == ("zero-shot", None)
    (ckpt / ADAPTER_DIR).mkdir()
    assert serving_mode(ckpt) == ("trained", None)
    with pytest.raises(DeemoError, match="serves its fine-tuned weights"):
        serving_mode(ckpt, "zero-shot")
    fuser = Fuser(["a", "b"], ["llm.a"], [0.0], [1.0], [[1.0], [-1.0]], [0.0, 0.0], {"default_mode": {"mode": "trained", "reason": "within noise"}})
    fuser.save(ckpt)
    assert serving_mode(ckpt) == ("trained", None)
    mode, loaded = serving_mode(ckpt, "fused")
    assert mode == "fused" and loaded.labels == ["a", "b"]
    fuser.info["default_mode"]["mode"] = "fused"
    fuser.save(ckpt)
    assert serving_mode(ckpt)[0] == "fused"


# -- calibration of a deliberately biased toy model -----------------------------------------------------
def test_calibration_cancels_a_toy_model_biased_towards_one_label(tiny):
    """A tiny LLM whose output layer is pushed towards the tokens of " happy": scored raw it
    says happy for every transcript; content-free calibration takes the push out (the calibrated
    choice is no longer always happy, and equals the unbiased model's calibrated choice on most)."""
    import torch

    from deemo_llama.evidence import Evidence
    from deemo_llama.prompting import build_messages
    from deemo_llama.scoring import HFLabelScorer

    model, proc = tiny
    labels = ("happy", "sad", "angry")
    texts = ["The person smiles.", "She speaks slowly with long pauses.", "I am so angry about this!", "Neutral tone, steady voice.", "It is not fair!", "They are happy to be here."]
    msgs = [build_messages(Evidence(profile="none", clip={}, deid={}, transcript=t), labels) for t in texts]
    unbiased = [HFLabelScorer(model, proc, calibrate=True).score(m, labels) for m in msgs]
    tok = proc.tokenizer
    ids = {lab: set(tok(f"Emotion: {lab}.", add_special_tokens=False).input_ids) for lab in labels}
    push = sorted(ids["happy"] - ids["sad"] - ids["angry"])  # the tokens only "happy" is spelled with
    bias = torch.zeros(len(tok))
    bias[push] = 8.0
    head = model.language_model.get_output_embeddings()
    hook = head.register_forward_hook(lambda mod, inp, out: out + bias[: out.shape[-1]].to(out.dtype))
    try:
        raw = [HFLabelScorer(model, proc, calibrate=False).score(m, labels) for m in msgs]
        cal = [HFLabelScorer(model, proc, calibrate=True).score(m, labels) for m in msgs]
    finally:
        hook.remove()
    assert all(max(s, key=s.get) == "happy" and s["happy"] > 0.9 for s in raw)  # the bias decides everything
    assert sum(max(s, key=s.get) == "happy" for s in cal) < len(texts)
    assert np.mean([abs(c["happy"] - u["happy"]) for c, u in zip(cal, unbiased)]) < 0.1  # the push is cancelled


# -- grounded reasoning ----------------------------------------------------------------------------
def test_reasoning_never_names_an_expert_that_did_not_run(tiny, monkeypatch):
    """The model's (forced) explanation invents a face and a heart rate for a clip where only the
    voice expert and the words were observed: those sentences never reach the answer."""
    from deemo_llama import analyze as A
    from deemo_llama import generation
    from deemo_llama.evidence import Evidence
    from deemo_llama.prompting import ReasoningFilter, observed_modalities, reasoning_lead

    model, proc = tiny
    forced = " is loud and fast. Their face shows a wide smile. The words are upbeat. Their posture is slumped. The voice rises at the end."

    def scripted(*args, **kwargs):  # the tiny model's output, forced
        yield from (forced[i : i + 5] for i in range(0, len(forced), 5))

    monkeypatch.setattr(generation, "stream_chat", scripted)
    analyzer = A.Analyzer.__new__(A.Analyzer)
    analyzer.model, analyzer.processor, analyzer.max_new_tokens = model, proc, 32
    ev = Evidence(profile="fast", clip={"has_video": True, "has_audio": True}, deid={}, transcript="What a day!",
                  experts={"analyze_voice": {"status": "ok", "estimates": {}, "events": []}, "analyze_facial_expression": {"status": "error"}})
    allowed = observed_modalities(ev)
    assert allowed == {"voice", "words"} and reasoning_lead(ev) == "Their voice"
    text = "".join(analyzer.stream_reasoning([], [], [], "happy", ReasoningFilter(reasoning_lead(ev), allowed)))
    assert text == "Their voice is loud and fast. The words are upbeat. The voice rises at the end.", text
    # a trained checkpoint that was shown the de-identified frames may describe what it saw
    assert {"face", "body"} <= observed_modalities(ev, forwarded=True)


def test_analyze_states_the_cue_verdicts_of_the_evidence_not_the_models(tiny_checkpoint, monkeypatch, media_dir):
    """The model's (forced) explanation gets the words' verdict backwards, names lexicon emotions the
    expert did not find and closes on a cue that does not fit: `deemo analyze` answers with the
    Evidence's verdicts and lists each change in ``reasoning_corrections``."""
    from tiny import FixedTranscriber

    from deemo_llama import analyze as A
    from deemo_llama import generation
    from deemo_llama.evidence import Evidence
    from deemo_llama.prompting import word_cue

    seen = {}

    def scripted(model, processor, messages, videos, audios, assistant_prefix="", **kw):  # the model's output, forced
        seen["prefix"] = assistant_prefix
        label = assistant_prefix.split("Emotion: ")[1].split(".")[0]
        wrong = "does not fit" if label == "happy" else "fits"  # the words are positive: they fit happy only
        yield from [', "what a wonderful day",', f" read positive, with fear words (day), which {wrong} {label}.", " Their words point to sad."]

    monkeypatch.setattr(generation, "stream_chat", scripted)
    analyzer = A.Analyzer(tiny_checkpoint, experts="none", transcriber=FixedTranscriber("What a wonderful day, I love it."), labels=("neutral", "happy", "sad"))
    res = analyzer.analyze(media_dir / "talk.mp4")
    label = res.label
    assert seen["prefix"].endswith(f"Emotion: {label}. Reasoning: Their words")
    right = "fits" if label == "happy" else "does not fit"
    closing = " Their words point to happy." if label == "happy" else ""
    cue = word_cue(Evidence.from_dict(res.evidence))
    assert cue.startswith(", with joy words (") and "love" in cue  # the lexicon's find, not the model's "fear"
    assert res.reasoning == f'Their words, "what a wonderful day", read positive{cue}, which {right} {label}.{closing}', res.reasoning
    assert [c["cue"] for c in res.reasoning_corrections] == ["word emotions", "words", "closing"], res.reasoning_corrections
    assert res.reasoning_corrections[1]["now"] == f"which {right} {label}"


# -- the held-out spoken set --------------------------------------------------------------------------
@pytest.mark.parametrize("which,size", [("a", 8), ("b", 8), ("c", 16), ("d", 16), ("e", 16), ("f", 16)])
def test_heldout_set_shares_no_sentence_or_voice_with_the_training_corpus(which, size):
    from deemo_llama.data.synth import LABELS, PROSODY, WORDINGS, heldout_per_class, plan_corpus, plan_heldout, sentence_pools, subjects

    assert heldout_per_class(which) == size
    held = plan_heldout(size, which=which)
    assert len(held) == 12 * size and {s["kind"] for s in held} == {"wording", "voice"}
    assert all(sum(s["label"] == lab and s["kind"] == k for s in held) == size for lab in LABELS for k in ("wording", "voice"))
    assert len({s["transcript"] for s in held if s["kind"] == "wording"}) == 6 * size  # no wording sentence twice
    training = {x for wording in WORDINGS for pool in sentence_pools(wording).values() for x in pool}  # the LLM's corpus and the fuser's
    assert not {s["transcript"] for s in held} & training
    assert not {s["subject"] for s in held} & set(subjects(0))
    train_values = {(s["pitch"], s["speed"], s["amplitude"], s["pitch_range"]) for s in plan_corpus(432, 0)}
    assert sum((s["pitch"], s["speed"], s["amplitude"], s["pitch_range"]) in train_values for s in held) <= 2
    for s in held:  # the class's prosody carries the voice clips; the wording clips speak neutrally
        pros = PROSODY[s["label"] if s["kind"] == "voice" else "neutral"]
        assert pros["pitch"][0] <= s["pitch"] <= pros["pitch"][1]
    # nor with an earlier set: a choice made by looking at one is confirmed on the next
    for other in {"b": ["a"], "c": ["a", "b"], "d": ["a", "b", "c"], "e": ["a", "b", "c", "d"], "f": ["a", "b", "c", "d", "e"]}.get(which, []):
        o = plan_heldout(8, which=other)
        assert not {s["transcript"] for s in held} & {s["transcript"] for s in o}
        assert not {s["subject"] for s in held} & {s["subject"] for s in o}
        assert all(s["id"].startswith(f"heldout-{which}-") for s in held) and not {s["id"] for s in held} & {s["id"] for s in o}
    from deemo_llama.errors import DeemoError

    with pytest.raises(DeemoError, match=f"held-out set {which} has 1-{size} clips per class and kind, not {size + 1}"):
        plan_heldout(size + 1, which=which)


def test_heldout_set_names_are_checked(tmp_path):
    import subprocess
    import sys

    from deemo_llama.data.synth import plan_heldout
    from deemo_llama.errors import DeemoError

    with pytest.raises(DeemoError, match="no held-out set 'g'"):
        plan_heldout(8, which="g")
    r = subprocess.run([sys.executable, "-m", "deemo_llama.cli", "data", "synth", str(tmp_path / "out"), "--heldout-set", "g"], capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and "--heldout-set g: the held-out sets are a, b, c, d, e, f" in r.stderr, r.stderr
    assert not (tmp_path / "out").exists()


def test_fuser_train_command_learns_a_planted_cue_and_resumes(tiny_checkpoint, tmp_path):
    """`deemo fuser train` on rows whose Evidence plants the label in the voice's pitch (the tiny
    LLM's scores are noise), given as a build folder's split and a second rows file elsewhere: the
    saved fuser's held-out table shows the voice carrying it and the LLM alone near chance; a second
    run reuses the cached features (no row is scored twice)."""
    import shutil
    import subprocess
    import sys

    ckpt = tmp_path / "ckpt"
    shutil.copytree(tiny_checkpoint, ckpt)
    labels = ["happy", "sad", "angry"]
    rng = np.random.default_rng(0)
    rows = []
    (tmp_path / "more").mkdir()
    for i in range(48):
        k = i % 3
        ev = {"version": "2", "experts": {"analyze_voice": {"status": "ok", "estimates": {"pitch_iqr_semitones": 2.0 + 3.0 * k + 0.4 * rng.normal()}}}}
        (tmp_path / ("more" if i >= 30 else ".") / f"ev{i}.json").write_text(json.dumps(ev))  # Evidence beside its rows file
        rows.append({"schema_version": "1", "id": f"c{i:03d}/recognition", "clip_id": f"c{i:03d}", "kind": "recognition", "split": "validation", "subject": f"s{i % 6}",
                     "label": labels[k], "label_set": {"name": "custom", "labels": labels}, "evidence": f"ev{i}.json",
                     "messages": [{"role": "user", "content": [{"type": "text", "text": f"Clip {i}. How does the person feel?"}]}, {"role": "assistant", "content": [{"type": "text", "text": f"Emotion: {labels[k]}."}]}]})
    (tmp_path / "validation.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:30]))
    (tmp_path / "more" / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[30:]))
    (tmp_path / "build.json").write_text(json.dumps({"options": {"transcribe_from": "raw"}}))  # a build whose transcripts are of the raw audio
    assert json.loads((ckpt / "config.json").read_text())["transcribe_from"] == "anonymised"
    cmd = [sys.executable, "-m", "deemo_llama.cli", "fuser", "train", "--checkpoint", str(ckpt), "--data", str(tmp_path), "--data", str(tmp_path / "more" / "rows.jsonl")]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env={**__import__("os").environ, "DEEMO_HOME": str(tmp_path / "home")})
    assert r.returncode == 0, r.stderr[-2000:]
    fuser = json.loads((ckpt / "fuser.json").read_text())
    ho = fuser["info"]["held_out"]
    assert ho["fused"]["accuracy"] >= 0.9 and ho["voice only"]["accuracy"] >= 0.9 and ho["llm alone"]["accuracy"] < 0.6, ho
    assert ho["fused, nested"]["accuracy"] >= 0.85, ho  # the planted cue is found again inside every outer fold (chance 0.33)
    dm = fuser["info"]["default_mode"]
    assert dm["mode"] == "fused" and dm["gain"] > dm["se"] > 0 and dm["rows"] == 48, dm  # fusion is far better than the noise LLM
    assert "default mode: fused" in r.stdout
    info = subprocess.run([sys.executable, "-m", "deemo_llama.cli", "models", "info", str(ckpt)], capture_output=True, text=True, timeout=300, env={**__import__("os").environ, "COLUMNS": "400"})
    assert info.returncode == 0 and "nested (unseen subjects)" in info.stdout and "default mode " in info.stdout and "exceeds one standard error" in info.stdout, info.stdout
    assert "voice.pitch_iqr_semitones" in fuser["features"] and fuser["labels"] == labels and "wrote" in r.stdout
    # the checkpoint now transcribes clips as the fuser's rows were (the rows file outside a build folder says nothing)
    assert json.loads((ckpt / "config.json").read_text())["transcribe_from"] == "raw" and fuser["info"]["transcribe_from"] == "raw"
    assert f"{ckpt} transcribes clips from the raw audio, as the fuser's rows were" in r.stdout
    cached = (ckpt / "fuser_features.jsonl").read_text()
    assert len(cached.splitlines()) == 48
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env={**__import__("os").environ, "DEEMO_HOME": str(tmp_path / "home")})
    assert again.returncode == 0 and (ckpt / "fuser_features.jsonl").read_text() == cached and "fuser features" not in again.stderr
    assert fuser["info"]["trained_on"] == [str(tmp_path / "validation.jsonl"), str(tmp_path / "more" / "rows.jsonl")]
    assert fuser["info"]["subject_ids"] == [f"s{i}" for i in range(6)] and fuser["info"]["subjects"] == 6  # whose clips it learned from (a held-out set must share none)
    bad = subprocess.run([*cmd[:-4], "--data", str(tmp_path / "nowhere")], capture_output=True, text=True, timeout=120)
    assert bad.returncode != 0 and "no such file or folder" in bad.stderr and "Traceback" not in bad.stderr
    twice = subprocess.run([*cmd, "--data", str(tmp_path / "more" / "rows.jsonl")], capture_output=True, text=True, timeout=300, env={**__import__("os").environ, "DEEMO_HOME": str(tmp_path / "home")})
    assert twice.returncode == 2 and f"row c030/recognition is also in {tmp_path / 'more'} (give each rows file once)" in twice.stderr, twice.stderr
    (tmp_path / "more" / "build.json").write_text(json.dumps({"options": {"transcribe_from": "anonymised"}}))
    before = (ckpt / "fuser.json").read_text()
    mixed = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**__import__("os").environ, "DEEMO_HOME": str(tmp_path / "home")})
    assert mixed.returncode == 2 and "the rows' transcripts were made from different audio" in mixed.stderr and len(mixed.stderr.strip().splitlines()) == 1, mixed.stderr
    assert (ckpt / "fuser.json").read_text() == before  # nothing written


def test_nested_estimate_chooses_the_model_without_the_held_out_subjects(monkeypatch):
    """The fuser's nested score redoes the whole model choice (C, cue groups) inside each outer fold:
    no choice ever sees the subjects it is then scored on, and on cues that carry nothing the nested
    accuracy stays near chance."""
    from deemo_llama.training import fuser as F

    rng = np.random.default_rng(0)
    labels = ["a", "b", "c"]
    records = [{"id": str(i), "subject": f"s{i % 10}", "label": labels[rng.integers(3)],
                "features": {"llm.a": rng.random(), "llm.b": rng.random(), "llm.c": rng.random(), "voice.x": rng.normal(), "face.y": rng.normal(), "body.z": rng.normal()}}
               for i in range(150)]
    seen, real = [], F._select

    def spy(recs, labs, C=None):
        seen.append({r["subject"] for r in recs})
        return real(recs, labs, C)

    monkeypatch.setattr(F, "_select", spy)
    pred = F._nested_predictions(records, labels)
    assert len(seen) == 5 and all(len(s) == 8 for s in seen)  # 5 outer folds, each choosing on 8 of 10 subjects
    for subjects in seen:  # the subjects each fold predicted are exactly the ones its choice never saw
        held = {r["subject"] for r, p in zip(records, pred) if r["subject"] not in subjects}
        assert held and not held & subjects
    acc = np.mean([p == r["label"] for p, r in zip(pred, records)])
    assert all(pred) and acc < 0.5, acc  # chance is 1/3: noise cues give nothing once chosen honestly


def test_default_mode_is_fused_only_when_its_nested_gain_exceeds_one_standard_error():
    """The one-standard-error rule on paired per-clip outcomes: a clear gain runs fused, a gain
    within its noise (or a loss) keeps the simpler fine-tuned LLM; rows without a nested prediction
    are left out, and with none the fuser stays the default."""
    from deemo_llama.training.fuser import choose_default_mode

    y = ["a"] * 100
    llm = ["a"] * 50 + ["b"] * 50  # the LLM alone: 50 % right
    clear = ["a"] * 70 + ["b"] * 30  # fused: 20 clips better, none worse
    dm = choose_default_mode(y, clear, llm)
    assert dm["mode"] == "fused" and dm["gain"] == 0.2 and 0 < dm["se"] < 0.05 and dm["rows"] == 100, dm
    noisy = ["a"] * 46 + ["b"] * 4 + ["a"] * 6 + ["b"] * 44  # +6 and -4: a gain of 0.02 with an SE near 0.03
    dm = choose_default_mode(y, noisy, llm)
    assert dm["mode"] == "trained" and 0 < dm["gain"] < dm["se"] and "does not exceed" in dm["reason"], dm
    assert choose_default_mode(y, ["b"] * 100, llm)["mode"] == "trained"  # worse than the LLM
    assert choose_default_mode(y, [""] * 50 + ["a"] * 20 + ["b"] * 30, llm)["rows"] == 50  # only predicted rows count
    assert choose_default_mode(y, [""] * 100, llm)["mode"] == "fused"  # no nested estimate: as before
