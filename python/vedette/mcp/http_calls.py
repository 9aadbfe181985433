"""The calls to a Streamable HTTP server, posted directly (docs/mcp.md,
"Streamable HTTP").

The MCP SDK's HTTP transport carries the session: ``initialize``, listings,
pings, the standing ``GET`` stream, and every message the session sends. Its
way of sending one message (a task per request, a memory stream each way,
validation of the message on the way out and of each event on the way in)
costs more than a call's decision; so the gateway's own ``tools/call``
requests (and their cancellations) are posted here, on the same HTTP client
and its pool of connections, with the headers the transport would send: the
session's id and protocol version. The answer, a JSON body or an event
stream, is read as it comes: each message in it goes to the upstream's
router (:meth:`Upstream._route`), which takes the call's answer and its
progress reports and hands anything else (a request of the server during the
call, a notification) to the SDK's session, as the transport would have.

A message longer than ``MAX_MESSAGE_BYTES``, a status other than 200 or 202,
or a broken connection answers the call with a JSON-RPC error; a 404 in a
session means the server has forgotten it, and the connection is made again.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio
import httpx2
import orjson
from anyio.abc import TaskGroup

# The longest message read from the server; a longer one fails its call.
MAX_MESSAGE_BYTES = 16 << 20
# How much longer than its call an answer is read (the call has failed by then).
ANSWER_GRACE_S = 1.0
# The JSON-RPC error a call gets when the server's answer does not come.
CONNECTION_LOST = -32000

SESSION_ID = "mcp-session-id"
PROTOCOL_VERSION = "mcp-protocol-version"

# Hands one JSON-RPC message (its text) to the upstream's router.
Route = Callable[[bytes], Awaitable[None]]


class TooLong(Exception):
    """A message of the server's over ``MAX_MESSAGE_BYTES``."""


class HttpCalls:
    """Posts the gateway's own requests to one server's endpoint."""

    def __init__(
        self,
        url: str,
        client: httpx2.AsyncClient,
        route: Route,
        tasks: TaskGroup,
        on_gone: Callable[[], None],
        timeout_s: float,
    ) -> None:
        """``timeout_s``: how long an answer is read; the call it answers has
        given up by then (its own time limit is the server's timeout)."""
        self._url = url
        self._timeout_s = timeout_s
        self._client = client
        self._route = route
        self._tasks = tasks
        self._on_gone = on_gone
        self.session_id: str | None = None
        self.protocol_version: str | None = None
        client.event_hooks["response"].append(self._note_session)

    async def _note_session(self, response: httpx2.Response) -> None:
        """The session's id, from the answer to ``initialize`` (the SDK's
        transport takes it from there too)."""
        session_id = response.headers.get(SESSION_ID)
        if session_id:
            self.session_id = session_id

    async def send(self, message: dict[str, Any]) -> None:
        """Post ``message``: a request's answer is read by a task of its own
        and routed; a notification is posted before this returns."""
        body = orjson.dumps(message)
        request_id = message.get("id")
        if "method" in message and request_id is not None:
            self._tasks.start_soon(self._post, body, request_id)
        else:
            await self._post(body, None)

    def _headers(self) -> dict[str, str]:
        headers = {
            "accept": "application/json, text/event-stream",
            "content-type": "application/json",
        }
        if self.session_id:
            headers[SESSION_ID] = self.session_id
        if self.protocol_version:
            headers[PROTOCOL_VERSION] = self.protocol_version
        return headers

    async def _post(self, body: bytes, request_id: Any) -> None:
        try:
            with anyio.move_on_after(self._timeout_s + ANSWER_GRACE_S):
                await self._exchange(body, request_id)
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            pass  # the connection has ended, and its calls failed with it
        except (httpx2.HTTPError, TooLong) as err:
            with contextlib.suppress(anyio.ClosedResourceError, anyio.BrokenResourceError):
                await self._fail(request_id, f"the server's answer did not come: {err!r}")

    async def _exchange(self, body: bytes, request_id: Any) -> None:
        async with self._client.stream(
            "POST", self._url, content=body, headers=self._headers()
        ) as response:
            await self._read(response, request_id)

    async def _read(self, response: httpx2.Response, request_id: Any) -> None:
        status = response.status_code
        if status == 202 and request_id is None:
            return  # a notification, accepted
        if status != 200:
            body = await response.aread()
            if status == 404 and self.session_id:
                self._on_gone()
            await self._fail(request_id, f"the server answered HTTP {status}", body)
            return
        kind = response.headers.get("content-type", "").lower()
        if kind.startswith("application/json"):
            await self._route(await _read_at_most(response))
        elif kind.startswith("text/event-stream"):
            async for data in server_sent_events(response):
                await self._route(data)
        else:
            await self._fail(request_id, f"the server answered {kind or 'no content type'}")

    async def _fail(self, request_id: Any, why: str, body: bytes = b"") -> None:
        """Answer the call ``request_id`` with the server's JSON-RPC error in
        ``body``, or else with ``why``."""
        if request_id is None:
            return
        error: Any = None
        try:
            parsed = orjson.loads(body) if body else None
        except orjson.JSONDecodeError:
            parsed = None
        if isinstance(parsed, dict) and isinstance(parsed.get("error"), dict):
            error = parsed["error"]
        if error is None:
            error = {"code": CONNECTION_LOST, "message": why}
        await self._route(orjson.dumps({"jsonrpc": "2.0", "id": request_id, "error": error}))


async def _read_at_most(response: httpx2.Response) -> bytes:
    body = bytearray()
    async for chunk in response.aiter_bytes():
        body += chunk
        if len(body) > MAX_MESSAGE_BYTES:
            raise TooLong(f"over {MAX_MESSAGE_BYTES} bytes")
    return bytes(body)


async def server_sent_events(response: httpx2.Response) -> AsyncIterator[bytes]:
    """The data of each ``message`` event of an event stream (an event without
    data, as a server's priming event, is skipped; a line ends at LF or CRLF);
    :class:`TooLong` for an event over ``MAX_MESSAGE_BYTES``."""
    data: list[bytes] = []
    size = 0
    kind = b"message"
    pending = b""
    async for chunk in response.aiter_bytes():
        pending += chunk
        *lines, pending = pending.split(b"\n")
        if len(pending) > MAX_MESSAGE_BYTES:
            raise TooLong(f"a line over {MAX_MESSAGE_BYTES} bytes")
        for line in lines:
            line = line.removesuffix(b"\r")
            if not line:
                message = b"\n".join(data)
                if message and kind == b"message":
                    yield message
                data, size, kind = [], 0, b"message"
                continue
            field, _, value = line.partition(b":")
            value = value.removeprefix(b" ")
            if field == b"data":
                size += len(value)
                if size > MAX_MESSAGE_BYTES:
                    raise TooLong(f"an event over {MAX_MESSAGE_BYTES} bytes")
                data.append(value)
            elif field == b"event":
                kind = value
    # An event the stream ended before finishing is not dispatched (as the
    # HTML standard reads event streams).
