"""``deemo deid-eval``: how well de-identification worked over a folder, as a table, JSON and a plot.

Given the RAW folder and the folder ``deemo deid`` wrote:
- residual-face rate: output frames where the independent detector (OpenCV Haar) still finds a face,
  over all output frames (and the same detector's rate on the input, to show it can see faces);
- speaker-verification attacker EER (higher = more private; 0.5 = chance), "ignorant attacker"
  protocol of VoicePrivacy: enrolment on ORIGINAL utterances, trials on ANONYMISED ones. The attacker
  is the MFCC-statistics cosine scorer of ``privacy.speaker`` (weak; see there). The same attacker on
  original-vs-original trials is reported as the baseline it must beat;
- WER of the anonymised-audio transcript against a transcript of the raw audio (same Whisper);
- emotion-preservation proxy: Pearson correlation of the F0 (pitch) and energy contours before and
  after anonymisation, averaged over clips (1 = prosody kept).
Speakers come from ``--speakers CSV`` (columns file,speaker; file relative to RAW) or, by default,
the raw file's parent folder name.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import DeemoError
from .deid import iter_outputs
from .speaker import attacker_eer, speaker_embedding


def f0_contour(wave: np.ndarray, sr: int = 16000, fmin: float = 60.0, fmax: float = 400.0) -> np.ndarray:
    """Autocorrelation F0 per 10 ms (40 ms windows); NaN where unvoiced."""
    win, hop = int(0.04 * sr), int(0.01 * sr)
    if len(wave) < win:
        return np.array([])
    n = 1 + (len(wave) - win) // hop
    frames = wave[np.arange(win)[None] + hop * np.arange(n)[:, None]]
    frames = frames - frames.mean(1, keepdims=True)
    spec = np.fft.rfft(frames * np.hanning(win), n=2 * win)
    acf = np.fft.irfft(np.abs(spec) ** 2)[:, :win]
    acf = acf / (acf[:, :1] + 1e-12)
    lo, hi = int(sr / fmax), int(sr / fmin)
    lag = lo + np.argmax(acf[:, lo:hi], axis=1)
    peak = acf[np.arange(n), lag]
    energy = 10 * np.log10((frames**2).mean(1) + 1e-12)
    voiced = (peak > 0.5) & (energy > energy.max() - 30)
    return np.where(voiced, sr / lag, np.nan)


def energy_contour(wave: np.ndarray, sr: int = 16000) -> np.ndarray:
    win, hop = int(0.04 * sr), int(0.01 * sr)
    if len(wave) < win:
        return np.array([])
    n = 1 + (len(wave) - win) // hop
    frames = wave[np.arange(win)[None] + hop * np.arange(n)[:, None]]
    return 10 * np.log10((frames**2).mean(1) + 1e-12)


def contour_correlation(a: np.ndarray, b: np.ndarray) -> float | None:
    n = min(len(a), len(b))
    a, b = a[:n], b[:n]
    ok = ~(np.isnan(a) | np.isnan(b))
    if ok.sum() < 5 or np.std(a[ok]) == 0 or np.std(b[ok]) == 0:
        return None
    return float(np.corrcoef(a[ok], b[ok])[0, 1])


def word_error_rate(refs: list[str], hyps: list[str]) -> float:
    import jiwer

    tr = jiwer.Compose([jiwer.ToLowerCase(), jiwer.RemovePunctuation(), jiwer.RemoveMultipleSpaces(), jiwer.Strip(), jiwer.ReduceToListOfListOfWords()])
    pairs = [(r, h) for r, h in zip(refs, hyps) if r.strip()]
    if not pairs:
        raise ValueError("no reference transcripts with words")
    return float(jiwer.wer([r for r, _ in pairs], [h for _, h in pairs], reference_transform=tr, hypothesis_transform=tr))


@dataclass
class DeidEvaluation:
    clips: int = 0
    frames: int = 0
    residual_face_rate: float | None = None
    input_face_rate: float | None = None
    eer_original: float | None = None
    eer_anonymised: float | None = None
    eer_note: str = ""
    wer: float | None = None
    f0_correlation: float | None = None
    energy_correlation: float | None = None
    speaker_similarity: float | None = None
    per_clip: list[dict] = field(default_factory=list)


def _speakers(raw: Path, csv_path: Path | None) -> dict[str, str]:
    if csv_path is None:
        return {}
    with open(csv_path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows or not {"file", "speaker"} <= set(rows[0]):
        raise DeemoError(f"{csv_path}: needs a header with columns file,speaker")
    return {r["file"]: r["speaker"] for r in rows}


def evaluate(raw: str | Path, deid_dir: str | Path, speakers_csv: str | Path | None = None, whisper: str | None = None, progress: bool = True) -> DeidEvaluation:
    from scipy.io import wavfile
    from tqdm.auto import tqdm

    from ..assets import asset_dir
    from ..media import load_clip
    from ..transcribe import Transcriber

    raw, deid_dir = Path(raw), Path(deid_dir)
    spk_map = _speakers(raw, Path(speakers_csv) if speakers_csv else None)
    outputs = list(iter_outputs(deid_dir))
    if not outputs:
        raise DeemoError(f"{deid_dir}: no de-identified clips (run: deemo deid {raw} {deid_dir})")
    res = DeidEvaluation()
    transcriber = None
    enroll, trial, spk, utt, refs, hyps, f0c, enc, sims = [], [], [], [], [], [], [], [], []
    residual = inp = 0
    for out_dir, report in tqdm(outputs, desc="evaluating", unit="clip", disable=not progress):
        res.clips += 1
        key = report["input"]
        row = {"clip": key}
        if report.get("video") and report.get("audit"):
            res.frames += report["video"]["frames"]
            residual += report["audit"]["output_frames_with_faces"]
            inp += report["audit"]["input_frames_with_faces"]
            row["residual_face_rate"] = report["audit"]["residual_face_rate"]
        src = raw / key
        if report.get("audio") and (out_dir / "audio.wav").is_file() and src.is_file():
            original = load_clip(src, num_frames=1).audio
            sr, anon = wavfile.read(out_dir / "audio.wav")
            anon = anon.astype(np.float32) / 32768.0
            enroll.append(speaker_embedding(original))
            trial.append(speaker_embedding(anon))
            spk.append(spk_map.get(key, Path(key).parent.name or key))
            utt.append(key)
            sims.append(report["audio"]["speaker_similarity"])
            fc = contour_correlation(f0_contour(original), f0_contour(anon))
            ec = contour_correlation(energy_contour(original), energy_contour(anon))
            f0c += [fc] if fc is not None else []
            enc += [ec] if ec is not None else []
            row.update(f0_correlation=fc, energy_correlation=ec, speaker_similarity=report["audio"]["speaker_similarity"])
            if (out_dir / "transcript.json").is_file():
                transcriber = transcriber or Transcriber(whisper or asset_dir("whisper"))
                refs.append(transcriber(original).text)
                hyps.append(json.loads((out_dir / "transcript.json").read_text())["text"])
        res.per_clip.append(row)
    if res.frames:
        res.residual_face_rate = residual / res.frames
        res.input_face_rate = inp / res.frames
    if len(set(spk)) >= 2 and len(spk) > len(set(spk)):
        res.eer_original = attacker_eer(enroll, spk, enroll, spk, utt, utt)["eer"]
        res.eer_anonymised = attacker_eer(enroll, spk, trial, spk, utt, utt)["eer"]
    else:
        res.eer_note = "EER needs at least 2 speakers with 2+ clips each (folders per speaker, or --speakers CSV)"
    if refs:
        res.wer = word_error_rate(refs, hyps)
    res.f0_correlation = float(np.mean(f0c)) if f0c else None
    res.energy_correlation = float(np.mean(enc)) if enc else None
    res.speaker_similarity = float(np.mean(sims)) if sims else None
    return res


def rows(ev: DeidEvaluation) -> list[tuple[str, str, str]]:
    """(metric, value, meaning) rows for the table."""
    def fmt(v, pct=False):
        return "n/a" if v is None else (f"{100 * v:.1f} %" if pct else f"{v:.3f}")

    return [
        ("clips / output frames", f"{ev.clips} / {ev.frames}", ""),
        ("residual-face rate (output)", fmt(ev.residual_face_rate, True), "lower is better; OpenCV Haar on output frames"),
        ("face rate on input (same detector)", fmt(ev.input_face_rate, True), "shows the auditor can see faces"),
        ("attacker EER, original vs original", fmt(ev.eer_original, True), "baseline: the attacker works"),
        ("attacker EER, original vs anonymised", fmt(ev.eer_anonymised, True), ev.eer_note or "higher is more private; 50 % = chance"),
        ("speaker similarity (mean cosine)", fmt(ev.speaker_similarity), "MFCC-statistics proxy; 1 = same voice statistics"),
        ("WER anonymised vs raw transcript", fmt(ev.wer, True), "lower keeps more content"),
        ("F0 contour correlation", fmt(ev.f0_correlation), "emotion-preservation proxy; 1 = pitch movement kept"),
        ("energy contour correlation", fmt(ev.energy_correlation), "emotion-preservation proxy"),
    ]


def plot(ev: DeidEvaluation, path: str | Path) -> Path:
    """A one-page figure: headline rates as bars, per-clip speaker similarity and prosody correlations."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    names = ["residual faces", "EER orig/orig", "EER orig/anon", "WER"]
    vals = [ev.residual_face_rate, ev.eer_original, ev.eer_anonymised, ev.wer]
    axes[0].bar(names, [0 if v is None else 100 * v for v in vals], color=["tab:red", "tab:gray", "tab:green", "tab:blue"])
    axes[0].axhline(50, ls="--", c="k", lw=0.8)
    axes[0].set_ylabel("%")
    axes[0].set_title("privacy (EER up, faces down) and utility (WER down)")
    clips = [r for r in ev.per_clip if "speaker_similarity" in r]
    x = np.arange(len(clips))
    axes[1].bar(x - 0.25, [r["speaker_similarity"] for r in clips], 0.25, label="speaker similarity")
    axes[1].bar(x, [r.get("f0_correlation") or 0 for r in clips], 0.25, label="F0 correlation")
    axes[1].bar(x + 0.25, [r.get("energy_correlation") or 0 for r in clips], 0.25, label="energy correlation")
    axes[1].set_xticks(x, [str(Path(r["clip"]).with_suffix(""))[-16:] for r in clips], rotation=45, ha="right", fontsize=7)
    axes[1].set_ylim(-1.05, 1.05)
    axes[1].axhline(0, c="k", lw=0.6)
    axes[1].legend(fontsize=7, loc="lower left")
    axes[1].set_title("per clip: original vs anonymised audio")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
