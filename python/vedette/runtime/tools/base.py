"""What a tool is (:class:`Tool`) and how it fails (:class:`ToolFailed`): the
vocabulary the registry and every tool share."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from vedette.errors import VedetteError


@runtime_checkable
class Tool(Protocol):
    """``name`` and ``run(args)``. A tool may set ``blocking = False`` to declare
    that ``run`` returns at once without I/O; it then runs on the event loop."""

    name: str

    def run(self, args: dict[str, Any]) -> Any: ...


class ToolFailed(VedetteError):
    """The tool ran and failed: raised, timed out, or returned something unusable.

    ``kind`` is a short machine-readable cause (``error``, ``timeout``,
    ``output_too_large``, ``bad_output``).
    """

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
