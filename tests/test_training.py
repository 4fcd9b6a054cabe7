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
    recipe = load_recipe("cpu-default", [f"data.train={data}", f"model.checkpoint={tmp_path / 'base'}", "stages=[{name: finetune, max_steps: 2}]", "grad_accum=1", "lora.r=4", "lora.alpha=8", f"data.feature_cache_dir={tmp_path / 'features'}"])
    out = train(recipe, tmp_path / "out")
    trained, _ = load_checkpoint(out)
    assert trained.config.projectors_trained
    assert (out / "adapter" / "adapter_model.safetensors").is_file()
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["steps"] == 2 and summary["examples"] == 2
    # The projector moved away from the base checkpoint's values.
    base, _ = load_checkpoint(tmp_path / "base")
    vec = torch.nn.utils.parameters_to_vector
    assert not torch.equal(vec(trained.projectors["audio"].parameters()), vec(base.projectors["audio"].parameters()))


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
    from deemo_llama.errors import DeemoError
    from deemo_llama.modeling import MediaInputs
    from deemo_llama.sample import write_clip
    from deemo_llama.training import load_recipe, train
    from deemo_llama.training.features import FeatureCache
    from deemo_llama.training.llm import label_embeddings

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

    data.write_text(json.dumps(chat) + "\n")
    try:
        train(load_recipe("cpu-default", [*sets[:-1], "stages=[{name: anchor, max_steps: 2}]"]), tmp_path / "out2")
        raise AssertionError("the anchor stage ran without labelled rows")
    except DeemoError as e:
        assert "anchor stage needs rows with media and a label" in str(e)
