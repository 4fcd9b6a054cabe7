"""schemathesis against a running gateway (unit stage: in front of the tiny model; serving stage: in
front of real vLLM). Every request is generated from the gateway's own OpenAPI schema, valid and
invalid ones; the checks: no 5xx, and every status code, content type and body as the schema declares."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"


def schemathesis_run(base: str, max_examples: int, timeout_s: int = 900, phases: str = "examples,coverage,fuzzing", extra: tuple[str, ...] = ()):
    """schemathesis against the gateway's own OpenAPI schema: no 5xx, every status, content type and
    body as declared. Returns the finished process (its stdout names any failing case). The coverage
    phase walks every boundary of the schema (hundreds of cases: fast against the tiny model, about
    ten minutes against vLLM on 2 cores)."""
    st = shutil.which("st", path=str(Path(sys.executable).parent))
    assert st, "schemathesis is not installed (pip install -e '.[dev]')"
    cmd = [st, "run", f"{base}/openapi.json", "--url", base, "--checks", CHECKS, "--max-examples", str(max_examples), "--generation-deterministic",
           "--request-timeout", "120", "--phases", phases, "--suppress-health-check", "all", "--no-color", *extra]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, env={**os.environ, "SCHEMATHESIS_TELEMETRY": "false"})


def generated(stdout: str) -> int:
    """How many test cases the run generated (from its summary: "N generated, ...")."""
    import re

    m = re.search(r"(\d+) generated", stdout)
    return int(m.group(1)) if m else 0
