"""The stdio MCP gateway: an MCP server toward the client, an MCP client toward
the upstream server it runs as a subprocess, and the runtime's gate between.

A ``tools/call`` from the client becomes an intent of the configured caller:
the runtime checks the arguments against the manifest's schema, takes the
quota, checks the declared tools, evaluates the policy and makes the decision
record durable; only then is the call sent upstream (as the runtime runs any
tool: :class:`_Forward` is the tool, registered in a registry that holds only
the upstream's tools), and its outcome is recorded like any tool's. Anything
else denies: a refused call answers JSON-RPC error :data:`DENIED` and never
reaches the upstream.

Tools are pinned (:mod:`vedette.mcp.pinning`) at start and whenever the
upstream says its list changed; only pinned tools are listed toward the
client. Resources and prompts are not served (the client gets "method not
found" and no such capability is advertised); the upstream's sampling and
elicitation requests are refused (the SDK's defaults, and the gateway
advertises neither capability upstream).

This module imports the MCP SDK; the command imports it only once it has
checked that the SDK is installed.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import os
import signal
import sys
from dataclasses import dataclass
from typing import Any

import anyio
from mcp import types
from mcp.client.session import ClientSession, IncomingMessage
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel.server import NotificationOptions, Server
from mcp.server.session import ServerSession
from mcp.server.stdio import stdio_server
from mcp.shared.exceptions import MCPError

from vedette import __version__
from vedette._core import is_name
from vedette.config import Config
from vedette.hashing import sha256
from vedette.mcp.errors import DENIED, TOOL_FAILED, GatewayError
from vedette.mcp.pinning import MISMATCH_EVENT, Pins, UpstreamTool
from vedette.runtime.decision import Decision, deny_fields
from vedette.runtime.encoding import strict_dumps
from vedette.runtime.identity import Caller
from vedette.runtime.interceptor import Runtime
from vedette.runtime.tools import ToolFailed, ToolRegistry

log = logging.getLogger("vedette.mcp")

# Pages of an upstream tools/list read at most (a cursor loop must end).
MAX_LIST_PAGES = 100


@dataclass
class _Call:
    """What the upstream answered one call, for the handler that asked (the
    runtime hands back a :class:`Decision`; the client wants the MCP result)."""

    result: types.CallToolResult | None = None


_CURRENT: contextvars.ContextVar[_Call | None] = contextvars.ContextVar(
    "vedette_mcp_call", default=None
)


class _Forward:
    """One upstream tool as the runtime runs it: the run is the upstream call."""

    def __init__(self, name: str, gateway: Gateway) -> None:
        self.name = name
        self._gateway = gateway

    async def run(self, args: dict[str, Any]) -> Any:
        return await self._gateway.forward(self.name, args)


def caller_for(config: Config, caller_id: str) -> Caller:
    """The ``[[callers]]`` entry ``caller_id`` as a caller; :class:`GatewayError` if absent."""
    for entry in config.callers:
        if entry.id == caller_id:
            return Caller(entry.id, entry.agent)
    known = ", ".join(repr(entry.id) for entry in config.callers) or "none"
    raise GatewayError(f"caller {caller_id!r} is not in [[callers]] (configured: {known})")


class Gateway:
    """The state between the two sessions: the pins, the caller, the runtime."""

    def __init__(self, runtime: Runtime, caller: Caller) -> None:
        self.runtime = runtime
        self.caller = caller
        self.pins = Pins()
        self._upstream: ClientSession | None = None
        self._client: ServerSession | None = None
        self._listed: list[UpstreamTool] = []
        self._pinned_against: str | None = None
        self._lock = anyio.Lock()
        self._changed_send, self._changed = anyio.create_memory_object_stream[None](1)

    # -- upstream -----------------------------------------------------------

    async def on_upstream_message(self, message: IncomingMessage) -> None:
        """Notifications from the upstream: a changed tool list is pinned again."""
        if isinstance(message, types.ToolListChangedNotification):
            with contextlib.suppress(anyio.WouldBlock):  # a refresh is already due
                self._changed_send.send_nowait(None)
        elif isinstance(message, Exception):
            log.warning("upstream transport: %s", message)

    async def watch_changes(self) -> None:
        """Re-list and re-pin whenever the upstream says its tools changed."""
        async for _ in self._changed:
            await self.refresh()

    async def refresh(self) -> None:
        """List the upstream's tools and pin them against the active manifest.
        If listing fails, no upstream tool is callable until the next refresh."""
        async with self._lock:
            try:
                self._listed = await self._list_upstream()
            except Exception as err:
                log.error("upstream tools/list failed (%s); no tool is callable", err)
                self._listed = []
            await self._pin()

    async def _list_upstream(self) -> list[UpstreamTool]:
        assert self._upstream is not None
        listed: list[UpstreamTool] = []
        cursor: str | None = None
        for _ in range(MAX_LIST_PAGES):
            params = types.PaginatedRequestParams(cursor=cursor) if cursor else None
            page = await self._upstream.list_tools(params=params)
            for tool in page.tools:
                listed.append(UpstreamTool.of(tool.model_dump(mode="json", by_alias=True)))
            cursor = page.next_cursor
            if not cursor:
                return listed
        raise GatewayError(f"the upstream's tools/list has over {MAX_LIST_PAGES} pages")

    async def _pin(self) -> None:
        """Pin the last listing against the caller's agent's active manifest;
        record each new mismatch, and tell the client when its list changed."""
        release = self.runtime.releases.active(self.caller.agent)
        manifest_tools = release.manifest.tools if release is not None else []
        self._pinned_against = str(release.behavioral_fingerprint) if release else None
        before = dict(self.pins.pinned)
        mismatches = self.pins.update(self._listed, manifest_tools)
        for tool in self._listed:
            if is_name(tool.name) and tool.name not in self.runtime.tools:
                self.runtime.tools.register(_Forward(tool.name, self))
        for mismatch in mismatches:
            log.warning("%s", mismatch.reason)
            await self.runtime.record_event(MISMATCH_EVENT, mismatch.event(self.caller.agent))
        if self.pins.pinned != before and self._client is not None:
            try:
                await self._client.send_tool_list_changed()
            except Exception as err:  # the client lists again when it next asks
                log.info("could not tell the client its tool list changed: %s", err)

    async def forward(self, name: str, args: dict[str, Any]) -> Any:
        """The upstream call of an allowed intent (run by the runtime's registry,
        under its timeout and output limit)."""
        if name not in self.pins.pinned:
            raise ToolFailed(
                "unpinned", f"upstream tool {name!r} changed before the call; not sent"
            )
        if self._upstream is None:
            raise ToolFailed("error", "the upstream server is not connected")
        try:
            result = await self._upstream.call_tool(name, args)
        except MCPError as err:
            raise ToolFailed(
                "upstream_error", f"the upstream answered JSON-RPC error {err.code}: {err.message}"
            ) from err
        if not isinstance(result, types.CallToolResult):
            raise ToolFailed("bad_output", "the upstream answered something other than a result")
        call = _CURRENT.get()
        if call is not None:
            call.result = result
        output = result.model_dump(mode="json", by_alias=True, exclude_none=True)
        if result.is_error:
            encoded = strict_dumps(output)
            raise ToolFailed(
                "is_error",
                f"the upstream's result has isError ({sha256(encoded)}, {len(encoded)} bytes)",
            )
        return output

    # -- toward the client ----------------------------------------------------

    async def list_tools(
        self, ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        self._client = ctx.session
        await self._repin_if_released()
        # Only the pinned fields: title, annotations and output schemas are not
        # pinned, so they are not passed on.
        tools = [
            types.Tool(name=tool.name, description=tool.description, input_schema=tool.input_schema)
            for tool in self.pins.pinned.values()
        ]
        return types.ListToolsResult(tools=tools)

    async def call_tool(
        self, ctx: ServerRequestContext[Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        self._client = ctx.session
        try:
            return await self._call(params.name, dict(params.arguments or {}))
        except MCPError:
            raise
        except Exception as err:  # fail closed: nothing reached the upstream unrecorded
            log.exception("the gateway failed deciding a call to %r", params.name)
            reason = f"internal error ({type(err).__name__}); denied"
            decision_id = None
            try:
                decision_id = (await self.runtime.refuse(self.caller, None, reason)).decision_id
            except Exception:
                log.exception("the denial of a call to %r could not be recorded", params.name)
            raise MCPError(DENIED, f"denied: {reason}", deny_fields(reason, decision_id)) from err

    async def _call(self, name: str, args: dict[str, Any]) -> types.CallToolResult:
        await self._repin_if_released()
        reason = self.pins.refusal(name)
        if reason is None and name in self.runtime.tools and name not in self.pins.pinned:
            reason = f"upstream tool {name!r} is no longer listed by the upstream"
        call = _Call()
        if reason is not None:
            decision = await self.runtime.refuse(self.caller, name, reason)
        else:
            token = _CURRENT.set(call)
            try:
                intent = {"tool": name, "args": args}
                decision = await self.runtime.decide_async(intent, self.caller)
            finally:
                _CURRENT.reset(token)
        return self._answer(decision, call)

    @staticmethod
    def _answer(decision: Decision, call: _Call) -> types.CallToolResult:
        if decision.outcome == "allow":
            if call.result is not None:
                return call.result
            return types.CallToolResult.model_validate(decision.output)
        if decision.outcome == "tool_error":
            if call.result is not None and call.result.is_error:
                return call.result  # the upstream's own error result, as it sent it
            error = decision.error or {}
            raise MCPError(
                TOOL_FAILED,
                f"tool call failed: {error.get('message', 'unknown error')}",
                {"decision": "allow", "error": error, "decision_id": decision.decision_id},
            )
        raise MCPError(
            DENIED,
            f"denied: {decision.reason}",
            deny_fields(decision.reason, decision.decision_id),
        )

    async def _repin_if_released(self) -> None:
        """A new release of the agent (a signed release's poller) re-pins the listing."""
        release = self.runtime.releases.active(self.caller.agent)
        current = str(release.behavioral_fingerprint) if release else None
        if current != self._pinned_against:
            async with self._lock:
                await self._pin()

    # -- running --------------------------------------------------------------

    def server(self) -> Server[Any]:
        return Server(
            "vedette",
            version=__version__,
            instructions=None,
            on_list_tools=self.list_tools,
            on_call_tool=self.call_tool,
        )

    async def serve(self, command: list[str]) -> None:
        """Start the upstream, pin its tools, then serve the client on stdio until
        it closes its side (or SIGTERM / SIGINT: then the upstream is stopped and
        the store closed as on any exit)."""
        # The upstream gets the environment the client gave vedette (its keys, its
        # settings), as it would have had without vedette in front of it.
        params = StdioServerParameters(command=command[0], args=command[1:], env=dict(os.environ))
        async with anyio.create_task_group() as outer:
            outer.start_soon(_stop_on_signal, outer.cancel_scope)
            async with (
                stdio_client(params, errlog=sys.stderr) as (read, write),
                ClientSession(read, write, message_handler=self.on_upstream_message) as session,
            ):
                try:
                    await session.initialize()
                except Exception as err:
                    raise GatewayError(f"the upstream server did not initialize: {err}") from err
                self._upstream = session
                await self.refresh()
                server = self.server()
                options = server.create_initialization_options(
                    NotificationOptions(tools_changed=True)
                )
                async with anyio.create_task_group() as inner:
                    inner.start_soon(self.watch_changes)
                    async with stdio_server() as (client_read, client_write):
                        await server.run(client_read, client_write, options)
                    inner.cancel_scope.cancel()
            outer.cancel_scope.cancel()


async def _stop_on_signal(scope: anyio.CancelScope) -> None:
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for _ in signals:
            scope.cancel()
            return


def run_gateway(config: Config, caller_id: str, command: list[str]) -> None:
    """``vedette mcp``: the runtime for ``config``, the gateway for ``caller_id``
    in front of ``command``; returns when the client closes its side."""
    from vedette.serve import start_runtime

    if not command:
        raise GatewayError("name the upstream server's command after --")
    caller = caller_for(config, caller_id)
    # The node's tools are exactly the upstream's: no built-ins, no plugins.
    tools = ToolRegistry(config.tools, load_plugins=False, local=False)
    runtime = start_runtime(config, tools)
    try:
        anyio.run(Gateway(runtime, caller).serve, command)
    except BaseException as err:
        cause = _startup_failure(err)
        if cause is None:
            raise
        raise cause from err
    finally:
        runtime.close()


def _startup_failure(err: BaseException) -> GatewayError | None:
    """A gateway error, or an upstream that could not be started, found in ``err``
    (task groups wrap them in exception groups)."""
    if isinstance(err, GatewayError):
        return err
    if isinstance(err, OSError):
        return GatewayError(f"the upstream server could not start: {err}")
    inner_errors = getattr(err, "exceptions", None)  # an exception group (3.10: anyio's)
    if isinstance(inner_errors, (list, tuple)):
        for inner in inner_errors:
            found = _startup_failure(inner)
            if found is not None:
                return found
    return None
