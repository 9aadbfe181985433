"""Resources and prompts of the upstreams that allow them (docs/mcp.md,
"Resources and prompts").

They are refused by default: neither is pinned to a manifest or decided by a
policy, and either puts an upstream's text in front of the model. An
``[[mcp.servers]]`` entry with ``resources = true`` (or ``prompts = true``;
``vedette mcp --resources`` / ``--prompts``) lets its own pass: the gateway
then advertises the capability and lists, toward a caller whose agent has an
active release, what those servers list (a prompt whose name two servers
list is named ``<server>.<prompt>``, as tools are). Each resource read and
each prompt fetched is recorded (``mcp_resource_read``,
``mcp_prompt_get``: caller, server, what, the digest and size of what was
returned) before it is returned; when the record cannot be made durable,
nothing is returned. A request no server allows is answered "method not
found" and recorded as a denial of its caller.

A client may watch a resource (``resources/subscribe``, or the URIs of a
2026-07-28 ``subscriptions/listen``): the server that lists it is subscribed
(:meth:`Upstream.watch`) while any client watches it, and its updates go to
the clients that watch it; what they then read is recorded as any read.
"""

from __future__ import annotations

import logging
import re
import weakref
from collections.abc import Callable
from operator import attrgetter
from typing import Any

import anyio
from mcp import types
from mcp.client.session import ClientSession
from mcp.server.connection import Connection
from mcp.server.context import ServerRequestContext
from mcp.server.session import ServerSession
from mcp.shared.exceptions import MCPError

from vedette.hashing import sha256
from vedette.mcp.connections import Connections, connection_of
from vedette.mcp.errors import GatewayError
from vedette.mcp.pages import cursor_of, page_of
from vedette.mcp.upstream import Upstream, list_all, shared_names
from vedette.runtime.encoding import strict_dumps
from vedette.runtime.identity import Caller
from vedette.runtime.interceptor import Runtime

log = logging.getLogger("vedette.mcp")

RESOURCE_READ_EVENT = "mcp_resource_read"
PROMPT_GET_EVENT = "mcp_prompt_get"
# Method families a server entry can let pass.
PASSABLE = ("resources", "prompts")

CallerOf = Callable[[ServerRequestContext[Any]], Caller]
# Told of the session of each admitted request (to tell it of list changes).
NoteSession = Callable[[Caller, ServerSession], None]


class Passthrough:
    """The resources and prompts handlers of the gateway's server."""

    def __init__(
        self,
        runtime: Runtime,
        upstreams: list[Upstream],
        caller_of: CallerOf,
        note_session: NoteSession,
        page_size: int,
    ) -> None:
        self.runtime = runtime
        self.page_size = page_size
        self.caller_of = caller_of
        self._note_session = note_session
        self._resources = [upstream for upstream in upstreams if upstream.resources]
        self._prompts = [upstream for upstream in upstreams if upstream.prompts]
        # From the last listings: a resource's URI -> its server; the name a
        # client asks for -> (its server, the server's own name).
        self._resource_owners: dict[str, Upstream] = {}
        self._prompt_owners: dict[str, tuple[Upstream, str]] = {}
        # The clients' connections watching each resource, and its server.
        self._watchers: dict[str, tuple[Upstream, Connections]] = {}

    @property
    def serves_resources(self) -> bool:
        return bool(self._resources)

    @property
    def serves_prompts(self) -> bool:
        return bool(self._prompts)

    def handlers(self) -> dict[str, Any]:
        """The ``Server`` handlers to register: none unless a server allows."""
        found: dict[str, Any] = {}
        if self._resources:
            found["on_list_resources"] = self.list_resources
            found["on_list_resource_templates"] = self.list_resource_templates
            found["on_read_resource"] = self.read_resource
            found["on_subscribe_resource"] = self.subscribe
            found["on_unsubscribe_resource"] = self.unsubscribe
        if self._prompts:
            found["on_list_prompts"] = self.list_prompts
            found["on_get_prompt"] = self.get_prompt
        return found

    async def refused(self, ctx: ServerRequestContext[Any], call_next: Any) -> Any:
        """Server middleware: a resources or prompts request nothing serves is
        answered "method not found", as before, and recorded as a denial."""
        try:
            return await call_next(ctx)
        except MCPError as err:
            family = ctx.method.split("/", 1)[0]
            if (
                err.code == types.METHOD_NOT_FOUND
                and family in PASSABLE
                and ctx.request_id is not None
            ):
                reason = (
                    f"MCP {ctx.method} is not served: no server behind this gateway "
                    f"allows {family} (docs/mcp.md)"
                )
                try:
                    await self.runtime.refuse(self.caller_of(ctx), None, reason)
                except Exception:
                    log.exception("the refusal of %s could not be recorded", ctx.method)
            raise

    # -- resources ---------------------------------------------------------------

    async def list_resources(
        self, ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListResourcesResult:
        self.admitted(ctx)
        listed = await self._list_resources()
        page, more = page_of(listed, attrgetter("uri"), cursor_of(params), self.page_size)
        return types.ListResourcesResult(resources=page, next_cursor=more)

    async def _list_resources(self) -> list[types.Resource]:
        owners: dict[str, Upstream] = {}
        listed: list[types.Resource] = []
        for upstream in self._connected(self._resources):
            for resource in await _listed(upstream, "resources/list"):
                uri = str(resource.uri)
                if uri not in owners:  # the first server listing a URI serves it
                    owners[uri] = upstream
                    listed.append(resource)
        self._resource_owners = owners
        return listed

    async def list_resource_templates(
        self, ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListResourceTemplatesResult:
        self.admitted(ctx)
        templates = [template for _, listed in await self._list_templates() for template in listed]
        page, more = page_of(
            templates, attrgetter("uri_template"), cursor_of(params), self.page_size
        )
        return types.ListResourceTemplatesResult(resource_templates=page, next_cursor=more)

    async def _list_templates(self) -> list[tuple[Upstream, list[types.ResourceTemplate]]]:
        return [
            (upstream, await _listed(upstream, "resources/templates/list"))
            for upstream in self._connected(self._resources)
        ]

    async def owner(self, uri: str) -> Upstream:
        """The server that serves resource ``uri``: the first that lists it,
        else the first with a template it fits; ``MCPError`` if none does."""
        upstream = self._resource_owners.get(uri)
        if upstream is None:
            await self._list_resources()
            upstream = self._resource_owners.get(uri)
        if upstream is None:
            for candidate, templates in await self._list_templates():
                if any(_fits(template.uri_template, uri) for template in templates):
                    upstream = candidate
                    break
        if upstream is None:
            raise MCPError(types.INVALID_PARAMS, f"no server here lists the resource {uri!r}")
        return upstream

    async def read_resource(
        self, ctx: ServerRequestContext[Any], params: types.ReadResourceRequestParams
    ) -> types.ReadResourceResult:
        caller = self.admitted(ctx)
        uri = str(params.uri)
        upstream = await self.owner(uri)
        session = _session(upstream)
        with anyio.fail_after(upstream.timeout_s):
            result = await session.read_resource(uri)
        if not isinstance(result, types.ReadResourceResult):
            raise MCPError(types.INTERNAL_ERROR, "the server asked for input; not supported here")
        await self._record(RESOURCE_READ_EVENT, caller, upstream, {"uri": uri}, result)
        return result

    async def subscribe(
        self, ctx: ServerRequestContext[Any], params: types.SubscribeRequestParams
    ) -> types.EmptyResult:
        """A handshake-era client watches ``params.uri``."""
        self.admitted(ctx)
        uri = str(params.uri)
        watching = self._watchers.get(uri)
        if watching is None:
            upstream = await self.owner(uri)
            await upstream.watch(uri)
            watching = self._watchers[uri] = (upstream, weakref.WeakSet())
        watching[1].add(connection_of(ctx.session))
        return types.EmptyResult()

    async def unsubscribe(
        self, ctx: ServerRequestContext[Any], params: types.UnsubscribeRequestParams
    ) -> types.EmptyResult:
        self.caller_of(ctx)
        uri = str(params.uri)
        watching = self._watchers.get(uri)
        if watching is not None:
            watching[1].discard(connection_of(ctx.session))
            await self._unwatch_if_unwatched(uri)
        return types.EmptyResult()

    async def watchers(self, upstream: Upstream, uri: str) -> list[Connection]:
        """The clients watching ``uri`` of ``upstream`` (a resource no client
        watches any more is unwatched: their connections ended without
        unsubscribing)."""
        watching = self._watchers.get(uri)
        if watching is None or watching[0] is not upstream:
            return []
        await self._unwatch_if_unwatched(uri)
        return list(watching[1])

    async def _unwatch_if_unwatched(self, uri: str) -> None:
        watching = self._watchers.get(uri)
        if watching is not None and not watching[1]:
            del self._watchers[uri]
            await watching[0].unwatch(uri)

    # -- prompts -----------------------------------------------------------------

    async def list_prompts(
        self, ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListPromptsResult:
        self.admitted(ctx)
        listed = await self._list_prompts()
        page, more = page_of(listed, attrgetter("name"), cursor_of(params), self.page_size)
        return types.ListPromptsResult(prompts=page, next_cursor=more)

    async def _list_prompts(self) -> list[types.Prompt]:
        by_server = [
            (upstream, await _listed(upstream, "prompts/list"))
            for upstream in self._connected(self._prompts)
        ]
        shared = shared_names([prompt.name for prompt in prompts] for _, prompts in by_server)
        owners: dict[str, tuple[Upstream, str]] = {}
        listed: list[types.Prompt] = []
        for upstream, prompts in by_server:
            for prompt in prompts:
                name = f"{upstream.name}.{prompt.name}" if prompt.name in shared else prompt.name
                if name not in owners:
                    owners[name] = (upstream, prompt.name)
                    listed.append(prompt.model_copy(update={"name": name}))
        self._prompt_owners = owners
        return listed

    async def get_prompt(
        self, ctx: ServerRequestContext[Any], params: types.GetPromptRequestParams
    ) -> types.GetPromptResult:
        caller = self.admitted(ctx)
        owner = self._prompt_owners.get(params.name)
        if owner is None:
            await self._list_prompts()
            owner = self._prompt_owners.get(params.name)
        if owner is None:
            raise MCPError(types.INVALID_PARAMS, f"no server here lists the prompt {params.name!r}")
        upstream, own_name = owner
        session = _session(upstream)
        with anyio.fail_after(upstream.timeout_s):
            result = await session.get_prompt(own_name, params.arguments)
        if not isinstance(result, types.GetPromptResult):
            raise MCPError(types.INTERNAL_ERROR, "the server asked for input; not supported here")
        await self._record(PROMPT_GET_EVENT, caller, upstream, {"prompt": params.name}, result)
        return result

    # -- shared ------------------------------------------------------------------

    def admitted(self, ctx: ServerRequestContext[Any]) -> Caller:
        """The caller, when its agent has an active release (else nothing passes)."""
        caller = self.caller_of(ctx)
        if self.runtime.releases.active(caller.agent) is None:
            reason = self.runtime.releases.unavailable_reason(caller.agent)
            raise MCPError(types.INVALID_REQUEST, f"denied: {reason}")
        self._note_session(caller, ctx.session)
        return caller

    @staticmethod
    def _connected(upstreams: list[Upstream]) -> list[Upstream]:
        return [upstream for upstream in upstreams if upstream.connected]

    async def _record(
        self,
        kind: str,
        caller: Caller,
        upstream: Upstream,
        what: dict[str, Any],
        result: types.ReadResourceResult | types.GetPromptResult,
    ) -> None:
        encoded = strict_dumps(result.model_dump(mode="json", by_alias=True, exclude_none=True))
        fields = {
            "caller": caller.id,
            "agent": caller.agent,
            "server": upstream.name,
            **what,
            "result_digest": str(sha256(encoded)),
            "result_bytes": len(encoded),
        }
        try:
            await self.runtime.record_before_release(kind, fields)
        except Exception as err:
            raise MCPError(
                types.INTERNAL_ERROR, "the evidence of this request could not be recorded; withheld"
            ) from err


async def _listed(upstream: Upstream, method: str) -> list[Any]:
    """Every item of one of ``upstream``'s listings, within its timeout."""
    session = _session(upstream)
    try:
        with anyio.fail_after(upstream.timeout_s):
            return await list_all(session, method)
    except GatewayError as err:
        raise MCPError(types.INTERNAL_ERROR, f"{upstream.name}: {err}") from err


def _fits(template: str, uri: str) -> bool:
    """Whether ``uri`` is an expansion of the URI template ``template`` (RFC
    6570), read loosely: each expression stands for any text (an undefined
    variable expands to nothing), and the server that serves it checks the
    rest. The literal parts are found in
    order, leftmost first (no backtracking: a server's template cannot make
    this slow)."""
    literals = re.split(r"\{[^{}]*\}", template)
    if len(literals) == 1:
        return uri == template
    first, *middle, last = literals
    if not uri.startswith(first) or not uri.endswith(last):
        return False
    position, end = len(first), len(uri) - len(last)
    for literal in middle:
        found = uri.find(literal, position, end)
        if found < 0:
            return False
        position = found + len(literal)
    return position <= end


def _session(upstream: Upstream) -> ClientSession:
    session = upstream.session
    if session is None:
        raise MCPError(types.INTERNAL_ERROR, f"the MCP server {upstream.name!r} is not connected")
    return session
