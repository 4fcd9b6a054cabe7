"""The tool registry and the per-clip result cache.

The cache key is (tool, tool version, sha256 of every input file, other arguments), so the server's tool
loop can answer repeated calls on the same clip without recomputing, and a new tool version or a
changed file never returns a stale result.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Callable

from ..errors import DeemoError
from ..hashing import file_digest
from .base import Tool, ToolResult


def _tools() -> dict[str, type[Tool]]:
    from .body import AnalyzeBodyLanguage
    from .face import AnalyzeFacialExpression
    from .physiology import AnalyzePhysiology
    from .transcript import AnalyzeTranscript
    from .voice import AnalyzeVoice

    return {cls.name: cls for cls in (AnalyzeBodyLanguage, AnalyzeFacialExpression, AnalyzePhysiology, AnalyzeTranscript, AnalyzeVoice)}


def tool_names() -> list[str]:
    return sorted(_tools())


def get_tool(name: str) -> Tool:
    tools = _tools()
    if name not in tools:
        raise DeemoError(f"unknown tool {name!r}; available: {', '.join(sorted(tools))}")
    return tools[name]()


def tool_specs() -> list[dict[str, Any]]:
    """OpenAI ``tools`` entries of every registered tool."""
    return [get_tool(n).spec() for n in tool_names()]


class ToolCache:
    """JSON results on disk under ``root`` (default: ``<cache_dir>/tool-results``)."""

    def __init__(self, root: str | Path | None = None):
        from ..assets import cache_dir

        self.root = Path(root) if root else cache_dir() / "tool-results"

    def _file_digest(self, path: Path) -> str:
        return file_digest(path)

    def _dir_digest(self, root: Path) -> str:
        h = hashlib.sha256()
        for f in sorted(p for p in root.rglob("*") if p.is_file()):
            h.update(f"{f.relative_to(root)}\0{self._file_digest(f)}\0".encode())
        return h.hexdigest()

    def key(self, tool: Tool, path: Path, arguments: dict, extra: dict | None = None) -> str:
        """Every input file counts by content (a changed OpenFace CSV for the same clip is a new key);
        ``extra`` names a different computation on the same inputs (the Evidence pipeline's shared decode)."""
        args = {k: v for k, v in arguments.items() if k not in tool.path_arguments}
        files = {k: self._file_digest(Path(arguments[k])) for k in tool.path_arguments if k in arguments and Path(arguments[k]).is_file()}
        # a directory argument (a trained model) counts by its files' contents: retraining into the
        # same directory must not return results of the old model
        files |= {k: self._dir_digest(Path(v)) for k, v in arguments.items() if isinstance(v, str) and k not in tool.path_arguments and Path(v).is_dir()}
        raw = json.dumps([tool.name, tool.version, self._file_digest(path), files, args] + ([extra] if extra else []), sort_keys=True)
        return hashlib.sha256(raw.encode()).hexdigest()[:32]

    def run(self, tool: Tool, arguments: dict, compute: Callable[[], ToolResult] | None = None, key_extra: dict | None = None) -> tuple[dict, bool]:
        """(result dict, True if it came from the cache). On a miss ``compute()`` (default:
        ``tool.run(**arguments)``) makes the result, e.g. from media the caller decoded already."""
        tool.validate(arguments)
        if not tool.path_arguments:  # a text-only tool (analyze_transcript): cheap, no file to key on
            return (compute() if compute is not None else tool.run(**arguments)).to_dict(), False
        path = Path(arguments[tool.path_arguments[0]])
        if not path.is_file():
            raise DeemoError(f"{path}: no such file")
        target = self.root / tool.name / f"{self.key(tool, path, arguments, key_extra)}.json"
        if target.is_file():
            try:
                return json.loads(target.read_text()), True
            except json.JSONDecodeError:  # a damaged entry is recomputed
                pass
        result = (compute() if compute is not None else tool.run(**arguments)).to_dict()
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.tmp{os.getpid()}")
        tmp.write_text(json.dumps(result, indent=2) + "\n")
        os.replace(tmp, target)
        return result, False
