"""Tool pinning: an upstream MCP server's tools against the agent's manifest.

The model reads a tool's name, description and input schema; the manifest is
where the operator fixed them, and the release's behavioural fingerprint
covers them. An upstream tool is *pinned* when its three fields equal the
manifest's tool of the same name (``description`` ↔ ``description``,
``inputSchema`` ↔ ``args_schema``), compared as RFC 8785 canonical JSON. Any
other tool (undeclared, or declared otherwise) is hidden from the client and
its calls are denied; each such difference is reported once per change, as an
``mcp_tool_mismatch`` evidence event.

This module holds no MCP SDK types: the gateway hands it plain dicts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from vedette.hashing import blake3, canonical_json

MISMATCH_EVENT = "mcp_tool_mismatch"


def digest(value: Any) -> str:
    """BLAKE3 of the canonical JSON of ``value`` (``None`` for a value that has none)."""
    try:
        return str(blake3(canonical_json(value)))
    except Exception:  # a value canonical JSON cannot represent differs from any manifest's
        return "none"


@dataclass(frozen=True)
class UpstreamTool:
    """The pinned fields of one tool as the upstream lists it."""

    name: str
    description: str | None
    input_schema: Any

    @classmethod
    def of(cls, listed: dict[str, Any]) -> UpstreamTool:
        return cls(
            str(listed.get("name", "")), listed.get("description"), listed.get("inputSchema")
        )


@dataclass(frozen=True)
class Mismatch:
    """Why an upstream tool is not callable: ``field`` is ``undeclared``,
    ``description``, ``input_schema`` or ``duplicate``; the digests are of the manifest's value
    (``declared``, ``None`` when undeclared) and the upstream's (``offered``)."""

    tool: str
    field: str
    declared: str | None
    offered: str

    @property
    def reason(self) -> str:
        if self.field == "undeclared":
            return f"upstream tool {self.tool!r} is not declared in the agent manifest"
        if self.field == "duplicate":
            return f"upstream tool {self.tool!r} is listed more than once"
        return (
            f"upstream tool {self.tool!r} differs from the agent manifest in its {self.field} "
            f"(manifest {self.declared}, upstream {self.offered})"
        )

    def event(self, agent: str) -> dict[str, Any]:
        return {
            "agent": agent,
            "tool": self.tool,
            "field": self.field,
            "old_digest": self.declared,
            "new_digest": self.offered,
        }


def compare(offered: UpstreamTool, declared: dict[str, Any] | None) -> Mismatch | None:
    """``None`` when ``offered`` matches the manifest entry ``declared``."""
    if declared is None:
        whole = {
            "name": offered.name,
            "description": offered.description,
            "inputSchema": offered.input_schema,
        }
        return Mismatch(offered.name, "undeclared", None, digest(whole))
    # An upstream tool without a description matches only an empty one.
    pairs = (
        ("description", declared.get("description"), offered.description or ""),
        ("input_schema", declared.get("args_schema"), offered.input_schema),
    )
    for field, want, got in pairs:
        if digest(want) != digest(got) or digest(got) == "none":
            return Mismatch(offered.name, field, digest(want), digest(got))
    return None


class Pins:
    """The upstream's tools as last listed, split into pinned and refused.

    :meth:`update` takes a full listing and the manifest's tools and returns the
    mismatches not reported before (a mismatch is reported again only once its
    digests change, or after the tool matched in between).
    """

    def __init__(self) -> None:
        self.pinned: dict[str, UpstreamTool] = {}
        self.refused: dict[str, Mismatch] = {}
        self._reported: set[Mismatch] = set()

    def update(
        self, listed: list[UpstreamTool], manifest_tools: list[dict[str, Any]]
    ) -> list[Mismatch]:
        declared = {str(tool.get("name")): tool for tool in manifest_tools}
        pinned: dict[str, UpstreamTool] = {}
        refused: dict[str, Mismatch] = {}
        for tool in listed:
            if tool.name in pinned or tool.name in refused:
                # One name listed twice: which one a call reaches cannot be told.
                pinned.pop(tool.name, None)
                refused[tool.name] = Mismatch(tool.name, "duplicate", None, digest(tool.name))
                continue
            mismatch = compare(tool, declared.get(tool.name))
            if mismatch is None:
                pinned[tool.name] = tool
            else:
                refused[tool.name] = mismatch
        new = [m for m in refused.values() if m not in self._reported]
        self._reported = set(refused.values())
        self.pinned, self.refused = pinned, refused
        return new

    def refusal(self, name: str) -> str | None:
        """Why a call to ``name`` is refused before the gate, or ``None``.

        A name the upstream does not list at all is left to the gate (undeclared,
        or declared but not available)."""
        mismatch = self.refused.get(name)
        return mismatch.reason if mismatch is not None else None
