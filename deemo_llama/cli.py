"""The ``deemo`` command. Each subcommand is a typed function; ``deemo --help`` lists them.

    deemo models prepare            build the embedded default once (cached, checksummed)
    deemo models create OUT ...     assemble a checkpoint from hub ids / local paths
    deemo models info [CHECKPOINT]  show a checkpoint's configuration
    deemo analyze CLIP [--json]     emotion + reasoning for one clip (``--sample`` for the bundled one)
    deemo sample OUT                write a synthetic talking-face clip
    deemo data synth|build|convert|validate|stats   instruction data (instruction_data/README.md)
    deemo train OUT --config RECIPE --set data.train=BUILT   align projectors, then LoRA (recipes: deemo_llama/recipes)
    deemo eval run|report|judge|compare   batch evaluation over rows: metrics, fairness, reports (eval/README.md)
    deemo physio eval DATA --format deap|dreamer    subject-independent valence/arousal accuracy/F1
    deemo physio train DATA --format deap|dreamer   train the analyze_physiology model (--out DIR)
    deemo serve                     vLLM + the OpenAI-compatible gateway + the Gradio UI
"""

from __future__ import annotations

import json
import os
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from .errors import DeemoError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False, help="deemo-llama: privacy-preserving multimodal emotion understanding.")
models_app = typer.Typer(no_args_is_help=True, help="Build, create and inspect checkpoints.")
app.add_typer(models_app, name="models")
tools_app = typer.Typer(no_args_is_help=True, help="Expert tools the LLM can call (OpenAI function calling).")
app.add_typer(tools_app, name="tools")
physio_app = typer.Typer(no_args_is_help=True, help="The analyze_physiology valence/arousal model: train and evaluate subject-independently on DEAP/DREAMER.")
app.add_typer(physio_app, name="physio")
fuser_app = typer.Typer(no_args_is_help=True, help="The late-fusion model (LLM scores + experts' estimates) beside a fine-tuned checkpoint.")
app.add_typer(fuser_app, name="fuser")
from .data.cli import data_app  # noqa: E402 (the sub-app imports its work lazily)

app.add_typer(data_app, name="data")
from .evaluation.cli import eval_app  # noqa: E402

app.add_typer(eval_app, name="eval")


class DType(str, Enum):
    float32 = "float32"
    bfloat16 = "bfloat16"
    float16 = "float16"


class VideoBackboneOpt(str, Enum):
    mobilenet_v2 = "mobilenet_v2"
    hf_vision = "hf_vision"


class FaceModeOpt(str, Enum):
    blur = "blur"
    pixelate = "pixelate"
    mask = "mask"


class ProjectorOpt(str, Enum):
    mlp = "mlp"
    linear = "linear"


class TemporalOpt(str, Enum):
    none = "none"
    delta = "delta"


def _quiet_libraries() -> None:
    """Keep library chatter (progress bars, deprecation notes) off the user's terminal."""
    import warnings

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    warnings.filterwarnings("ignore")
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def _torch_dtype(d: DType):
    import torch

    return getattr(torch, d.value)


# -- models ------------------------------------------------------------------------------------------
@models_app.command("prepare")
def models_prepare(
    force: Annotated[bool, typer.Option(help="Rebuild every asset even if the cache is valid.")] = False,
    verify: Annotated[bool, typer.Option(help="Re-check output checksums of cached assets.")] = True,
) -> None:
    """Build the embedded default (SmolLM2-135M, Whisper tiny.en, MobileNetV2) into the cache."""
    _quiet_libraries()
    from .assets import cache_dir, prepare_assets

    paths = prepare_assets(force=force, verify=verify)
    typer.echo(f"embedded default ready in {cache_dir()}: fine-tuned default {paths['trained']} (base {paths['checkpoint']})")


@models_app.command("create")
def models_create(
    out: Annotated[Path, typer.Argument(help="Directory to write the new checkpoint to.")],
    llm: Annotated[str, typer.Option(help="LLaMA-architecture causal LM: hub id or local directory.")],
    audio: Annotated[Optional[str], typer.Option(help="Whisper model (encoder used): hub id or local directory.")] = None,
    video: Annotated[Optional[str], typer.Option(help="Frame encoder weights: MobileNetV2 .pth/.safetensors, or a vision tower hub id/dir with --video-backbone hf_vision.")] = None,
    video_backbone: Annotated[VideoBackboneOpt, typer.Option()] = VideoBackboneOpt.mobilenet_v2,
    video_tokens: Annotated[int, typer.Option(min=1)] = 8,
    audio_tokens: Annotated[int, typer.Option(min=1)] = 16,
    num_frames: Annotated[int, typer.Option(min=1)] = 8,
    projector: Annotated[ProjectorOpt, typer.Option()] = ProjectorOpt.mlp,
    projector_hidden: Annotated[Optional[int], typer.Option(min=1, help="The MLP projector's width (default: the LLM's hidden size).")] = None,
    projector_input_norm: Annotated[bool, typer.Option(help="LayerNorm on the encoder features before the projector.")] = False,
    projector_temporal: Annotated[TemporalOpt, typer.Option(help="delta: the projector reads each token beside its change from the clip's mean.")] = TemporalOpt.none,
    projector_output_norm: Annotated[bool, typer.Option(help="Rescale each projected token to the LLM's mean word-embedding norm.")] = False,
    seed: int = 0,
) -> None:
    """Assemble a checkpoint (fresh projectors) from pretrained parts."""
    _quiet_libraries()
    from .build import ComponentSpec, create_model, save_checkpoint

    if out.exists() and any(out.iterdir()):
        raise DeemoError(f"{out}: exists and is not empty; choose a new directory")
    spec = ComponentSpec(llm=llm, audio=audio, video=video, video_backbone=video_backbone.value, video_tokens=video_tokens, audio_tokens=audio_tokens, num_frames=num_frames, projector=projector.value, projector_hidden_dim=projector_hidden, projector_input_norm=projector_input_norm, projector_temporal=projector_temporal.value, projector_output_norm=projector_output_norm, seed=seed)
    model, processor = create_model(spec)
    save_checkpoint(model, processor, out)
    typer.echo(f"wrote {out}")


@models_app.command("export-default")
def models_export_default(
    checkpoint: Annotated[Path, typer.Argument(help="A fine-tuned checkpoint (deemo train, then deemo fuser train).")],
    out: Annotated[Optional[Path], typer.Option(help="Where the delta goes (default: the package's deemo_llama/defaults/trained).")] = None,
    data: Annotated[Optional[list[Path]], typer.Option(help="The `deemo data build` folder it was trained on (its build.json goes into the card); repeatable.")] = None,
    score: Annotated[Optional[list[str]], typer.Option("--score", help="A held-out figure for the card, NAME=VALUE; repeatable.")] = None,
    made_by: Annotated[Optional[str], typer.Option(help="How it was made, for the card (default: the commands' names).")] = None,
) -> None:
    """Write a fine-tuned checkpoint as the shipped default's delta (projectors, adapter, fuser, card: a few MB)."""
    from .data.build import built_transcribe_from
    from .defaults import SHIPPED, export_delta

    if not (checkpoint / "config.json").is_file():
        raise DeemoError(f"{checkpoint}: not a deemo-llama checkpoint (no config.json)")
    card: dict = {"made_by": made_by or "deemo train (recipe.yaml), then deemo fuser train (fuser.json)", "scores": {}}
    said, builds = [], []
    for folder in data or []:
        build = json.loads((folder / "build.json").read_text()) if (folder / "build.json").is_file() else None
        if build is None:
            raise DeemoError(f"--data {folder}: no build.json (not a `deemo data build` folder)")
        said.append(f"{build['clips']} clips of {Path(build['manifest']).parent.name} (manifest sha256 {build['manifest_sha256'][:12]}), label set {build['label_set']['name']}, built by deemo data build v{build['builder_version']} with experts {build['options']['experts']} and {build['options']['transcript']} transcripts of the {built_transcribe_from(folder)} audio")
        builds.append({k: build[k] for k in ("manifest_sha256", "builder_version", "label_set", "options", "rows") if k in build})
    if builds:
        card["trained_on"] = "; ".join(said)
        card["data"] = builds[0] if len(builds) == 1 else builds
    for item in score or []:
        k, sep, v = item.partition("=")
        if not sep:
            raise DeemoError(f"--score needs NAME=VALUE, got {item!r}")
        card["scores"][k] = v
    path = export_delta(checkpoint, out or SHIPPED, card)
    size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    typer.echo(f"wrote {path} ({size / 1e6:.1f} MB); `deemo models prepare` composes it into the default")


@models_app.command("info")
def models_info(checkpoint: Annotated[Optional[Path], typer.Argument(help="Checkpoint directory (default: the embedded default).")] = None) -> None:
    """Print a checkpoint's modalities, token counts, projectors and LLM size."""
    from rich.console import Console
    from rich.table import Table

    from .assets import default_checkpoint
    from .config import DeemoConfig

    ckpt = checkpoint or default_checkpoint()
    try:
        cfg = DeemoConfig.load(ckpt)
    except (FileNotFoundError, ValueError) as e:
        raise DeemoError(str(e)) from None
    tc = cfg.text_config
    t = Table(title=f"deemo-llama checkpoint {ckpt}")
    t.add_column("part")
    t.add_column("configuration")
    t.add_row("LLM", f"{tc.get('model_type')} hidden {tc['hidden_size']}, {tc['num_hidden_layers']} layers, vocab {tc['vocab_size']}")
    for name, m in cfg.modalities.items():
        enc = m.encoder
        desc = f"{enc.backbone}, {enc.num_frames} frames ({enc.sampling})" if name == "video" else f"whisper d_model {enc.feature_dim}, {enc.whisper_config.get('encoder_layers')} layers"
        pj = m.projector
        extra = ", ".join(x for x in ("LayerNorm'd input" if pj.input_norm else "", "temporal delta" if pj.temporal == "delta" else "", f"output norm {pj.output_norm:g}" if pj.output_norm else "") if x)
        t.add_row(name, f"{desc} -> {pj.type} projector{f' ({extra})' if extra else ''} -> {m.num_tokens} x {m.placeholder} (id {m.placeholder_id})")
    t.add_row("projectors trained", str(cfg.projectors_trained))
    t.add_row("LoRA adapter", str((Path(ckpt) / "adapter").is_dir()))
    t.add_row("transcripts", f"Whisper on the {cfg.transcribe_from} audio" + (" (inside the privacy boundary; only the words leave it)" if cfg.transcribe_from == "raw" else " (McAdams)"))
    for line in provenance_lines(Path(ckpt)):
        t.add_row(*line)
    Console().print(t)


def provenance_lines(ckpt: Path) -> list[tuple[str, str]]:
    """How a checkpoint was made and what it scored: its card (a shipped default), the training
    summary, the fuser's held-out scores."""
    from .fusion import find_fuser

    out = []
    card = ckpt / "card.json"
    if card.is_file():
        c = json.loads(card.read_text())
        out.append(("made by", c.get("made_by", "")))
        out.append(("trained on", c.get("trained_on", "")))
        for k, v in (c.get("scores") or {}).items():
            out.append((f"score: {k}", str(v)))
    summary = ckpt / "train_summary.json"
    if summary.is_file():
        s = json.loads(summary.read_text())
        stages = ", ".join(f"{st.get('stage')} ({st.get('steps')} steps{', val acc %.2f' % st['val_accuracy'] if st.get('val_accuracy') is not None else ''})" for st in s.get("stages", []))
        recipe = ckpt / "recipe.yaml"
        about = next((line.split(":", 1)[1].strip() for line in recipe.read_text().splitlines() if line.startswith("description:")), "") if recipe.is_file() else ""
        out.append(("training", f"{stages}" + (f"; recipe: {about}" if about else "")))
    fuser = find_fuser(ckpt)
    if fuser is not None:
        ho = fuser.info.get("held_out", {})
        fused, llm = ho.get("fused", {}), ho.get("llm alone", {})
        out.append(("fuser", f"{len(fuser.features)} features, {len(fuser.labels)} labels, C {fuser.info.get('C')}, {fuser.info.get('rows')} rows of {fuser.info.get('split')}"))
        if fused:
            nested = ho.get("fused, nested")
            honest = f"; nested (unseen subjects) {nested['accuracy']:.2f}" if nested else ""
            out.append(("fuser held out", f"accuracy {fused['accuracy']:.2f}{honest} (LLM alone {llm.get('accuracy', float('nan')):.2f}), UAR {fused['uar']:.2f}, macro-F1 {fused['macro_f1']:.2f}"))
        dm = fuser.info.get("default_mode") or {}
        out.append(("default mode", f"{fuser.default_mode}" + (f" ({dm['reason']})" if dm.get("reason") else " (the fuser predates the recorded choice)")))
    return out


# -- fuser -----------------------------------------------------------------------------------------
@fuser_app.command("train")
def fuser_train(
    checkpoint: Annotated[Path, typer.Option("--checkpoint", help="The fine-tuned checkpoint (from `deemo train`); fuser.json is written into it.")],
    data: Annotated[list[Path], typer.Option("--data", help="A `deemo data build` folder (its --split files) or a rows file (all of it), with Evidence records; repeatable: their rows together.")],
    split: Annotated[str, typer.Option(help="The split(s) to fit on, comma-separated: ones the LLM was not trained on.")] = "validation",
    c: Annotated[Optional[float], typer.Option("--C", min=1e-6, help="Inverse regularisation strength (default: chosen by subject-grouped cross-validation).")] = None,
    out: Annotated[Optional[Path], typer.Option(help="Write fuser.json here instead of into the checkpoint.")] = None,
    feature_cache: Annotated[Optional[Path], typer.Option(help="The encoders' feature cache (as training's data.feature_cache_dir; default ~/.cache/deemo-llama/features).")] = None,
) -> None:
    """Fit the fuser: the LLM's label scores + the experts' estimates -> the label (logistic regression)."""
    _quiet_libraries()
    from rich.console import Console
    from rich.table import Table

    from .training.fuser import train_fuser

    fuser, path = train_fuser(checkpoint, data, split, c, out, feature_cache=feature_cache)
    t = Table(title=f"fuser held out ({fuser.info['held_out_method']})")
    for col in ("features", "accuracy", "UAR", "macro-F1", "top label share"):
        t.add_column(col)
    for name, sc in fuser.info["held_out"].items():
        t.add_row(name, f"{sc['accuracy']:.3f}", f"{sc['uar']:.3f}", f"{sc['macro_f1']:.3f}", f"{sc['top_label_share']:.2f}")
    Console().print(t)
    for g, why in fuser.info.get("dropped_groups", {}).items():
        typer.echo(f"dropped the {g} cues: cross-validated accuracy {why['accuracy_with']:.3f} with them, {why['accuracy_without']:.3f} without")
    dm = fuser.info["default_mode"]
    typer.echo(f"default mode: {dm['mode']} ({dm['reason']}){'' if dm['mode'] == 'fused' else '; --mode fused still runs the fuser'}")
    typer.echo(f"wrote {path} ({len(fuser.features)} features of {', '.join(fuser.info['groups'])}; C {fuser.info['C']}, {fuser.info['rows']} rows)")
    if (source := fuser.info.get("transcribe_from")) and out is None:
        typer.echo(f"{checkpoint} transcribes clips from the {source} audio, as the fuser's rows were")


# -- analyze ---------------------------------------------------------------------------------------
class ExpertsProfile(str, Enum):
    none = "none"
    fast = "fast"
    all = "all"


class AnalyzeMode(str, Enum):  # analyze.MODES
    zero_shot = "zero-shot"
    trained = "trained"
    fused = "fused"


def _print_summary(r, console) -> None:
    from rich.table import Table

    used = ", ".join(k for k, v in r.inputs_used.items() if v) or "none"
    t = Table(show_header=False, box=None, pad_edge=False)
    t.add_column(no_wrap=True, style="bold")
    t.add_column(overflow="fold")
    t.add_row("emotion", f"[bold green]{r.label}[/]")
    width = 24
    ranked = sorted(r.scores.items(), key=lambda kv: -kv[1])
    t.add_row("labels", "\n".join(f"{k:<9} {v:5.2f} " + "█" * round(v * width) for k, v in ranked))
    if r.fusion:
        llm = r.fusion["llm_scores"]
        conflicts = ", ".join(f"{g} -> {lab}" for g, lab in r.fusion["conflicts"].items()) or "none"
        t.add_row("fusion", f"drivers: {', '.join(d['cue'] for d in r.fusion['drivers']) or 'none'}; conflicts: {conflicts}; the LLM alone: {max(llm, key=llm.get)} ({max(llm.values()):.2f})")
    ev = r.evidence
    t.add_row("evidence", "\n".join(line.removeprefix("- ") for line in r.findings) or "(no expert findings)")
    for name, why in ev.get("failures", {}).items():
        t.add_row("[yellow]expert failed[/]", f"{name}: {why}")
    t.add_row("experts", f"profile {ev['profile']}: " + (", ".join(ev["experts"]) or "none ran"))
    t.add_row("mode", r.mode + {"zero-shot": "  (base LLM: transcript and expert findings as text)", "trained": "  (fine-tuned LLM)", "fused": "  (fine-tuned LLM + fuser of the experts)"}.get(r.mode, ""))
    t.add_row("inputs used", used + ("  (de-identified: faces blurred, voice anonymised)" if r.deidentified else "  (as given: --no-deid)"))
    t.add_row("transcript", r.transcript or "(no speech)")
    t.add_row("timings", ", ".join(f"{k.removeprefix('analyze_')} {v:.2f}s" for k, v in r.timings.items()))
    console.print(t)


@app.command()
def analyze(
    clip: Annotated[Optional[Path], typer.Argument(help="Video (mp4, mov, mkv, webm) or audio (wav, mp3, flac) file.")] = None,
    sample: Annotated[bool, typer.Option("--sample", help="Analyse the bundled sample clip (generated on first use).")] = False,
    checkpoint: Annotated[Optional[Path], typer.Option(help="A trained deemo-llama checkpoint (default: the embedded default).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object (with the Evidence record).")] = False,
    labels: Annotated[Optional[str], typer.Option(help="Comma-separated candidate emotion labels (default: the fuser's label set in fused mode, else neutral,happy,sad,angry,surprise,fear,disgust,worried).")] = None,
    experts: Annotated[ExpertsProfile, typer.Option(help="Expert profile: none (transcript only), fast (face at 5 fps + voice; real time on a laptop CPU), all (+ body language, face at full rate).")] = ExpertsProfile.fast,
    mode: Annotated[Optional[AnalyzeMode], typer.Option(help="zero-shot (base LLM, text only, calibrated), trained (the fine-tuned LLM, media tokens), fused (trained + the experts' fuser). Default: the most trained the checkpoint has.")] = None,
    physiology: Annotated[Optional[Path], typer.Option(help="A physiology recording of the same moment (CSV, NPZ, DEAP .dat, DREAMER .mat) for analyze_physiology.")] = None,
    question: Annotated[Optional[str], typer.Option(help="Ask this instead of the default question.")] = None,
    max_seconds: Annotated[float, typer.Option(min=1, help="Reject clips longer than this.")] = 600.0,
    max_new_tokens: Annotated[int, typer.Option(min=1, help="Length limit of the reasoning.")] = 64,
    deid: Annotated[bool, typer.Option(help="De-identify first (blur faces, McAdams voice); --no-deid only for already de-identified clips.")] = True,
    device: str = "cpu",
    dtype: DType = DType.float32,
) -> None:
    """Recognise the person's emotion in CLIP and explain the cues (from de-identified media)."""
    if (clip is None) == (not sample):
        raise DeemoError("give exactly one of CLIP or --sample")
    label_list = tuple(x.strip() for x in labels.split(",") if x.strip()) if labels is not None else None
    if label_list is not None and len(label_list) < 2:
        raise DeemoError(f"--labels needs at least two labels, got {labels!r}")
    if physiology is not None and not physiology.is_file():
        raise DeemoError(f"{physiology}: no such file")
    _quiet_libraries()
    from rich.console import Console

    from .analyze import Analyzer
    from .assets import default_checkpoint
    from .config import DeemoConfig
    from .media import open_media

    clip = sample_clip_path() if sample else clip
    try:
        DeemoConfig.load(checkpoint or default_checkpoint())
    except (FileNotFoundError, ValueError) as e:
        raise DeemoError(str(e)) from None
    # The checks that need no decoding fail in a second, before any model loads.
    with open_media(Path(clip), max_seconds):
        pass
    console = Console(stderr=as_json)
    with console.status("loading models ..."):
        analyzer = Analyzer(checkpoint, device=device, dtype=_torch_dtype(dtype), labels=label_list, max_seconds=max_seconds, max_new_tokens=max_new_tokens, deid=deid, experts=experts.value, mode=mode.value if mode else None)
    if as_json:
        with console.status(f"analysing {clip} ..."):
            result = analyzer.analyze(clip, physiology=physiology, question=question)
        sys.stdout.write(json.dumps(result.to_dict(), indent=2) + "\n")
        return
    console.print(f"[bold]{clip}[/]")
    streamed = []
    status = console.status(f"de-identifying, transcribing, running the experts ({experts.value}), choosing the label ...")
    status.start()

    def show(piece: str) -> None:
        if not streamed:  # the status line gives way to the streamed reasoning
            status.stop()
            console.print("[bold]reasoning[/] ", end="")
        streamed.append(piece)
        console.print(piece, end="", markup=False, highlight=False)

    try:
        result = analyzer.analyze(clip, on_reasoning=show, physiology=physiology, question=question)
    finally:
        status.stop()
    console.print()
    _print_summary(result, console)


def sample_clip_path() -> Path:
    """The bundled sample clip, generated into the cache on first use."""
    from .assets import cache_dir
    from .sample import make_sample_clip

    path = cache_dir() / "samples" / "astronaut_happy_v3.mp4"  # bump when the sample recipe changes
    if not path.is_file():
        make_sample_clip(path)
    return path


@app.command()
def sample(
    out: Annotated[Path, typer.Argument(help="Output file: .mp4 (video+audio) or .wav/.flac/.mp3 (audio only).")],
    seconds: Annotated[Optional[float], typer.Option(min=0.2, help="Length (default: the length of the speech).")] = None,
    text: Annotated[Optional[str], typer.Option(help="What the speaker says (espeak-ng).")] = None,
    audio: Annotated[bool, typer.Option(help="Include speech.")] = True,
    video: Annotated[bool, typer.Option(help="Include the moving face (ignored for audio-only extensions).")] = True,
    fps: Annotated[int, typer.Option(min=1)] = 25,
) -> None:
    """Write a synthetic clip: scikit-image's astronaut moving across the frame, espeak-ng speech."""
    from .sample import SAMPLE_TEXT, make_sample_clip

    audio_only = out.suffix.lower() in (".wav", ".flac", ".mp3")
    if not audio and (audio_only or not video):
        raise DeemoError("nothing to write: both audio and video are off")
    make_sample_clip(out, seconds=seconds, text=text or SAMPLE_TEXT, fps=fps, audio=audio, video=video and not audio_only)
    typer.echo(f"wrote {out}")


@app.command()
def deid(
    input_path: Annotated[Path, typer.Argument(metavar="INPUT", help="A clip, or a folder searched recursively.")],
    out_dir: Annotated[Path, typer.Argument(metavar="OUT_DIR", help="Output folder: one sub-folder per clip (video.mp4, audio.wav, transcript.json, report.json).")],
    face_mode: Annotated[FaceModeOpt, typer.Option(help="How faces are hidden.")] = FaceModeOpt.blur,
    margin: Annotated[float, typer.Option(min=0.0, help="Grow each face box by this fraction before hiding it.")] = 0.3,
    threshold: Annotated[float, typer.Option(min=0.01, max=0.99, help="CenterFace detection threshold.")] = 0.2,
    alpha: Annotated[float, typer.Option(min=0.3, max=1.0, help="McAdams coefficient (0.8 classic).")] = 0.8,
    random_alpha: Annotated[bool, typer.Option(help="Draw alpha per clip from [0.5, 0.9] (reproducible with --seed).")] = False,
    seed: int = 0,
    transcript: Annotated[bool, typer.Option(help="Transcribe the anonymised audio.")] = True,
    whisper: Annotated[Optional[str], typer.Option(help="Whisper hub id or directory for transcripts (default: embedded tiny.en).")] = None,
    max_seconds: Annotated[float, typer.Option(min=1)] = 600.0,
) -> None:
    """De-identify clips: blur faces (CenterFace), anonymise voices (McAdams), transcribe; resumable."""
    _quiet_libraries()
    from rich.console import Console

    from .privacy.deid import DeidOptions, deidentify

    opts = DeidOptions(face_mode=face_mode.value, margin=margin, threshold=threshold, alpha=alpha, random_alpha=random_alpha, seed=seed, transcribe=transcript, whisper=whisper, max_seconds=max_seconds)
    summary = deidentify(input_path, out_dir, opts)
    if input_path.is_file() and summary.failed:
        raise DeemoError(next(iter(summary.failed.values())))
    console = Console(stderr=True)
    console.print(f"de-identified {len(summary.done)}, already done {len(summary.skipped)}, failed {len(summary.failed)} -> {out_dir}")
    if summary.failed:
        for why in summary.failed.values():
            console.print(f"[red]failed[/] {why}", highlight=False, soft_wrap=True)
        raise typer.Exit(1)


@app.command("deid-eval")
def deid_eval(
    raw: Annotated[Path, typer.Argument(help="The folder of raw clips given to `deemo deid`.")],
    deid_dir: Annotated[Path, typer.Argument(help="The folder `deemo deid` wrote.")],
    speakers: Annotated[Optional[Path], typer.Option(help="CSV with columns file,speaker (default: parent folder = speaker).")] = None,
    plot_path: Annotated[Optional[Path], typer.Option("--plot", help="Write the figure here (default: DEID_DIR/deid_eval.png).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the figures as JSON.")] = False,
) -> None:
    """Measure de-identification: residual faces, speaker-attacker EER, WER, prosody preservation."""
    _quiet_libraries()
    from dataclasses import asdict

    from rich.console import Console
    from rich.table import Table

    from .privacy.evaluate import evaluate, plot, rows

    ev = evaluate(raw, deid_dir, speakers)
    figure = plot(ev, plot_path or deid_dir / "deid_eval.png")
    (deid_dir / "deid_eval.json").write_text(json.dumps(asdict(ev), indent=2) + "\n")
    if as_json:
        sys.stdout.write(json.dumps({k: v for k, v in asdict(ev).items() if k != "per_clip"}, indent=2) + "\n")
        return
    t = Table(title=f"de-identification of {raw} -> {deid_dir}")
    for col in ("metric", "value", "meaning"):
        t.add_column(col)
    for r in rows(ev):
        t.add_row(*r)
    Console().print(t)
    typer.echo(f"figure: {figure}")


@app.command()
def train(
    out: Annotated[Path, typer.Argument(help="Directory for the fine-tuned checkpoint (new or empty).")],
    config: Annotated[str, typer.Option(help="Recipe: a shipped name (cpu-default, ...) or a YAML file.")] = "cpu-default",
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="Override a recipe field, KEY=VALUE (e.g. data.train=/tmp/built, stages.1.max_steps=8); repeatable.")] = None,
    resume: Annotated[bool, typer.Option(help="Continue the run in OUT from its last checkpoint (same recipe and overrides).")] = False,
) -> None:
    """Train by a recipe: align the projectors, then LoRA on the LLM; writes a servable checkpoint."""
    _quiet_libraries()
    from .training import load_recipe, train as run_training

    run_training(load_recipe(config, list(set_ or [])), out, resume=resume)
    typer.echo(f"wrote {out}")


@tools_app.command("list")
def tools_list(as_json: Annotated[bool, typer.Option("--json", help="Print the OpenAI function specs.")] = False) -> None:
    """The registered expert tools."""
    from rich.console import Console

    from .tools import tool_specs

    if as_json:
        sys.stdout.write(json.dumps(tool_specs(), indent=2) + "\n")
        return
    Console().print(tools_table())


def tools_table():
    """The ``deemo tools list`` table (a rich Table): tool names never wrap or get cut (the column is
    as wide as the longest name); arguments and descriptions wrap to the terminal."""
    from rich.table import Table

    from .tools import get_tool, tool_names

    names = tool_names()
    t = Table(title="expert tools")
    t.add_column("name", no_wrap=True, min_width=max(map(len, names), default=4))
    t.add_column("version", no_wrap=True)
    t.add_column("arguments", overflow="fold")
    t.add_column("description", overflow="fold", ratio=1)
    for name in names:
        tool = get_tool(name)
        req = set(tool.parameters.get("required", []))
        args = ", ".join(a + ("" if a in req else "?") for a in tool.parameters["properties"])
        t.add_row(name, tool.version, args, tool.description)
    return t


@tools_app.command("run")
def tools_run(
    name: Annotated[str, typer.Argument(help="Tool name (deemo tools list).")],
    input_path: Annotated[Path, typer.Argument(metavar="INPUT", help="The file the tool analyses (for analyze_transcript: a text file, - for stdin).")],
    arg: Annotated[Optional[list[str]], typer.Option("--arg", help="Extra argument KEY=VALUE (VALUE parsed as JSON when it can be), repeatable.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the whole JSON envelope.")] = False,
    cache: Annotated[bool, typer.Option(help="Reuse a cached result for the same file, tool version and arguments.")] = True,
) -> None:
    """Run one expert tool on a file and print its summary (or the JSON envelope)."""
    _quiet_libraries()
    from .tools import ToolArgumentError, ToolCache, get_tool

    tool = get_tool(name)
    if tool.path_arguments:
        arguments: dict = {tool.path_arguments[0]: str(input_path)}
    else:  # a text tool (analyze_transcript): INPUT is a text file, "-" for stdin
        try:
            arguments = {"text": sys.stdin.read() if str(input_path) == "-" else input_path.read_text()}
        except (OSError, UnicodeDecodeError) as e:
            raise DeemoError(f"{input_path}: cannot read it as text ({e.__class__.__name__})") from None
    for item in arg or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise DeemoError(f"--arg needs KEY=VALUE, got {item!r}")
        try:
            arguments[key] = json.loads(value)
        except json.JSONDecodeError:
            arguments[key] = value
    try:
        if cache:
            result, hit = ToolCache().run(tool, arguments)
        else:
            result, hit = tool.run(**tool.validate(arguments)).to_dict(), False
    except ToolArgumentError as e:
        raise DeemoError(str(e)) from None
    if as_json:
        sys.stdout.write(json.dumps(result, indent=2) + "\n")
    else:
        typer.echo(f"{result['tool']} {result['version']} [{result['status']}]{' (cached)' if hit else ''}: {result['summary']}")


# -- physio ----------------------------------------------------------------------------------------
class PhysioFormat(str, Enum):
    deap = "deap"
    dreamer = "dreamer"


class PhysioTarget(str, Enum):
    valence = "valence"
    arousal = "arousal"
    both = "both"


PhysioData = Annotated[Path, typer.Argument(help="DEAP: a folder of preprocessed sXX.dat files; DREAMER: DREAMER.mat.")]
PhysioFormatOpt = Annotated[PhysioFormat, typer.Option("--format", help="Dataset layout (labels: DEAP high if >= 5 of 9, DREAMER if >= 3 of 5).")]
PhysioTargetOpt = Annotated[PhysioTarget, typer.Option(help="Which rating to model.")]
PhysioFoldsOpt = Annotated[int, typer.Option(min=2, help="Folds over subjects (GroupKFold); >= the number of subjects is leave-one-subject-out.")]
PhysioCacheOpt = Annotated[bool, typer.Option(help="Reuse per-trial features cached in <cache_dir>/physio-features.")]


def _physio_targets(target: PhysioTarget) -> tuple[str, ...]:
    return ("valence", "arousal") if target is PhysioTarget.both else (target.value,)


def _print_physio_report(report, title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=title, caption=f"{report.scheme}; {len(report.subjects)} subjects, {report.n_trials} trials, {report.n_features} features; no subject in both train and test")
    for col in ("target", "accuracy", "F1", "majority accuracy", "majority F1", "high share", "fold accuracy"):
        t.add_column(col)
    for target, s in report.scores.items():
        spread = f"{min(s.fold_accuracy):.2f}-{max(s.fold_accuracy):.2f}"
        t.add_row(target, f"{s.accuracy:.3f}", f"{s.f1:.3f}", f"{s.majority_accuracy:.3f}", f"{s.majority_f1:.3f}", f"{s.positive_rate:.2f}", spread)
    Console().print(t)


@physio_app.command("eval")
def physio_eval(
    data: PhysioData,
    fmt: PhysioFormatOpt,
    target: PhysioTargetOpt = PhysioTarget.both,
    folds: PhysioFoldsOpt = 5,
    cache: PhysioCacheOpt = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Subject-independent accuracy and F1 of the physiology model vs the majority-class baseline."""
    from .training.physio import evaluate, extract_features

    table = extract_features(data, fmt.value, cache=cache)
    report = evaluate(table, _physio_targets(target), folds)
    if as_json:
        sys.stdout.write(json.dumps(report.to_dict(), indent=2) + "\n")
        return
    _print_physio_report(report, f"{fmt.value.upper()} {data}: subject-independent valence/arousal")


@physio_app.command("train")
def physio_train(
    data: PhysioData,
    fmt: PhysioFormatOpt,
    target: PhysioTargetOpt = PhysioTarget.both,
    out: Annotated[Optional[Path], typer.Option(help="Model directory (default: <cache_dir>/physio-model, which analyze_physiology uses when given no model).")] = None,
    folds: PhysioFoldsOpt = 5,
    cache: PhysioCacheOpt = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print the evaluation and model path as JSON.")] = False,
) -> None:
    """Evaluate subject-independently, then train on every subject and save the model."""
    from .assets import cache_dir
    from .training.physio import check_model_dir, extract_features, train_model
    from .tools.physiology import DEFAULT_MODEL_DIR

    out = check_model_dir(out or cache_dir() / DEFAULT_MODEL_DIR)  # fail before the slow part
    table = extract_features(data, fmt.value, cache=cache)
    model, report = train_model(table, _physio_targets(target), folds)
    path = model.save(out)
    if as_json:
        sys.stdout.write(json.dumps({"model": str(path), **report.to_dict()}, indent=2) + "\n")
        return
    _print_physio_report(report, f"{fmt.value.upper()} {data}: subject-independent valence/arousal")
    typer.echo(f"wrote {path}")


@app.command()
def serve(
    checkpoint: Annotated[Optional[Path], typer.Option(help="Checkpoint directory (default: the embedded default).")] = None,
    host: Annotated[str, typer.Option(help="Interface for the gateway and the UI.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Gateway port (OpenAI API at /v1).")] = 8000,
    ui_port: Annotated[int, typer.Option(help="Gradio UI port.")] = 7860,
    vllm_port: Annotated[int, typer.Option(help="vLLM port (loopback only).")] = 8001,
    lora: Annotated[Optional[list[str]], typer.Option(help="Serve a LoRA adapter as a model: NAME=DIR (repeatable).")] = None,
    media_dir: Annotated[Optional[Path], typer.Option(help="Allow local media paths under this folder (default: data URLs only).")] = None,
    allow_remote_media: Annotated[bool, typer.Option(help="Let the gateway fetch http(s) media URLs.")] = False,
    api_key: Annotated[Optional[str], typer.Option(envvar="DEEMO_API_KEY", help="Require this bearer key at the gateway.")] = None,
    experts: Annotated[ExpertsProfile, typer.Option(help="Default expert profile of the evidence in the prompt (as deemo analyze --experts); requests choose with deemo.experts.")] = ExpertsProfile.fast,
    tool_loop: Annotated[bool, typer.Option(help="Also offer the expert tools to the model by default (requests choose with deemo.tool_loop).")] = False,
    ui: Annotated[bool, typer.Option(help="Start the Gradio UI.")] = True,
    dtype: Annotated[str, typer.Option(help="vLLM dtype: auto (bfloat16 where the GPU or CPU computes it natively, else float32), float32 (matches `deemo analyze` exactly), bfloat16, float16.")] = "auto",
    max_model_len: Annotated[int, typer.Option(help="vLLM context length.")] = 4096,
    vllm_arg: Annotated[Optional[list[str]], typer.Option(help="Extra vLLM argument, passed through (repeatable), e.g. --vllm-arg=--gpu-memory-utilization=0.8.")] = None,
    max_concurrency: Annotated[int, typer.Option(min=1, help="Requests in the model at once (vLLM batches them); more wait in the queue.")] = 16,
    max_media_concurrency: Annotated[int, typer.Option(min=1, help="Clips de-identified and analysed at once (CPU-bound; text-only requests skip this queue).")] = 2,
    queue_depth: Annotated[int, typer.Option(min=0, help="Requests that may wait for a slot; beyond it the gateway answers 429 with Retry-After.")] = 64,
    queue_timeout: Annotated[float, typer.Option(min=0.1, help="Seconds a request may wait for a slot before a 429 with Retry-After.")] = 120.0,
    max_tokens_limit: Annotated[int, typer.Option(min=1, help="The largest max_tokens a request may ask for (400 above it).")] = 2048,
    mode: Annotated[Optional[AnalyzeMode], typer.Option(help="trained (the fine-tuned LLM) or fused (+ the experts' fuser), as deemo analyze --mode. Default: the checkpoint's (its fuser's recorded choice); the answers' deemo.mode says which ran.")] = None,
) -> None:
    """Start vLLM, the assistant gateway and the UI; print their URLs; Ctrl-C stops all three."""
    _quiet_libraries()
    from .assets import default_checkpoint
    from .serving.serve import ServeOptions, serve as run_serve

    adapters = {}
    for item in lora or []:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise DeemoError(f"--lora needs NAME=DIR, got {item!r}")
        adapters[name] = str(Path(path).resolve())
    if media_dir is not None and not media_dir.is_dir():
        raise DeemoError(f"--media-dir {media_dir}: no such folder")
    ckpt = Path(checkpoint) if checkpoint else default_checkpoint()
    if not (ckpt / "config.json").is_file():
        raise DeemoError(f"{ckpt}: not a deemo-llama checkpoint (no config.json)")
    from .serving.gateway import serving_mode

    serving_mode(ckpt, mode.value if mode else None)  # a mode the checkpoint cannot run fails now, not after vLLM started
    opts = ServeOptions(mode=mode.value if mode else None, checkpoint=ckpt.resolve(), host=host, port=port, ui_port=ui_port, vllm_port=vllm_port, lora=adapters, media_dir=media_dir.resolve() if media_dir else None, allow_remote_media=allow_remote_media, api_key=api_key, experts=experts.value, tool_loop=tool_loop, ui=ui, dtype=dtype, max_model_len=max_model_len, vllm_args=list(vllm_arg or []), max_concurrency=max_concurrency, max_media_concurrency=max_media_concurrency, queue_depth=queue_depth, queue_timeout_s=queue_timeout, max_tokens_limit=max_tokens_limit)
    run_serve(opts, log=lambda msg: print(f"[deemo serve] {msg}", flush=True))


def main() -> None:
    """Console entry point: user errors become one line on stderr and a non-zero exit."""
    import click

    # typer >= 0.29 raises its own (vendored) copy of click's exceptions for bad option values
    CLICK_ERRORS = (click.ClickException, *(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException"))

    try:
        rv = app(standalone_mode=False)  # returns the code of a typer.Exit
    except DeemoError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(e.exit_code)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except CLICK_ERRORS as e:
        e.show()
        sys.exit(e.exit_code)
    except (click.exceptions.Abort, KeyboardInterrupt):
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(rv if isinstance(rv, int) else 0)


if __name__ == "__main__":
    main()
