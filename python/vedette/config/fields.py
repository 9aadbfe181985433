"""Reading the declarations of ``schema.py``: a field's type without its
annotations, its constraints, its meaning; shared by the loader and the
reference tables."""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from typing import Annotated, Any, Literal

from msgspec import Meta


@dataclasses.dataclass(frozen=True)
class Declared:
    """One field as ``schema.py`` declares it."""

    name: str
    base: Any  # the type without Annotated and without None
    optional: bool
    items: Any | None  # the element type of a tuple, without its annotations
    metas: tuple[Meta, ...]
    field: dataclasses.Field[Any]

    def constraint(self, name: str) -> Any:
        for meta in self.metas:
            value = getattr(meta, name, None)
            if value is not None:
                return value
        return None

    def extra(self, name: str) -> Any:
        for meta in self.metas:
            if meta.extra and name in meta.extra:
                return meta.extra[name]
        return None

    @property
    def description(self) -> str | None:
        found = self.constraint("description")
        return None if found is None else str(found)

    @property
    def required(self) -> bool:
        return (
            self.field.default is dataclasses.MISSING
            and self.field.default_factory is dataclasses.MISSING
        )

    @property
    def table(self) -> type[Any] | None:
        """The dataclass of a section (``[listen]``) or of an array of tables."""
        target = self.items if self.items is not None else self.base
        return target if is_table(target) else None


def is_table(kind: Any) -> bool:
    return isinstance(kind, type) and dataclasses.is_dataclass(kind)


def _unwrap(hint: Any) -> tuple[Any, tuple[Meta, ...]]:
    metas: list[Meta] = []
    while typing.get_origin(hint) is Annotated:
        metas.extend(m for m in hint.__metadata__ if isinstance(m, Meta))
        hint = hint.__origin__
    return hint, tuple(metas)


def declared(cls: type[Any]) -> dict[str, Declared]:
    """The fields of the dataclass ``cls``, in declaration order."""
    found: dict[str, Declared] = _declared(typing.cast(typing.Hashable, cls))
    return found


@functools.cache
def _declared(cls: Any) -> dict[str, Declared]:
    hints = typing.get_type_hints(cls, include_extras=True)
    out: dict[str, Declared] = {}
    for f in dataclasses.fields(cls):
        hint, metas = _unwrap(hints[f.name])
        optional = False
        if typing.get_origin(hint) in (typing.Union, types.UnionType):
            members = [a for a in typing.get_args(hint) if a is not type(None)]
            optional = len(members) < len(typing.get_args(hint))
            hint, inner = _unwrap(members[0])
            metas = (*metas, *inner)
        items = None
        if typing.get_origin(hint) is tuple:
            items, inner = _unwrap(typing.get_args(hint)[0])
            metas = (*metas, *inner)
        out[f.name] = Declared(f.name, hint, optional, items, metas, f)
    return out


def expected(field: Declared, *, wrong_type: bool, value: Any) -> str:
    """What ``field`` takes, in words."""
    kind = field.items if field.items is not None and not isinstance(value, list) else field.base
    described = field.extra("expected")
    if described:
        return str(described)
    if getattr(kind, "__origin__", None) is Literal:
        return "one of " + ", ".join(repr(choice) for choice in kind.__args__)
    low, high = field.constraint("ge"), field.constraint("le")
    above, below = field.constraint("gt"), field.constraint("lt")
    if kind is bool:
        return "true or false"
    if kind is int:
        if isinstance(value, bool):
            return "an integer"
        if not wrong_type and low == 1 and high == 65535:
            return "a port from 1 to 65535"
        return f"an integer >= {low}" if low is not None else "an integer"
    if kind is float:
        if isinstance(value, bool):
            return "a number"
        if above == 0 and below == 1:
            return "a number in (0, 1)"
        if above == 0 and high == 1:
            return "a share above 0 and at most 1"
        if low is not None:
            return f"a finite number >= {low:g}"
        return "a finite number > 0"
    if kind is str:
        return "a non-empty string"
    return f"a {getattr(kind, '__name__', kind)}"


def check_bounds(instance: Any) -> None:
    """Raises ConfigError when a numeric field of ``instance`` is outside the
    bounds its declaration gives: the same bounds the loader enforces, for a
    configuration built in code."""
    from vedette.config.errors import ConfigError

    where = getattr(type(instance), "KEY", type(instance).__name__)
    for name, field in declared(type(instance)).items():
        value = getattr(instance, name)
        if field.base not in (int, float) or field.items is not None:
            continue
        if value is None or isinstance(value, bool) or not isinstance(value, int | float):
            continue
        low, above = field.constraint("ge"), field.constraint("gt")
        high, below = field.constraint("le"), field.constraint("lt")
        if (
            (low is not None and value < low)
            or (above is not None and value <= above)
            or (high is not None and value > high)
            or (below is not None and value >= below)
        ):
            wanted = expected(field, wrong_type=False, value=value)
            raise ConfigError(f"{where}.{name}: expected {wanted}, got {value!r}")
