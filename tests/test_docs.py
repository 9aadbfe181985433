"""The repository explains itself: references stay inside it, every invariant id
used anywhere is defined in docs/architecture.md, and what that file names exists."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ARCHITECTURE = ROOT / "docs" / "architecture.md"

# Folders that are not the repository's own text: git's, build output, caches.
SKIPPED_DIRS = {
    ".git",
    "target",
    ".venv",
    "__pycache__",
    ".mypy_cache",
    ".ruff_cache",
    ".pytest_cache",
    ".hypothesis",
    "node_modules",
}

# Written in pieces so that this file does not match itself.
DESIGN = "DE" + "SIGN"
OUTSIDE_REFERENCE = re.compile(
    rf"\b{DESIGN}(\.md|\s*§)|\bdesign doc(ument)?s?\b|threat[- ]model seed", re.IGNORECASE
)
INVARIANT = re.compile(r"\bINV-(\d{2})\b")
DEFINITION = re.compile(r"^### (INV-\d{2}): ", re.MULTILINE)


def repository_files() -> Iterator[Path]:
    """Every text file of the repository, outside git's folder, builds and caches."""
    for path in sorted(ROOT.rglob("*")):
        relative = path.relative_to(ROOT)
        if any(part in SKIPPED_DIRS for part in relative.parts[:-1]) or not path.is_file():
            continue
        yield path


def text_of(path: Path) -> str | None:
    data = path.read_bytes()
    if b"\0" in data:
        return None  # a binary file: the built extension, say
    return data.decode("utf-8", errors="replace")


def lines_matching(pattern: re.Pattern[str]) -> Iterator[tuple[str, int, str]]:
    for path in repository_files():
        text = text_of(path)
        if text is None:
            continue
        relative = path.relative_to(ROOT).as_posix()
        for number, line in enumerate(text.splitlines(), 1):
            if pattern.search(line):
                yield relative, number, line.strip()


def test_references_point_inside_the_repository() -> None:
    found = [f"{path}:{number}: {line}" for path, number, line in lines_matching(OUTSIDE_REFERENCE)]
    assert not found, (
        "refer to docs/architecture.md, docs/contracts.md or docs/threat-model.md instead:\n"
        + "\n".join(found)
    )


def test_the_pattern_finds_outside_references() -> None:
    design, seed = "design" + " document", "threat-model" + " seed"
    for text in (f"see {DESIGN}.md", f"({DESIGN} §4)", f"the {design}", seed):
        assert OUTSIDE_REFERENCE.search(text), text
    for text in ("RFC 8785 §3.2.3", "designed to", "docs/architecture.md"):
        assert not OUTSIDE_REFERENCE.search(text), text


def defined_invariants() -> list[str]:
    return DEFINITION.findall(ARCHITECTURE.read_text(encoding="utf-8"))


def test_every_invariant_id_in_use_is_defined_once() -> None:
    defined = defined_invariants()
    assert len(defined) == len(set(defined)), f"defined twice: {sorted(defined)}"
    undefined = [
        f"{path}:{number}: INV-{nn}"
        for path, number, line in lines_matching(INVARIANT)
        for nn in INVARIANT.findall(line)
        if f"INV-{nn}" not in defined
    ]
    assert not undefined, "define these in docs/architecture.md:\n" + "\n".join(undefined)


def test_the_invariants_in_use_are_found() -> None:
    # The scan must see code, tests and docs; a broken walk would pass the test above.
    used = {path for path, _, _ in lines_matching(INVARIANT)}
    assert "rust/peers/tls.rs" in used
    assert "docs/threat-model.md" in used
    assert {"INV-01", "INV-09", "INV-16"} <= set(defined_invariants())


# `tests/test_x.py::test_name` and `rust/a/b.rs::name` as docs/architecture.md cites them.
CITED_TEST = re.compile(r"`((?:tests|rust)/[\w/]+\.(?:py|rs))::(\w+)`")
CITED_PATH = re.compile(r"`((?:rust|python/vedette|tests|docs)/[\w/.-]+\.(?:py|rs|md))`")


def test_every_test_the_architecture_cites_exists() -> None:
    text = ARCHITECTURE.read_text(encoding="utf-8")
    cited = CITED_TEST.findall(text)
    assert len(cited) > 30
    missing = []
    for file, name in cited:
        source = ROOT / file
        if not source.is_file() or not re.search(
            rf"^\s*(async def|def|fn) {name}\(", source.read_text(encoding="utf-8"), re.MULTILINE
        ):
            missing.append(f"{file}::{name}")
    assert not missing, "cited in docs/architecture.md but not found:\n" + "\n".join(missing)


def test_every_file_the_architecture_names_exists() -> None:
    text = ARCHITECTURE.read_text(encoding="utf-8")
    named = set(CITED_PATH.findall(text))
    assert len(named) > 20
    missing = sorted(path for path in named if not (ROOT / path).is_file())
    assert not missing, "named in docs/architecture.md but not found:\n" + "\n".join(missing)
