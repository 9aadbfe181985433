"""What a configuration is, as digests: one for each section of the effective
configuration (after the file, ``VEDETTE_*`` variables and overrides), so that
evidence can say that it changed and where (``node_start`` and
``config_changed`` records: docs/contracts.md, "Node events")."""

from __future__ import annotations

from typing import Any

import msgspec

from vedette.config.schema import Config
from vedette.hashing import canonical_json, sha256


def section_digests(config: Config, extra: dict[str, Any] | None = None) -> dict[str, str]:
    """``{section: "sha256:…"}`` for every top-level key of ``config`` and of
    ``extra`` (what the files it names hold: key ids, local policy hashes)."""
    sections = msgspec.to_builtins(config, enc_hook=str, order="sorted")
    sections.update(extra or {})
    return {name: _digest(value) for name, value in sorted(sections.items())}


def config_digest(sections: dict[str, str]) -> str:
    """One digest over the section digests."""
    return _digest(sections)


def changed_sections(before: dict[str, str], after: dict[str, str]) -> list[str]:
    """The sections added, removed or changed between two sets of digests."""
    return sorted(name for name in {*before, *after} if before.get(name) != after.get(name))


def _digest(value: Any) -> str:
    return str(sha256(canonical_json(value)))
