"""The operator listener: what the node's operator may ask of a running node.

Adapters reach only the decision path (INV-10, docs/threat-model.md). What an
operator needs from a running node — status, metrics, and actions on the
evidence store the node holds (only the process that holds the store may
change it: INV-01) — is served apart from the adapter listener:

- on a Unix socket, ``<state_dir>/operator.sock`` by default, created mode
  0600 in the state folder (0700); every connection's peer uid
  (``SO_PEERCRED``, which the client cannot forge) must be the node's own
  user or root;
- and, where a metrics scraper needs TCP, on a loopback port
  (``operator.listen``) that admits only the operator's bearer token
  (``operator.token_sha256``; adapter tokens are never accepted). It never
  leaves the node: an operator elsewhere comes over ssh.

Routes: ``GET /v1/health``, ``GET /v1/status``, ``GET /metrics``,
``POST /v1/store/drain`` (``{"to": folder, "label": …, "all": false}``, see
:mod:`vedette.drain`) and ``POST /v1/store/import`` (``{"from": folder}``).
"""

from __future__ import annotations

import asyncio
import hmac
import os
import socket
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from vedette.api.app import health_response
from vedette.api.peer import PEER_UID
from vedette.config import token_digest
from vedette.drain import DrainError, drain, import_drained
from vedette.errors import StoreError
from vedette.hashing import Digest
from vedette.runtime.interceptor import Runtime


def operator_socket(path: Path) -> socket.socket:
    """A listening Unix socket at ``path`` that only its owner can connect to."""
    if path.is_socket():
        path.unlink()  # left behind by a node that stopped without cleaning up
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    previous = os.umask(0o177)
    try:
        sock.bind(str(path))
    except BaseException:
        sock.close()
        raise
    finally:
        os.umask(previous)
    os.chmod(path, 0o600)
    sock.listen(16)
    return sock


def create_operator_app(runtime: Runtime, *, token_sha256: Digest | None = None) -> ASGIApp:
    """The operator routes: for the Unix socket (the node's own user only), or,
    with ``token_sha256``, for the loopback port (that bearer token only)."""
    app = _operator_routes(runtime)
    return OwnerOnly(app) if token_sha256 is None else OperatorTokenOnly(app, token_sha256)


def _operator_routes(runtime: Runtime) -> ASGIApp:
    # One store action at a time: two drains at once would copy the same segments.
    store_action = asyncio.Lock()

    async def health(request: Request) -> Response:
        return health_response(runtime)

    async def status(request: Request) -> Response:
        return JSONResponse(runtime.status())

    async def metrics(request: Request) -> Response:
        return Response(runtime.metrics.render(), media_type="text/plain; version=0.0.4")

    async def drain_route(request: Request) -> Response:
        body = await _json_object(request)
        folder, label = body.get("to"), body.get("label")
        if not isinstance(folder, str) or not folder.startswith("/") or not isinstance(label, str):
            return _refuse(400, "expected {'to': an absolute folder, 'label': text}")
        include = bool(body.get("all", False))
        async with store_action:
            try:
                report = await asyncio.to_thread(
                    drain, runtime.store, Path(folder), label, include_acknowledged=include
                )
            except StoreError as err:
                status = 400 if isinstance(err, DrainError) and "label" in str(err) else 500
                return _refuse(status, str(err))
        return JSONResponse(report.as_dict())

    async def import_route(request: Request) -> Response:
        body = await _json_object(request)
        folder = body.get("from")
        if not isinstance(folder, str) or not folder.startswith("/"):
            return _refuse(400, "expected {'from': an absolute folder}")
        async with store_action:
            result = await asyncio.to_thread(import_drained, runtime.store, Path(folder))
        return JSONResponse(result)

    app = Starlette(
        routes=[
            Route("/v1/health", health, methods=["GET"]),
            Route("/v1/status", status, methods=["GET"]),
            Route("/metrics", metrics, methods=["GET"]),
            Route("/v1/store/drain", drain_route, methods=["POST"]),
            Route("/v1/store/import", import_route, methods=["POST"]),
        ]
    )
    app.router.redirect_slashes = False
    return app


class OwnerOnly:
    """Refuses every request whose peer is not the node's own user or root."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.allowed = {os.geteuid(), 0}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope.get("state", {}).get(PEER_UID) not in self.allowed:
            await _refuse(403, "the operator socket serves the node's own user only")(
                scope, receive, send
            )
            return
        await self.app(scope, receive, send)


class OperatorTokenOnly:
    """Refuses every request without the operator's bearer token. The token is
    compared as its SHA-256, in constant time; only its digest is held."""

    def __init__(self, app: ASGIApp, token_sha256: Digest) -> None:
        self.app = app
        self.expected = token_sha256.raw

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not self._admits(scope):
            refusal = _refuse(401, "the operator listener needs the operator's bearer token")
            refusal.headers["www-authenticate"] = "Bearer"
            await refusal(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _admits(self, scope: Scope) -> bool:
        for name, value in scope.get("headers", ()):
            if name == b"authorization":
                scheme, _, token = value.decode("latin-1").strip().partition(" ")
                if scheme.lower() != "bearer" or not token.strip():
                    return False
                return hmac.compare_digest(token_digest(token.strip()).raw, self.expected)
        return False


async def _json_object(request: Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _refuse(status: int, reason: str) -> JSONResponse:
    return JSONResponse({"error": reason}, status_code=status)
