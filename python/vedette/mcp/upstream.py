"""One upstream MCP server, kept connected.

An :class:`Upstream` starts its server (a command on stdio) or reaches it (a
Streamable HTTP URL), initializes, lists its tools (every page) and lists them
again whenever the server says they changed. When the connection is lost (the
process exits, its pipe closes, or a liveness ping fails) its listing is
emptied at once, so none of its tools stays callable; calls in flight fail
with an error instead of waiting, and the connection is made again after a
full-jitter backoff under a budget of attempts per window (the core's
``RetrySchedule``, the same one the peer links and the archive uplink use).

A stdio server's pipes are read and written here, on the event loop: the
answers to ``tools/call`` requests the gateway sent are taken from the lines
as they arrive (parsed once, with orjson) and handed to their callers; every
other line goes to the SDK's session as the SDK's own transport would pass it.
The process is started in a session of its own and, at the end, stopped as
the SDK stops one: its input closed, a grace period, then its whole process
group terminated.

A server is spoken to on the newest handshake revision it agrees to: there it
can say at once that its tools changed, and ask for sampling or elicitation
during a call, and a call is one plain JSON-RPC request. A server that refuses
the handshake because it serves 2026-07-28 alone is connected again at once
with ``server/discover``; its calls then go through the SDK's session (which
stamps each request's ``_meta`` and headers), the requests it makes of the
client come as input-required results of the call, and, as that revision has
no ping, its listing every ``PING_INTERVAL_S`` is its liveness check (besides
a ``subscriptions/listen`` stream for its changes, where it serves one).

Where its entry lets its resources or prompts pass, what the server says of
them is passed on (:meth:`Upstream.on_event`): its resource and prompt lists
changed, and a resource a client watches (:meth:`Upstream.watch`) changed.
Watching subscribes the server to that resource (``resources/subscribe`` on
a handshake revision; on 2026-07-28 the listen stream is opened again with the
URIs watched), and again after every reconnection.

This module imports the MCP SDK; the gateway imports it only once it has
checked that the SDK is installed.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
import os
import subprocess
import sys
from asyncio.subprocess import Process
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterable
from typing import Any, Protocol, cast

import anyio
import orjson
from anyio.abc import ObjectReceiveStream, ObjectSendStream, TaskGroup
from mcp import types
from mcp.client.session import ClientSession, IncomingMessage
from mcp.client.streamable_http import streamable_http_client
from mcp.client.subscriptions import listen
from mcp.os.posix.utilities import terminate_posix_process_tree
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.dispatcher import ProgressFnT
from mcp.shared.exceptions import MCPError
from mcp.shared.message import SessionMessage
from mcp.shared.subscriptions import (
    PromptsListChanged,
    ResourcesListChanged,
    ResourceUpdated,
    ServerEvent,
    ToolsListChanged,
)
from mcp.types.version import MODERN_PROTOCOL_VERSIONS

from vedette.backoff import RetrySchedule
from vedette.mcp.errors import GatewayError
from vedette.mcp.http_calls import HttpCalls
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

# The longest line read from a stdio server; a longer one ends its connection.
MAX_LINE_BYTES = 16 << 20
# Messages from a stdio server the session has not taken yet; the reader waits
# (and the server's pipe fills) beyond this.
SESSION_BACKLOG = 16
# A stdio server's grace period after its input closes, then after SIGTERM.
STOP_GRACE_S = 2.0

OnChange = Callable[["Upstream"], Awaitable[None]]
# Told what the server said of its resources and prompts.
OnEvent = Callable[["Upstream", ServerEvent], Awaitable[None]]
# Reports a call's progress to its client: (progress, total, message).
Progress = ProgressFnT
# Sends one JSON-RPC message (a plain dict) to the server.
Send = Callable[[dict[str, Any]], Awaitable[None]]
# The JSON-RPC error a call in flight gets when its server's connection ends.
CONNECTION_LOST = -32000
# ... and when the server's answer to it is not a JSON-RPC answer.
MALFORMED_ANSWER = -32603
# How long a progress report waits for its client to take it; then it is dropped.
PROGRESS_SEND_S = 1.0
# Rounds of input a 2026-07-28 server may ask for in one call.
MAX_INPUT_ROUNDS = 10
# Resources of one server watched at once (each is a subscription at the server).
MAX_WATCHED = 1024


class UpstreamUnavailable(Exception):
    """The upstream is not connected now (starting, restarting, or stopped)."""


class Relay(Protocol):
    """Where a server's sampling and elicitation requests go when its entry
    allows them (:class:`vedette.mcp.asks.ClientRequests`)."""

    async def sampling(
        self, upstream: Upstream, params: types.CreateMessageRequestParams
    ) -> types.CreateMessageResult | types.CreateMessageResultWithTools | types.ErrorData: ...

    async def elicitation(
        self, upstream: Upstream, params: types.ElicitRequestParams
    ) -> types.ElicitResult | types.ErrorData: ...


class Upstream:
    """One ``[[mcp.servers]]`` entry (or ``vedette mcp``'s command), connected
    and listed; :meth:`run` keeps it so until cancelled."""

    def __init__(
        self,
        name: str,
        *,
        command: list[str] | None = None,
        url: str | None = None,
        headers: dict[str, str] | None = None,
        env: dict[str, str] | None = None,
        timeout_s: float = 30.0,
        resources: bool = False,
        prompts: bool = False,
        sampling: bool = False,
        elicitation: bool = False,
    ) -> None:
        """``resources`` and ``prompts``: whether its resources and prompts are
        passed to clients (:mod:`vedette.mcp.passthrough`); ``sampling`` and
        ``elicitation``: whether its requests of those are relayed to the client
        of the call they come in (:mod:`vedette.mcp.asks`), else refused and
        not advertised. ``headers`` go with every request to a ``url`` server."""
        if (command is None) == (url is None):
            raise GatewayError(f"MCP server {name!r}: give either a command or a url")
        self.name = name
        self.command = command
        self.url = url
        self.headers = headers
        self.env = env
        self.timeout_s = timeout_s
        self.resources = resources
        self.prompts = prompts
        self.sampling = sampling
        self.elicitation = elicitation
        self._relay: Relay | None = None
        # Whether the connection speaks 2026-07-28, and whether the next one
        # opens with discovery (the server refused the handshake).
        self.modern = False
        self._opens_modern = False
        self._again_now = False
        self.tools: list[UpstreamTool] = []
        self.connected = False
        self.restarts = 0
        self.last_error: str | None = None
        self._on_change: OnChange | None = None
        self._on_event: OnEvent | None = None
        # The resources clients watch, by how many watch each; set when the
        # URIs change, so a 2026-07-28 listen stream is opened again with them.
        self._watched: Counter[str] = Counter()
        self._watch_changed = anyio.Event()
        self._session: ClientSession | None = None
        # Calls go out as plain JSON-RPC on the transport (the SDK's session
        # handles initialize, listings and pings): their ids are strings the
        # session never uses, and the reader hands their answers back here.
        self._send: Send | None = None
        self._ids = itertools.count(1)
        self._waiting: dict[str, asyncio.Future[dict[str, Any]]] = {}
        # The calls whose client asked for progress, by the token they carry.
        self._progress: dict[str, Progress] = {}
        self._schedule = RetrySchedule(
            RESTART_BASE_S, RESTART_CAP_S, RESTART_BUDGET, RESTART_WINDOW_S
        )
        # Set by a list_changed notification or by the end of the connection.
        self._wake = anyio.Event()
        self._relist_due = False
        self._ended = False

    @property
    def session(self) -> ClientSession | None:
        """The SDK's session with the server while connected."""
        return self._session

    def on_change(self, callback: OnChange) -> None:
        """Call ``callback`` after every new listing, and when the connection is lost."""
        self._on_change = callback

    def on_event(self, callback: OnEvent) -> None:
        """Call ``callback`` with each change the server reports to the
        resources and prompts its entry lets pass: their lists
        (``ResourcesListChanged``, ``PromptsListChanged``) and the watched
        resources (``ResourceUpdated``)."""
        self._on_event = callback

    @property
    def subscribable(self) -> bool:
        """Whether the server serves resource subscriptions now."""
        session = self._session
        if session is None or not self.resources:
            return False
        # On 2026-07-28 a server that streams changes says so here too.
        capabilities = session.server_capabilities
        resources = capabilities.resources if capabilities is not None else None
        return bool(resources is not None and resources.subscribe)

    async def watch(self, uri: str) -> None:
        """Have the server report changes of resource ``uri`` (one more
        watcher); ``MCPError`` if it cannot, or ``MAX_WATCHED`` are watched."""
        if not self.subscribable:
            raise MCPError(
                types.INVALID_PARAMS, f"the MCP server {self.name!r} serves no subscriptions"
            )
        if uri not in self._watched and len(self._watched) >= MAX_WATCHED:
            raise MCPError(
                types.INVALID_PARAMS, f"{MAX_WATCHED} resources of {self.name!r} are watched"
            )
        first = uri not in self._watched
        self._watched[uri] += 1
        if not first:
            return
        try:
            await self._subscribe(uri, subscribe=True)
        except BaseException:
            self._forget(uri)
            raise

    async def unwatch(self, uri: str) -> None:
        """One watcher of ``uri`` fewer; the last ends the server's subscription."""
        if uri not in self._watched:
            return
        self._forget(uri)
        if uri in self._watched:
            return
        with contextlib.suppress(Exception):  # gone with the connection, or refused: moot
            await self._subscribe(uri, subscribe=False)

    def _forget(self, uri: str) -> None:
        """One watcher of ``uri`` fewer."""
        self._watched[uri] -= 1
        if self._watched[uri] <= 0:
            del self._watched[uri]

    async def _subscribe(self, uri: str, *, subscribe: bool) -> None:
        session = self._session
        if session is None:
            return  # subscribed when it is connected again
        if self.modern:
            self._watch_changed.set()  # its listen stream is opened again
            return
        with anyio.fail_after(self.timeout_s):
            await send_subscription(session, uri, subscribe=subscribe)

    def relay_to(self, relay: Relay) -> None:
        """Where the server's sampling and elicitation requests go, as far as
        its entry allows them (before it is connected)."""
        self._relay = relay

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
            self._again_now = False
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
                if self._again_now:  # connected again with discovery, at once
                    log.info("MCP server %r serves 2026-07-28 only", self.name)
                else:
                    self.last_error = _describe(err)
                    log.warning("MCP server %r: %s", self.name, self.last_error)
            finally:
                await self._lost()
            if self._again_now:
                continue
            if first:
                first = False
                task_status.started()
            self._schedule.failed()

    @contextlib.asynccontextmanager
    async def _connection(self) -> AsyncIterator[ClientSession]:
        """A session with the server, initialized; leaving it closes the
        connection (and stops a stdio server)."""
        async with contextlib.AsyncExitStack() as stack:
            self._ended = self._relist_due = False
            self._wake = anyio.Event()
            tasks = await stack.enter_async_context(anyio.create_task_group())
            stack.callback(tasks.cancel_scope.cancel)
            read: Any
            write: Any
            calls: HttpCalls | None = None
            if self.command is not None:
                read, write, send = await stack.enter_async_context(self._stdio(tasks))
            else:
                assert self.url is not None
                client = await stack.enter_async_context(create_mcp_http_client(self.headers))
                http: Any = await stack.enter_async_context(
                    streamable_http_client(self.url, http_client=client)
                )
                pump, read, to_session = _watch_end(http[0], self._on_end, self._progress_message)
                write = http[1]
                tasks.start_soon(pump)
                calls = HttpCalls(
                    self.url,
                    client,
                    lambda line: self._route(line, to_session),
                    tasks,
                    self._on_end,
                    self.timeout_s,
                )
                send = calls.send
            # Only what is relayed is advertised: the SDK's defaults refuse the rest.
            relayed: dict[str, Any] = {}
            if self.sampling and self._relay is not None:
                relayed["sampling_callback"] = self._sampling
            if self.elicitation and self._relay is not None:
                relayed["elicitation_callback"] = self._elicitation
            session = await stack.enter_async_context(
                ClientSession(read, write, message_handler=self._on_message, **relayed)
            )
            with anyio.fail_after(self.timeout_s):
                await self._negotiate(session)
            self.modern = session.protocol_version in MODERN_PROTOCOL_VERSIONS
            if calls is not None:
                calls.protocol_version = session.protocol_version
            if self.modern:
                tasks.start_soon(self._listen_for_changes, session)
            elif self._watched:
                await self._subscribe_again(session)
            self._send = send
            try:
                yield session
            finally:
                self._send = None
                self._fail_waiting("the server's connection ended")

    @contextlib.asynccontextmanager
    async def _stdio(
        self, tasks: TaskGroup
    ) -> AsyncIterator[tuple[ObjectReceiveStream[Any], ObjectSendStream[Any], Send]]:
        """The server's process, its output read by a task in ``tasks``: the
        session's read and write streams, and the sender of raw messages."""
        assert self.command is not None
        env = dict(os.environ) if self.env is None else {**os.environ, **self.env}
        process = await asyncio.create_subprocess_exec(
            *self.command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=None,  # the server's log goes where vedette's goes
            env=env,
            start_new_session=True,  # its process group is stopped with it
            limit=MAX_LINE_BYTES,
        )
        try:
            to_session, session_read = anyio.create_memory_object_stream[Any](SESSION_BACKLOG)
            session_write, from_session = anyio.create_memory_object_stream[Any](math.inf)
            send = _pipe_sender(process)
            tasks.start_soon(self._read_lines, process, to_session)
            tasks.start_soon(_write_session, from_session, send)
            yield session_read, session_write, send
        finally:
            with anyio.CancelScope(shield=True):
                await _stop(process)

    async def _negotiate(self, session: ClientSession) -> None:
        """The handshake; discovery instead when the server refused it before."""
        if self._opens_modern:
            try:
                await session.discover()
                return
            except MCPError:
                self._opens_modern = False  # the next connection tries the handshake again
                raise
        try:
            await session.initialize()
        except MCPError as err:
            if not _serves_only_modern(err):
                raise
            self._opens_modern = self._again_now = True
            raise

    async def _subscribe_again(self, session: ClientSession) -> None:
        """The watched resources of a handshake-era server, subscribed again
        on a new connection (a subscription the server refuses now is dropped)."""
        with anyio.fail_after(self.timeout_s):
            for uri in list(self._watched):
                try:
                    await send_subscription(session, uri, subscribe=True)
                except MCPError as err:
                    log.warning("MCP server %r: %s not watched again: %s", self.name, uri, err)

    async def _listen_for_changes(self, session: ClientSession) -> None:
        """A 2026-07-28 server's changes to its tools (and to the resources and
        prompts its entry lets pass), where it streams them; opened again
        whenever the watched resources change."""
        while True:
            self._watch_changed = anyio.Event()
            try:
                async with (
                    listen(
                        session,
                        tools_list_changed=True,
                        resources_list_changed=self.resources,
                        prompts_list_changed=self.prompts,
                        resource_subscriptions=sorted(self._watched) if self.resources else (),
                    ) as changes,
                    anyio.create_task_group() as tasks,
                ):

                    async def reopen() -> None:
                        await self._watch_changed.wait()
                        tasks.cancel_scope.cancel()

                    tasks.start_soon(reopen)
                    async for event in changes:
                        await self._heard(event)
                    tasks.cancel_scope.cancel()
            except Exception as err:  # not served, or lost: the periodic listing stands
                log.info("MCP server %r: no stream of changes (%s)", self.name, _describe(err))
                return
            if not self._watch_changed.is_set():
                return  # the server ended the stream

    async def _heard(self, event: ServerEvent) -> None:
        """One change the server reported, on either revision."""
        if isinstance(event, ToolsListChanged):
            self._relist_due = True
            self._wake.set()
            return
        if isinstance(event, ResourceUpdated) and event.uri not in self._watched:
            return  # nobody asked for it
        passes = self.prompts if isinstance(event, PromptsListChanged) else self.resources
        if passes and self._on_event is not None:
            try:
                await self._on_event(self, event)
            except Exception:  # the clients learn of it when they next list or read
                log.exception("MCP server %r: a change could not be passed on", self.name)

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
            if self._relist_due or self.modern:
                # 2026-07-28 has no ping: a listing is the liveness check.
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
            await self._heard(ToolsListChanged())
        elif isinstance(message, types.ResourceListChangedNotification):
            await self._heard(ResourcesListChanged())
        elif isinstance(message, types.PromptListChangedNotification):
            await self._heard(PromptsListChanged())
        elif isinstance(message, types.ResourceUpdatedNotification):
            await self._heard(ResourceUpdated(str(message.params.uri)))
        elif isinstance(message, Exception):
            log.warning("MCP server %r transport: %s", self.name, message)

    async def _sampling(
        self, context: Any, params: types.CreateMessageRequestParams
    ) -> types.CreateMessageResult | types.CreateMessageResultWithTools | types.ErrorData:
        assert self._relay is not None  # only given to the session with a relay
        return await self._relay.sampling(self, params)

    async def _elicitation(
        self, context: Any, params: types.ElicitRequestParams
    ) -> types.ElicitResult | types.ErrorData:
        assert self._relay is not None
        return await self._relay.elicitation(self, params)

    # -- calls ------------------------------------------------------------------

    def _on_end(self) -> None:
        self._fail_waiting("the server closed its connection")
        self._ended = True
        self._wake.set()

    async def call(
        self, name: str, args: dict[str, Any], progress: Progress | None = None
    ) -> dict[str, Any]:
        """``tools/call`` of the server's own tool ``name``: its result as the
        server sent it, or ``MCPError`` (its JSON-RPC error, or the connection
        lost); :class:`UpstreamUnavailable` when not connected; ``TimeoutError``
        after the server's timeout. Cancelled, it tells the server
        (``notifications/cancelled``). With ``progress``, the server is asked to
        report its progress, and each report goes there."""
        send, session = self._send, self._session
        if session is None or send is None:
            raise UpstreamUnavailable(f"the MCP server {self.name!r} is not connected")
        if self.modern:
            async with _deadline(self.timeout_s):
                return await self._call_modern(session, name, args, progress)
        request_id = f"vedette-{next(self._ids)}"
        reply: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[request_id] = reply
        try:
            params: dict[str, Any] = {"name": name, "arguments": args}
            if progress is not None:
                params["_meta"] = {"progressToken": request_id}
                self._progress[request_id] = progress
            async with _deadline(self.timeout_s):
                await send(
                    {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": params}
                )
                return await reply
        except BaseException:
            # Not answered (awaiting it, a cancelled call cancels the future too):
            # the server is told to stop working on it.
            if (not reply.done() or reply.cancelled()) and self._send is send:
                with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
                    await send(
                        {
                            "jsonrpc": "2.0",
                            "method": "notifications/cancelled",
                            "params": {"requestId": request_id, "reason": "the call was cancelled"},
                        }
                    )
            raise
        finally:
            self._waiting.pop(request_id, None)
            self._progress.pop(request_id, None)

    async def _call_modern(
        self,
        session: ClientSession,
        name: str,
        args: dict[str, Any],
        progress: Progress | None,
    ) -> dict[str, Any]:
        """``tools/call`` on 2026-07-28, through the SDK's session: the input a
        server asks for during it (its input-required results) is relayed as
        far as its entry allows, then the call is tried again with the answers."""
        answers: dict[str, Any] | None = None
        state: str | None = None
        for _ in range(MAX_INPUT_ROUNDS + 1):
            result = await session.call_tool(
                name,
                args,
                progress_callback=progress,
                input_responses=answers,
                request_state=state,
                allow_input_required=True,
                allow_claimed=False,
            )
            if not isinstance(result, types.InputRequiredResult):
                return result.model_dump(by_alias=True, mode="json", exclude_none=True)
            answers = await self._inputs(result.input_requests or {})
            state = result.request_state
        too_many = f"the server asked for input over {MAX_INPUT_ROUNDS} times"
        raise MCPError(MALFORMED_ANSWER, too_many)

    async def _inputs(self, requests: dict[str, Any]) -> dict[str, Any]:
        """The answers to a 2026-07-28 server's input requests, or ``MCPError``."""
        answers: dict[str, Any] = {}
        for key, request in requests.items():
            answer: Any
            if isinstance(request, types.CreateMessageRequest) and self.sampling and self._relay:
                answer = await self._relay.sampling(self, request.params)
            elif isinstance(request, types.ElicitRequest) and self.elicitation and self._relay:
                answer = await self._relay.elicitation(self, request.params)
            else:
                method = getattr(request, "method", "an unknown request")
                raise MCPError(
                    MALFORMED_ANSWER, f"the server asked for {method}, which is not relayed from it"
                )
            if isinstance(answer, types.ErrorData):
                raise MCPError(answer.code, answer.message, answer.data)
            answers[key] = answer
        return answers

    async def _read_lines(self, process: Process, to_session: ObjectSendStream[Any]) -> None:
        """Every line the server writes: the answer to a call goes to its
        caller, anything else to the session. The end of its output (or a
        line over ``MAX_LINE_BYTES``) ends the connection."""
        assert process.stdout is not None
        async with to_session:
            with contextlib.suppress(anyio.ClosedResourceError, anyio.BrokenResourceError):
                while True:
                    try:
                        line = await process.stdout.readline()
                    except ValueError:
                        self.last_error = f"the server wrote a line over {MAX_LINE_BYTES} bytes"
                        break
                    if not line:
                        break
                    await self._route(line, to_session)
        self._on_end()

    async def _route(self, line: bytes, to_session: ObjectSendStream[Any]) -> None:
        """One message of the server's (a line on stdio, a message of an HTTP
        answer): the answer to a call goes to its caller, a report of its
        progress to its client, anything else to the session."""
        if not line.strip() or self._took(line):
            return
        if b"notifications/progress" in line and await self._progress_line(line):
            return
        await to_session.send(_session_message(line))

    def _took(self, line: bytes) -> bool:
        """Takes the answer to a call this upstream sent; ``False`` for
        anything else (the session's business)."""
        if b'"vedette-' not in line:
            return False
        try:
            message = orjson.loads(line)
        except orjson.JSONDecodeError:
            return False
        if not isinstance(message, dict) or not ({"result", "error"} & message.keys()):
            return False
        request_id = message.get("id")
        reply = self._waiting.get(request_id) if isinstance(request_id, str) else None
        if reply is None:
            return False
        if reply.done():
            return True
        result, error = message.get("result"), message.get("error")
        if "error" in message:
            reply.set_exception(_error_of(error))
        elif isinstance(result, dict):
            reply.set_result(result)
        else:
            reply.set_exception(MCPError(MALFORMED_ANSWER, "the server's result is not an object"))
        return True

    async def _progress_line(self, line: bytes) -> bool:
        """:meth:`_progressed` for a line of a stdio server."""
        try:
            message = orjson.loads(line)
        except orjson.JSONDecodeError:
            return False
        if not isinstance(message, dict) or message.get("method") != "notifications/progress":
            return False
        return await self._progressed(message.get("params"))

    async def _progress_message(self, message: Any) -> bool:
        """:meth:`_progressed` for a message the SDK's HTTP transport has parsed."""
        inner = getattr(message, "message", None)
        if not isinstance(inner, types.JSONRPCNotification):
            return False
        if inner.method != "notifications/progress":
            return False
        return await self._progressed(inner.params)

    async def _progressed(self, params: Any) -> bool:
        """Takes a progress report of a call this upstream sent (``False`` for
        anything else, the session's business) and passes it to the call's
        client when it is well-formed."""
        token = params.get("progressToken") if isinstance(params, dict) else None
        report = self._progress.get(token) if isinstance(token, str) else None
        if report is None:
            return False
        progress, total = params.get("progress"), params.get("total")
        message = params.get("message")
        numbers = all(
            isinstance(value, int | float) and not isinstance(value, bool)
            for value in (progress, total if total is not None else 0)
        )
        if numbers and (message is None or isinstance(message, str)):
            # A client that does not take its report at once loses it: the
            # server's other answers wait behind this one.
            with anyio.move_on_after(PROGRESS_SEND_S):
                try:
                    await report(float(progress), None if total is None else float(total), message)
                except Exception as err:  # the client has gone, or its request has ended
                    log.info("MCP server %r: progress not passed on: %s", self.name, err)
        return True

    def _fail_waiting(self, why: str) -> None:
        for reply in list(self._waiting.values()):
            if not reply.done():
                reply.set_exception(MCPError(CONNECTION_LOST, why))

    def status(self) -> dict[str, Any]:
        return {
            "connected": self.connected,
            "tools": len(self.tools),
            "restarts": self.restarts,
            "last_error": self.last_error,
        }


async def _list_tools(session: ClientSession) -> list[UpstreamTool]:
    tools = await list_all(session, "tools/list")
    return [UpstreamTool.of(tool.model_dump(mode="json", by_alias=True)) for tool in tools]


# The paginated listings: the session's method and the page's field.
_LISTINGS = {
    "tools/list": ("list_tools", "tools"),
    "resources/list": ("list_resources", "resources"),
    "resources/templates/list": ("list_resource_templates", "resource_templates"),
    "prompts/list": ("list_prompts", "prompts"),
}


async def list_all(session: ClientSession, method: str) -> list[Any]:
    """Every item of one of a server's paginated listings (``method`` a key of
    ``_LISTINGS``), page by page; :class:`GatewayError` past ``MAX_LIST_PAGES``
    (a cursor loop must end)."""
    call, field = _LISTINGS[method]
    listed: list[Any] = []
    cursor: str | None = None
    for _ in range(MAX_LIST_PAGES):
        params = types.PaginatedRequestParams(cursor=cursor) if cursor else None
        page = await getattr(session, call)(params=params)
        listed += getattr(page, field)
        cursor = page.next_cursor
        if not cursor:
            return listed
    raise GatewayError(f"the server's {method} has over {MAX_LIST_PAGES} pages")


async def send_subscription(session: ClientSession, uri: str, *, subscribe: bool) -> None:
    """``resources/subscribe`` (or ``unsubscribe``) on a handshake revision, the
    only one that has it (the SDK's own methods warn that it is gone from
    2026-07-28), as a client sends it."""
    request: types.SubscribeRequest | types.UnsubscribeRequest
    if subscribe:
        request = types.SubscribeRequest(params=types.SubscribeRequestParams(uri=uri))
    else:
        request = types.UnsubscribeRequest(params=types.UnsubscribeRequestParams(uri=uri))
    await session.send_request(request, types.EmptyResult)


def shared_names(listings: Iterable[Iterable[str]]) -> set[str]:
    """The names more than one server lists: toward clients each such tool or
    prompt is called ``<server>.<name>``."""
    counts = Counter(name for names in listings for name in set(names))
    return {name for name, count in counts.items() if count > 1}


def _watch_end(
    read: ObjectReceiveStream[Any],
    on_end: Callable[[], None],
    progressed: Callable[[Any], Awaitable[bool]],
) -> tuple[
    Callable[[], Coroutine[Any, Any, None]], ObjectReceiveStream[Any], ObjectSendStream[Any]
]:
    """A copy of ``read`` for the session, the task that fills it with every
    message ``progressed`` does not take, and a way in for the messages of the
    answers to the gateway's own calls (:mod:`vedette.mcp.http_calls`, which
    takes those answers itself): when the transport's
    stream ends, the copy ends too, so the session fails its requests in
    flight at once, and ``on_end`` is called."""
    send: ObjectSendStream[Any]
    send, copy = anyio.create_memory_object_stream[Any](math.inf)

    async def pump() -> None:
        async with send:
            with contextlib.suppress(anyio.EndOfStream, anyio.ClosedResourceError):
                async for message in read:
                    if not await progressed(message):
                        await send.send(message)
        on_end()

    return pump, copy, send


if sys.version_info >= (3, 11):
    # asyncio's own deadline: a call's timeout costs one timer, not a cancel scope.
    _deadline = asyncio.timeout
else:

    @contextlib.asynccontextmanager
    async def _deadline(seconds: float) -> AsyncIterator[None]:
        with anyio.fail_after(seconds):
            yield


def _pipe_sender(process: Process) -> Send:
    """Raw messages as JSON lines on a stdio server's input."""
    assert process.stdin is not None
    stdin = process.stdin

    async def send(message: dict[str, Any]) -> None:
        try:
            stdin.write(orjson.dumps(message) + b"\n")
            await stdin.drain()
        except (ConnectionError, RuntimeError) as err:  # closed, or closing
            raise MCPError(CONNECTION_LOST, "the server's input is closed") from err

    return send


async def _write_session(from_session: ObjectReceiveStream[Any], send: Send) -> None:
    """What the SDK's session sends (initialize, listings, pings), in its own
    serialization, as the SDK's transport writes it."""
    async with from_session:
        with contextlib.suppress(MCPError):  # the server is gone: its reader ends the connection
            async for message in from_session:
                dumped = message.message.model_dump(mode="json", by_alias=True, exclude_unset=True)
                await send(dumped)


def _session_message(line: bytes) -> SessionMessage | Exception:
    """One line for the session; a line that is not JSON-RPC is passed as the
    error the SDK's transport would pass."""
    try:
        return SessionMessage(types.jsonrpc_message_adapter.validate_json(line, by_name=False))
    except ValueError as err:
        log.warning("an MCP server sent a line that is not JSON-RPC: %s", err)
        return err


def _serves_only_modern(err: MCPError) -> bool:
    """Whether a refused handshake says the server serves 2026-07-28 alone."""
    if err.code != types.UNSUPPORTED_PROTOCOL_VERSION or not isinstance(err.data, dict):
        return False
    supported = err.data.get("supported")
    return isinstance(supported, list) and any(v in MODERN_PROTOCOL_VERSIONS for v in supported)


def _error_of(error: Any) -> MCPError:
    if isinstance(error, dict):
        code, message = error.get("code"), error.get("message")
        if isinstance(code, int) and not isinstance(code, bool) and isinstance(message, str):
            return MCPError(code, message, error.get("data"))
    return MCPError(MALFORMED_ANSWER, "the server's error is not a JSON-RPC error")


async def _stop(process: Process) -> None:
    """As the SDK stops a server: close its input, wait, then terminate its
    process group (SIGTERM, then SIGKILL). Every wait is bounded."""
    if process.stdin is not None:
        process.stdin.close()
    with anyio.move_on_after(STOP_GRACE_S):
        await process.wait()
    if process.returncode is None:
        await terminate_posix_process_tree(cast(Any, process), STOP_GRACE_S)
    with anyio.move_on_after(STOP_GRACE_S):
        await process.wait()


def _describe(err: BaseException) -> str:
    inner = getattr(err, "exceptions", None)
    if isinstance(inner, (list, tuple)) and inner:
        return _describe(inner[0])
    if isinstance(err, TimeoutError):
        return "no answer within the server's timeout"
    return f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
