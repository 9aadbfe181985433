"""The settings tables of docs/configuration.md, generated from ``schema.py``.

``python -m vedette.config.reference docs/configuration.md`` rewrites every
table between ``<!-- settings:<group> -->`` and ``<!-- /settings:<group> -->``;
``tests/test_config_schema.py`` fails when the file and the schema disagree.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from vedette.config.fields import Declared, declared
from vedette.config.schema import Config

GROUPS = ("core", "releases", "peers", "archive", "mcp")
# Sections listed in a table of their own; the rest are in "core".
_SECTION_GROUPS = {
    "releases": "releases",
    "peers": "peers",
    "archive": "archive",
    "mcp": "mcp",
}
HEADER = "| key | default | meaning |\n|---|---|---|\n"


def rows(group: str) -> Iterator[str]:
    """The table rows of ``group``, in the order the schema declares the keys."""
    for key, field, section in _walk(Config, "", "core", array=False):
        shown = field.extra("group") or _SECTION_GROUPS.get(section, "core")
        if shown == group:
            yield f"| {key} | {_default(field)} | {field.description} |"


def table(group: str) -> str:
    return HEADER + "".join(row + "\n" for row in rows(group))


def undocumented() -> list[str]:
    """Keys declared without a meaning (each must have one)."""
    return [
        key for key, field, _ in _walk(Config, "", "core", array=False) if not field.description
    ]


def _walk(
    cls: type[Any], prefix: str, section: str, *, array: bool
) -> Iterator[tuple[str, Declared, str]]:
    for name, field in declared(cls).items():
        nested = field.table
        if nested is not None:
            inner = f"{prefix}.{name}" if prefix else name
            yield from _walk(
                nested, inner, section if prefix else name, array=field.items is not None
            )
            continue
        if array:
            key = f"`[[{prefix}]]` `{name}`"
        else:
            key = f"`{prefix}.{name}`" if prefix else f"`{name}`"
        yield key, field, section


def _default(field: Declared) -> str:
    shown = field.extra("default")
    if shown is not None:
        return str(shown)
    if field.required:
        return "required"
    value = field.field.default
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if value == ():
        return "`[]`"
    if isinstance(value, str):
        return f"`{value}`"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def rewrite(text: str) -> str:
    """``text`` with every settings table replaced by the generated one."""
    for group in GROUPS:
        pattern = re.compile(
            rf"(<!-- settings:{group} -->\n).*?(<!-- /settings:{group} -->)", re.DOTALL
        )
        found = pattern.search(text)
        if found is None:
            raise ValueError(f"no <!-- settings:{group} --> table in the file")
        text = text[: found.end(1)] + table(group) + text[found.start(2) :]
    return text


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m vedette.config.reference docs/configuration.md", file=sys.stderr)
        return 2
    path = Path(argv[0])
    path.write_text(rewrite(path.read_text(encoding="utf-8")), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
