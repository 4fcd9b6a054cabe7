"""How `deemo serve` starts vLLM: the dtype it picks for the hardware, LoRA only with adapters."""

from __future__ import annotations

import torch

from deemo_llama.serving.vllm_server import VllmOptions, fast_dtype, vllm_command


def _arg(cmd: list[str], name: str) -> str:
    return cmd[cmd.index(name) + 1]


def test_bf16_only_where_the_cpu_computes_it_natively(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    native = "processor\t: 0\nflags\t\t: fpu sse avx2 avx512f avx512_bf16 amx_tile amx_bf16\n"
    emulated = "processor\t: 0\nflags\t\t: fpu sse avx2 avx512f avx512bw\n"
    assert fast_dtype(native) == "bfloat16" and fast_dtype(emulated) == "float32" and fast_dtype("") == "float32"


def test_vllm_command_resolves_auto_and_enables_lora_only_with_adapters(tmp_path, monkeypatch):
    import deemo_llama.serving.vllm_server as vs

    monkeypatch.setattr(vs, "fast_dtype", lambda: "bfloat16")
    monkeypatch.setattr(vs, "vllm_python", lambda: tmp_path / "python")  # the unit stage runs before .venv-vllm exists
    plain = vllm_command(tmp_path, VllmOptions())
    assert _arg(plain, "--dtype") == "bfloat16" and "--enable-lora" not in plain
    exact = vllm_command(tmp_path, VllmOptions(dtype="float32", lora_modules={"a": str(tmp_path)}))
    assert _arg(exact, "--dtype") == "float32" and "--enable-lora" in exact and f"a={tmp_path}" in exact
