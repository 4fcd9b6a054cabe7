"""Expert tools the LLM calls through OpenAI-style function calling (see base.Tool, registry)."""

from .base import Tool, ToolArgumentError, ToolResult
from .registry import ToolCache, get_tool, tool_names, tool_specs

__all__ = ["Tool", "ToolArgumentError", "ToolCache", "ToolResult", "get_tool", "tool_names", "tool_specs"]
