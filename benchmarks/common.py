"""Helpers shared by the benchmark scripts: machine description and a figures table."""

from __future__ import annotations

import os
import platform


def machine() -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads)"


def quiet() -> None:
    """Silence library warnings and progress bars so the tables stay readable."""
    import warnings

    warnings.filterwarnings("ignore")
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def print_table(title: str, rows: list[tuple[str, str]]) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=title)
    t.add_column("figure")
    t.add_column("value", justify="right")
    for k, v in rows:
        t.add_row(k, v)
    Console().print(t)


def free_ports(n: int) -> list[int]:
    """``n`` distinct free loopback ports (all bound at once, then released)."""
    import socket

    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


@__import__("contextlib").contextmanager
def served(work, *extra: str, timeout_s: float = 900):
    """`deemo serve --no-ui` on free ports, its log in ``work``/serve.log; yields (gateway /v1 URL,
    the serve process); Ctrl-C'd (vLLM with it) on exit."""
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    gw, vl = free_ports(2)
    log_path = Path(work) / "serve.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen([str(Path(sys.executable).parent / "deemo"), "serve", "--no-ui", "--port", str(gw), "--vllm-port", str(vl), "--max-model-len", "2048", *extra], stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + timeout_s
        while "all servers ready" not in log_path.read_text():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"deemo serve did not come up:\n{log_path.read_text()[-3000:]}")
            time.sleep(2)
        yield f"http://127.0.0.1:{gw}/v1", proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)
            proc.wait(timeout=180)
