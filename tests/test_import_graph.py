"""The arrows of docs/architecture.md ("Arrows"), checked on the source: which
part of the Python shell imports which. Every import counts, at the top of a
file, inside a function or under ``TYPE_CHECKING``: a lazy import is still an
arrow, and a cycle broken by one is still a cycle."""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "python"

# The parts that are folders; every other module is a part of its own.
FOLDERS = ("api", "archive", "benchmark", "cli", "mcp", "peers", "releases", "runtime")
CORE_FACES = ("hashing", "quota", "policy", "store", "errors", "_core")

# What each part must never import (a part absent here may import anything
# below it; ``cli`` and ``benchmark`` sit on top).
FORBIDDEN: dict[str, set[str]] = {
    "runtime": {"api", "serve", "cli", "peers", "archive", "releases", "mcp", "benchmark"},
    "api": {"serve", "cli", "peers", "archive", "releases", "mcp", "benchmark"},
    "releases": {"api", "serve", "cli", "peers", "archive", "mcp", "benchmark"},
    "peers": {"runtime", "api", "serve", "cli", "releases", "archive", "mcp", "benchmark"},
    "archive": {"api", "serve", "cli", "peers", "releases", "mcp", "benchmark"},
    "mcp": {"api", "cli", "peers", "archive", "releases", "benchmark"},
    "serve": {"cli", "benchmark"},
    # The embedded example packs a signed release: releases and below only.
    "example": {"runtime", "api", "serve", "cli", "peers", "archive", "mcp", "benchmark"},
    **{
        leaf: {"runtime", "api", "serve", "cli", "peers", "archive", "mcp", "benchmark"}
        for leaf in (*CORE_FACES, "config", "origin", "durable", "drain", "client", "backoff")
    },
}
# Where a part may reach into one module of a part it otherwise must not use.
SEAMS = {
    # The runtime's seam toward the release lifecycle (runtime/releases.py).
    ("releases", "vedette.runtime.releases"),
    # The health vocabulary every part reports in.
    ("archive", "vedette.runtime.health"),
    # The configuration checks an agent's release reference with the one parser.
    ("config", "vedette.releases.oci"),
}


def modules() -> dict[str, Path]:
    found = {}
    for path in (PACKAGE / "vedette").rglob("*.py"):
        parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    found["vedette._core"] = PACKAGE / "vedette" / "_core.pyi"
    return found


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The vedette modules ``name`` imports, anywhere in its source."""

    def resolve(target: str) -> str | None:
        while target and target not in known:
            target = target.rpartition(".")[0]
        return target or None

    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            # ``from pkg import submodule`` imports the submodule, not the package.
            targets = [
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base
                for alias in node.names
            ]
        for target in targets:
            module = resolve(target) if target.startswith("vedette") else None
            if module is not None and module != name:
                found.add(module)
    return found


@functools.cache
def graph() -> dict[str, set[str]]:
    known = modules()
    return {
        name: imports(name, path, known) for name, path in known.items() if path.suffix == ".py"
    }


def part(module: str) -> str:
    pieces = module.split(".")
    if len(pieces) == 1:
        return "vedette"
    return pieces[1]


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_the_graph_sees_lazy_and_type_checking_imports():
    edges = graph()
    # Imported inside functions in serve.py, which builds these parts.
    assert {"vedette.peers.node", "vedette.archive.uplink"} <= edges["vedette.serve"]
    # Imported only under TYPE_CHECKING there.
    assert "vedette.runtime.tools" in edges["vedette.serve"]
    assert "vedette.runtime.tools.builtin" in edges["vedette.runtime.tools.registry"]


def test_no_module_imports_itself_back():
    assert cycles(graph()) == []


def test_a_cycle_is_found_when_there_is_one():
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(edges) == [["a", "b", "c"]]


@pytest.mark.parametrize("source", sorted(FORBIDDEN))
def test_every_part_imports_only_what_the_arrows_allow(source):
    offending = sorted(
        f"{module} imports {target}"
        for module, targets in graph().items()
        if part(module) == source
        for target in targets
        if part(target) in FORBIDDEN[source] and (source, target) not in SEAMS
    )
    assert offending == [], "\n".join(offending)
