"""``deemo eval ...``: run, report, judge, compare (registered by deemo_llama.cli)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from ..errors import DeemoError

eval_app = typer.Typer(no_args_is_help=True, help="Batch evaluation: recognition and reasoning over a rows file, reports, a judge LLM, run comparison.")


@eval_app.command("run")
def run_cmd(
    data: Annotated[Path, typer.Option("--data", help="Instruction rows (JSONL), e.g. OUT/test.jsonl of `deemo data build`.")],
    task: Annotated[str, typer.Option("--task", help="recognition | reasoning | ambivalence | valence_arousal | spotting")],
    out: Annotated[Path, typer.Option("--out", help="The run folder (created; an unfinished run there is continued).")],
    endpoint: Annotated[Optional[str], typer.Option("--endpoint", help="An OpenAI-compatible server's /v1 URL (the deemo gateway, or any server).")] = None,
    checkpoint: Annotated[Optional[Path], typer.Option("--checkpoint", help="Evaluate this checkpoint in process, no server ('default': the embedded default).")] = None,
    model: Annotated[str, typer.Option(help="The served model name (with --endpoint).")] = "deemo",
    api_key: Annotated[Optional[str], typer.Option(envvar="DEEMO_API_KEY", help="Bearer key for the endpoint.")] = None,
    concurrency: Annotated[int, typer.Option(help="Requests in flight (with --endpoint).")] = 4,
    retries: Annotated[int, typer.Option(help="Retries per request on 429, 5xx and dropped connections, with exponential backoff.")] = 5,
    experts: Annotated[str, typer.Option(help="Expert profile of the Evidence pipeline: none | fast | all.")] = "fast",
    plain: Annotated[bool, typer.Option("--plain", help="Send no `deemo` extension (a server other than the deemo gateway); labels come from the text.")] = False,
    mode: Annotated[Optional[str], typer.Option(help="With --checkpoint: zero-shot | trained | fused (as `deemo analyze --mode`), or free-text (zero-shot, the label read from the unforced answer). Default: the checkpoint's most trained.")] = None,
    zero_media: Annotated[Optional[str], typer.Option("--zero-media", help="With --checkpoint: zero these modalities' media tokens (comma-separated: audio,video), an ablation.")] = None,
    row_evidence: Annotated[bool, typer.Option("--row-evidence/--pipeline-evidence", help="With --checkpoint: answer from a built row's Evidence record (computed on the raw clip), or run the Evidence pipeline on the row's de-identified media as a server does.")] = True,
    split: Annotated[Optional[str], typer.Option(help="Only rows of this split.")] = None,
    limit: Annotated[Optional[int], typer.Option(help="Only the first N rows the task takes.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Ask the system every row of the task; one result line per item (resumable); then the report."""
    from .runner import EndpointBackend, LocalBackend, run

    if (endpoint is None) == (checkpoint is None):
        raise DeemoError("give exactly one of --endpoint URL or --checkpoint DIR")
    if experts not in ("none", "fast", "all"):
        raise DeemoError(f"--experts must be none, fast or all, not {experts!r}")
    if endpoint is not None and (mode or zero_media):
        raise DeemoError("--mode and --zero-media choose how a checkpoint runs in process: use them with --checkpoint")
    zeroed = tuple(m.strip() for m in (zero_media or "").split(",") if m.strip())
    if any(m not in ("audio", "video") for m in zeroed):
        raise DeemoError(f"--zero-media takes audio and/or video, not {zero_media!r}")
    if mode is not None and mode not in ("zero-shot", "trained", "fused", "free-text"):
        raise DeemoError(f"--mode must be zero-shot, trained, fused or free-text, not {mode!r}")
    if endpoint is not None:
        if not endpoint.startswith(("http://", "https://")):
            raise DeemoError(f"--endpoint {endpoint!r} is not an http(s) URL (e.g. http://127.0.0.1:8000/v1)")
        backend = EndpointBackend(endpoint, model, api_key, concurrency, retries, experts=experts, deemo_extension=not plain)
    else:
        if str(checkpoint) != "default" and not (checkpoint / "config.json").is_file():
            raise DeemoError(f"--checkpoint {checkpoint}: not a deemo-llama checkpoint (no config.json)")
        backend = LocalBackend(None if str(checkpoint) == "default" else checkpoint, experts=experts, mode="zero-shot" if mode == "free-text" else mode, free_text=mode == "free-text", zero_media=zeroed, row_evidence=row_evidence)
    s = run(data, task, out, backend, split=split, limit=limit)
    report = json.loads((out / "report.json").read_text())
    if as_json:
        typer.echo(json.dumps(report, indent=1, default=float))
    else:
        typer.echo((out / "report.md").read_text())
        typer.echo(f"{s.asked} asked in {s.seconds:.1f} s ({s.items_per_s:.2f} items/s), {s.done} done, {s.errors} failed (asked again next run); report: {out / 'report.html'}")
    if s.errors:
        raise typer.Exit(1)


@eval_app.command("report")
def report_cmd(run_dir: Annotated[Path, typer.Argument(help="A run folder of `deemo eval run`.")]) -> None:
    """Re-score the stored replies (no model runs) and rewrite report.json/.md/.html."""
    from .report import write_report

    write_report(run_dir)
    typer.echo((run_dir / "report.md").read_text())


@eval_app.command("judge")
def judge_cmd(
    run_dir: Annotated[Path, typer.Argument(help="A reasoning run folder of `deemo eval run`.")],
    endpoint: Annotated[str, typer.Option("--endpoint", help="The judge: an OpenAI-compatible server's /v1 URL.")],
    model: Annotated[str, typer.Option(help="The judge model's name on that server.")],
    api_key: Annotated[Optional[str], typer.Option(envvar="DEEMO_JUDGE_API_KEY")] = None,
    concurrency: Annotated[int, typer.Option()] = 4,
) -> None:
    """Clue and label overlap (0-10) by a judge LLM; raw replies stored; the report rewritten."""
    from .judge import judge_run

    n = judge_run(run_dir, endpoint, model, api_key, concurrency)
    typer.echo(f"{n} judge replies added; report: {run_dir / 'report.md'}")


@eval_app.command("compare")
def compare_cmd(
    run_a: Annotated[Path, typer.Argument(help="Run A.")],
    run_b: Annotated[Path, typer.Argument(help="Run B (same task, same items).")],
    plot_path: Annotated[Optional[Path], typer.Option("--plot", help="Write the differences' plot here (default: RUN_A/compare.png).")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Differences A - B with paired-bootstrap intervals and p-values, printed and plotted."""
    from .compare import compare, plot

    res = compare(run_a, run_b)
    path = plot(res, plot_path or run_a / "compare.png")
    if as_json:
        typer.echo(json.dumps(res, indent=1))
        return
    typer.echo(f"{res['task']}: {res['items']} items in both (only in A: {res['only_a']}, only in B: {res['only_b']})")
    typer.echo(f"{'figure':<22}{'A':>8}{'B':>8}{'A-B':>8}  95% CI            p")
    for k, f in res["figures"].items():
        typer.echo(f"{k:<22}{f['a']:8.3f}{f['b']:8.3f}{f['diff']:+8.3f}  [{f['low']:+.3f}, {f['high']:+.3f}]  {f['p']:.3f}")
    typer.echo(f"plot: {path}")
