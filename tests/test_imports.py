"""Import structure of the media, privacy, tools and training code: no import cycles (counting
imports inside functions, which hide them at import time), no module reaching into another's
private helpers, and physiology training without torch."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import deemo_llama

ROOT = Path(deemo_llama.__file__).parent
CHECKED = ("media", "errors", "privacy", "tools", "training")


def _modules() -> dict[str, Path]:
    out = {}
    for p in ROOT.rglob("*.py"):
        rel = p.relative_to(ROOT).with_suffix("")
        if rel.parts[0] not in CHECKED:
            continue
        parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
        out[".".join(("deemo_llama", *parts))] = p
    return out


def _imports(name: str, path: Path, modules: dict[str, Path]) -> list[tuple[str, list[str]]]:
    """(imported module, names) for every import in the file, functions included."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            names = [a.name for a in node.names]
            for n in names:  # ``from . import x``: x may be a submodule
                if f"{target}.{n}" in modules:
                    found.append((f"{target}.{n}", []))
            found.append((target, names))
        elif isinstance(node, ast.Import):
            found += [(a.name, []) for a in node.names]
    return [(t, n) for t, n in found if t in modules]


def test_no_import_cycles_and_no_private_imports():
    modules = _modules()
    graph = {m: set() for m in modules}
    private = []
    for m, p in modules.items():
        for target, names in _imports(m, p, modules):
            if target != m:
                graph[m].add(target)
            private += [f"{m}: {target}.{n}" for n in names if n.startswith("_") and not n.startswith("__")]
    assert not private, private
    # a package's __init__ re-exporting its submodules is not a cycle: submodules never import it
    state, cycles = {}, []

    def visit(m: str, stack: list[str]) -> None:
        state[m] = "open"
        for t in sorted(graph[m]):
            if state.get(t) == "open":
                cycles.append(stack[stack.index(t):] + [t] if t in stack else [m, t])
            elif t not in state:
                visit(t, stack + [t])
        state[m] = "done"

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    assert not cycles, cycles


def test_physiology_training_imports_no_torch():
    code = "import sys, deemo_llama.training.physio, deemo_llama.tools.physiology; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
