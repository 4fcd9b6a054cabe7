"""Expert tools: the envelope and registry, and analyze_physiology on planted ground truth."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest

from deemo_llama.errors import DeemoError
from deemo_llama.tools import ToolArgumentError, ToolCache, ToolResult, get_tool, tool_specs
from deemo_llama.tools.physio_features import eeg_features

FS = 128


def _peripheral(hr, scr, rr, seed=1, seconds=60):
    import neurokit2 as nk

    return {
        "ECG": nk.ecg_simulate(duration=seconds, sampling_rate=FS, heart_rate=hr, random_state=seed),
        "GSR": nk.eda_simulate(duration=seconds, sampling_rate=FS, scr_number=scr, random_state=seed),
        "RSP": nk.rsp_simulate(duration=seconds, sampling_rate=FS, respiratory_rate=rr, random_state=seed),
    }


def _eeg(alpha_left, alpha_right, seconds=20, seed=0):
    """F3/F4 with 10 Hz alpha of the given amplitudes over 1/f-ish noise, plus Pz."""
    rng = np.random.default_rng(seed)
    t = np.arange(seconds * FS) / FS
    noise = lambda: np.cumsum(rng.standard_normal(len(t))) * 0.05 + rng.standard_normal(len(t))  # noqa: E731
    return {"F3": alpha_left * np.sin(2 * np.pi * 10 * t) + noise(), "F4": alpha_right * np.sin(2 * np.pi * 10 * t + 1) + noise(), "Pz": 3 * np.sin(2 * np.pi * 10 * t) + noise()}


@pytest.fixture(autouse=True)
def _no_trained_default_model(tmp_path, monkeypatch):
    """These tests pin the heuristic path: a default model trained in the user's cache must not leak in."""
    monkeypatch.setenv("DEEMO_HOME", str(tmp_path / "home"))


@pytest.fixture(scope="module")
def physio():
    return get_tool("analyze_physiology")


def test_specs_are_openai_function_specs():
    specs = tool_specs()
    assert specs and all(s["type"] == "function" and {"name", "description", "parameters"} <= set(s["function"]) for s in specs)
    assert all(s["function"]["parameters"]["type"] == "object" for s in specs)


def test_unknown_tool_and_bad_arguments(physio):
    with pytest.raises(DeemoError, match="unknown tool 'nope'"):
        get_tool("nope")
    with pytest.raises(ToolArgumentError, match="missing required argument"):
        physio.validate({})
    with pytest.raises(ToolArgumentError, match="unknown argument"):
        physio.validate({"path": "x", "colour": "red"})
    with pytest.raises(ToolArgumentError, match="'trial' must be integer"):
        physio.validate({"path": "x", "trial": "3"})
    with pytest.raises(ToolArgumentError, match="must be >= 0"):
        physio.validate({"path": "x", "start_s": -1})


def test_envelope_limits_summary_to_two_sentences():
    with pytest.raises(ValueError, match="at most 2"):
        ToolResult("t", "1", "ok", None, {}, [], {}, "One. Two. Three.", "b", "p")


def test_arousal_recovered_from_simulated_signals(physio, tmp_path):
    """NeuroKit2-simulated ECG/EDA/RSP at two arousal levels: rates recovered, arousal ordered."""
    out = {}
    for level, (hr, scr, rr) in {"low": (62, 1, 12), "high": (105, 10, 24)}.items():
        np.savez(tmp_path / f"{level}.npz", sampling_rate=FS, **_peripheral(hr, scr, rr))
        r = physio.run(path=str(tmp_path / f"{level}.npz")).to_dict()
        f = r["estimates"]["features"]
        assert abs(f["hr_bpm"] - hr) < 3 and abs(f["rsp_per_min"] - rr) < 2
        assert abs(f["scr_per_min"] - scr) <= 1
        assert len([e for e in r["events"] if e["type"] == "skin_conductance_response"]) == pytest.approx(scr, abs=1)
        assert "heuristic" in r["estimates"]["method"] and "valence" not in r["estimates"]
        out[level] = r["estimates"]["arousal"]
    assert out["low"]["label"] == "low" and out["high"]["label"] == "high"
    assert out["high"]["p_high"] > out["low"]["p_high"] + 0.4


def test_frontal_alpha_asymmetry_and_band_power():
    right = eeg_features(_eeg(alpha_left=1.0, alpha_right=3.0), FS)
    left = eeg_features(_eeg(alpha_left=3.0, alpha_right=1.0), FS)
    assert right["frontal_alpha_asymmetry"] > 1.0 > -1.0 > left["frontal_alpha_asymmetry"]  # ln(9) = 2.2
    assert right["faa_pair"] == "F4-F3"
    assert right["log_power_alpha"] > right["log_power_beta"] and right["de_alpha"] > right["de_beta"]


def test_valence_follows_alpha_asymmetry(physio, tmp_path):
    for name, (l, r) in {"pos": (1.0, 3.0), "neg": (3.0, 1.0)}.items():
        np.savez(tmp_path / f"{name}.npz", sampling_rate=FS, **_eeg(l, r))
    pos = physio.run(path=str(tmp_path / "pos.npz")).estimates["valence"]
    neg = physio.run(path=str(tmp_path / "neg.npz")).estimates["valence"]
    assert pos["label"] == "high" and neg["label"] == "low"


def test_deap_reader_and_baseline(physio, tmp_path):
    """A DEAP-shaped pickle: 2 trials x 40 channels x (3 s baseline + 60 s) at 128 Hz."""
    sig = _peripheral(100, 8, 22, seconds=63)
    base = _peripheral(65, 1, 12, seconds=10, seed=2)
    data = np.zeros((2, 40, 63 * FS))
    for name, idx in (("ECG", 38), ("GSR", 36), ("RSP", 37)):  # no ECG in DEAP: the pleth channel carries a pulse
        data[1, idx] = np.concatenate([base[name][: 3 * FS], sig[name][3 * FS :]])
    data[1, :32] = np.random.default_rng(0).standard_normal((32, 63 * FS))
    labels = np.array([[1, 1, 1, 1], [7.5, 8.0, 5.0, 6.0]])
    with open(tmp_path / "s01.dat", "wb") as f:
        pickle.dump({"data": data, "labels": labels}, f)
    r = physio.run(path=str(tmp_path / "s01.dat"), trial=1).to_dict()
    assert r["quality"]["baseline_s"] == 3.0 and r["quality"]["channels"]["GSR"] == "eda"
    assert r["window"] == [3.0, 63.0]
    assert r["details"]["labels"]["arousal"] == 8.0
    assert r["estimates"]["arousal"]["label"] == "high"
    with pytest.raises(DeemoError, match="choose one with trial"):
        physio.run(path=str(tmp_path / "s01.dat"))
    with pytest.raises(DeemoError, match="trial 5 out of range"):
        physio.run(path=str(tmp_path / "s01.dat"), trial=5)


def test_csv_reader_and_bad_files(physio, tmp_path):
    sig = _peripheral(80, 3, 15, seconds=30)
    t = np.arange(len(sig["ECG"])) / FS
    rows = ["time,ECG,GSR,RSP,ACC_X"] + [f"{a:.6f},{b:.6f},{c:.6f},{d:.6f},0" for a, b, c, d in zip(t, sig["ECG"], sig["GSR"], sig["RSP"])]
    (tmp_path / "rec.csv").write_text("\n".join(rows) + "\n")
    r = physio.run(path=str(tmp_path / "rec.csv")).to_dict()
    assert r["quality"]["sampling_rate"] == pytest.approx(FS) and r["quality"]["ignored_channels"] == ["ACC_X"]
    assert abs(r["estimates"]["features"]["hr_bpm"] - 80) < 3
    (tmp_path / "nochan.csv").write_text("# sampling_rate: 128\nfoo,bar\n" + "1,2\n" * 2000)
    with pytest.raises(DeemoError, match="no recognised channels"):
        physio.run(path=str(tmp_path / "nochan.csv"))
    (tmp_path / "short.npz").write_bytes(b"")
    np.savez(tmp_path / "short.npz", sampling_rate=FS, ECG=sig["ECG"][: 2 * FS])
    with pytest.raises(DeemoError, match="at least 5 s"):
        physio.run(path=str(tmp_path / "short.npz"))
    (tmp_path / "x.edf").write_bytes(b"0")
    with pytest.raises(DeemoError, match="unsupported physiology format"):
        physio.run(path=str(tmp_path / "x.edf"))


def test_cache_returns_the_same_result_without_recomputing(physio, tmp_path, monkeypatch):
    np.savez(tmp_path / "r.npz", sampling_rate=FS, **_peripheral(90, 4, 18, seconds=20))
    cache = ToolCache(tmp_path / "cache")
    first, hit1 = cache.run(physio, {"path": str(tmp_path / "r.npz")})
    monkeypatch.setattr(type(physio), "run", lambda *a, **k: pytest.fail("recomputed"))
    second, hit2 = cache.run(physio, {"path": str(tmp_path / "r.npz")})
    assert (hit1, hit2) == (False, True) and first == second
    assert json.loads(json.dumps(second)) == second
