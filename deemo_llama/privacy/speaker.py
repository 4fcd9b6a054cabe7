"""A speaker-similarity proxy and an equal-error-rate attacker for evaluating voice anonymisation.

No pretrained speaker-verification model ships in any registry package here (offline-assets.md), so
the attacker is deliberately simple and stated as such: an utterance is embedded as the mean and
standard deviation of 20 MFCCs (DCT of an 80-band log-mel spectrum, 25 ms / 10 ms), mean-normalised
per trial list, and compared by cosine similarity. It is far weaker than an ECAPA/x-vector attacker:
a high EER here is necessary, not sufficient, evidence of privacy.
"""

from __future__ import annotations

import numpy as np

N_MFCC = 20


def _mel_filterbank(sr: int, n_fft: int, n_mels: int = 80) -> np.ndarray:
    def hz2mel(f):
        return 2595.0 * np.log10(1.0 + f / 700.0)

    def mel2hz(m):
        return 700.0 * (10 ** (m / 2595.0) - 1.0)

    mels = np.linspace(hz2mel(20.0), hz2mel(sr / 2), n_mels + 2)
    bins = np.floor((n_fft + 1) * mel2hz(mels) / sr).astype(int)
    fb = np.zeros((n_mels, n_fft // 2 + 1))
    for i in range(1, n_mels + 1):
        lo, c, hi = bins[i - 1], bins[i], bins[i + 1]
        fb[i - 1, lo:c] = (np.arange(lo, c) - lo) / max(1, c - lo)
        fb[i - 1, c:hi] = (hi - np.arange(c, hi)) / max(1, hi - c)
    return fb


def mfcc(wave: np.ndarray, sr: int = 16000, n_mfcc: int = N_MFCC) -> np.ndarray:
    """[frames, n_mfcc] MFCCs of the voiced frames (energy within 40 dB of the loudest)."""
    from scipy.fft import dct, rfft

    win, hop = int(0.025 * sr), int(0.010 * sr)
    if len(wave) < win:
        wave = np.pad(wave, (0, win - len(wave)))
    n = 1 + (len(wave) - win) // hop
    idx = np.arange(win)[None] + hop * np.arange(n)[:, None]
    frames = wave[idx] * np.hamming(win)
    power = np.abs(rfft(frames, n=512)) ** 2
    logmel = np.log(power @ _mel_filterbank(sr, 512).T + 1e-10)
    energy = logmel.max(1)
    voiced = energy > energy.max() - 40 / (10 / np.log(10))  # 40 dB in natural-log units
    return dct(logmel[voiced], type=2, norm="ortho", axis=1)[:, :n_mfcc]


def speaker_embedding(wave: np.ndarray, sr: int = 16000) -> np.ndarray:
    """Mean and std of MFCCs (c0, the loudness term, dropped): a 38-d utterance vector."""
    m = mfcc(wave, sr)[:, 1:]
    return np.concatenate([m.mean(0), m.std(0)])


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12))


def equal_error_rate(scores: np.ndarray, same: np.ndarray) -> float:
    """EER of a detector: the point where false-accept and false-reject rates meet (0.5 = chance)."""
    from sklearn.metrics import roc_curve

    same = np.asarray(same, dtype=int)
    if same.min() == same.max():
        raise ValueError("EER needs both same-speaker and different-speaker trials")
    fpr, tpr, _ = roc_curve(same, scores)
    fnr = 1 - tpr
    i = int(np.nanargmin(np.abs(fnr - fpr)))
    return float((fpr[i] + fnr[i]) / 2)


def attacker_eer(enroll: list[np.ndarray], enroll_spk: list[str], trial: list[np.ndarray], trial_spk: list[str], trial_utt: list[str] | None = None, enroll_utt: list[str] | None = None) -> dict:
    """Score every (enrolment, trial) pair; pairs of the same utterance are skipped.

    Embeddings are mean-normalised with the enrolment mean (a standard cosine-scoring step).
    Returns {"eer", "n_target", "n_nontarget"}.
    """
    mu = np.mean(enroll, axis=0)
    scores, same = [], []
    for i, (e, es) in enumerate(zip(enroll, enroll_spk)):
        for j, (t, ts) in enumerate(zip(trial, trial_spk)):
            if trial_utt is not None and enroll_utt is not None and trial_utt[j] == enroll_utt[i]:
                continue
            scores.append(cosine(e - mu, t - mu))
            same.append(es == ts)
    scores, same = np.array(scores), np.array(same)
    return {"eer": equal_error_rate(scores, same), "n_target": int(same.sum()), "n_nontarget": int((~same).sum())}
