"""``/mcp`` on the adapter listener: the gateway over Streamable HTTP, for
many clients at once, in front of the ``[[mcp.servers]]`` (docs/mcp.md).

Every request is authenticated as ``POST /v1/tool`` is (a bearer token, or
the mapped uid on the Unix socket) before the MCP SDK sees a byte of it; the
caller it names is the caller of every ``tools/call`` in it, and an MCP
session belongs to the caller that opened it (another caller's request for
it is answered as if it did not exist). A request without a valid token is
refused with 401 and recorded, as on ``/v1/tool``. Both protocol eras are
served: the handshake revisions with sessions, and 2026-07-28's single
exchanges; the SDK negotiates the revision with each client.

This module imports the MCP SDK; the serve command imports it only when
``[[mcp.servers]]`` is configured.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import anyio
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken
from mcp.server.context import ServerRequestContext
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from starlette.types import Receive, Scope, Send

from vedette.config import Config
from vedette.mcp.gateway import Gateway
from vedette.mcp.upstream import Upstream
from vedette.runtime.identity import Caller, Unauthenticated
from vedette.runtime.interceptor import Runtime

log = logging.getLogger("vedette.mcp")

# Where the authenticated caller travels with the request, for the handlers.
CALLER = "vedette.caller"


def caller_of_request(ctx: ServerRequestContext[Any]) -> Caller:
    """The caller the endpoint authenticated for the request being served."""
    request = ctx.request
    caller = request.scope.get("state", {}).get(CALLER) if request is not None else None
    if not isinstance(caller, Caller):
        raise Unauthenticated("no authenticated caller for this MCP request")
    return caller


class McpEndpoint:
    """The ASGI app of ``/mcp``; :meth:`running` keeps the upstreams connected
    and the SDK's session manager running for as long as the listener serves."""

    def __init__(self, runtime: Runtime, config: Config, uid_key: str) -> None:
        self.runtime = runtime
        self._uid_key = uid_key
        upstreams = [
            Upstream(
                server.name,
                command=[server.command, *server.args] if server.command else None,
                url=server.url,
                headers=server.http_headers(),
                env=dict(server.env),
                timeout_s=server.timeout_s,
                resources=server.resources,
                prompts=server.prompts,
                sampling=server.sampling,
                elicitation=server.elicitation,
            )
            for server in config.mcp.servers
        ]
        agents = sorted({caller.agent for caller in config.callers})
        self.gateway = Gateway(runtime, upstreams, caller_of_request, agents, config.mcp.page_size)
        self._sessions = StreamableHTTPSessionManager(
            app=self.gateway.server(),
            max_request_body_size=config.listen.max_body_bytes,
            session_idle_timeout=config.mcp.session_idle_s,
            max_sessions=config.mcp.max_sessions,
        )
        runtime.add_status_source("mcp", self.gateway.status)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        async with anyio.create_task_group() as tasks:
            await tasks.start(self.gateway.run_upstreams)
            async with self._sessions.run():
                yield
            tasks.cancel_scope.cancel()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            caller = self._authenticate(scope)
        except Unauthenticated as err:
            client = scope.get("client")
            source = str(client[0]) if client else "unix-socket"
            await self.runtime.unauthenticated(str(err), source)
            await _refuse(send, 401, str(err))
            return
        scope.setdefault("state", {})[CALLER] = caller
        # The SDK binds each session to the principal that opened it.
        token = AccessToken(token="-", client_id=caller.id, scopes=[])
        scope["user"] = AuthenticatedUser(token)
        await self._sessions.handle_request(scope, receive, send)

    def _authenticate(self, scope: Scope) -> Caller:
        authorizations = [
            value.decode("latin-1") for name, value in scope["headers"] if name == b"authorization"
        ]
        if len(authorizations) > 1:
            raise Unauthenticated("more than one Authorization header")
        uid = scope.get("state", {}).get(self._uid_key)
        if uid is not None:
            with contextlib.suppress(Unauthenticated):
                return self.runtime.callers.from_uid(uid)
        return self.runtime.authenticate(authorizations[0] if authorizations else None)


async def _refuse(send: Send, status: int, message: str) -> None:
    body = json.dumps(
        {"jsonrpc": "2.0", "id": None, "error": {"code": -32600, "message": message}}
    ).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", b"%d" % len(body)),
        (b"www-authenticate", b"Bearer"),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
