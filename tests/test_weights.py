"""Real embedded weights (stage 2 of scripts/test.sh; needs `deemo models prepare`).

Checks the conversions against their sources, and the main job end to end through the CLI.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.weights


@pytest.fixture(scope="module")
def assets():
    from deemo_llama.assets import SOURCES, asset_dir

    return {name: asset_dir(name) for name in ("llm", "whisper", "mobilenet", "checkpoint")} | {"src": {k: v.path() for k, v in SOURCES.items()}}


def test_gguf_conversion_gives_the_same_greedy_tokens(assets):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = assets["src"]["llm"]
    ref = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name).eval()
    ours = AutoModelForCausalLM.from_pretrained(assets["llm"]).eval()
    tok = AutoTokenizer.from_pretrained(assets["llm"])
    ref_tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    prompt = tok.apply_chat_template([{"role": "user", "content": "Name three emotions."}], tokenize=False, add_generation_prompt=True)
    ids = tok(prompt, return_tensors="pt").input_ids
    assert torch.equal(ids, ref_tok(prompt, return_tensors="pt").input_ids)
    with torch.no_grad():
        a = ref.generate(ids, max_new_tokens=24, do_sample=False)
        b = ours.generate(ids, max_new_tokens=24, do_sample=False)
        la, lb = ref(ids).logits, ours(ids).logits
    assert torch.equal(a, b)
    assert (la - lb).abs().max() < 1e-4


def test_whisper_conversion_matches_ctranslate2_and_transcribes(assets):
    import ctranslate2
    from transformers import WhisperForConditionalGeneration, WhisperProcessor

    from deemo_llama.sample import speak

    wave = speak("I am so happy to see you again today.")
    proc = WhisperProcessor.from_pretrained(assets["whisper"])
    model = WhisperForConditionalGeneration.from_pretrained(assets["whisper"]).eval()
    feats = proc(wave, sampling_rate=16000, return_tensors="pt").input_features
    ct2 = ctranslate2.models.Whisper(str(assets["src"]["whisper"].parent), device="cpu", compute_type="float32")
    ref = np.array(ct2.encode(ctranslate2.StorageView.from_array(feats.numpy()), to_cpu=True))
    with torch.no_grad():
        ours = model.model.encoder(feats).last_hidden_state.numpy()
        ids = model.generate(feats, do_sample=False)
    assert np.abs(ref - ours).max() < 1e-3
    assert proc.batch_decode(ids, skip_special_tokens=True)[0].strip() == "I am so happy to see you again today."


def test_mobilenet_classifies_imagenet_samples(assets):
    from safetensors.torch import load_file
    from skimage import data

    from deemo_llama.encoders import MobileNetV2

    net = MobileNetV2().eval()
    net.load_state_dict(load_file(assets["mobilenet"] / "model.safetensors"))
    mean, std = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1), torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)

    def top1(img):
        x = torch.from_numpy(img).permute(2, 0, 1).float()[None] / 255
        x = torch.nn.functional.interpolate(x, size=(224, 224), mode="bilinear", antialias=True)
        with torch.no_grad():
            return int(net((x - mean) / std).argmax())

    assert 281 <= top1(data.chelsea()) <= 285  # ImageNet's domestic cat classes
    assert top1(data.coffee()) in (967, 968)  # espresso, cup


def test_default_checkpoint_keeps_the_llm_behaviour(assets):
    """Adding <|video|>/<|audio|>/<tool_call> tokens must not change text-only generation."""
    from transformers import AutoModelForCausalLM

    from deemo_llama.build import load_checkpoint

    model, proc = load_checkpoint(assets["checkpoint"])
    llm = AutoModelForCausalLM.from_pretrained(assets["llm"]).eval()
    msgs = [{"role": "system", "content": "You are a helpful assistant."}, {"role": "user", "content": "Say hello."}]
    inputs = proc(msgs)
    with torch.no_grad():
        a = model.generate(inputs.input_ids, max_new_tokens=12, do_sample=False)
        b = llm.generate(inputs.input_ids, max_new_tokens=12, do_sample=False)[:, inputs.input_ids.shape[1] :]
    assert torch.equal(a, b)
    assert model.config.projectors_trained is False
    assert model.config.text_config["num_hidden_layers"] == 30 and model.config.hidden_size == 576


def _analyze_json(path, *extra):
    r = subprocess.run([sys.executable, "-m", "deemo_llama.cli", "analyze", str(path), "--json", *extra], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_analyze_sample_clip(tmp_path):
    from deemo_llama.sample import make_sample_clip

    out = _analyze_json(make_sample_clip(tmp_path / "happy.mp4"), "--mode", "fused")
    assert {"label", "reasoning", "transcript", "mode", "timings", "inputs_used", "scores", "evidence", "findings"} <= set(out)
    # the fine-tuned default: the LLM reads the blurred frames and anonymised audio too, the fuser decides
    assert out["mode"] == "fused" and out["deidentified"] is True and out["fusion"]["drivers"]
    assert out["deid"]["audio"]["mcadams_alpha"] == 0.8 and out["deid"]["model_media"]["frames_forwarded"] == 8
    assert out["inputs_used"] == {"video": True, "audio": True}
    assert "got the job" in out["transcript"].lower()
    ev = out["evidence"]
    assert ev["profile"] == "fast" and set(ev["experts"]) == {"analyze_facial_expression", "analyze_voice", "analyze_transcript"} and not ev["failures"]
    assert ev["experts"]["analyze_facial_expression"]["estimates"]["dominant_expression"] == "happy"  # the sample's face smiles
    assert any(f.startswith("- Face: mostly happy") for f in out["findings"]) and any(f.startswith("- Voice:") for f in out["findings"])
    # "I can't believe it, I got the job ... I am so happy": a positive, surprised clip; the fine-tuned
    # default answers happy or surprise (measured: surprise 0.70), never a negative label
    assert out["label"] in ("happy", "surprise") and out["scores"]["happy"] + out["scores"]["surprise"] > 0.5, out["scores"]
    assert len(out["reasoning"]) > 20 and out["reasoning"][-1] in ".!?"  # ends at a sentence boundary
    sentences = [s.strip().lower() for s in out["reasoning"].replace("!", ".").replace("?", ".").split(".") if s.strip()]
    assert len(sentences) == len(set(sentences))  # no sentence repeats
    # whatever the model wrote, the face's and the words' verdicts are the Evidence's
    from deemo_llama.evidence import Evidence
    from deemo_llama.prompting import cue_verdicts

    verdicts = cue_verdicts(Evidence.from_dict(ev), out["label"])
    assert verdicts["face"] == (out["label"] == "happy") and isinstance(out["reasoning_corrections"], list)
    for sentence in re.split(r"(?<=[.!?])\s+", out["reasoning"]):
        for cue, fits in verdicts.items():
            if sentence.startswith(f"Their {cue}") and " fit" in sentence:
                assert f"which {'fits' if fits else 'does not fit'} {out['label']}" in sentence, (sentence, out["reasoning_corrections"])
    assert {"decode", "deid", "transcribe", "analyze_facial_expression", "analyze_voice", "llm_label", "llm_reasoning", "total"} <= set(out["timings"])
    assert abs(sum(out["scores"].values()) - 1) < 1e-3


def test_analyze_audio_only_and_video_only(tmp_path):
    from deemo_llama.sample import make_sample_clip

    from deemo_llama.assets import default_checkpoint
    from deemo_llama.fusion import find_fuser

    audio = _analyze_json(make_sample_clip(tmp_path / "speech.flac", text="This is terrible, I lost everything and I am so sad.", video=False))
    # no --mode: the mode the default's fuser training chose (fused only where fusion beat the LLM alone by more than its noise)
    assert audio["mode"] == find_fuser(default_checkpoint()).default_mode
    assert audio["inputs_used"] == {"video": False, "audio": True}
    assert "lost everything" in audio["transcript"].lower()
    assert set(audio["evidence"]["experts"]) == {"analyze_voice", "analyze_transcript"}
    video = _analyze_json(make_sample_clip(tmp_path / "mute.mp4", seconds=2.0, audio=False))
    assert video["inputs_used"] == {"video": True, "audio": False}
    assert video["transcript"] == "" and set(video["evidence"]["experts"]) == {"analyze_facial_expression"}
    assert video["label"] in ("neutral", "angry", "happy", "sad", "worried", "surprise")  # the default's (MER) label set


def test_quickstart_notebook_executes():
    import nbformat
    from nbclient import NotebookClient

    path = Path(__file__).parents[1] / "notebooks" / "quickstart.ipynb"
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
    outputs = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "fused" in outputs and "Fused, " in outputs and "<|video|>" in outputs


def test_prepare_is_idempotent_and_repairs_damage(assets):
    """A second prepare rebuilds nothing; a damaged output is detected by checksum and rebuilt."""
    import json

    from deemo_llama.assets import MANIFEST, cache_dir, prepare_assets

    root = cache_dir()
    before = json.loads((root / MANIFEST).read_text())
    mtimes = {p: p.stat().st_mtime for p in assets["checkpoint"].iterdir()}
    prepare_assets(progress=False)
    assert {p: p.stat().st_mtime for p in assets["checkpoint"].iterdir()} == mtimes
    weights = assets["mobilenet"] / "model.safetensors"
    good = weights.read_bytes()
    weights.write_bytes(good[:-16] + bytes(16))  # silent corruption
    prepare_assets(progress=False)
    assert weights.read_bytes() == good
    after = json.loads((root / MANIFEST).read_text())
    assert after["mobilenet"]["files"] == before["mobilenet"]["files"]
    # The checkpoint depends on the mobilenet digest, which is unchanged: not rebuilt.
    assert {p: p.stat().st_mtime for p in assets["checkpoint"].iterdir()} == mtimes


def test_deid_transcript_survives_anonymisation(tmp_path):
    """Whisper (embedded tiny.en) on the McAdams-anonymised audio still gets the words."""
    from deemo_llama.privacy.deid import DeidOptions, Deidentifier
    from deemo_llama.privacy.evaluate import word_error_rate
    from deemo_llama.sample import make_sample_clip

    text = "I am so happy to see you again today."
    clip = make_sample_clip(tmp_path / "talk.mp4", text=text, fps=10)
    report = Deidentifier(DeidOptions()).file(clip, tmp_path / "out")
    transcript = json.loads((tmp_path / "out" / "transcript.json").read_text())
    assert transcript["source"] == "anonymised audio" and transcript["segments"][0]["start"] == 0.0
    assert word_error_rate([text], [transcript["text"]]) <= 0.2
    assert report["audio"]["speaker_similarity"] < 0.99
    assert report["audit"]["output_frames_with_faces"] == 0


def test_deid_eval_command(tmp_path):
    """`deemo deid` then `deemo deid-eval` on two espeak speakers x two clips: table, JSON, plot."""
    from deemo_llama.sample import make_sample_clip

    raw = tmp_path / "raw"
    texts = ["I am so happy to see you again today.", "Please bring the files to my office."]
    for spk, voice, pitch in (("alice", "en-us+f3", 60), ("bob", "en-gb+m3", 30)):
        make_sample_clip(raw / spk / "0.mp4", text=texts[0], fps=5, voice=voice, pitch=pitch)
        make_sample_clip(raw / spk / "1.wav", text=texts[1], voice=voice, pitch=pitch, video=False)
        make_sample_clip(raw / spk / "2.flac", text=texts[0], voice=voice, pitch=pitch, video=False)
    cli = [sys.executable, "-m", "deemo_llama.cli"]
    r = subprocess.run([*cli, "deid", str(raw), str(tmp_path / "out")], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([*cli, "deid-eval", str(raw), str(tmp_path / "out"), "--json"], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    ev = json.loads(r.stdout)
    assert ev["clips"] == 6 and ev["residual_face_rate"] == 0.0 and ev["input_face_rate"] > 0.8
    assert ev["eer_anonymised"] is not None and ev["eer_original"] is not None
    assert ev["wer"] is not None and ev["wer"] < 0.5
    assert -1 <= ev["f0_correlation"] <= 1 and ev["energy_correlation"] > 0.5
    assert (tmp_path / "out" / "deid_eval.png").stat().st_size > 10_000
    table = subprocess.run([*cli, "deid-eval", str(raw), str(tmp_path / "out")], capture_output=True, text=True, timeout=600)
    assert table.returncode == 0 and "attacker EER" in table.stdout


def test_transcript_segments_have_timestamps(assets):
    from deemo_llama.sample import speak
    from deemo_llama.transcribe import Transcriber

    first, second = speak("I am so happy to see you."), speak("Please bring the files to my office.")
    wave = np.concatenate([first, np.zeros(16000, np.float32), second])
    tr = Transcriber(assets["whisper"])(wave)
    assert len(tr.segments) == 2, tr
    a, b = tr.segments
    assert 0.0 <= a.start < a.end <= len(first) / 16000 + 0.3
    # Whisper tiny's timestamps are coarse (the boundary fell at 2.0 s for speech resuming at 2.7 s).
    assert a.end <= b.start and b.start >= len(first) / 16000 - 0.3 and b.end <= len(wave) / 16000 + 0.05
    assert "happy" in a.text and "office" in b.text


def test_transcript_does_not_loop_on_speech_whisper_cannot_read(assets):
    """A synthetic old voice (espeak-ng en-gb-x-gbclan+grandma), McAdams-anonymised: Whisper tiny's
    plain greedy decoding loops ("That's what I'm gonna say, that's what I'm gonna say, ..." to its token limit); the
    transcriber notices the loop (gzip compression ratio over 2.4) and decodes again without
    repeated 3-grams, still deterministic."""
    from deemo_llama.data.synth import espeak
    from deemo_llama.privacy.voice import mcadams
    from deemo_llama.transcribe import LOOP_COMPRESSION_RATIO, Transcriber, compression_ratio

    speech = espeak("That was unacceptable, the bus almost hit my dog!", "en-gb-x-gbclan+grandma", 43, 156, 106, 86)
    wave = mcadams(np.concatenate([np.zeros(4000, np.float32), speech, np.zeros(5600, np.float32)]), 16000, 0.8)
    tr = Transcriber(assets["whisper"])
    feats = tr.processor(wave, sampling_rate=16000, return_tensors="pt").input_features
    plain = tr.processor.tokenizer.decode(tr.model.generate(feats, max_new_tokens=220, do_sample=False, return_timestamps=True)[0], skip_special_tokens=True)
    assert compression_ratio(plain) > LOOP_COMPRESSION_RATIO and plain.count("gonna say") > 10, plain  # the failure this guards against
    text = tr(wave).text
    assert compression_ratio(text) < LOOP_COMPRESSION_RATIO and len(text) < 120 and text == tr(wave).text, text
    assert "dog" in text.lower()  # what it then hears is of this clip (measured: "That's what I'm gonna say, that's what it's gonna do. That's why I'm not gonna escape my dog.")
    assert compression_ratio("I am so happy to see you today.") < 1.5 < 3 < compression_ratio("let's go, " * 40)


def test_synth_build_train_then_analyze_multimodal(tmp_path):
    """The data path as a user runs it: `deemo data synth` -> `deemo data build` (Whisper on the
    anonymised audio, the fast experts, 2 workers) -> `deemo train` (1 align + 1 LoRA step, with
    validation on the build's validation split) -> `analyze
    --checkpoint` on a held-out clip, in multimodal mode with the trained projectors' media tokens."""
    import jiwer

    cli = [sys.executable, "-m", "deemo_llama.cli"]
    r = subprocess.run([*cli, "data", "synth", str(tmp_path / "synth"), "--clips", "18"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([*cli, "data", "build", str(tmp_path / "synth" / "manifest.jsonl"), str(tmp_path / "built"), "--transcript", "whisper", "--workers", "2", "--no-progress"], capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr
    built = json.loads((tmp_path / "built" / "build.json").read_text())
    assert (built["built"], built["failed"]) == (18, 0) and all(built["clips_per_split"].values())
    rows = [json.loads(x) for x in (tmp_path / "built" / "train.jsonl").read_text().splitlines()]
    said = {json.loads(x)["id"]: json.loads(x)["transcript"] for x in (tmp_path / "synth" / "manifest.jsonl").read_text().splitlines()}
    rec = [x for x in rows if x["kind"] == "recognition"]
    ev = [json.loads((tmp_path / "built" / x["evidence"]).read_text()) for x in rec]
    assert all(e["clip"]["transcript_source"].startswith("whisper") for e in ev)
    # Whisper tiny on McAdams-anonymised espeak speech (fast, slow, high, low voices, old and odd
    # speakers): poor (median WER 0.75 over the 432-clip default corpus), but each transcript is of
    # its own clip (baseline: the next clip's sentence). Medians over all 18 clips of the build: one
    # clip Whisper cannot read must not decide it (before the loop guard one gave WER 12).
    every = [json.loads(x) for s in ("train", "validation", "test") for x in (tmp_path / "built" / f"{s}.jsonl").read_text().splitlines()]
    every = [x for x in every if x["kind"] == "recognition"]
    wer = np.median([jiwer.wer(said[x["clip_id"]].lower(), x["transcript"].lower() or "-") for x in every])
    shifted = np.median([jiwer.wer(said[y["clip_id"]].lower(), x["transcript"].lower() or "-") for x, y in zip(every, every[1:] + every[:1])])
    assert len(every) == 18 and wer < 0.85 and wer < shifted - 0.15, (wer, shifted)  # measured 0.78 vs 1.00
    r = subprocess.run([*cli, "data", "validate", str(tmp_path / "built" / "train.jsonl")], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout
    r = subprocess.run([*cli, "train", str(tmp_path / "ckpt"), "--config", "cpu-default", "--set", f"data.train={tmp_path / 'built'}", "--set", f"data.feature_cache_dir={tmp_path / 'features'}",
                        "--set", "stages=[{name: align, max_steps: 1}, {name: finetune, max_steps: 1}]", "--set", "grad_accum=4"], capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr
    summary = json.loads((tmp_path / "ckpt" / "train_summary.json").read_text())
    assert summary["steps"] == 2 and summary["examples"] == len(rows) and summary["validation_examples"] > 0
    assert [x["stage"] for x in summary["stages"]] == ["align", "finetune"] and 0 <= summary["stages"][-1]["val_accuracy"] <= 1
    test_clip = json.loads((tmp_path / "built" / "test.jsonl").read_text().splitlines()[0])
    raw = tmp_path / "synth" / "clips" / test_clip["source"]["clip"]
    out = _analyze_json(raw, "--checkpoint", str(tmp_path / "ckpt"))
    assert out["mode"] == "trained" and out["checkpoint"] == str(tmp_path / "ckpt")
    assert out["label"] in out["scores"] and out["deidentified"] is True