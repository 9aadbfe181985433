"""The client's side of ``vedette mcp``: JSON-RPC lines on standard input and
output, read and written on the event loop, with a short way for ``tools/call``.

The MCP SDK serves the session: ``initialize``, ``tools/list``, pings,
notifications, malformed input and every error it answers. Its own stdio
transport reads and writes through worker threads, and its request machinery
(dispatch, validation, middleware) costs more than the decision itself; so
once a session has been initialized on a handshake revision (2025-03-26 to
2025-11-25), a ``tools/call`` request takes a shorter way: it is read with
orjson, decided and sent upstream by :meth:`Gateway.call_raw` (the same
decision, evidence and errors as the SDK's way), and answered with the result
shaped for the session's revision by the SDK's own serializer. A session on
2026-07-28 stays on the SDK's way throughout. The SDK's client cannot tell the
two apart (``tests/test_mcp_gateway.py`` runs on both). A call on the short
way is also the channel for the upstream's sampling and elicitation requests
during it (:mod:`vedette.mcp.asks`): they are written here, and their answers
taken out of the client's lines before the SDK would see them.

While serving, descriptor 0 reads the null device and descriptor 1 writes to
standard error, so stray output (a library's ``print``) never reaches the wire.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
from collections.abc import AsyncIterator
from typing import Any

import orjson
from mcp import types
from mcp.shared.exceptions import MCPError
from mcp.types.methods import serialize_server_result
from mcp.types.version import HANDSHAKE_PROTOCOL_VERSIONS

from vedette.mcp.asks import Result
from vedette.mcp.gateway import Gateway
from vedette.runtime.identity import Caller

log = logging.getLogger("vedette.mcp")

# The longest line read from the client; a longer one is answered as malformed.
MAX_LINE_BYTES = 16 << 20
# JSON-RPC's code for a result the server could not shape (as the SDK answers it).
INTERNAL_ERROR = -32603
# The ids of the requests this wire sends the client (the SDK's are numbers).
ASK_ID_PREFIX = "vedette-ask-"
_ASK_ID_BYTES = ASK_ID_PREFIX.encode()


@contextlib.asynccontextmanager
async def claimed_stdio() -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    """Descriptors 0 and 1 as the wire, on the event loop. Raises ``ValueError``
    when they are not pipes, sockets or terminals (the caller then uses the
    SDK's transport)."""
    loop = asyncio.get_running_loop()
    wire_in, wire_out = os.dup(0), os.dup(1)
    reader = asyncio.StreamReader(limit=MAX_LINE_BYTES)
    try:
        read_pipe, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(wire_in, "rb", buffering=0)
        )
    except Exception:
        os.close(wire_in)
        os.close(wire_out)
        raise
    try:
        write_pipe, protocol = await loop.connect_write_pipe(
            asyncio.streams.FlowControlMixin, os.fdopen(wire_out, "wb", buffering=0)
        )
    except Exception:
        read_pipe.close()
        os.close(wire_out)
        raise
    writer = asyncio.StreamWriter(write_pipe, protocol, reader, loop)
    saved_in, saved_out = os.dup(0), os.dup(1)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    os.dup2(2, 1)
    try:
        yield reader, writer
    finally:
        os.dup2(saved_in, 0)
        os.dup2(saved_out, 1)
        os.close(saved_in)
        os.close(saved_out)
        read_pipe.close()
        write_pipe.close()


class Wire:
    """Standard input as the SDK's ``stdin`` (an async iterator of lines) and
    standard output as its ``stdout``; ``tools/call`` lines of an initialized
    handshake-era session are taken out and answered here."""

    def __init__(
        self,
        gateway: Gateway,
        caller: Caller,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        self._gateway = gateway
        self._caller = caller
        self._reader = reader
        self._writer = writer
        # The revision agreed at initialize (once the answer has gone out), and
        # the one in force once the client has said it is initialized.
        self._agreed: str | None = None
        self._era: str | None = None
        self._initialize_ids: set[Any] = set()
        self._capabilities: types.ClientCapabilities | None = None
        # Calls on the short way in flight, by request id, to cancel: plain
        # asyncio tasks (an anyio task group costs more than the call's own work).
        self._fast: dict[Any, asyncio.Task[None]] = {}
        # Requests sent to the client, waiting for its answer.
        self._asks: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._ask_ids = itertools.count(1)

    # -- the SDK's stdin --------------------------------------------------------

    def __aiter__(self) -> Wire:
        return self

    async def __anext__(self) -> str:
        while True:
            try:
                line = await self._reader.readline()
            except ValueError:  # longer than MAX_LINE_BYTES: the SDK refuses what it cannot read
                return "over the line limit\n"
            if not line:
                raise StopAsyncIteration
            if self._era is not None and b"tools/call" in line:
                request = _plain_call(line)
                if request is not None:
                    self._start(*request)
                    continue
            if b"notifications/" in line and self._taken(line):
                continue
            if _ASK_ID_BYTES in line and self._answered(line):
                continue
            if self._era is None and b"initialize" in line:
                self._note_initialize(line)
            return line.decode("utf-8", errors="replace")

    # -- the SDK's stdout -------------------------------------------------------

    async def write(self, text: str) -> None:
        if self._initialize_ids and "protocolVersion" in text:
            self._note_agreed(text)
        self._writer.write(text.encode())

    async def flush(self) -> None:
        await self._writer.drain()

    # -- the short way ------------------------------------------------------------

    def _start(self, request_id: Any, name: str, args: dict[str, Any]) -> None:
        task = asyncio.get_running_loop().create_task(self._answer(request_id, name, args))
        self._fast[request_id] = task

        def done(finished: asyncio.Task[None]) -> None:
            if self._fast.get(request_id) is finished:
                del self._fast[request_id]
            if not finished.cancelled() and finished.exception() is not None:
                log.error("tools/call %r failed: %s", request_id, finished.exception())

        task.add_done_callback(done)

    async def aclose(self) -> None:
        """Cancel the calls still on the short way (the client has gone)."""
        tasks = list(self._fast.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _answer(self, request_id: Any, name: str, args: dict[str, Any]) -> None:
        reply: dict[str, Any]
        try:
            result = await self._gateway.call_raw(self._caller, name, args, self)
            assert self._era is not None
            shaped = serialize_server_result("tools/call", self._era, result)
            reply = {"jsonrpc": "2.0", "id": request_id, "result": shaped}
        except asyncio.CancelledError:
            log.info("tools/call %r cancelled by the client", request_id)
            raise  # a cancelled request is not answered
        except MCPError as err:
            error: dict[str, Any] = {"code": err.code, "message": err.message}
            if err.data is not None:
                error["data"] = err.data
            reply = {"jsonrpc": "2.0", "id": request_id, "error": error}
        except Exception:  # ValidationError, mostly: answered, never left hanging
            log.exception("the upstream's result to %r could not be shaped", name)
            error = {"code": INTERNAL_ERROR, "message": "Handler returned an invalid result"}
            reply = {"jsonrpc": "2.0", "id": request_id, "error": error}
        self._writer.write(orjson.dumps(reply) + b"\n")
        await self._writer.drain()

    # -- requests to the client (an Asker of vedette.mcp.asks) -------------------

    def refusal(self) -> str | None:
        return None  # the short way serves handshake-era sessions only

    def capabilities(self) -> types.ClientCapabilities | None:
        return self._capabilities

    async def ask(self, request: Any, result_type: type[Result]) -> Result:
        request_id = f"{ASK_ID_PREFIX}{next(self._ask_ids)}"
        answer: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._asks[request_id] = answer
        try:
            message = request.model_dump(by_alias=True, mode="json", exclude_none=True)
            message.update(jsonrpc="2.0", id=request_id)
            self._writer.write(orjson.dumps(message) + b"\n")
            await self._writer.drain()
            reply = await answer
        finally:
            self._asks.pop(request_id, None)
        error = reply.get("error")
        if error is not None:
            if not isinstance(error, dict):
                raise MCPError(INTERNAL_ERROR, "the client answered a malformed error")
            code, text = error.get("code"), error.get("message")
            raise MCPError(
                code if isinstance(code, int) else INTERNAL_ERROR,
                str(text),
                error.get("data"),
            )
        return result_type.model_validate(reply.get("result"), by_name=False)

    def _answered(self, line: bytes) -> bool:
        """The client's answer to a request of this wire (taken: the SDK never
        sent it); an answer that comes too late is dropped."""
        try:
            message = orjson.loads(line)
        except orjson.JSONDecodeError:
            return False
        if not isinstance(message, dict) or "method" in message:
            return False
        request_id = message.get("id")
        if not isinstance(request_id, str) or not request_id.startswith(ASK_ID_PREFIX):
            return False
        waiting = self._asks.get(request_id)
        if waiting is not None and not waiting.done():
            waiting.set_result(message)
        return True

    def _taken(self, line: bytes) -> bool:
        """A notification this wire acts on itself: the client's
        ``initialized`` (noted, and passed on) or the cancellation of a call on
        the short way (taken)."""
        try:
            message = orjson.loads(line)
        except orjson.JSONDecodeError:
            return False
        if not isinstance(message, dict):
            return False
        method = message.get("method")
        if method == "notifications/initialized" and self._agreed is not None:
            self._era = self._agreed
            return False
        if method == "notifications/cancelled" and self._fast:
            params = message.get("params")
            task = self._fast.get(params.get("requestId")) if isinstance(params, dict) else None
            if task is not None:
                task.cancel()
                return True
        return False

    def _note_initialize(self, line: bytes) -> None:
        with contextlib.suppress(orjson.JSONDecodeError):
            message = orjson.loads(line)
            if isinstance(message, dict) and message.get("method") == "initialize":
                self._initialize_ids.add(_hashable(message.get("id")))
                params = message.get("params")
                declared = params.get("capabilities") if isinstance(params, dict) else None
                try:
                    self._capabilities = types.ClientCapabilities.model_validate(declared)
                except ValueError:  # the SDK answers a malformed initialize itself
                    self._capabilities = None

    def _note_agreed(self, text: str) -> None:
        with contextlib.suppress(orjson.JSONDecodeError):
            message = orjson.loads(text)
            if not isinstance(message, dict):
                return
            request_id = _hashable(message.get("id"))
            if request_id not in self._initialize_ids:
                return
            self._initialize_ids.discard(request_id)
            result = message.get("result")
            version = result.get("protocolVersion") if isinstance(result, dict) else None
            if version in HANDSHAKE_PROTOCOL_VERSIONS:
                self._agreed = version


def _plain_call(line: bytes) -> tuple[Any, str, dict[str, Any]] | None:
    """``(id, name, arguments)`` of a well-formed ``tools/call`` request with
    nothing else in it; ``None`` for anything else (the SDK handles it)."""
    try:
        message = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(message, dict) or message.keys() != {"jsonrpc", "id", "method", "params"}:
        return None
    request_id, params = message["id"], message["params"]
    if message["jsonrpc"] != "2.0" or message["method"] != "tools/call":
        return None
    if isinstance(request_id, bool) or not isinstance(request_id, int | str):
        return None
    if not isinstance(params, dict) or not set(params) <= {"name", "arguments"}:
        return None  # progress tokens and other _meta: the SDK's way
    name, args = params.get("name"), params.get("arguments", {})
    if not isinstance(name, str) or not isinstance(args, dict):
        return None
    return request_id, name, args


def _hashable(value: Any) -> Any:
    return value if isinstance(value, int | str) else repr(value)
