"""The shape of the `vedette` command line: every command has help, each command
group lives in its own module of `vedette.cli` named after it, the commands keep
the exit-code rule (docs/operations.md, "Exit codes"), and the command line is a
leaf that no other part of vedette imports (docs/architecture.md, "Arrows")."""

from __future__ import annotations

import ast
import inspect
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

import vedette
from vedette.cli import main
from vedette.cli.errors import EXIT_CANNOT_RUN, EXIT_FAILED, CannotRun, CheckFailed

PACKAGE = Path(vedette.__file__).resolve().parent
CLI = PACKAGE / "cli"


def commands(
    group: click.Group, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], click.Command]]:
    """Every command and group under ``group``, with the words that invoke it."""
    for name, command in sorted(group.commands.items()):
        yield (*path, name), command
        if isinstance(command, click.Group):
            yield from commands(command, (*path, name))


ALL = [(" ".join(path), command) for path, command in commands(main)]


def test_the_walk_finds_the_whole_tree():
    names = {name for name, _ in ALL}
    assert {"serve", "store drain", "store quarantine ack", "release verify", "hash"} <= names
    assert len(ALL) > 30


@pytest.mark.parametrize(("name", "command"), [("", main), *ALL], ids=lambda v: v or "vedette")
def test_every_command_has_help_with_a_one_line_summary(name, command):
    paragraphs = inspect.cleandoc(command.help or "").split("\n\n")
    summary = paragraphs[0]
    assert summary, f"`vedette {name}` has no help text"
    assert "\n" not in summary, f"`vedette {name}`: the summary is one line, then a blank line"
    assert command.get_short_help_str(limit=200).strip()
    result = CliRunner().invoke(main, [*name.split(), "--help"], prog_name="vedette")
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"Usage: {' '.join(['vedette', *name.split()])} ")
    assert " ".join(summary.split()) in " ".join(result.output.split())


def test_the_top_level_help_gives_the_exit_codes():
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    assert "Exit codes: 0" in text
    assert "docs/operations.md" in text


def test_each_top_level_command_lives_in_the_module_named_after_it():
    for name, command in main.commands.items():
        assert command.callback is not None
        assert command.callback.__module__ == f"vedette.cli.{name}", name
        for _, sub in commands(command) if isinstance(command, click.Group) else ():
            assert sub.callback is not None
            assert sub.callback.__module__ == f"vedette.cli.{name}", (name, sub.name)


def test_the_exit_code_classes_keep_the_rule():
    assert (CannotRun("x").exit_code, CheckFailed("x").exit_code) == (2, 1)
    assert (EXIT_CANNOT_RUN, EXIT_FAILED) == (2, 1)


def _raised_names(tree: ast.AST) -> Iterator[tuple[int, str]]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call):
            func = node.exc.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            yield node.lineno, name


def test_commands_raise_only_the_exit_code_classes():
    # A bare click.ClickException exits 1 whatever it means; CannotRun (2) and
    # CheckFailed (1) say which of the rule's cases it is.
    found = [
        f"{path.relative_to(PACKAGE)}:{line}"
        for path in sorted(CLI.rglob("*.py"))
        for line, name in _raised_names(ast.parse(path.read_text(encoding="utf-8")))
        if name == "ClickException"
    ]
    assert not found, "raise CannotRun or CheckFailed (vedette/cli/errors.py):\n" + "\n".join(found)


def _package_of(path: Path) -> str:
    """The package a module of vedette belongs to (for ``__init__.py``: its own)."""
    return ".".join(("vedette", *path.relative_to(PACKAGE).parent.parts))


def _imported_modules(source: str, package: str) -> Iterator[tuple[int, str]]:
    """Every module (and ``module.name``) ``source`` imports, at any depth (inside
    functions too), relative imports resolved against ``package``."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[: len(parts) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            yield node.lineno, base
            for alias in node.names:
                yield node.lineno, f"{base}.{alias.name}"


def _imports_of(path: Path) -> Iterator[tuple[int, str]]:
    return _imported_modules(path.read_text(encoding="utf-8"), _package_of(path))


def _library_modules() -> Iterator[Path]:
    """Every module but the CLI's and ``python -m vedette``'s entry point."""
    for path in sorted(PACKAGE.rglob("*.py")):
        if CLI not in path.parents and path != PACKAGE / "__main__.py":
            yield path


def test_nothing_outside_the_cli_imports_it():
    found = [
        f"{path.relative_to(PACKAGE)}:{line}: {module}"
        for path in _library_modules()
        for line, module in _imports_of(path)
        if module == "vedette.cli" or module.startswith("vedette.cli.")
    ]
    assert not found, "the command line is a leaf; import from the part it uses:\n" + "\n".join(
        found
    )


def test_click_is_used_only_by_the_cli():
    found = [
        f"{path.relative_to(PACKAGE)}:{line}"
        for path in _library_modules()
        for line, module in _imports_of(path)
        if module == "click" or module.startswith("click.")
    ]
    assert not found, "click code belongs in vedette/cli:\n" + "\n".join(found)


def test_the_import_walk_sees_imports():
    # The two tests above would pass on a walk that finds nothing.
    export = {module for _, module in _imports_of(PACKAGE / "archive" / "export.py")}
    assert "vedette.store.record_fields" in export
    source = "def f():\n    from ..cli import main\n    from . import x\n    import click.testing\n"
    found = [module for _, module in _imported_modules(source, "vedette.api")]
    assert found == ["vedette.cli", "vedette.cli.main", "vedette.api", "vedette.api.x",
                     "click.testing"]  # fmt: skip
    assert len(list(_library_modules())) > 40
