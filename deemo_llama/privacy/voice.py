"""McAdams-coefficient voice anonymisation (Patino et al., 2021; the VoicePrivacy 2020/2022 baseline B2).

Per 20 ms frame (10 ms hop, sqrt-Hann analysis and synthesis windows, overlap-add): LPC of order 20;
every complex pole with angle phi in (0, pi) moves to phi ** alpha (conjugates follow), which shifts
the formants; the frame is re-synthesised from its LPC residual through the modified filter.
alpha in [0.5, 0.9]; 0.8 is the classic setting (domain.md).
"""

from __future__ import annotations

import numpy as np
from scipy.linalg import solve_toeplitz
from scipy.signal import lfilter

ALPHA_RANGE = (0.5, 0.9)


def lpc(frame: np.ndarray, order: int) -> np.ndarray:
    """Autocorrelation-method LPC: returns a = [1, a1..ap] with the frame ~ -sum(a_k x[n-k])."""
    r = np.correlate(frame, frame, mode="full")[len(frame) - 1 : len(frame) + order]
    if r[0] <= 1e-10:
        return np.concatenate([[1.0], np.zeros(order)])
    r = r.copy()
    r[0] *= 1.0 + 1e-9  # white-noise correction keeps the Toeplitz system well conditioned
    coeffs = solve_toeplitz(r[:order], -r[1 : order + 1])
    return np.concatenate([[1.0], coeffs])


def mcadams(wave: np.ndarray, sample_rate: int, alpha: float = 0.8, order: int = 20, win_ms: float = 20.0, hop_ms: float = 10.0) -> np.ndarray:
    """Anonymise a mono float waveform; same length and sample rate out."""
    if not 0.0 < alpha <= 1.5:
        raise ValueError(f"McAdams alpha must be in (0, 1.5], got {alpha}")
    x = np.asarray(wave, dtype=np.float64)
    win = int(round(win_ms * sample_rate / 1000))
    hop = int(round(hop_ms * sample_rate / 1000))
    if len(x) < win:
        x = np.pad(x, (0, win - len(x)))
    # sqrt-Hann (periodic) for analysis and synthesis: their product, a Hann, overlap-adds to 1 at 50 % hop.
    window = np.sqrt(0.5 - 0.5 * np.cos(2 * np.pi * np.arange(win) / win))
    n_frames = 1 + int(np.ceil((len(x) - win) / hop))
    padded = np.pad(x, (0, (n_frames - 1) * hop + win - len(x)))
    out = np.zeros_like(padded)
    for i in range(n_frames):
        seg = padded[i * hop : i * hop + win] * window
        if not np.any(seg):
            continue
        a = lpc(seg, order)
        residual = lfilter(a, [1.0], seg)
        poles = np.roots(a)
        ang = np.angle(poles)
        upper = (np.abs(np.imag(poles)) > 1e-12) & (ang > 0)
        new = poles.copy()
        new[upper] = np.abs(poles[upper]) * np.exp(1j * ang[upper] ** alpha)
        lower = (np.abs(np.imag(poles)) > 1e-12) & (ang < 0)
        new[lower] = np.abs(poles[lower]) * np.exp(-1j * np.abs(ang[lower]) ** alpha)
        a_new = np.real(np.poly(new))
        out[i * hop : i * hop + win] += lfilter([1.0], a_new, residual) * window
    out = out[: len(wave)]
    peak = np.max(np.abs(out)) if len(out) else 0.0
    if peak > 1.0:  # keep within [-1, 1] without changing relative levels
        out = out / peak
    return out.astype(np.float32)


def draw_alpha(seed: int | None, key: str, low: float = ALPHA_RANGE[0], high: float = ALPHA_RANGE[1]) -> float:
    """A per-utterance alpha from [low, high], reproducible from (seed, key)."""
    import hashlib

    digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    u = int.from_bytes(digest[:8], "little") / 2**64
    return float(low + (high - low) * u)
