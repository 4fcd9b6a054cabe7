"""Start and stop a real vLLM OpenAI server for a deemo checkpoint (used by ``deemo serve`` and tests).

    with VllmServer(checkpoint, port=8011) as server:   # returns once /v1/models answers
        print(server.url)                                  # http://127.0.0.1:8011/v1

The server runs in the serving environment's Python (``DEEMO_VLLM_PYTHON``, else ``.venv-vllm``
next to this project's ``.venv``; ``bash scripts/setup-vllm.sh`` builds it), with the checkpoint's
chat template, the ``hermes`` tool parser (the template's ``<tool_call>`` format), LoRA enabled, and
local media only under ``allowed_media_dir``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import DeemoError


class ServingSetupError(DeemoError):
    """The serving environment is missing (exit code 3, like a missing embedded asset)."""

    exit_code = 3


def vllm_python() -> Path:
    """The serving environment's interpreter."""
    env = os.environ.get("DEEMO_VLLM_PYTHON")
    if env:  # explicit: use it or fail, never fall back silently
        if not Path(env).is_file():
            raise ServingSetupError(f"DEEMO_VLLM_PYTHON={env}: no such interpreter (run `bash scripts/setup-vllm.sh`)")
        return Path(env)
    candidates = [Path(sys.prefix).parent / ".venv-vllm" / "bin" / "python", Path(__file__).resolve().parents[2] / ".venv-vllm" / "bin" / "python"]
    for c in candidates:
        if c.is_file():
            return c
    raise ServingSetupError("no vLLM environment found: run `bash scripts/setup-vllm.sh` (or set DEEMO_VLLM_PYTHON)")


@dataclass
class VllmOptions:
    """What ``deemo serve`` passes through to vLLM. ``extra`` is appended verbatim (GPU options...)."""

    served_name: str = "deemo"
    host: str = "127.0.0.1"
    port: int = 8011
    dtype: str = "auto"  # auto: bfloat16 where the hardware computes it natively (fast_dtype), else float32
    max_model_len: int = 4096
    kv_cache_gib: int = 2  # CPU only (VLLM_CPU_KVCACHE_SPACE)
    max_lora_rank: int = 64
    lora_modules: dict[str, str] = field(default_factory=dict)  # served name -> adapter dir
    allowed_media_dir: str | None = None
    video_frames: int = 8
    max_media_per_prompt: int = 4
    # CPU cores vLLM keeps free for its scheduler process (VLLM_CPU_NUM_OF_RESERVED_CPU). vLLM's own
    # default is 1, which on a 2-core machine leaves ONE thread for the model; None = ours: 0 on
    # machines with <= 4 cores, else vLLM's default
    reserved_cpus: int | None = None
    multimodal: bool = True  # False: a plain text LLM (benchmarks' baseline): no media, tool or template options
    extra: list[str] = field(default_factory=list)


def fast_dtype(cpuinfo: str | None = None) -> str:
    """The dtype the engine runs fastest in here: bfloat16 on a CUDA GPU that supports it or a CPU with
    native bf16 matrix instructions (AVX512-BF16 or AMX), else float32 (emulated bf16 is slower).
    Note that bf16 answers differ slightly from HF's fp32 ones (greedy ties, label scores)."""
    import torch

    if torch.cuda.is_available():
        return "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            cpuinfo = ""
    flags = set(next((line.split(":", 1)[1].split() for line in cpuinfo.splitlines() if line.startswith("flags")), []))
    return "bfloat16" if flags & {"avx512_bf16", "amx_bf16"} else "float32"


def resolve_dtype(dtype: str) -> str:
    return fast_dtype() if dtype == "auto" else dtype


def vllm_command(checkpoint: str | Path, o: VllmOptions) -> list[str]:
    ckpt = Path(checkpoint).resolve()
    cmd = [
        str(vllm_python()), "-m", "vllm.entrypoints.openai.api_server",
        "--model", str(ckpt), "--served-model-name", o.served_name, "--dtype", resolve_dtype(o.dtype),
        "--max-model-len", str(o.max_model_len), "--host", o.host, "--port", str(o.port),
    ]
    if not o.multimodal:
        return cmd + list(o.extra)
    cmd += [
        "--enable-auto-tool-choice", "--tool-call-parser", "hermes",
        "--limit-mm-per-prompt", f'{{"video": {o.max_media_per_prompt}, "audio": {o.max_media_per_prompt}}}',
        "--media-io-kwargs", f'{{"video": {{"num_frames": {o.video_frames}}}}}',
        # vLLM's encoder-cache profiling runs 128 worst-case audio items through our Whisper encoder:
        # 22 GB RSS on CPU (OOM-killed on 24 GB). With --enable-lora it skips that profiling anyway,
        # which is how every earlier serving run worked; the KV cache is sized by VLLM_CPU_KVCACHE_SPACE.
        "--skip-mm-profiling",
    ]
    if (ckpt / "chat_template.jinja").is_file():
        cmd += ["--chat-template", str(ckpt / "chat_template.jinja")]
    if o.lora_modules:  # LoRA only with adapters: --enable-lora costs speed, and on CPU (vllm-cpu 0.32)
        # its logits layer crashes the engine on prompt_logprobs, which the label scorer needs
        cmd += ["--enable-lora", "--max-lora-rank", str(o.max_lora_rank), "--lora-modules", *(f"{k}={v}" for k, v in o.lora_modules.items())]
    if o.allowed_media_dir:
        cmd += ["--allowed-local-media-path", str(Path(o.allowed_media_dir).resolve())]
    return cmd + list(o.extra)


class VllmServer:
    """A vLLM server subprocess; ``start()`` waits for readiness, ``stop()`` ends its process group."""

    def __init__(self, checkpoint: str | Path, options: VllmOptions | None = None, log_path: str | Path | None = None, startup_timeout_s: float = 600.0):
        self.checkpoint = Path(checkpoint)
        self.options = options or VllmOptions()
        self.startup_timeout_s = startup_timeout_s
        self.log_path = Path(log_path) if log_path else Path(tempfile.mkstemp(prefix="deemo-vllm-", suffix=".log")[1])
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://{self.options.host}:{self.options.port}/v1"

    def start(self, cancel: threading.Event | None = None) -> "VllmServer":
        """Start the server and wait until it answers (``cancel`` set: stop waiting and stop it)."""
        if not (self.checkpoint / "config.json").is_file():
            raise DeemoError(f"{self.checkpoint}: not a deemo-llama checkpoint (no config.json)")
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "VLLM_CPU_KVCACHE_SPACE": str(self.options.kv_cache_gib), "VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1"}
        reserved = self.options.reserved_cpus if self.options.reserved_cpus is not None else (0 if (os.cpu_count() or 1) <= 4 else None)
        if reserved is not None:
            env.setdefault("VLLM_CPU_NUM_OF_RESERVED_CPU", str(reserved))
        log = open(self.log_path, "ab" if self.proc is not None else "wb")  # a restart keeps the crash in the log
        # own process group: vLLM forks an engine core; stop() signals the whole group
        self.proc = subprocess.Popen(vllm_command(self.checkpoint, self.options), stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            if cancel is not None and cancel.is_set():
                self.stop()
                raise DeemoError("vLLM start-up cancelled")
            if self.proc.poll() is not None:
                raise DeemoError(f"vLLM exited with code {self.proc.returncode} during start-up; its log: {self.log_path}\n{self.tail()}")
            if self.ready():
                return self
            time.sleep(2)
        self.stop()
        raise DeemoError(f"vLLM was not ready after {self.startup_timeout_s:g} s; its log: {self.log_path}")

    def ready(self, timeout_s: float = 2.0) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/models", timeout=timeout_s) as r:
                return r.status == 200
        except OSError:
            return False

    def tail(self, n: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def stop(self, timeout_s: float = 30.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGINT)  # vLLM shuts down its engine cleanly on SIGINT
            self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        except ProcessLookupError:
            pass

    def kill(self) -> None:
        """SIGKILL the whole process group (a hung server, or the engine left behind by a dead one)."""
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.proc.wait()

    def restart(self, cancel: threading.Event | None = None) -> "VllmServer":
        """The same server again, with the same arguments, after a crash or a hang."""
        self.kill()
        return self.start(cancel)

    def __enter__(self) -> "VllmServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


__all__ = ["ServingSetupError", "VllmOptions", "VllmServer", "vllm_command", "vllm_python"]
