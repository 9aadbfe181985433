"""The tool registry and the guarded execution of one tool call."""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

from vedette._core import NAME_RULE, is_name
from vedette.config import ToolsConfig
from vedette.errors import VedetteError
from vedette.hashing import Digest, sha256
from vedette.runtime.encoding import strict_dumps
from vedette.runtime.tools.base import Tool, ToolFailed
from vedette.runtime.tools.builtin import builtin_tools
from vedette.runtime.tools.http import HttpTool

ENTRY_POINT_GROUP = "vedette.tools"

# Sync tools run here, so a slow one never blocks the event loop; the bound
# keeps a flood of hung calls from growing threads without limit.
MAX_TOOL_THREADS = 32


class UnknownTool(VedetteError, LookupError):
    """No tool of that name is registered."""


@dataclass(frozen=True)
class ToolOutcome:
    """A successful run: the output and the SHA-256 of its JSON encoding (for evidence)."""

    output: Any
    output_json: bytes
    output_digest: Digest


class ToolRegistry:
    def __init__(
        self, config: ToolsConfig, *, load_plugins: bool = True, local: bool = True
    ) -> None:
        """``local=False`` leaves out the built-ins and the config's HTTP tools: the
        MCP gateway's tools are exactly its upstream server's (vedette/mcp)."""
        self._config = config
        self._tools: dict[str, Tool] = {}
        self._watchers: list[Callable[[list[str]], None]] = []
        if local:
            for tool in builtin_tools(config):
                self.register(tool)
            for declared in config.http:
                self.register(HttpTool(declared))
        if load_plugins:
            for entry in entry_points(group=ENTRY_POINT_GROUP):
                self.register(_instantiate(entry.load(), config, entry.name))
        self._threads = concurrent.futures.ThreadPoolExecutor(
            max_workers=MAX_TOOL_THREADS, thread_name_prefix="vedette-tool"
        )

    def register(self, tool: Tool) -> None:
        if not isinstance(tool, Tool) or not isinstance(tool.name, str) or not tool.name:
            raise TypeError(f"{tool!r} is not a tool: it needs a non-empty name and run(args)")
        if not is_name(tool.name):
            # Manifests and intents hold names to the same rule: a tool named
            # otherwise could never be declared or called.
            raise ValueError(f"tool name {tool.name!r} must be {NAME_RULE}")
        if tool.name in self._tools:
            raise ValueError(f"tool {tool.name!r} is registered twice")
        self._tools[tool.name] = tool
        for watcher in self._watchers:
            watcher(self.names())

    def watch(self, watcher: Callable[[list[str]], None]) -> None:
        """Call ``watcher`` with the tool names now and after every registration."""
        self._watchers.append(watcher)
        watcher(self.names())

    def get(self, name: str) -> Tool | None:
        """The tool registered as ``name``, if any."""
        return self._tools.get(name)

    def names(self) -> list[str]:
        return sorted(self._tools)

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    async def execute(self, name: str, args: dict[str, Any]) -> ToolOutcome:
        """Run a tool under the timeout and output limit; raises ToolFailed or UnknownTool."""
        tool = self._tools.get(name)
        if tool is None:
            raise UnknownTool(f"no tool named {name!r}")
        timeout, limit = self._config.limits_for(name)
        try:
            if not getattr(tool, "blocking", True):
                output = tool.run(args)  # declared instant and non-blocking: no thread hop
            elif inspect.iscoroutinefunction(tool.run):
                output = await asyncio.wait_for(tool.run(args), timeout)
            else:
                loop = asyncio.get_running_loop()
                call = loop.run_in_executor(self._threads, tool.run, args)
                # A sync tool cannot be interrupted: on timeout its thread is
                # abandoned and finishes on its own; the call has already failed.
                output = await asyncio.wait_for(call, timeout)
        except asyncio.TimeoutError as err:
            raise ToolFailed("timeout", f"tool {name!r} did not finish in {timeout:g} s") from err
        except ToolFailed:
            raise
        except OSError as err:
            # The OS names the file it failed on, a host path: say only what failed.
            raise ToolFailed(
                "error", f"{type(err).__name__}: {err.strerror or 'OS error'}"
            ) from err
        except Exception as err:  # any failure of tool code is the tool's failure
            raise ToolFailed("error", f"{type(err).__name__}: {err}") from err
        return self._outcome(name, output, limit)

    def _outcome(self, name: str, output: Any, limit: int) -> ToolOutcome:
        try:
            encoded = strict_dumps(output)
        except (TypeError, ValueError) as err:
            raise ToolFailed(
                "bad_output", f"tool {name!r} returned non-JSON output: {err}"
            ) from err
        if len(encoded) > limit:
            raise ToolFailed(
                "output_too_large",
                f"tool {name!r} returned {len(encoded)} bytes, over the {limit}-byte limit",
            )
        return ToolOutcome(output, encoded, sha256(encoded))

    def close(self) -> None:
        self._threads.shutdown(wait=False, cancel_futures=True)


def _instantiate(loaded: Any, config: ToolsConfig, entry_name: str) -> Tool:
    """A plugin entry point names a tool object, or a factory called with the tools config."""
    if isinstance(loaded, Tool):
        return loaded
    if callable(loaded):
        tool = loaded(config)
        if isinstance(tool, Tool):
            return tool
    raise TypeError(
        f"entry point {entry_name!r} in group {ENTRY_POINT_GROUP!r} gives neither a tool "
        "nor a factory returning one"
    )
