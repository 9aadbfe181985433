"""Routes of the adapter listener: ``POST /v1/tool``, ``GET /v1/health`` and
``GET /openapi.json``, and ``/mcp`` when MCP servers are configured (the MCP
gateway, python/vedette/mcp/http.py), and nothing else (INV-10). Status,
metrics and every operator action are on the operator listener
(api/operator.py)."""

from __future__ import annotations

import logging
import math
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from vedette.api.openapi import OPENAPI
from vedette.api.peer import PEER_UID
from vedette.runtime.decision import Decision, deny_body
from vedette.runtime.identity import Caller, Unauthenticated
from vedette.runtime.interceptor import Runtime

log = logging.getLogger("vedette.api")

INTERNAL_ERROR = deny_body("internal error; denied")
# The MCP gateway's endpoint (docs/mcp.md, "Over HTTP").
MCP_PATH = "/mcp"


def health_response(runtime: Runtime) -> Response:
    """``/v1/health``: 200 for ok and degraded, 503 for failing (runtime/health.py)."""
    report = runtime.health()
    return JSONResponse(report, status_code=503 if report["status"] == "failing" else 200)


def create_app(runtime: Runtime, *, lifespan: Any = None, mcp: ASGIApp | None = None) -> ASGIApp:
    """The adapter listener's app; ``mcp`` serves ``/mcp`` (every method) when given."""

    async def health(request: Request) -> Response:
        return health_response(runtime)

    async def openapi(request: Request) -> Response:
        return JSONResponse(OPENAPI)

    tool = ToolEndpoint(runtime)
    routes = Starlette(
        routes=[
            Route("/v1/tool", tool, methods=["POST"]),
            Route("/v1/health", health, methods=["GET"]),
            Route("/openapi.json", openapi, methods=["GET"]),
        ],
        lifespan=lifespan,
        exception_handlers={Exception: _unexpected},
    )
    # No redirect to the path with or without a trailing slash: its Location
    # would be built from the request's own Host header.
    routes.router.redirect_slashes = False
    return ToolFirst(tool, routes, mcp)


class ToolFirst:
    """Sends ``POST /v1/tool`` straight to its endpoint and everything else
    (other routes, other methods, lifespan) through the Starlette app.

    The tool route is the hot one, and the router and its middleware cost
    as much as the endpoint's own Python. What they add there, a deny
    instead of a 500 for anything that escapes, the endpoint does itself.
    """

    def __init__(self, tool: ToolEndpoint, routes: Starlette, mcp: ASGIApp | None) -> None:
        self.tool = tool
        self.routes = routes
        self.mcp = mcp

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != "/v1/tool" or scope["method"] != "POST":
            if self.mcp is not None and scope["type"] == "http" and scope["path"] == MCP_PATH:
                await self.mcp(scope, receive, send)
                return
            await self.routes(scope, receive, send)
            return
        await self.tool(scope, receive, send)


class ToolEndpoint:
    """``POST /v1/tool`` as a plain ASGI app.

    It is the one hot route: reading the few headers it needs straight from
    the scope and sending pre-encoded bytes skips the Request/Response objects
    and their wrappers, a sizeable share of a call's cost. Anything that
    escapes before the answer is sent is answered with a deny, never a 500.
    """

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.limit = runtime.config.listen.max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            decision = await self._decide(scope, receive)
        except Exception:
            # Nothing is sent yet: answer a deny, never a bare 500.
            log.exception("unexpected failure serving /v1/tool")
            await _send_body(send, 403, INTERNAL_ERROR, [])
            return
        if decision is not None:
            await _send(send, decision)

    async def _decide(self, scope: Scope, receive: Receive) -> Decision | None:
        runtime, limit = self.runtime, self.limit
        authorization = declared = None
        authorizations = 0
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value.decode("latin-1")
                authorizations += 1
            elif name == b"content-length":
                declared = value
        try:
            if authorizations > 1:
                # Which one would a proxy in front have checked? Neither wins.
                raise Unauthenticated("more than one Authorization header")
            caller = self._caller(scope, authorization)
        except Unauthenticated as err:
            return await runtime.unauthenticated(str(err), _source(scope))
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            return await runtime.invalid(caller, f"body over the {limit}-byte limit")
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None  # nobody is left to answer; nothing was decided
            body += message.get("body", b"")
            if len(body) > limit:
                return await runtime.invalid(caller, f"body over the {limit}-byte limit")
            if not message.get("more_body", False):
                break
        return await runtime.handle_body(caller, bytes(body))

    def _caller(self, scope: Scope, authorization: str | None) -> Caller:
        # On the Unix-socket listener a mapped peer uid identifies the caller;
        # otherwise (and on TCP, where no uid is ever set) the bearer token does.
        uid = scope.get("state", {}).get(PEER_UID)
        if uid is not None:
            try:
                return self.runtime.callers.from_uid(uid)
            except Unauthenticated:
                pass
        return self.runtime.authenticate(authorization)


def retry_after_header(seconds: float | None) -> str:
    """``Retry-After`` in whole seconds, at least 1 (RFC 9110 has no fractions)."""
    return str(max(1, math.ceil(seconds or 0)))


def _source(scope: Scope) -> str:
    """The address a request came from (the Unix socket has none)."""
    client = scope.get("client")
    return str(client[0]) if client else "unix-socket"


async def _send(send: Send, decision: Decision) -> None:
    headers = []
    if decision.outcome == "over_quota":
        headers.append((b"retry-after", retry_after_header(decision.retry_after_s).encode()))
    if decision.outcome == "unauthenticated":
        headers.append((b"www-authenticate", b"Bearer"))
    await _send_body(send, decision.status, decision.body_bytes(), headers)


async def _send_body(
    send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]
) -> None:
    headers += [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _unexpected(request: Request, exc: Exception) -> Response:
    """Whatever escapes a route is a deny, never a bare 500 an adapter might misread."""
    log.exception("unexpected failure serving %s", request.url.path, exc_info=exc)
    return Response(INTERNAL_ERROR, status_code=403, media_type="application/json")
