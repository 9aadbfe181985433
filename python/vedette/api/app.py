"""Routes of the adapter listener."""

from __future__ import annotations

import logging
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from vedette.api.openapi import OPENAPI
from vedette.api.peer import PEER_UID
from vedette.runtime.decision import Decision
from vedette.runtime.identity import Caller, Unauthenticated
from vedette.runtime.interceptor import Runtime, retry_after_header

log = logging.getLogger("vedette.api")


def create_app(runtime: Runtime, *, lifespan: Any = None) -> Starlette:
    limit = runtime.config.listen.max_body_bytes

    async def tool_call(request: Request) -> Response:
        try:
            caller = _caller(request)
        except Unauthenticated as err:
            return _respond(await runtime.unauthenticated(str(err)))
        declared = request.headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            return _respond(await runtime.invalid(caller, f"body over the {limit}-byte limit"))
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                return _respond(await runtime.invalid(caller, f"body over the {limit}-byte limit"))
        return _respond(await runtime.handle_body(caller, bytes(body)))

    def _caller(request: Request) -> Caller:
        # On the Unix-socket listener a mapped peer uid identifies the caller;
        # otherwise (and on TCP, where no uid is ever set) the bearer token does.
        uid = request.scope.get("state", {}).get(PEER_UID)
        if uid is not None:
            try:
                return runtime.callers.from_uid(uid)
            except Unauthenticated:
                pass
        return runtime.authenticate(request.headers.get("authorization"))

    async def health(request: Request) -> Response:
        report = runtime.health()
        return JSONResponse(report, status_code=200 if report["status"] == "ok" else 503)

    async def status(request: Request) -> Response:
        return JSONResponse(runtime.status())

    async def metrics(request: Request) -> Response:
        return Response(runtime.metrics.render(), media_type="text/plain; version=0.0.4")

    async def openapi(request: Request) -> Response:
        return JSONResponse(OPENAPI)

    return Starlette(
        routes=[
            Route("/v1/tool", tool_call, methods=["POST"]),
            Route("/v1/health", health, methods=["GET"]),
            Route("/v1/status", status, methods=["GET"]),
            Route("/metrics", metrics, methods=["GET"]),
            Route("/openapi.json", openapi, methods=["GET"]),
        ],
        lifespan=lifespan,
        exception_handlers={Exception: _unexpected},
    )


async def _unexpected(request: Request, exc: Exception) -> Response:
    """Whatever escapes a route is a deny, never a bare 500 an adapter might misread."""
    log.exception("unexpected failure serving %s", request.url.path, exc_info=exc)
    return JSONResponse({"decision": "deny", "reason": "internal error; denied"}, status_code=403)


def _respond(decision: Decision) -> Response:
    headers = {}
    if decision.outcome == "over_quota":
        headers["Retry-After"] = retry_after_header(decision.retry_after_s)
    if decision.outcome == "unauthenticated":
        headers["WWW-Authenticate"] = "Bearer"
    return Response(
        decision.body_bytes(),
        status_code=decision.status,
        headers=headers,
        media_type="application/json",
    )
