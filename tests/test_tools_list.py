"""`deemo tools list`: tool names are never cut, even in an 80-column terminal."""

from __future__ import annotations

import pytest
from rich.console import Console

from deemo_llama.cli import tools_table
from deemo_llama.tools import tool_names


@pytest.mark.parametrize("width", [80, 60])
def test_tool_names_are_never_truncated(width):
    console = Console(width=width, record=True, color_system=None)
    console.print(tools_table())
    text = console.export_text()
    assert "…" not in text
    lines = text.splitlines()
    for name in tool_names():
        assert any(name in line for line in lines), (name, text)  # whole, on one line
    assert max(map(len, lines)) <= width
