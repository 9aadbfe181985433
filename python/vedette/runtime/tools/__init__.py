"""Tools the runtime executes on an agent's behalf (never the adapter).

A tool is an object with a ``name`` and a ``run(args)`` method, sync or async,
returning a JSON-serialisable value. The registry holds the built-ins
(``echo``, ``fs.read``, ``fs.list``), the HTTP tools declared in the config and
the plugins installed under the entry-point group ``vedette.tools``, and runs
any of them under the configured timeout and output-size limit.
"""

from vedette.runtime.tools.base import Tool, ToolFailed
from vedette.runtime.tools.registry import ToolOutcome, ToolRegistry, UnknownTool

__all__ = ["Tool", "ToolFailed", "ToolOutcome", "ToolRegistry", "UnknownTool"]
