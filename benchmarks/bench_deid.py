"""De-identification speed and quality against the `deface` command-line tool, on the same clip.

    .venv/bin/python benchmarks/bench_deid.py [--seconds 4] [--fps 25]

Both use CenterFace at threshold 0.2 with a 1.3x mask, blur, and libx264; both outputs are audited
by the same independent detector (OpenCV Haar, every frame). Reported: frames/s, residual-face rate,
ratios ours/deface, and the McAdams real-time factor.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import av

from common import machine, print_table, quiet


def audit(path: Path) -> tuple[int, int]:
    from deemo_llama.privacy.faces import HaarFaceDetector

    haar = HaarFaceDetector()
    with av.open(str(path)) as c:
        flags = [bool(haar(f.to_ndarray(format="rgb24"))) for f in c.decode(video=0)]
    return sum(flags), len(flags)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--fps", type=int, default=25)
    args = ap.parse_args()
    quiet()
    from deemo_llama.media import load_clip
    from deemo_llama.privacy.deid import DeidOptions, Deidentifier
    from deemo_llama.privacy.voice import mcadams
    from deemo_llama.sample import make_sample_clip

    deface = shutil.which("deface") or str(Path(__import__("sys").executable).parent / "deface")
    tmp = Path(tempfile.mkdtemp())
    clip = make_sample_clip(tmp / "clip.mp4", seconds=args.seconds, fps=args.fps)
    n_frames = int(round(args.seconds * args.fps))

    t = time.perf_counter()
    subprocess.run([deface, str(clip), "-o", str(tmp / "deface.mp4"), "--thresh", "0.2", "--mask-scale", "1.3", "--replacewith", "blur", "--execution-provider", "CPUExecutionProvider"], check=True, capture_output=True)
    deface_s = time.perf_counter() - t

    t = time.perf_counter()  # model start-up included, as in the deface run
    Deidentifier(DeidOptions(transcribe=False, audit=False, margin=0.3)).file(clip, tmp / "ours")
    ours_s = time.perf_counter() - t

    res_deface, n_deface = audit(tmp / "deface.mp4")
    res_ours, n_ours = audit(tmp / "ours" / "video.mp4")
    res_in, n_in = audit(clip)

    wave = load_clip(clip, num_frames=1).audio
    t = time.perf_counter()
    mcadams(wave, 16000, 0.8)
    rtf = (time.perf_counter() - t) / (len(wave) / 16000)

    fps_d, fps_o = n_frames / deface_s, n_frames / ours_s
    rate_d, rate_o = res_deface / n_deface, res_ours / n_ours
    print_table(f"de-identification, {args.seconds:g} s clip 640x360 @ {args.fps} fps ({machine()})", [
        ("input frames with a face (Haar)", f"{res_in}/{n_in}"),
        ("deface CLI: frames/s (whole run incl. start-up, video only)", f"{fps_d:.2f}"),
        ("ours: frames/s (incl. start-up; also McAdams audio + mux)", f"{fps_o:.2f}"),
        ("speed ratio ours / deface", f"{fps_o / fps_d:.2f}x"),
        ("deface residual-face rate (Haar on output)", f"{100 * rate_d:.1f} % ({res_deface}/{n_deface})"),
        ("ours residual-face rate (Haar on output)", f"{100 * rate_o:.1f} % ({res_ours}/{n_ours})"),
        ("McAdams real-time factor (alpha 0.8)", f"{rtf:.3f}"),
    ])


if __name__ == "__main__":
    main()
