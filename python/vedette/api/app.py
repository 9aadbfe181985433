"""Routes of the adapter listener."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from vedette.api.openapi import OPENAPI
from vedette.runtime.decision import Decision
from vedette.runtime.identity import Unauthenticated
from vedette.runtime.interceptor import Runtime, retry_after_header


def create_app(runtime: Runtime) -> Starlette:
    limit = runtime.config.listen.max_body_bytes

    async def tool_call(request: Request) -> Response:
        try:
            caller = runtime.authenticate(request.headers.get("authorization"))
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
        ]
    )


def _respond(decision: Decision) -> JSONResponse:
    headers = {}
    if decision.outcome == "over_quota":
        headers["Retry-After"] = retry_after_header(decision.retry_after_s)
    if decision.outcome == "unauthenticated":
        headers["WWW-Authenticate"] = "Bearer"
    return JSONResponse(decision.body(), status_code=decision.status, headers=headers)
