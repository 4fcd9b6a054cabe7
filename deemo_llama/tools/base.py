"""The common shape of an expert tool: an OpenAI function spec and a versioned JSON envelope.

Experts that need identity-bearing input run INSIDE the privacy boundary on raw media and return
only non-identifying descriptors (event times, probabilities, aggregate features): never crops,
raw landmarks, embeddings or voiceprints. The LLM reads ``summary`` (at most two sentences).
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

ENVELOPE_VERSION = "1"
Status = Literal["ok", "no_signal", "error"]

# The clip and time-window arguments the media tools share (JSON-schema properties); a tool that
# reads audio files too overrides the clip's description.
CLIP_WINDOW_PARAMS: dict[str, dict[str, Any]] = {
    "clip": {"type": "string", "description": "Path of the video clip."},
    "start_s": {"type": "number", "minimum": 0, "description": "Start of the window to analyse (s)."},
    "end_s": {"type": "number", "minimum": 0, "description": "End of the window to analyse (s)."},
}


class ToolArgumentError(ValueError):
    """The arguments do not match the tool's JSON schema (the server answers 4xx)."""


@dataclass
class ToolResult:
    """The envelope every tool returns. ``window`` is (start_s, end_s) of what was analysed."""

    tool: str
    version: str
    status: Status
    window: tuple[float, float] | None
    quality: dict[str, Any]
    events: list[dict[str, Any]]
    estimates: dict[str, Any]
    summary: str
    backend: str
    privacy: str
    envelope_version: str = ENVELOPE_VERSION
    details: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        sentences = [s for s in re.split(r"(?<=[.!?])\s+", self.summary.strip()) if s]
        if len(sentences) > 2:
            raise ValueError(f"{self.tool}: summary has {len(sentences)} sentences; the LLM reads at most 2")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["window"] = list(self.window) if self.window else None
        return d


class Tool(ABC):
    """One expert. Subclasses set the class attributes and implement :meth:`run`."""

    name: str
    version: str
    description: str
    parameters: dict[str, Any]  # JSON schema of the arguments (OpenAI function calling)
    privacy: str
    path_arguments: tuple[str, ...] = ("clip",)  # arguments naming input files; the first is cached on
    # arguments only the operator sets (e.g. a model directory loaded with joblib): hidden from the
    # LLM's spec and refused in its tool calls
    server_arguments: tuple[str, ...] = ()

    def spec(self) -> dict[str, Any]:
        """The OpenAI ``tools`` entry."""
        return {"type": "function", "function": {"name": self.name, "description": self.description, "parameters": self.parameters}}

    def validate(self, arguments: dict[str, Any]) -> dict[str, Any]:
        """Check ``arguments`` against the schema (required keys, types, no unknown keys, enums)."""
        if not isinstance(arguments, dict):
            raise ToolArgumentError(f"{self.name}: arguments must be a JSON object, got {type(arguments).__name__}")
        props = self.parameters.get("properties", {})
        missing = [k for k in self.parameters.get("required", []) if k not in arguments]
        if missing:
            raise ToolArgumentError(f"{self.name}: missing required argument(s) {missing}")
        unknown = sorted(set(arguments) - set(props))
        if unknown:
            raise ToolArgumentError(f"{self.name}: unknown argument(s) {unknown}; expected {sorted(props)}")
        types = {"string": str, "number": (int, float), "integer": int, "boolean": bool, "array": list, "object": dict}
        for k, v in arguments.items():
            want = props[k].get("type")
            if want and not isinstance(v, types[want]) or (want in ("number", "integer") and isinstance(v, bool)):
                raise ToolArgumentError(f"{self.name}: argument {k!r} must be {want}, got {v!r}")
            if "enum" in props[k] and v not in props[k]["enum"]:
                raise ToolArgumentError(f"{self.name}: argument {k!r} must be one of {props[k]['enum']}, got {v!r}")
            if "minimum" in props[k] and v < props[k]["minimum"]:
                raise ToolArgumentError(f"{self.name}: argument {k!r} must be >= {props[k]['minimum']}, got {v!r}")
        return arguments

    @abstractmethod
    def run(self, **arguments: Any) -> ToolResult:
        """Analyse and return the envelope; raise MediaError/DeemoError for unusable input."""

    def result(self, status: Status, window, quality, events, estimates, summary, backend, details=None) -> ToolResult:
        return ToolResult(self.name, self.version, status, window, quality, events, estimates, summary, backend, self.privacy, details=details or {})
