"""The configuration's declared schema (python/vedette/config/schema.py): the
documentation is generated from it, and every bound it declares is enforced
on load, naming the key."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from vedette.config import Config, ConfigError, load_config
from vedette.config.fields import Declared, declared
from vedette.config.reference import GROUPS, rewrite, table, undocumented
from vedette.hashing import Digest

DOCS = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"


def test_the_documented_tables_are_the_generated_ones():
    text = DOCS.read_text(encoding="utf-8")
    assert rewrite(text) == text, (
        "docs/configuration.md differs from the schema: "
        "python -m vedette.config.reference docs/configuration.md"
    )


def test_every_setting_has_a_meaning_and_appears_in_one_table():
    assert undocumented() == []
    rows = [row for group in GROUPS for row in table(group).splitlines()[2:]]
    keys = [row.split(" | ")[0] for row in rows]
    assert len(keys) == len(set(keys))


def _sample(field: Declared) -> Any:
    """A valid value for a required field."""
    if field.name == "servers":
        return ["nats://127.0.0.1:4222"]
    kind = field.items if field.items is not None else field.base
    value: Any = "x"
    if kind is Path:
        value = "/tmp/x"
    if field.items is not None:
        return [value]
    return value


def _minimal(cls: type[Any]) -> dict[str, Any]:
    return {name: _sample(f) for name, f in declared(cls).items() if f.required}


def _bounded() -> list[tuple[str, Declared, list[str]]]:
    """Every numeric setting with a declared bound: (dotted key, field, the
    path of tables to it)."""
    found = []

    def walk(cls: type[Any], path: list[str]) -> None:
        for name, field in declared(cls).items():
            if field.table is not None:
                walk(field.table, [*path, name])
            elif (
                field.base in (int, float)
                and field.items is None
                and any(field.constraint(c) is not None for c in ("ge", "gt", "le", "lt"))
            ):
                found.append((".".join([*path, name]), field, path))

    walk(Config, [])
    return found


def _beyond(field: Declared) -> Any:
    """A value just outside the field's declared bounds."""
    ge, gt = field.constraint("ge"), field.constraint("gt")
    le, lt = field.constraint("le"), field.constraint("lt")
    if ge is not None:
        return ge - 1 if field.base is int else ge - 0.5
    if gt is not None:
        return gt
    return (le + 1) if le is not None else lt


@pytest.mark.parametrize(
    ("key", "field", "path"), _bounded(), ids=[key for key, _, _ in _bounded()]
)
def test_every_declared_bound_is_enforced_and_named(key, field, path):
    data: dict[str, Any] = {}
    node = data
    cls: Any = Config
    for name in path:
        owner = declared(cls)[name]
        cls = owner.table
        child = _minimal(cls)
        node[name] = [child] if owner.items is not None else child
        node = child
    node[field.name] = _beyond(field)
    with pytest.raises(ConfigError) as caught:
        load_config(None, env={}, overrides=_flatten(data))
    shown = key if not any(declared_items(path)) else key.split(".")[-1]
    assert shown in str(caught.value)
    assert "expected" in str(caught.value)


def declared_items(path: list[str]) -> list[bool]:
    cls: Any = Config
    out = []
    for name in path:
        owner = declared(cls)[name]
        out.append(owner.items is not None)
        cls = owner.table
    return out


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in data.items():
        key = f"{prefix}{name}"
        if isinstance(value, dict):
            out.update(_flatten(value, f"{key}."))
        else:
            out[key] = value
    return out


def test_a_value_becomes_a_path_by_its_declared_type_not_its_name(tmp_path):
    config_file = tmp_path / "vedette.toml"
    config_file.write_text(
        '[[tools.http]]\nname = "key"\nurl = "dir"\n'  # strings named like path keys stay strings
        "[store]\ndir = 'evidence'\n"  # a Path, relative to the file
        "[[callers]]\nid = 'root-adapter'\nagent = 'a'\nuid = 0\n"  # a uid may be 0
    )
    config = load_config(config_file, env={})
    assert config.tools.http[0].url == "dir"
    assert config.store.dir == tmp_path / "evidence"
    assert config.callers[0].uid == 0


def test_every_field_type_is_one_the_loader_reads():
    readable = (int, float, bool, str, Path, Digest)

    def walk(cls: type[Any]) -> None:
        for field in declared(cls).values():
            if field.table is not None:
                walk(field.table)
                continue
            kind = field.items if field.items is not None else field.base
            literal = getattr(kind, "__origin__", None) is not None
            assert literal or kind in readable, f"{cls.__name__}.{field.name}: {kind!r}"

    walk(Config)
    assert dataclasses.is_dataclass(Config)


@pytest.mark.parametrize(
    ("key", "field", "path"), _bounded(), ids=[key for key, _, _ in _bounded()]
)
def test_a_configuration_built_in_code_meets_the_same_bounds(key, field, path):
    cls: Any = Config
    for name in path:
        cls = declared(cls)[name].table
    values = {**_minimal(cls), field.name: _beyond(field)}
    with pytest.raises(ConfigError, match=field.name):
        cls(**values)
