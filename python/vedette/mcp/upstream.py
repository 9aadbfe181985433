"""One upstream MCP server, kept connected.

An :class:`Upstream` starts its server (a command on stdio) or reaches it (a
Streamable HTTP URL), initializes, lists its tools (every page) and lists them
again whenever the server says they changed. When the connection is lost (the
process exits, its pipe closes, or a liveness ping fails) its listing is
emptied at once, so none of its tools stays callable; calls in flight fail
with an error instead of waiting, and the connection is made again after a
full-jitter backoff under a budget of attempts per window (the core's
``RetrySchedule``, the same one the peer links and the archive uplink use).

This module imports the MCP SDK; the gateway imports it only once it has
checked that the SDK is installed.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import anyio
from anyio.abc import ObjectReceiveStream, ObjectSendStream
from mcp import types
from mcp.client.session import ClientSession, IncomingMessage
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp.shared.message import SessionMessage

from vedette.backoff import RetrySchedule
from vedette.mcp.errors import GatewayError
from vedette.mcp.pinning import UpstreamTool

log = logging.getLogger("vedette.mcp")

# Pages of an upstream tools/list read at most (a cursor loop must end).
MAX_LIST_PAGES = 100
# Restarts: the first after about RESTART_BASE_S, growing to RESTART_CAP_S, and at
# most RESTART_BUDGET attempts in any RESTART_WINDOW_S (an upstream that dies at
# once is not restarted in a tight loop).
RESTART_BASE_S = 0.2
RESTART_CAP_S = 10.0
RESTART_BUDGET = 10
RESTART_WINDOW_S = 60.0
# A connected upstream is pinged this often; a ping that fails or takes longer
# than the server's timeout ends the connection (an HTTP upstream has no pipe
# whose end would say it is gone).
PING_INTERVAL_S = 5.0

OnChange = Callable[["Upstream"], Awaitable[None]]
# The JSON-RPC error a call in flight gets when its server's connection ends.
CONNECTION_LOST = -32000


@dataclass
class _Reply:
    """The answer to one call sent upstream, filled in by the connection's reader."""

    arrived: anyio.Event
    result: dict[str, Any] | None = None
    error: MCPError | None = None


class UpstreamUnavailable(Exception):
    """The upstream is not connected now (starting, restarting, or stopped)."""


class Upstream:
    """One ``[[mcp.servers]]`` entry (or ``vedette mcp``'s command), connected
    and listed; :meth:`run` keeps it so until cancelled."""

    def __init__(
        self,
        name: str,
        *,
        command: list[str] | None = None,
        url: str | None = None,
        env: dict[str, str] | None = None,
        timeout_s: float = 30.0,
    ) -> None:
        if (command is None) == (url is None):
            raise GatewayError(f"MCP server {name!r}: give either a command or a url")
        self.name = name
        self.command = command
        self.url = url
        self.env = env
        self.timeout_s = timeout_s
        self.tools: list[UpstreamTool] = []
        self.connected = False
        self.restarts = 0
        self.last_error: str | None = None
        self._on_change: OnChange | None = None
        self._session: ClientSession | None = None
        # Calls go out as plain JSON-RPC on the transport (the SDK's session
        # handles initialize, listings and pings): their ids are strings the
        # session never uses, and the reader hands their answers back here.
        self._write: Any = None
        self._ids = itertools.count(1)
        self._waiting: dict[str, _Reply] = {}
        self._schedule = RetrySchedule(
            RESTART_BASE_S, RESTART_CAP_S, RESTART_BUDGET, RESTART_WINDOW_S
        )
        # Set by a list_changed notification or by the end of the connection.
        self._wake = anyio.Event()
        self._relist_due = False
        self._ended = False

    def on_change(self, callback: OnChange) -> None:
        """Call ``callback`` after every new listing, and when the connection is lost."""
        self._on_change = callback

    # -- running --------------------------------------------------------------

    async def run(self, *, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        """Connect, list, serve, and reconnect after a loss, until cancelled.
        ``task_status.started()`` is called after the first attempt, whether it
        connected or not (a server that is down at start is retried)."""
        first = True
        while True:
            await anyio.sleep(self._schedule.wait_s())
            self._schedule.attempt()
            if not first:
                self.restarts += 1
            try:
                async with self._connection() as session:
                    await self._listed(session)
                    self._schedule.succeeded()
                    if first:
                        first = False
                        task_status.started()
                    await self._serve(session)
            except anyio.get_cancelled_exc_class():
                raise
            except Exception as err:
                self.last_error = _describe(err)
                log.warning("MCP server %r: %s", self.name, self.last_error)
            finally:
                await self._lost()
            if first:
                first = False
                task_status.started()
            self._schedule.failed()

    @contextlib.asynccontextmanager
    async def _connection(self) -> AsyncIterator[ClientSession]:
        """A session with the server, initialized; leaving it closes the
        connection (and stops a stdio server)."""
        async with contextlib.AsyncExitStack() as stack:
            read, write = await stack.enter_async_context(self._transport())
            self._ended = self._relist_due = False
            self._wake = anyio.Event()
            pump, copy = _watch_end(read, self._on_end, self._answered)
            tasks = await stack.enter_async_context(anyio.create_task_group())
            tasks.start_soon(pump)
            session = await stack.enter_async_context(
                ClientSession(copy, write, message_handler=self._on_message)
            )
            with anyio.fail_after(self.timeout_s):
                await session.initialize()
            self._write = write
            try:
                yield session
            finally:
                self._write = None
                self._fail_waiting("the server's connection ended")
                tasks.cancel_scope.cancel()

    def _transport(self) -> contextlib.AbstractAsyncContextManager[Any]:
        if self.command is not None:
            env = dict(os.environ) if self.env is None else {**os.environ, **self.env}
            params = StdioServerParameters(command=self.command[0], args=self.command[1:], env=env)
            return stdio_client(params, errlog=sys.stderr)
        assert self.url is not None
        return streamable_http_client(self.url)

    async def _listed(self, session: ClientSession) -> None:
        self._session = session
        self.connected = True
        self.last_error = None
        await self._relist(session)

    async def _serve(self, session: ClientSession) -> None:
        """Until the connection ends: list again on ``list_changed``, ping
        between; returns when the server is gone."""
        while True:
            with anyio.move_on_after(PING_INTERVAL_S):
                await self._wake.wait()
            self._wake = anyio.Event()
            if self._ended:
                raise UpstreamUnavailable("the server closed its connection")
            if self._relist_due:
                self._relist_due = False
                await self._relist(session)
                continue
            with anyio.fail_after(self.timeout_s):
                await session.send_ping()

    async def _relist(self, session: ClientSession) -> None:
        with anyio.fail_after(self.timeout_s):
            self.tools = await _list_tools(session)
        await self._changed()

    async def _lost(self) -> None:
        """The connection ended: nothing of this server is callable until it is back."""
        was = self.connected or bool(self.tools)
        self._session = None
        self.connected = False
        self.tools = []
        if was:
            with anyio.CancelScope(shield=True):
                await self._changed()

    async def _changed(self) -> None:
        if self._on_change is not None:
            try:
                await self._on_change(self)
            except Exception:  # the listing stands; the gateway logs its own failure
                log.exception("MCP server %r: re-pinning after a change failed", self.name)

    async def _on_message(self, message: IncomingMessage) -> None:
        if isinstance(message, types.ToolListChangedNotification):
            self._relist_due = True
            self._wake.set()
        elif isinstance(message, Exception):
            log.warning("MCP server %r transport: %s", self.name, message)

    # -- calls ------------------------------------------------------------------

    def _on_end(self) -> None:
        self._fail_waiting("the server closed its connection")
        self._ended = True
        self._wake.set()

    async def call(self, name: str, args: dict[str, Any]) -> dict[str, Any]:
        """``tools/call`` of the server's own tool ``name``: its result as the
        server sent it, or ``MCPError`` (its JSON-RPC error, or the connection
        lost); :class:`UpstreamUnavailable` when not connected; ``TimeoutError``
        after the server's timeout. Cancelled, it tells the server
        (``notifications/cancelled``)."""
        write = self._write
        if self._session is None or write is None:
            raise UpstreamUnavailable(f"the MCP server {self.name!r} is not connected")
        request_id = f"vedette-{next(self._ids)}"
        reply = _Reply(anyio.Event())
        self._waiting[request_id] = reply
        try:
            params = {"name": name, "arguments": args}
            request = types.JSONRPCRequest(
                jsonrpc="2.0", id=request_id, method="tools/call", params=params
            )
            with anyio.fail_after(self.timeout_s):
                await write.send(SessionMessage(request))
                await reply.arrived.wait()
        except BaseException:
            if not reply.arrived.is_set() and self._write is write:
                with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
                    cancelled = types.JSONRPCNotification(
                        jsonrpc="2.0",
                        method="notifications/cancelled",
                        params={"requestId": request_id, "reason": "the call was cancelled"},
                    )
                    await write.send(SessionMessage(cancelled))
            raise
        finally:
            self._waiting.pop(request_id, None)
        if reply.error is not None:
            raise reply.error
        return reply.result or {}

    def _answered(self, message: Any) -> bool:
        """Takes the answer to a call this upstream sent; ``False`` for
        anything else (the session's business)."""
        inner = getattr(message, "message", None)
        if not isinstance(inner, types.JSONRPCResponse | types.JSONRPCError):
            return False
        reply = self._waiting.get(inner.id) if isinstance(inner.id, str) else None
        if reply is None:
            return False
        if isinstance(inner, types.JSONRPCResponse):
            reply.result = dict(inner.result)
        else:
            error = inner.error
            reply.error = MCPError(error.code, error.message, error.data)
        reply.arrived.set()
        return True

    def _fail_waiting(self, why: str) -> None:
        for reply in list(self._waiting.values()):
            if not reply.arrived.is_set():
                reply.error = MCPError(CONNECTION_LOST, why)
                reply.arrived.set()

    def status(self) -> dict[str, Any]:
        return {
            "connected": self.connected,
            "tools": len(self.tools),
            "restarts": self.restarts,
            "last_error": self.last_error,
        }


async def _list_tools(session: ClientSession) -> list[UpstreamTool]:
    listed: list[UpstreamTool] = []
    cursor: str | None = None
    for _ in range(MAX_LIST_PAGES):
        params = types.PaginatedRequestParams(cursor=cursor) if cursor else None
        page = await session.list_tools(params=params)
        for tool in page.tools:
            listed.append(UpstreamTool.of(tool.model_dump(mode="json", by_alias=True)))
        cursor = page.next_cursor
        if not cursor:
            return listed
    raise GatewayError(f"the upstream's tools/list has over {MAX_LIST_PAGES} pages")


def _watch_end(
    read: ObjectReceiveStream[Any],
    on_end: Callable[[], None],
    answered: Callable[[Any], bool],
) -> tuple[Callable[[], Coroutine[Any, Any, None]], ObjectReceiveStream[Any]]:
    """A copy of ``read`` for the session, and the task that fills it with
    every message ``answered`` does not take: when the transport's stream ends
    (a stdio server exited), the copy ends too, so the session fails its
    requests in flight at once, and ``on_end`` is called."""
    send: ObjectSendStream[Any]
    send, copy = anyio.create_memory_object_stream[Any](math.inf)

    async def pump() -> None:
        async with send:
            with contextlib.suppress(anyio.EndOfStream, anyio.ClosedResourceError):
                async for message in read:
                    if not answered(message):
                        await send.send(message)
        on_end()

    return pump, copy


def _describe(err: BaseException) -> str:
    inner = getattr(err, "exceptions", None)
    if isinstance(inner, (list, tuple)) and inner:
        return _describe(inner[0])
    if isinstance(err, TimeoutError):
        return "no answer within the server's timeout"
    return f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
