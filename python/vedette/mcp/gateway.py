"""The MCP gateway: an MCP server toward clients, an MCP client toward each
upstream server (:mod:`vedette.mcp.upstream`), and the runtime's gate between.

A ``tools/call`` from a client becomes an intent of its caller (the one
``vedette mcp`` was started for, or the one a bearer token names on ``/mcp``):
the runtime checks the arguments against the manifest's schema, takes the
quota, checks the declared tools, evaluates the policy and makes the decision
record durable; only then is the call sent upstream (as the runtime runs any
tool: :class:`_Forward` is the tool), and its outcome is recorded like any
tool's. Anything else denies: a refused call answers JSON-RPC error
:data:`DENIED` and never reaches an upstream.

The tools of every upstream make one catalogue. A tool keeps its own name
unless another upstream (or a tool of the node itself) has the same one; then
each such tool is named ``<server>.<tool>``. Tools are pinned
(:mod:`vedette.mcp.pinning`) per agent, against that agent's active manifest,
whenever an upstream's listing changes or a new release becomes active; only
pinned tools are listed toward a client. Resources and prompts are served only
from the servers whose entry allows them (:mod:`vedette.mcp.passthrough`), and
what those servers say of them (their lists changed, a watched resource
changed) is passed on to the clients of agents with an active release; so
are the servers' sampling and elicitation requests, relayed to the client of
the call they come in (:mod:`vedette.mcp.asks`) and otherwise refused.

This module imports the MCP SDK; the commands import it only once they have
checked that the SDK is installed.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import secrets
import weakref
from collections.abc import Callable
from dataclasses import dataclass, replace
from operator import attrgetter
from typing import Any

import anyio
from mcp import types
from mcp.server.connection import Connection
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel.server import NotificationOptions, Server
from mcp.server.models import InitializationOptions
from mcp.server.subscriptions import InMemorySubscriptionBus, ListenHandler, ToolsListChanged
from mcp.shared.exceptions import MCPError
from mcp.shared.subscriptions import (
    PromptsListChanged,
    ResourcesListChanged,
    ResourceUpdated,
    ServerEvent,
)
from mcp.types.version import HANDSHAKE_PROTOCOL_VERSIONS
from prometheus_client import Counter
from pydantic import ValidationError

from vedette import __version__
from vedette._core import is_name
from vedette.config import Config
from vedette.hashing import sha256
from vedette.mcp.asks import Asker, ClientRequests, InFlight, RoundTrips, SessionAsker
from vedette.mcp.connections import Connections, connection_of, in_handshake_era, notify
from vedette.mcp.errors import DENIED, TOOL_FAILED, GatewayError
from vedette.mcp.pages import cursor_of, page_of
from vedette.mcp.passthrough import Passthrough
from vedette.mcp.pinning import MISMATCH_EVENT, Pins, UpstreamTool
from vedette.mcp.upstream import (
    MAX_WATCHED,
    Progress,
    Upstream,
    UpstreamUnavailable,
    shared_names,
)
from vedette.runtime.decision import Decision, deny_fields
from vedette.runtime.encoding import strict_dumps
from vedette.runtime.identity import Caller
from vedette.runtime.interceptor import Runtime
from vedette.runtime.tools import ToolFailed

log = logging.getLogger("vedette.mcp")

__all__ = ["Gateway", "caller_for"]

# How long a 2026-07-28 call whose server asked its client something stays
# resumable once it has finished: its result waits that long for the client's
# next try of the call.
RESUME_GRACE_S = 30.0
# Items in one page of a listing toward a client, unless configured.
DEFAULT_PAGE_SIZE = 100
# How long telling one client of a change may take; then it is not told.
NOTIFY_SEND_S = 1.0

# Who asks: the caller of the request being served (``vedette mcp`` has one;
# ``/mcp`` takes it from each request's bearer token).
CallerOf = Callable[[ServerRequestContext[Any]], Caller]


@dataclass
class _Call:
    """One client call on its way through the runtime: who makes it (its agent
    is the one it is pinned for), the channel back to its client, and what the
    upstream answered (the runtime hands back a :class:`Decision`; the client
    wants the MCP result)."""

    caller: Caller
    asker: Asker | None
    # Where the upstream's progress reports go, when the client asked for them.
    progress: Progress | None = None
    result: types.CallToolResult | None = None
    # The same result as the upstream sent it, for the stdio fast path.
    raw: dict[str, Any] | None = None


@dataclass(frozen=True)
class _Resumable:
    """A 2026-07-28 call that answered its client with the server's requests:
    the client's next try of it (its ``requestState``) takes it up again."""

    caller_id: str
    name: str
    trips: RoundTrips
    task: asyncio.Future[tuple[Decision, _Call]]


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


def _progress_of(
    ctx: ServerRequestContext[Any], params: types.CallToolRequestParams
) -> Progress | None:
    """Where the progress of a call whose client asked for it (a progress
    token in its ``_meta``) is reported: that client, on the call's channel."""
    token = (params.meta or {}).get("progress_token")
    if token is None:
        return None
    session, request_id = ctx.session, ctx.request_id

    async def report(progress: float, total: float | None, message: str | None) -> None:
        related = str(request_id) if request_id is not None else None
        await session.send_progress_notification(token, progress, total, message, related)

    return report


def caller_for(config: Config, caller_id: str) -> Caller:
    """The ``[[callers]]`` entry ``caller_id`` as a caller; :class:`GatewayError` if absent."""
    for entry in config.callers:
        if entry.id == caller_id:
            return Caller(entry.id, entry.agent)
    known = ", ".join(repr(entry.id) for entry in config.callers) or "none"
    raise GatewayError(f"caller {caller_id!r} is not in [[callers]] (configured: {known})")


class _AgentPins:
    """One agent's pins, the fingerprint they were made against, and the
    clients to tell when they change: the connections of handshake-era clients,
    and the ``subscriptions/listen`` streams of 2026-07-28 ones (the agent's
    own, so no client learns when another agent's list changed)."""

    def __init__(self) -> None:
        self.pins = Pins()
        self.pinned_once = False
        self.against: str | None = None
        self.connections: Connections = weakref.WeakSet()
        self.changes = InMemorySubscriptionBus()
        self.listen = ListenHandler(self.changes)


class Gateway:
    """The catalogue of upstream tools, each agent's pins, and the runtime."""

    def __init__(
        self,
        runtime: Runtime,
        upstreams: list[Upstream],
        caller_of: CallerOf,
        agents: list[str],
        page_size: int = DEFAULT_PAGE_SIZE,
    ) -> None:
        """``agents`` are pinned from the start, so each start records the
        differences it finds; any other agent is pinned when first served.
        ``page_size``: items in one page of a listing toward a client."""
        self.runtime = runtime
        self.page_size = page_size
        self.upstreams = upstreams
        self.caller_of = caller_of
        # The name a client calls -> (the upstream, the upstream's own name).
        self.catalogue: dict[str, tuple[Upstream, str]] = {}
        self._listing: list[UpstreamTool] = []
        self._schemas: dict[str, Any] = {}
        self._agents = {agent: _AgentPins() for agent in agents}
        self._mismatches = Counter(
            "vedette_mcp_tool_mismatches",
            "MCP server tools found differing from the agent's manifest (or undeclared), "
            "by agent and the field that differs.",
            ["agent", "field"],
            registry=runtime.metrics.registry,
        )
        self._lock = anyio.Lock()
        self.client_requests = ClientRequests(runtime)
        self._resumable: dict[str, _Resumable] = {}
        self._passthrough = Passthrough(
            runtime, upstreams, caller_of, self._note_session, page_size
        )
        for upstream in upstreams:
            upstream.on_change(self.upstream_changed)
            upstream.on_event(self.upstream_event)
            upstream.relay_to(self.client_requests)

    # -- the catalogue ----------------------------------------------------------

    async def upstream_changed(self, upstream: Upstream) -> None:
        """An upstream listed again (or was lost): rebuild the catalogue and
        pin every agent that has been served against it."""
        async with self._lock:
            self._rebuild()
            for agent in list(self._agents):
                await self._pin(agent)

    def _rebuild(self) -> None:
        shared = shared_names([tool.name for tool in upstream.tools] for upstream in self.upstreams)
        catalogue: dict[str, tuple[Upstream, str]] = {}
        listing: list[UpstreamTool] = []
        for upstream in self.upstreams:
            for tool in upstream.tools:
                name = tool.name
                if name in shared or self._is_node_tool(name):
                    name = f"{upstream.name}.{tool.name}"
                catalogue.setdefault(name, (upstream, tool.name))
                listing.append(replace(tool, name=name))
                if is_name(name) and name not in self.runtime.tools:
                    self.runtime.tools.register(_Forward(name, self))
        self.catalogue, self._listing = catalogue, listing
        self._schemas = {tool.name: tool.input_schema for tool in listing}

    def input_schema(self, name: str) -> Any:
        """The input schema the servers list for ``name`` (the same for every
        agent: a pinned tool's schema is its manifest's); ``None`` if none does."""
        return self._schemas.get(name)

    async def upstream_event(self, upstream: Upstream, event: ServerEvent) -> None:
        """A server's resources or prompts changed (it lets them pass): tell the
        clients of every agent with an active release, on their listen streams
        (each gets what its filter asked for) and, in the handshake era, on
        their sessions (a watched resource's change only to those watching it)."""
        served = [
            state
            for agent, state in self._agents.items()
            if self.runtime.releases.active(agent) is not None
        ]
        for state in served:
            await state.changes.publish(event)
        notification: types.ServerNotification
        if isinstance(event, ResourceUpdated):
            told = await self._passthrough.watchers(upstream, event.uri)
            params = types.ResourceUpdatedNotificationParams(uri=event.uri)
            notification = types.ResourceUpdatedNotification(params=params)
        else:
            told = list({client for state in served for client in state.connections})
            if isinstance(event, ResourcesListChanged):
                notification = types.ResourceListChangedNotification()
            elif isinstance(event, PromptsListChanged):
                notification = types.PromptListChangedNotification()
            else:
                return  # the tools' changes are pinning's (upstream_changed)
        await _tell(told, notification)

    def _note_session(self, caller: Caller, session: Any) -> None:
        self._agent(caller.agent).connections.add(connection_of(session))

    def _is_node_tool(self, name: str) -> bool:
        """A tool the node runs itself (built in, HTTP, plugin) keeps its name."""
        tool = self.runtime.tools.get(name)
        return tool is not None and not isinstance(tool, _Forward)

    def _agent(self, agent: str) -> _AgentPins:
        pins = self._agents.get(agent)
        if pins is None:
            pins = self._agents[agent] = _AgentPins()
        return pins

    async def _pin(self, agent: str) -> None:
        """Pin the catalogue against ``agent``'s active manifest; record each new
        mismatch, and tell the agent's clients when their list changed."""
        state = self._agent(agent)
        release = self.runtime.releases.active(agent)
        manifest_tools = release.manifest.tools if release is not None else []
        state.against = str(release.behavioral_fingerprint) if release else None
        state.pinned_once = True
        before = dict(state.pins.pinned)
        mismatches = state.pins.update(self._listing, manifest_tools)
        for mismatch in mismatches:
            log.warning("%s", mismatch.reason)
            self._mismatches.labels(agent, mismatch.field).inc()
            await self.runtime.record_event(MISMATCH_EVENT, mismatch.event(agent))
        if state.pins.pinned != before:
            await state.changes.publish(ToolsListChanged())
            await _tell(list(state.connections), types.ToolListChangedNotification())

    async def _pins_for(self, agent: str) -> Pins:
        """``agent``'s pins, made again first if its release changed since."""
        state = self._agent(agent)
        release = self.runtime.releases.active(agent)
        current = str(release.behavioral_fingerprint) if release else None
        if current != state.against or not state.pinned_once:
            async with self._lock:
                await self._pin(agent)
        return state.pins

    def status(self) -> dict[str, Any]:
        """For ``/v1/status``: each upstream, and each agent's refused tools."""
        return {
            "servers": {upstream.name: upstream.status() for upstream in self.upstreams},
            "refused": {
                agent: {name: m.field for name, m in state.pins.refused.items()}
                for agent, state in self._agents.items()
            },
        }

    # -- the upstream call ------------------------------------------------------

    async def forward(self, name: str, args: dict[str, Any]) -> Any:
        """The upstream call of an allowed intent (run by the runtime's registry,
        under its timeout and output limit)."""
        call = _CURRENT.get()
        if call is None:
            # A call that did not come through the gateway (POST /v1/tool): no
            # client's pins were checked for it, so it is not sent.
            raise ToolFailed("unpinned", f"MCP tool {name!r} is called through the MCP gateway")
        state = self._agents.get(call.caller.agent)
        if state is None or name not in state.pins.pinned or name not in self.catalogue:
            raise ToolFailed(
                "unpinned", f"upstream tool {name!r} changed before the call; not sent"
            )
        upstream, own_name = self.catalogue[name]
        try:
            with self.client_requests.in_flight(upstream, InFlight(call.caller, name, call.asker)):
                result = await upstream.call(own_name, args, call.progress)
        except UpstreamUnavailable as err:
            raise ToolFailed("unavailable", str(err)) from err
        except TimeoutError as err:
            raise ToolFailed("timeout", f"no answer from {upstream.name!r} in time") from err
        except MCPError as err:
            raise ToolFailed(
                "upstream_error", f"the upstream answered JSON-RPC error {err.code}: {err.message}"
            ) from err
        call.raw = result
        try:
            call.result = types.CallToolResult.model_validate(result)
        except ValidationError as err:
            raise ToolFailed(
                "bad_output", "the upstream answered something other than a tool result"
            ) from err
        if call.result.is_error:
            encoded = strict_dumps(result)
            raise ToolFailed(
                "is_error",
                f"the upstream's result has isError ({sha256(encoded)}, {len(encoded)} bytes)",
            )
        return result

    # -- toward the client --------------------------------------------------------

    async def list_tools(
        self, ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        caller = self.caller_of(ctx)
        self._note_session(caller, ctx.session)
        pins = await self._pins_for(caller.agent)
        # Only the pinned fields: title, annotations and output schemas are not
        # pinned, so they are not passed on.
        tools = [
            types.Tool(name=tool.name, description=tool.description, input_schema=tool.input_schema)
            for tool in pins.pinned.values()
        ]
        page, more = page_of(tools, attrgetter("name"), cursor_of(params), self.page_size)
        return types.ListToolsResult(tools=page, next_cursor=more)

    async def subscriptions_listen(
        self, ctx: ServerRequestContext[Any], params: types.SubscriptionsListenRequestParams
    ) -> types.SubscriptionsListenResult:
        """A 2026-07-28 client's stream of changes to its agent's tool list, and
        to the resources and prompts that pass (the resources it names are
        watched for as long as the stream is open)."""
        caller = self.caller_of(ctx)
        uris = list(dict.fromkeys(params.notifications.resource_subscriptions or ()))
        if len(uris) > MAX_WATCHED:
            raise MCPError(types.INVALID_PARAMS, f"at most {MAX_WATCHED} resources per stream")
        watched: list[tuple[Upstream, str]] = []
        try:
            if uris and self._passthrough.serves_resources:
                self._passthrough.admitted(ctx)
                for uri in uris:
                    upstream = await self._passthrough.owner(uri)
                    await upstream.watch(uri)
                    watched.append((upstream, uri))
            return await self._agent(caller.agent).listen(ctx, params)
        finally:
            with anyio.CancelScope(shield=True):
                for upstream, uri in watched:
                    await upstream.unwatch(uri)

    async def call_tool(
        self, ctx: ServerRequestContext[Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult | types.InputRequiredResult:
        caller: Caller | None = None
        try:
            caller = self.caller_of(ctx)
            self._note_session(caller, ctx.session)
            if params.request_state is not None:
                return await self._resume(caller, params)
            arguments = dict(params.arguments or {})
            progress = _progress_of(ctx, params)
            asker: Asker | None = None
            if ctx.session.protocol_version in HANDSHAKE_PROTOCOL_VERSIONS:
                asker = SessionAsker(ctx.session, ctx.request_id)
            elif self._may_ask(params.name):
                # The server's requests during the call go back as its result.
                trips = RoundTrips(ctx.session.client_capabilities)
                running = asyncio.ensure_future(
                    self._call(caller, params.name, arguments, trips, progress)
                )
                return await self._step(caller, params.name, trips, running)
            decision, call = await self._call(caller, params.name, arguments, asker, progress)
        except MCPError:
            raise
        except Exception as err:  # fail closed: nothing reached the upstream unrecorded
            raise await self._internal_denial(caller, params.name, err) from err
        return self._result(decision, call)

    def _may_ask(self, name: str) -> bool:
        """Whether the server of tool ``name`` may ask the client something."""
        served = self.catalogue.get(name)
        return served is not None and (served[0].sampling or served[0].elicitation)

    def _result(self, decision: Decision, call: _Call) -> types.CallToolResult:
        answer: types.CallToolResult | None = self._answer(decision, call, call.result)
        if answer is None:
            return types.CallToolResult.model_validate(decision.output)
        return answer

    async def _step(
        self,
        caller: Caller,
        name: str,
        trips: RoundTrips,
        running: asyncio.Future[tuple[Decision, _Call]],
    ) -> types.CallToolResult | types.InputRequiredResult:
        """A 2026-07-28 call until it has its result, or its server asks the
        client something: then the questions are the answer, and the call
        waits for the client's next try (:meth:`_resume`)."""
        asked: asyncio.Future[Any] = asyncio.ensure_future(trips.asked.wait())
        waiting: set[asyncio.Future[Any]] = {running, asked}
        try:
            await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            running.cancel()  # the client has gone, and so has its call
            raise
        finally:
            asked.cancel()
        if running.done():
            decision, call = running.result()
            return self._result(decision, call)
        token = secrets.token_urlsafe(24)
        self._resumable[token] = _Resumable(caller.id, name, trips, running)
        loop = asyncio.get_running_loop()
        running.add_done_callback(
            lambda _: loop.call_later(RESUME_GRACE_S, self._resumable.pop, token, None)
        )
        return types.InputRequiredResult(input_requests=trips.hand_over(), request_state=token)

    async def _resume(
        self, caller: Caller, params: types.CallToolRequestParams
    ) -> types.CallToolResult | types.InputRequiredResult:
        """The client's next try of a call whose server asked it something: its
        answers go to the server, and the call goes on where it was (it was
        decided once; the arguments of a try are not looked at)."""
        token = params.request_state or ""
        entry = self._resumable.get(token)
        if entry is None or entry.caller_id != caller.id or entry.name != params.name:
            raise MCPError(types.INVALID_PARAMS, "unknown or expired requestState for this call")
        del self._resumable[token]
        entry.trips.answer(dict(params.input_responses or {}))
        return await self._step(caller, entry.name, entry.trips, entry.task)

    async def call_raw(
        self, caller: Caller, name: str, args: dict[str, Any], asker: Asker
    ) -> dict[str, Any]:
        """``tools/call`` for the stdio fast path (:mod:`vedette.mcp.wire`): the
        same decision and the same errors as :meth:`call_tool`, and the result
        as the upstream sent it."""
        try:
            decision, call = await self._call(caller, name, args, asker)
        except MCPError:
            raise
        except Exception as err:  # fail closed: nothing reached the upstream unrecorded
            raise await self._internal_denial(caller, name, err) from err
        answer: dict[str, Any] | None = self._answer(decision, call, call.raw)
        return answer if answer is not None else dict(decision.output or {})

    async def _internal_denial(self, caller: Caller | None, name: str, err: Exception) -> MCPError:
        """The deny of a call something failed deciding, recorded when it can be."""
        log.exception("the gateway failed deciding a call to %r", name)
        reason = f"internal error ({type(err).__name__}); denied"
        decision_id = None
        if caller is not None:
            try:
                decision_id = (await self.runtime.refuse(caller, None, reason)).decision_id
            except Exception:
                log.exception("the denial of a call to %r could not be recorded", name)
        return MCPError(DENIED, f"denied: {reason}", deny_fields(reason, decision_id))

    async def _call(
        self,
        caller: Caller,
        name: str,
        args: dict[str, Any],
        asker: Asker | None,
        progress: Progress | None = None,
    ) -> tuple[Decision, _Call]:
        pins = await self._pins_for(caller.agent)
        tool = self.runtime.tools.get(name)
        reason: str | None = None
        if self.runtime.releases.active(caller.agent) is None:
            pass  # the gate denies, and says why (no active release)
        elif tool is not None and not isinstance(tool, _Forward):
            # The node's own tools are served on POST /v1/tool, not over MCP.
            reason = f"tool {name!r} is not a tool of an MCP server"
        else:
            reason = pins.refusal(name)
            if reason is None and tool is not None and name not in pins.pinned:
                reason = f"upstream tool {name!r} is not listed by its server now"
        # A name nothing lists is left to the gate: undeclared, or declared but
        # not available.
        call = _Call(caller, asker, progress)
        if reason is not None:
            return await self.runtime.refuse(caller, name, reason), call
        token = _CURRENT.set(call)
        try:
            intent = {"tool": name, "args": args}
            return await self.runtime.decide_async(intent, caller), call
        finally:
            _CURRENT.reset(token)

    @staticmethod
    def _answer(decision: Decision, call: _Call, result: Any) -> Any:
        """``result`` (what the upstream answered, in the caller's form) for an
        allow or the upstream's own error result; ``None`` for an allow without
        one; raises the JSON-RPC error of anything else."""
        if decision.outcome == "allow":
            return result
        if decision.outcome == "tool_error":
            if call.result is not None and call.result.is_error:
                return result  # the upstream's own error result, as it sent it
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

    def server(self) -> Server[Any]:
        """The MCP server toward clients: tools, and the resources and prompts
        of the servers that allow them."""
        passthrough = self._passthrough
        server = _GatewayServer(
            "vedette",
            version=__version__,
            instructions=None,
            on_list_tools=self.list_tools,
            on_call_tool=self.call_tool,
            on_subscriptions_listen=self.subscriptions_listen,
            # For the Mcp-Param-* headers of a 2026-07-28 tools/call: without
            # it the SDK runs the whole tools/list handler for every call.
            get_tool_input_schema=self.input_schema,
            **passthrough.handlers(),
        )
        server.notification_options = NotificationOptions(
            tools_changed=True,
            resources_changed=passthrough.serves_resources,
            prompts_changed=passthrough.serves_prompts,
        )
        # In place of the SDK's default (an OpenTelemetry span per message,
        # which costs more than a decision): the record of refused requests.
        server.middleware = [passthrough.refused]
        return server

    async def run_upstreams(self, *, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        """Keep every upstream connected until cancelled; ``started`` once each
        has made its first attempt."""
        async with anyio.create_task_group() as tasks:
            for upstream in self.upstreams:
                await tasks.start(upstream.run)
            task_status.started()


async def _tell(connections: list[Connection], notification: types.ServerNotification) -> None:
    """``notification`` to each handshake-era client of ``connections`` (a
    2026-07-28 client hears of changes on its listen streams)."""
    for connection in connections:
        if not in_handshake_era(connection):
            continue
        # A client that does not take it at once is not waited for: the
        # server's other messages wait behind this one.
        with anyio.move_on_after(NOTIFY_SEND_S):
            try:
                await notify(connection, notification)
            except Exception as err:  # the client lists or reads again when it next asks
                log.info("could not tell a client %s: %s", notification.method, err)


class _GatewayServer(Server[Any]):
    """The SDK's server, advertising to handshake-era clients the changes the
    gateway tells them of, on every transport (the SDK's HTTP transport asks
    for the options without any)."""

    notification_options = NotificationOptions()

    def create_initialization_options(
        self,
        notification_options: NotificationOptions | None = None,
        experimental_capabilities: dict[str, dict[str, Any]] | None = None,
        extensions: dict[str, dict[str, Any]] | None = None,
    ) -> InitializationOptions:
        return super().create_initialization_options(
            notification_options or self.notification_options,
            experimental_capabilities,
            extensions,
        )
