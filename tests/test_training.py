"""LoRA: the exact trainable parameter set, and a real optimisation step that lowers the loss."""

from __future__ import annotations

import json

import pytest
import torch

from deemo_llama.training import LoraRecipe, apply_lora, trainable_parameter_names


def test_exact_trainable_parameter_set(tiny):
    model, _ = tiny
    apply_lora(model, LoraRecipe(r=4, alpha=8, target_modules=("q_proj", "v_proj")))
    names = trainable_parameter_names(model)
    n_layers = model.config.text_config["num_hidden_layers"]
    expected = {
        f"language_model.base_model.model.model.layers.{i}.self_attn.{proj}.lora_{ab}.default.weight"
        for i in range(n_layers) for proj in ("q_proj", "v_proj") for ab in ("A", "B")
    }
    for mod in ("video", "audio"):
        for layer in ("fc1", "fc2"):
            expected |= {f"projectors.{mod}.{layer}.weight", f"projectors.{mod}.{layer}.bias"}
    assert names == expected
    assert not any(p.requires_grad for p in model.encoders.parameters())


def test_training_steps_lower_the_loss(tiny):
    model, proc = tiny
    apply_lora(model, LoraRecipe(r=8, alpha=16, dropout=0.0))
    ids, labels = proc.encode_for_training([{"role": "user", "content": "How does the person feel?"}, {"role": "assistant", "content": "happy"}])
    batch = proc.collate([{"input_ids": ids, "labels": labels}])
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=5e-2)
    model.train()
    losses = []
    for _ in range(20):
        loss = model(batch.input_ids, attention_mask=batch.attention_mask, labels=batch.labels).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(loss.item())
    # The tiny LLM's frozen tied embeddings (std 0.02) cap how peaked its logits can get, so ask
    # for a clear drop in nats rather than a ratio.
    assert losses[-1] < losses[0] - 0.5, losses


def test_train_command_end_to_end(tiny, tmp_path, media_dir):
    """`train` on a two-record JSONL with real media writes a loadable, trained checkpoint."""
    from deemo_llama.build import load_checkpoint, save_checkpoint
    from deemo_llama.training import load_recipe, train

    model, proc = tiny
    save_checkpoint(model, proc, tmp_path / "base")
    data = tmp_path / "data.jsonl"
    rec = {"schema_version": "1", "id": "t", "kind": "recognition", "split": "train", "label": "happy", "label_set": {"name": "custom", "labels": ["happy", "sad"]}, "media": str(media_dir / "talk.mp4"),
           "messages": [{"role": "user", "content": [{"type": "video"}, {"type": "audio"}, {"type": "text", "text": "Emotion?"}]}, {"role": "assistant", "content": "Emotion: happy."}]}
    data.write_text(json.dumps(rec) + "\n" + json.dumps({**rec, "id": "u"}) + "\n")
    # the rows' `deemo data build` summary: their transcripts were made from the raw audio
    build = {"clips": 2, "manifest": str(tmp_path / "mycorpus" / "manifest.jsonl"), "manifest_sha256": "ab" * 32, "builder_version": "3", "label_set": {"name": "custom", "labels": ["happy", "sad"]},
             "options": {"transcribe_from": "raw", "experts": "fast", "transcript": "whisper"}, "rows": {"train": 2}}
    (tmp_path / "build.json").write_text(json.dumps(build))
    # a second rows file in another folder, its media given relative to that folder: trained on together
    (tmp_path / "more").mkdir()
    (tmp_path / "more" / "clip.mp4").symlink_to(media_dir / "talk.mp4")
    (tmp_path / "more" / "rows.jsonl").write_text(json.dumps({**rec, "id": "v", "media": "clip.mp4"}) + "\n")
    recipe = load_recipe("cpu-default", [f"data.train=[{data}, {tmp_path / 'more' / 'rows.jsonl'}]", f"model.checkpoint={tmp_path / 'base'}", "stages=[{name: finetune, max_steps: 2}]", "grad_accum=1", "lora.r=4", "lora.alpha=8", f"data.feature_cache_dir={tmp_path / 'features'}"])
    out = train(recipe, tmp_path / "out")
    trained, _ = load_checkpoint(out)
    assert trained.config.projectors_trained
    assert trained.config.transcribe_from == "raw"  # so analyze and the gateway transcribe its clips the same way
    # exported as a shipped-default delta and composed onto the base again: the same weights and settings
    from deemo_llama.defaults import compose, export_delta

    (tmp_path / "composed").mkdir()
    composed, _ = load_checkpoint(compose(tmp_path / "base", tmp_path / "composed", export_delta(out, tmp_path / "delta")))
    assert composed.config.transcribe_from == "raw" and composed.config.projectors_trained
    for name, p in trained.projectors.state_dict().items():
        assert torch.allclose(composed.projectors.state_dict()[name], p, atol=1e-3, rtol=1e-3), name  # stored as float16
    assert (out / "adapter" / "adapter_model.safetensors").is_file()
    # through the CLI: the card says what it was trained on (the build's summary) and the figures given
    import subprocess
    import sys

    cli = [sys.executable, "-m", "deemo_llama.cli", "models", "export-default", str(out), "--out", str(tmp_path / "delta"), "--data", str(tmp_path)]
    r = subprocess.run([*cli, "--score", "set x accuracy=0.5", "--made-by", "the end-to-end test"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    card = json.loads((tmp_path / "delta" / "card.json").read_text())
    assert card["made_by"] == "the end-to-end test" and card["scores"] == {"set x accuracy": "0.5"}
    assert card["trained_on"] == "2 clips of mycorpus (manifest sha256 abababababab), label set custom, built by deemo data build v3 with experts fast and whisper transcripts of the raw audio"
    assert json.loads((tmp_path / "delta" / "config_delta.json").read_text()) == {"transcribe_from": "raw"}
    before = {p.relative_to(tmp_path): p.read_bytes() for p in (tmp_path / "delta").rglob("*") if p.is_file()}
    bad = subprocess.run([*cli, "--score", "nonsense"], capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and bad.stderr.strip() == "error: --score needs NAME=VALUE, got 'nonsense'", bad.stderr
    # an export that fails half way (the adapter's config is gone) leaves the delta there as it was
    (out / "adapter" / "adapter_config.json").rename(tmp_path / "adapter_config.json")
    with pytest.raises(FileNotFoundError):
        export_delta(out, tmp_path / "delta")
    assert {p.relative_to(tmp_path): p.read_bytes() for p in (tmp_path / "delta").rglob("*") if p.is_file()} == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".delta")) == []
    (tmp_path / "adapter_config.json").rename(out / "adapter" / "adapter_config.json")
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["steps"] == 2 and summary["examples"] == 3 and summary["data"]["train"] == [str(data), str(tmp_path / "more" / "rows.jsonl")]
    # The projector moved away from the base checkpoint's values.
    base, _ = load_checkpoint(tmp_path / "base")
    vec = torch.nn.utils.parameters_to_vector
    assert not torch.equal(vec(trained.projectors["audio"].parameters()), vec(base.projectors["audio"].parameters()))


def test_several_builds_train_together_with_their_own_clips(tiny, tmp_path):
    """``data.train`` as a list: the files' rows in order, each one's relative media resolved against
    its own folder; rows whose transcripts were made from different audio are refused before any
    model loads (one line at the CLI), and so is a file given twice."""
    import subprocess
    import sys

    from deemo_llama.errors import DeemoError
    from deemo_llama.training import load_recipe
    from deemo_llama.data.build import transcript_source
    from deemo_llama.training.llm import resolve_data
    from deemo_llama.training.rows import concat_rows, tokenize_file

    _, proc = tiny
    rec = {"schema_version": "1", "kind": "recognition", "label": "happy", "label_set": {"name": "custom", "labels": ["happy", "sad"]},
           "messages": [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "Emotion?"}]}, {"role": "assistant", "content": "Emotion: happy."}]}
    for name, source in (("a", "raw"), ("b", "anonymised")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "train.jsonl").write_text("".join(json.dumps({**rec, "id": f"{name}{i}", "media": f"clips/{name}{i}.mp4"}) + "\n" for i in range(2)))
        (tmp_path / name / "build.json").write_text(json.dumps({"options": {"transcribe_from": source}}))
    (tmp_path / "a" / "validation.jsonl").write_text(json.dumps({**rec, "id": "av", "media": "clips/av.mp4"}) + "\n")
    files, val = resolve_data(load_recipe("cpu-default", [f"data.train=[{tmp_path / 'a'}, {tmp_path / 'b' / 'train.jsonl'}]"]))
    assert files == [tmp_path / "a" / "train.jsonl", tmp_path / "b" / "train.jsonl"] and val == tmp_path / "a" / "validation.jsonl"
    rows = concat_rows([tokenize_file(f, proc, None, tmp_path / "cache") for f in files])
    assert [(e.id, e.clip) for e in rows] == [(f"{n}{i}", str(tmp_path / n / "clips" / f"{n}{i}.mp4")) for n in "ab" for i in range(2)]
    assert len(rows) == 4 and [rows[i].id for i in range(-4, 4)] == ["a0", "a1", "b0", "b1"] * 2 and [e.id for e in rows[1:3]] == ["a1", "b0"]
    assert rows[2].clip == str(tmp_path / "b" / "clips" / "b0.mp4") and len(rows.table["modalities"]) == 4
    with pytest.raises(IndexError):
        rows[4]
    with pytest.raises(DeemoError, match="made from different audio"):
        transcript_source(files)
    (tmp_path / "b" / "build.json").write_text(json.dumps({"options": {"transcribe_from": "raw"}}))
    assert transcript_source(files) == "raw"
    with pytest.raises(DeemoError, match="is given twice"):
        resolve_data(load_recipe("cpu-default", [f"data.train=[{tmp_path / 'a'}, {tmp_path / 'a' / 'train.jsonl'}]"]))
    (tmp_path / "b" / "build.json").write_text(json.dumps({"options": {"transcribe_from": "anonymised"}}))
    r = subprocess.run([sys.executable, "-m", "deemo_llama.cli", "train", str(tmp_path / "out"), "--config", "cpu-default", "--set", f"data.train=[{tmp_path / 'a'}, {tmp_path / 'b'}]"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "made from different audio" in r.stderr, r.stderr
    assert not (tmp_path / "out" / "model.safetensors").exists()


def test_modality_dropout_zeroes_exactly_the_drawn_items(tiny):
    """Training's modality dropout zeroes the projected tokens of the drawn items only, as the
    ablation zeroes a whole modality; the draws follow torch's RNG (so a resumed run repeats them)."""
    from deemo_llama.modeling import MediaInputs
    from deemo_llama.training.llm import modality_dropout, zero_modalities

    model, _ = tiny
    model.eval()
    enc = {n: torch.randn(64, m.num_tokens, m.encoder.feature_dim) for n, m in model.config.modalities.items()}
    media = MediaInputs(encoded=enc)
    assert modality_dropout(media, 0.0) == {} and modality_dropout(None, 0.5) == {}
    torch.manual_seed(3)
    drawn = modality_dropout(media, 0.5)
    torch.manual_seed(3)
    assert all(torch.equal(drawn[k], v) for k, v in modality_dropout(media, 0.5).items())
    assert set(drawn) == set(enc) and all(8 < int(v.sum()) < 56 for v in drawn.values())  # about half of 64
    full = model.embed_media(media)
    with zero_modalities(model, drawn):
        part = model.embed_media(media)
    for name, flags in drawn.items():
        assert torch.count_nonzero(part[name][flags]) == 0
        assert torch.equal(part[name][~flags], full[name][~flags]) and torch.count_nonzero(full[name][flags]) > 0
    with zero_modalities(model, ["video"]):  # the ablation: every item
        assert torch.count_nonzero(model.embed_media(media)["video"]) == 0


@pytest.mark.weights
def test_anchor_stage_points_the_media_tokens_at_the_label_words(tiny_parts, tmp_path):
    """The anchor stage trains the projectors alone, no LLM pass and no LoRA: afterwards each clip's
    mean projected token is nearest (cosine) to the LLM's embedding of its own label word, the LLM's
    weights are untouched, and rows without media are not read by it. The tiny LLM with the real
    frozen encoders (random tiny encoders give near-identical features for any clip)."""
    import numpy as np

    from deemo_llama.assets import asset_dir
    from deemo_llama.build import ComponentSpec, create_model, load_checkpoint, save_checkpoint
    from deemo_llama.modeling import MediaInputs
    from deemo_llama.sample import write_clip
    from deemo_llama.training import load_recipe, train
    from deemo_llama.training.features import FeatureCache
    from deemo_llama.training.anchor import label_embeddings

    spec = ComponentSpec(llm=str(tiny_parts["llm"]), audio=str(asset_dir("whisper")), video=str(asset_dir("mobilenet") / "model.safetensors"), num_frames=4, video_tokens=4, audio_tokens=4)
    save_checkpoint(*create_model(spec), tmp_path / "base")
    rng = np.random.default_rng(0)
    t = np.arange(16000) / 16000
    labels = ["happy", "sad", "angry"]
    rows, clips = [], {}
    for i, lab in enumerate(labels):
        frames = np.clip(rng.normal(40 + 80 * i, 10, (4, 48, 48, 3)), 0, 255).astype(np.uint8)
        clips[lab] = write_clip(tmp_path / f"{lab}.mp4", frames, (0.3 * np.sin(2 * np.pi * (200 + 300 * i) * t)).astype(np.float32), fps=4)
        rows.append({"schema_version": "1", "id": lab, "kind": "recognition", "split": "train", "label": lab, "label_set": {"name": "custom", "labels": labels}, "media": str(clips[lab]),
                     "messages": [{"role": "user", "content": [{"type": "video"}, {"type": "audio"}, {"type": "text", "text": "Emotion?"}]}, {"role": "assistant", "content": f"Emotion: {lab}."}]})
    chat = {"schema_version": "1", "id": "c", "kind": "chat", "split": "train", "label": "happy", "label_set": {"name": "custom", "labels": labels}, "messages": [{"role": "user", "content": "Hello"}, {"role": "assistant", "content": "Hi."}]}
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in [*rows, chat]))
    sets = [f"data.train={data}", f"model.checkpoint={tmp_path / 'base'}", f"data.feature_cache_dir={tmp_path / 'features'}", "grad_accum=1", "stages=[{name: anchor, epochs: 60, lr: 0.01, warmup_ratio: 0.0}]"]
    out = train(load_recipe("cpu-default", sets), tmp_path / "out")
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["steps"] == 60 * 3 and summary["samples"] == 60 * 3  # the text-only row is not in the anchor stage's epochs

    trained, tproc = load_checkpoint(out, load_adapter=False)
    base, _ = load_checkpoint(tmp_path / "base")
    assert all(torch.equal(a, b) for a, b in zip(trained.language_model.state_dict().values(), base.language_model.state_dict().values()))
    if (out / "adapter" / "adapter_model.safetensors").is_file():  # the LoRA saved with it did not train: B is still zero
        from safetensors.torch import load_file

        adapter = load_file(str(out / "adapter" / "adapter_model.safetensors"))
        assert adapter and all(not v.any() for k, v in adapter.items() if "lora_B" in k)
    words = label_embeddings(trained, tproc, labels)
    feats = FeatureCache(tmp_path / "features", trained, tproc)
    for lab, path in clips.items():
        got = feats.get(str(path), ["audio", "video"])
        emb = trained.embed_media(MediaInputs(encoded={m: v[None] for m, v in got.items()}))
        for m, z in emb.items():
            sims = torch.nn.functional.cosine_similarity(z[0].mean(0)[None], words, dim=-1)
            assert labels[int(sims.argmax())] == lab, (m, lab, sims)

    # text-only rows: nothing to anchor; the stage is skipped and says so, the LoRA stage still runs,
    # and the checkpoint does not claim media-trained projectors (analyze keeps answering from text)
    data.write_text(json.dumps(chat) + "\n")
    out2 = train(load_recipe("cpu-default", [*sets[:-1], "stages=[{name: anchor, max_steps: 2}, {name: finetune, max_steps: 1}]"]), tmp_path / "out2")
    stages = json.loads((out2 / "train_summary.json").read_text())["stages"]
    assert stages[0] == {"stage": "anchor", "steps": 0, "skipped": "no rows with media and a label of their label_set"} and stages[1]["steps"] == 1
    assert not load_checkpoint(out2)[0].config.projectors_trained


def _subject_rows(media_dir, n_subjects: int, per_subject: int = 2):
    rec = {"schema_version": "1", "kind": "recognition", "split": "train", "label_set": {"name": "custom", "labels": ["happy", "sad"]}, "media": str(media_dir / "talk.mp4")}
    return [{**rec, "id": f"s{s}-{i}", "subject": f"subj{s}", "label": lab,
             "messages": [{"role": "user", "content": [{"type": "video"}, {"type": "audio"}, {"type": "text", "text": f"Clip {s}.{i}: emotion?"}]}, {"role": "assistant", "content": f"Emotion: {lab}."}]}
            for s in range(n_subjects) for i, lab in enumerate(["happy", "sad"][:per_subject])]


def test_folds_hold_whole_subjects_and_are_seeded(tiny, media_dir, tmp_path):
    from deemo_llama.errors import DeemoError
    from deemo_llama.training.crossfit import fold_of
    from deemo_llama.training.rows import tokenize_rows

    _, proc = tiny
    ex = tokenize_rows(_subject_rows(media_dir, 6), proc, tmp_path)
    folds = fold_of(ex, range(len(ex)), 3, seed=0)
    by_subject = {}
    for i, f in folds.items():
        by_subject.setdefault(ex[i].row["subject"], set()).add(f)
    assert all(len(v) == 1 for v in by_subject.values())  # a subject never spans two folds
    assert sorted(sum(1 for f in folds.values() if f == k) for k in range(3)) == [4, 4, 4]
    assert fold_of(ex, range(len(ex)), 3, seed=0) == folds and fold_of(ex, range(len(ex)), 3, seed=1) != folds
    with pytest.raises(DeemoError, match="needs at least 7 subjects"):
        fold_of(ex, range(len(ex)), 7, seed=0)


def test_out_of_fold_tokens_come_from_the_copy_that_never_saw_the_clip(tiny, media_dir, tmp_path):
    """Within ``out_of_fold`` an anchored row's projected tokens are exactly its fold copy's; a row
    outside the folds keeps the model's own; outside the context the model is unchanged."""
    import copy

    from deemo_llama.modeling import MediaInputs
    from deemo_llama.training.crossfit import out_of_fold
    from deemo_llama.training.rows import tokenize_rows

    model, proc = tiny
    model.eval()
    ex = tokenize_rows(_subject_rows(media_dir, 2, per_subject=1) + _subject_rows(media_dir, 1, per_subject=1), proc, tmp_path)
    copies = []
    for k in range(2):
        c = copy.deepcopy(model.projectors)
        for p in c.parameters():
            p.data.normal_(0, 1, generator=torch.Generator().manual_seed(k))
        copies.append(c)
    enc = {n: torch.randn(3, m.num_tokens, m.encoder.feature_dim) for n, m in model.config.modalities.items()}
    media = MediaInputs(encoded=enc)
    own = model.embed_media(media)
    folds = {0: 1, 1: 0}  # rows 0 and 1 anchored (folds 1 and 0), row 2 not
    with out_of_fold(model, copies, folds, [0, 1, 2], list(ex), media):
        got = model.embed_media(media)
    for m in enc:
        for i, k in folds.items():
            want = copies[k][m](enc[m][i : i + 1])[0]
            torch.testing.assert_close(got[m][i], want)
            assert not torch.allclose(got[m][i], own[m][i])
        assert torch.equal(got[m][2], own[m][2])
    assert all(torch.equal(model.embed_media(media)[m], own[m]) for m in enc)


def test_cross_fitted_run_resumed_after_the_anchor_stage_ends_the_same(tiny, media_dir, tmp_path):
    """anchor (folds 2) -> finetune (projectors frozen): the fold copies are saved with the stage-end
    checkpoint and a run resumed from there ends with the same LoRA weights and losses; the projectors
    saved are the anchor stage's own (trained on all clips), and the summary reports the anchor's
    out-of-fold and validation accuracy."""
    import shutil

    from safetensors.torch import load_file

    from deemo_llama.build import load_checkpoint, save_checkpoint
    from deemo_llama.training import load_recipe, train

    model, proc = tiny
    save_checkpoint(model, proc, tmp_path / "base")
    (tmp_path / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in _subject_rows(media_dir, 4)))
    sets = [f"data.train={tmp_path / 'd.jsonl'}", f"data.validation={tmp_path / 'd.jsonl'}", f"model.checkpoint={tmp_path / 'base'}", f"data.feature_cache_dir={tmp_path / 'features'}", "grad_accum=1", "lora.r=4", "lora.alpha=8",
            "lora.dropout=0.0", "stages=[{name: anchor, epochs: 2, lr: 0.01, folds: 2, label_smoothing: 0.1}, {name: finetune, max_steps: 4, lr: 0.01, projector_lr: 0}]", "checkpointing.every_steps=100"]
    ref = train(load_recipe("cpu-default", sets), tmp_path / "ref")
    summary = json.loads((ref / "train_summary.json").read_text())
    anchor = summary["stages"][0]
    assert set(anchor["anchor_oof_accuracy"]) == set(anchor["anchor_val_accuracy"]) == {"audio", "video"}
    stage_end = ref / "checkpoints" / "step-0000016"  # 2 epochs x 8 rows: the checkpoint at the anchor stage's end
    copies = load_file(str(stage_end / "fold_projectors.safetensors"))
    assert {k.split(".")[0] for k in copies} == {"0", "1"}
    # a crash after the anchor stage: only its checkpoint is left
    run = tmp_path / "run"
    shutil.copytree(ref, run, ignore=shutil.ignore_patterns("train_summary.json", "step-0000019*"))
    for p in run.glob("checkpoints/step-*"):
        if p.name != "step-0000016":
            shutil.rmtree(p)
    (run / "train_summary.json").unlink(missing_ok=True)
    resumed = train(load_recipe("cpu-default", sets), run, resume=True)
    wa, wb = (load_file(str(d / "adapter" / "adapter_model.safetensors")) for d in (ref, resumed))
    assert max(float((wa[k] - wb[k]).abs().max()) for k in wa) < 1e-6
    a, b = (json.loads((d / "train_summary.json").read_text()) for d in (ref, resumed))
    assert abs(a["last_loss"] - b["last_loss"]) < 1e-6 and b["resumed"]
    trained, _ = load_checkpoint(ref)
    anchored = load_file(str(stage_end / "trainable.safetensors"))
    assert all(torch.equal(trained.get_parameter(n).detach(), t) for n, t in anchored.items() if n.startswith("projectors."))
