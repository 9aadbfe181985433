"""Loading a configuration: the TOML file, then ``VEDETTE_*`` variables, then
``overrides``, checked against the declarations of ``schema.py`` with msgspec.

Everything the loader does to a value follows from the field's declared type,
never from its name: a ``Path`` field relative in the file is relative to the
file, a list field given as one string (an environment variable) is split at
commas, an optional field given an empty string is unset. Errors name the
dotted key, what was expected and what was given.
"""

from __future__ import annotations

import os
import re
import sys
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import msgspec

from vedette.config.errors import ConfigError
from vedette.config.fields import Declared, declared, expected, is_table
from vedette.config.schema import UNSIGNED_REFUSED, Config
from vedette.hashing import Digest, DigestFormatError, HashRole, require_role

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised only on Python 3.10
    import tomli as tomllib

ENV_PREFIX = "VEDETTE_"
_TRUE, _FALSE = ("true", "1", "yes"), ("false", "0", "no")


def load_config(
    path: Path | str | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, object] | None = None,
) -> Config:
    """Defaults, then the TOML file, then ``VEDETTE_*`` variables, then ``overrides``."""
    data: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except OSError as err:
            raise ConfigError(f"{path}: cannot read: {err.strerror or err}") from err
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
            raise ConfigError(f"{path}: not valid TOML: {err}") from err
        _prepare(data, Config, "", base=path.parent)
    for key, text in _env_overrides(os.environ if env is None else env).items():
        _set_dotted(data, key, text)
    for key, value in (overrides or {}).items():
        _set_dotted(data, key, value)
    _prepare(data, Config, "", base=None)
    try:
        config = msgspec.convert(data, Config, strict=False, dec_hook=_decode)
    except msgspec.ValidationError as err:
        raise _explain(err, data) from None
    _check_agents(config)
    return config


def _prepare(table: object, cls: type[Any], key: str, base: Path | None) -> None:
    """Checks the keys of ``table`` against ``cls`` and brings values into the
    shapes msgspec reads, by each field's declared type; with ``base``, makes
    relative paths in the file relative to it."""
    if not isinstance(table, dict):
        return  # msgspec says what was expected
    fields = declared(cls)
    unknown = sorted(set(table) - set(fields))
    if unknown:
        where = f"{key}." if key else ""
        raise ConfigError(f"{where}{unknown[0]}: unknown key (known: {', '.join(fields)})")
    for name, value in list(table.items()):
        field = fields[name]
        here = f"{key}.{name}" if key else name
        if field.optional and value == "":
            table[name] = None  # an empty variable unsets an optional value
            continue
        if field.items is not None and isinstance(value, str):
            value = table[name] = [item.strip() for item in value.split(",") if item.strip()]
        if field.base is bool and isinstance(value, str):
            if value.lower() in _TRUE + _FALSE:
                table[name] = value.lower() in _TRUE
            continue
        nested = field.table
        if nested is not None and field.items is None:
            _prepare(value, nested, here, base)
        elif nested is not None:
            for i, item in enumerate(value if isinstance(value, list) else []):
                _prepare(item, nested, f"{here}[{i}]", base)
        elif base is not None:
            table[name] = _relative_to(base, field, value)


def _relative_to(base: Path, field: Declared, value: Any) -> Any:
    kind = field.items if field.items is not None else field.base
    if isinstance(value, list):
        return [_relative_to(base, field, item) for item in value]
    if not isinstance(value, str):
        return value
    if kind is Path:
        return value if Path(value).expanduser().is_absolute() else str(base / value)
    layout = "oci-layout://"
    if field.extra("release_reference") and value.startswith(layout):
        folder = value[len(layout) :]
        return value if folder.startswith("/") else layout + str(base / folder)
    return value


class _Refused(ValueError):
    """A value the decoder of a vedette type refused, with the reason."""


def _decode(kind: type[Any], value: Any) -> Any:
    if kind is Path:
        if isinstance(value, str | Path) and str(value):
            return Path(value).expanduser()
        raise _Refused("expected a path")
    if kind is Digest:
        if not isinstance(value, str):
            raise _Refused("expected a 'sha256:<64 hex>' digest")
        try:
            digest = require_role(Digest.parse(value), HashRole.PAYLOAD_DIGEST)
        except (DigestFormatError, ValueError) as err:
            raise _Refused(str(err)) from None
        if digest.algorithm != "sha256":
            raise _Refused(f"expected a 'sha256:<64 hex>' digest, got {value!r}")
        return digest
    raise NotImplementedError(kind)


_AT = re.compile(r"^(?P<what>.*) - at `\$(?P<path>[^`]*)`$", re.DOTALL)
_WRONG_TYPE = re.compile(r"^Expected `[^`]+`, got `")
_MISSING = re.compile(r"^Object missing required field `(?P<name>[^`]+)`$")
_STEP = re.compile(r"\.([A-Za-z_][A-Za-z0-9_]*)|\[(\d+)\]")


def _explain(err: msgspec.ValidationError, data: dict[str, Any]) -> ConfigError:
    """msgspec's finding, said the way every configuration error is said."""
    cause = err.__cause__ or err.__context__
    if isinstance(cause, ConfigError):  # a check across fields (__post_init__)
        return cause
    found = _AT.match(str(err))
    what, path = (found["what"], found["path"]) if found else (str(err), "")
    steps = [(name, int(index) if index else None) for name, index in _STEP.findall(path)]
    key = "".join(f".{name}" if name else f"[{index}]" for name, index in steps).lstrip(".")
    missing = _MISSING.match(what)
    if missing:
        return ConfigError(f"{key + '.' if key else ''}{missing['name']}: required")
    if isinstance(cause, _Refused):
        return ConfigError(f"{key}: {cause}")
    field, value = _locate(steps, data)
    if field is None:
        return ConfigError(f"{key or 'config'}: {what}")
    if (field.table is not None and field.items is None) or isinstance(value, dict | list):
        table = field.items is None and (
            field.table is not None or typing.get_origin(field.base) is dict
        )
        shape = "a table" if table else "a list"
        return ConfigError(f"{key}: expected {shape}, got {type(value).__name__}")
    wanted = expected(field, wrong_type=bool(_WRONG_TYPE.match(what)), value=value)
    return ConfigError(f"{key}: expected {wanted}, got {value!r}")


def _locate(steps: list[tuple[str, int | None]], data: Any) -> tuple[Declared | None, Any]:
    """The declared field and the given value at ``steps``."""
    cls: Any = Config
    field: Declared | None = None
    value: Any = data
    for name, index in steps:
        if name:
            if not is_table(cls) or name not in declared(cls):
                return None, None
            field = declared(cls)[name]
            cls = field.table
            value = value.get(name) if isinstance(value, dict) else None
        elif isinstance(value, list) and index is not None and index < len(value):
            value = value[index]
    return field, value


def _check_agents(config: Config) -> None:
    """Each agent has either local files or a signed release with its keys."""
    for i, agent in enumerate(config.agents):
        key = f"agents[{i}]"
        if agent.release is None:
            if agent.manifest is None or agent.bundle is None:
                missing = "manifest" if agent.manifest is None else "bundle"
                raise ConfigError(f"{key}.{missing}: required (or set {key}.release)")
            if not agent.unsigned:
                raise ConfigError(f"{key}: {UNSIGNED_REFUSED}")
            continue
        if agent.manifest is not None or agent.bundle is not None:
            raise ConfigError(f"{key}.release: give either release or manifest and bundle")
        if agent.unsigned:
            raise ConfigError(f"{key}.unsigned: a signed release is never run unsigned")
        if not agent.keys:
            raise ConfigError(f"{key}.keys: required with release (trusted public key files)")
        if not agent.release.startswith(("oci://", "oci-layout://")):
            raise ConfigError(
                f"{key}.release: expected oci://HOST:PORT/REPO:TAG (or @sha256:…) or "
                f"oci-layout://DIR:TAG, "
                f"got {agent.release!r}"
            )
        from vedette.errors import OciError
        from vedette.releases.oci import parse_reference

        # A tag is watched; a digest pins one release (docs/operations.md,
        # "Time and rollback": the one way to go back to an older release).
        try:
            parse_reference(agent.release)
        except OciError as err:
            raise ConfigError(f"{key}.release: {err}") from None


def _env_overrides(env: Mapping[str, str]) -> dict[str, str]:
    """``VEDETTE_LISTEN_PORT`` → ``listen.port``; only scalar keys of known sections."""
    found = {}
    sections = set(declared(Config))
    for name, value in env.items():
        if not name.startswith(ENV_PREFIX) or name == "VEDETTE_PASSWORD":
            continue
        rest = name[len(ENV_PREFIX) :].lower()
        if rest in sections:
            found[rest] = value
            continue
        section, _, key = rest.partition("_")
        if section in sections and key:
            found[f"{section}.{key}"] = value
    return found


def _set_dotted(data: dict[str, Any], key: str, value: object) -> None:
    *parents, leaf = key.split(".")
    node = data
    for part in parents:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{key}: {part} is not a section")
        node = child
    node[leaf] = value
