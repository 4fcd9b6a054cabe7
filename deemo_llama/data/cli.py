"""``deemo data ...``: validate, stats, build, convert, synth (registered by deemo_llama.cli)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from ..errors import DeemoError

data_app = typer.Typer(no_args_is_help=True, help="Instruction data: build rows from your clips, convert public datasets, a synthetic corpus, validate and inspect.")


@data_app.command("validate")
def validate(
    file: Annotated[Path, typer.Argument(help="Instruction rows (JSONL), e.g. OUT/train.jsonl of `deemo data build`.")],
    probe: Annotated[bool, typer.Option(help="Open every media file to check it holds the streams its video/audio parts need.")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print the problems as JSON.")] = False,
) -> None:
    """Report every bad row with its line number and reason; exit 1 if any."""
    from .validate import validate_file

    n, problems = validate_file(file, probe)
    if as_json:
        typer.echo(json.dumps({"file": str(file), "rows": n, "problems": [{"line": p.line, "id": p.id, "reason": p.reason} for p in problems]}, indent=1))
    else:
        for p in problems:
            typer.echo(p.format(file))
        bad = len({p.line for p in problems})
        typer.echo(f"{file}: {n} rows, {bad} bad" + (f" ({len(problems)} problems)" if problems else ", all valid"), err=bool(problems))
    if problems:
        raise typer.Exit(1)


@data_app.command("stats")
def stats(
    file: Annotated[Path, typer.Argument(help="Instruction rows (JSONL) or a built folder (its split files).")],
    png: Annotated[Optional[Path], typer.Option(help="Where to write the plot (default: beside FILE, <name>.stats.png).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the counts as JSON instead of tables.")] = False,
) -> None:
    """Labels per split and per subject, as tables and a PNG."""
    from .stats import compute_stats, plot_stats, print_stats, read_rows

    s = compute_stats(read_rows(file))
    png = png or (file / "stats.png" if file.is_dir() else file.with_suffix(".stats.png"))
    plot_stats(s, png)
    if as_json:
        typer.echo(json.dumps(s, indent=1))
    else:
        print_stats(s)
        typer.echo(f"plot: {png}")


@data_app.command("build")
def build(
    manifest: Annotated[Path, typer.Argument(help="CSV or JSONL: clip, label and optional id, subject, split, transcript, clues, body_language, micro_expressions, demographics, ... (instruction_data/README.md).")],
    out: Annotated[Path, typer.Argument(help="Output folder: train/validation/test.jsonl, clips/<id>/ (de-identified media + evidence), errors.json, build.json.")],
    label_set: Annotated[Optional[str], typer.Option(help="mer, dfew, mafw, bah, casme or custom (default: the manifest's label_set column).")] = None,
    labels: Annotated[Optional[str], typer.Option(help="Comma-separated labels of a custom label set.")] = None,
    kinds: Annotated[str, typer.Option(help="Row kinds, comma-separated: recognition, reasoning, tool_use.")] = "recognition,reasoning,tool_use",
    experts: Annotated[str, typer.Option(help="Evidence profile: none, fast (face 5 fps + voice) or all (+ body language).")] = "fast",
    workers: Annotated[int, typer.Option(min=1, help="Clips processed in parallel (processes).")] = 1,
    split: Annotated[str, typer.Option(help="train,validation,test shares of the clips (subject-independent when subjects are given).")] = "0.8,0.1,0.1",
    seed: Annotated[int, typer.Option(help="Seed of the split assignment.")] = 0,
    transcript: Annotated[str, typer.Option(help="auto: the manifest's transcript when given, else Whisper on the anonymised audio; whisper: always Whisper.")] = "auto",
    transcribe_from: Annotated[str, typer.Option(help="The audio Whisper transcribes: anonymised (the McAdams audio the model hears) or raw (the original audio, inside the privacy boundary; only the words leave it). A checkpoint trained on these rows is run the same way.")] = "anonymised",
    video_fps: Annotated[float, typer.Option(min=0, help="Frame rate of the stored de-identified video (0: the clip's own).")] = 10.0,
    reasoning: Annotated[str, typer.Option(help="Reasoning answers: evidence (composed from the experts' findings and the words said: what the model is shown) or clues (the manifest's clues when a row has them).")] = "evidence",
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """De-identify each clip, gather its Evidence, write recognition/reasoning/tool-use rows. Cached
    and resumable: rerun after a crash and only unfinished clips are processed."""
    from .build import BuildOptions, build_dataset

    try:
        ratios = tuple(float(x) for x in split.split(","))
    except ValueError:
        raise DeemoError(f"--split {split!r}: expected three numbers, e.g. 0.8,0.1,0.1") from None
    opts = BuildOptions(label_set=label_set, labels=tuple(x.strip() for x in labels.split(",")) if labels else None, kinds=tuple(k.strip() for k in kinds.split(",") if k.strip()), experts=experts, workers=workers, seed=seed, ratios=ratios, transcript=transcript, transcribe_from=transcribe_from, video_fps=video_fps or None, reasoning=reasoning)
    r = build_dataset(manifest, out, opts, progress=progress)
    typer.echo(f"{out}: {r.clips} clips ({r.built} built, {r.cached} cached, {r.failed} failed) -> rows " + ", ".join(f"{s} {n}" for s, n in r.rows.items()) + f" in {r.seconds:.1f} s")
    if r.failed:
        typer.echo(f"{r.failed} clip(s) could not be processed; see {out / 'errors.json'}", err=True)
        for e in r.errors[:5]:
            typer.echo(f"  {manifest}:{e['line']}: {e['clip']}: {e['error']}", err=True)
    if r.failed == r.clips:
        raise typer.Exit(1)


@data_app.command("convert")
def convert(
    fmt: Annotated[str, typer.Argument(metavar="FORMAT", help="Dataset layout: see `deemo data formats`.")],
    src: Annotated[Path, typer.Argument(help="The dataset's folder (annotations and media).")],
    out_manifest: Annotated[Path, typer.Argument(help="Manifest to write (.jsonl or .csv) for `deemo data build`.")],
    option: Annotated[Optional[list[str]], typer.Option("--option", "-o", help="Format option KEY=VALUE (e.g. fold=1, fps=200, missing=skip, columns={\"clip\":\"path\"}); repeatable.")] = None,
) -> None:
    """Turn a public dataset's annotation layout into a build manifest."""
    from .convert import FORMATS, convert as run

    if fmt not in FORMATS:
        raise DeemoError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
    opts = {}
    for o in option or []:
        if "=" not in o:
            raise DeemoError(f"--option {o!r}: expected KEY=VALUE")
        k, v = o.split("=", 1)
        try:
            opts[k.strip()] = json.loads(v)
        except json.JSONDecodeError:
            opts[k.strip()] = v
    rows = run(fmt, src, out_manifest, **opts)
    skipped = getattr(rows, "skipped", [])
    typer.echo(f"wrote {out_manifest}: {len(rows)} clips" + (f" ({len(skipped)} skipped: media not found)" if skipped else "") + f"; build it with: deemo data build {out_manifest} OUT")
    for s in skipped[:5]:
        typer.echo(f"  skipped {s}", err=True)


@data_app.command("formats")
def formats() -> None:
    """The dataset layouts `deemo data convert` reads."""
    from .convert import FORMATS

    for name, desc in FORMATS.items():
        typer.echo(f"{name:10s} {desc}")


@data_app.command("synth")
def synth(
    out: Annotated[Path, typer.Argument(help="Folder for clips/ and manifest.jsonl.")],
    clips: Annotated[Optional[int], typer.Option(min=12, help="Number of clips (rounded to the 6 labels x 3 kinds grid; a held-out set: 12 to its size, 2 kinds; default: all of it).")] = None,
    seed: Annotated[Optional[int], typer.Option(help="Draws every clip's parameters (default 0; a held-out set: its own, a 1000, b 2000, c 3000, d 4000, e 5000, f 6000).")] = None,
    workers: Annotated[int, typer.Option(min=1)] = 1,
    heldout: Annotated[bool, typer.Option("--heldout", help="A held-out spoken set: sentences, voices and prosody values the training corpus never uses (wording and voice clips).")] = False,
    heldout_set: Annotated[Optional[str], typer.Option("--heldout-set", help="Which held-out set (implies --heldout): a (the first, and --heldout's default, 96 clips), b (96; shares nothing with a), c (192; shares nothing with a or b), d (192; shares nothing with a, b or c), e (192; new sentences, new speakers: sets a-c's variant files on accents never paired with them) or f (192; new sentences; set d's variant files on accents never paired with them; benchmarks/bench_default.py's default, as the shipped fuser learned from sets a, b, c and e).")] = None,
    wording: Annotated[str, typer.Option(help="The corpus's sentences: templates (template x slot-filler sentences; the LLM's training corpus) or everyday (a hand-written bank of everyday speech, 40 per class, shared with no held-out set: to measure how a checkpoint reads new wording, or to train on).")] = "templates",
) -> None:
    """A synthetic MER-labelled corpus: in each clip the wording, the voice or the video carries the label."""
    from .synth import DEFAULT_CLIPS, HELDOUT_SETS, WORDINGS, heldout_per_class, synth_corpus

    if heldout_set is not None and heldout_set not in HELDOUT_SETS:
        raise DeemoError(f"--heldout-set {heldout_set}: the held-out sets are {', '.join(HELDOUT_SETS)}")
    if wording not in WORDINGS:
        raise DeemoError(f"--wording {wording}: the wordings are {', '.join(WORDINGS)}")
    which = heldout_set or ("a" if heldout else None)
    if which and wording != "templates":
        raise DeemoError(f"--wording {wording}: a held-out set has its own sentences; --wording is for the training corpus")
    if which is None and clips is not None and clips < 18:
        raise DeemoError(f"--clips {clips}: the corpus needs at least 18 (6 labels x 3 kinds)")
    path = synth_corpus(out, clips=clips or (12 * heldout_per_class(which) if which else DEFAULT_CLIPS), seed=seed, workers=workers, heldout=which, wording=wording)
    typer.echo(f"wrote {path}; build it with: deemo data build {path} OUT")
