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
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import anyio
from mcp import types
from mcp.client.session import ClientSession
from mcp.server.context import ServerRequestContext
from mcp.shared.exceptions import MCPError

from vedette.hashing import sha256
from vedette.mcp.errors import GatewayError
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


class Passthrough:
    """The resources and prompts handlers of the gateway's server."""

    def __init__(self, runtime: Runtime, upstreams: list[Upstream], caller_of: CallerOf) -> None:
        self.runtime = runtime
        self.caller_of = caller_of
        self._resources = [upstream for upstream in upstreams if upstream.resources]
        self._prompts = [upstream for upstream in upstreams if upstream.prompts]
        # From the last listings: a resource's URI -> its server; the name a
        # client asks for -> (its server, the server's own name).
        self._resource_owners: dict[str, Upstream] = {}
        self._prompt_owners: dict[str, tuple[Upstream, str]] = {}

    def handlers(self) -> dict[str, Any]:
        """The ``Server`` handlers to register: none unless a server allows."""
        found: dict[str, Any] = {}
        if self._resources:
            found["on_list_resources"] = self.list_resources
            found["on_list_resource_templates"] = self.list_resource_templates
            found["on_read_resource"] = self.read_resource
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
        self._admitted(ctx)
        return types.ListResourcesResult(resources=await self._list_resources())

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
        self._admitted(ctx)
        templates: list[types.ResourceTemplate] = []
        for upstream in self._connected(self._resources):
            templates += await _listed(upstream, "resources/templates/list")
        return types.ListResourceTemplatesResult(resource_templates=templates)

    async def read_resource(
        self, ctx: ServerRequestContext[Any], params: types.ReadResourceRequestParams
    ) -> types.ReadResourceResult:
        caller = self._admitted(ctx)
        uri = str(params.uri)
        upstream = self._resource_owners.get(uri)
        if upstream is None:
            await self._list_resources()
            upstream = self._resource_owners.get(uri)
        if upstream is None and len(self._resources) == 1:
            upstream = self._resources[0]  # a URI of one of its templates
        if upstream is None:
            raise MCPError(types.INVALID_PARAMS, f"no server here lists the resource {uri!r}")
        session = _session(upstream)
        with anyio.fail_after(upstream.timeout_s):
            result = await session.read_resource(uri)
        if not isinstance(result, types.ReadResourceResult):
            raise MCPError(types.INTERNAL_ERROR, "the server asked for input; not supported here")
        await self._record(RESOURCE_READ_EVENT, caller, upstream, {"uri": uri}, result)
        return result

    # -- prompts -----------------------------------------------------------------

    async def list_prompts(
        self, ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListPromptsResult:
        self._admitted(ctx)
        return types.ListPromptsResult(prompts=await self._list_prompts())

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
        caller = self._admitted(ctx)
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

    def _admitted(self, ctx: ServerRequestContext[Any]) -> Caller:
        """The caller, when its agent has an active release (else nothing passes)."""
        caller = self.caller_of(ctx)
        if self.runtime.releases.active(caller.agent) is None:
            reason = self.runtime.releases.unavailable_reason(caller.agent)
            raise MCPError(types.INVALID_REQUEST, f"denied: {reason}")
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


def _session(upstream: Upstream) -> ClientSession:
    session = upstream.session
    if session is None:
        raise MCPError(types.INTERNAL_ERROR, f"the MCP server {upstream.name!r} is not connected")
    return session
