"""``POST /v1/tool`` over loopback: a small load generator.

``connections`` keep-alive connections, each writing a raw HTTP/1.1 request and
reading the whole answer before the next (closed loop), on one asyncio event
loop (uvloop when installed). The generator runs on the same device as the
server and takes CPU from it: on a board with few cores the figure is what the
server does while sharing them, a lower bound of what it does alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import Counter
from dataclasses import dataclass, field

from vedette import event_loop
from vedette.benchmark.common import BenchError, Metric, percentile

BODY = json.dumps({"tool": "echo", "args": {"text": "hello"}}).encode()
CONNECT_TIMEOUT_S = 10.0
# A run (or the warm-up answer) late by more than this is a failure, not a slow sample.
ANSWER_TIMEOUT_S = 30.0


@dataclass
class LoadResult:
    seconds: float
    latencies: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)

    @property
    def requests(self) -> int:
        return len(self.latencies)


def request_bytes(host: str, port: int, token: str) -> bytes:
    head = (
        f"POST /v1/tool HTTP/1.1\r\n"
        f"Host: {host}:{port}\r\n"
        f"Authorization: Bearer {token}\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(BODY)}\r\n"
        "\r\n"
    )
    return head.encode() + BODY


async def read_answer(reader: asyncio.StreamReader) -> int:
    """Read one whole HTTP/1.1 answer (``Content-Length`` or chunked); its status."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status_line = lines[0].split(b" ", 2)
    if len(status_line) < 2 or not status_line[1].isdigit():
        raise BenchError(f"not an HTTP answer: {lines[0][:80]!r}")
    length: int | None = None
    chunked = False
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value.strip())
        elif name == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
    if chunked:
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0].strip(), 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    elif length is not None:
        await reader.readexactly(length)
    else:
        raise BenchError("an answer without Content-Length (the connection cannot be kept)")
    return int(status_line[1])


async def _load(host: str, port: int, token: str, seconds: float, connections: int) -> LoadResult:
    request = request_bytes(host, port, token)
    streams: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    try:
        for _ in range(connections):
            streams.append(
                await asyncio.wait_for(asyncio.open_connection(host, port), CONNECT_TIMEOUT_S)
            )
        # One request on each connection before the clock starts.
        for reader, writer in streams:
            writer.write(request)
            await asyncio.wait_for(read_answer(reader), ANSWER_TIMEOUT_S)
        began = time.perf_counter()
        deadline = began + seconds
        result = LoadResult(seconds)

        async def drive(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                writer.write(request)
                status = await read_answer(reader)
                result.latencies.append(time.perf_counter() - started)
                result.statuses[status] += 1

        # One watchdog for the whole run, not one per request (that would cost
        # the generator a task per request, CPU the server would not get).
        await asyncio.wait_for(
            asyncio.gather(*(drive(reader, writer) for reader, writer in streams)),
            seconds + ANSWER_TIMEOUT_S,
        )
        result.seconds = time.perf_counter() - began
        return result
    finally:
        for _, writer in streams:
            writer.close()
        for _, writer in streams:
            with contextlib.suppress(OSError, asyncio.TimeoutError):
                await asyncio.wait_for(writer.wait_closed(), 1.0)


def measure(host: str, port: int, token: str, seconds: float, connections: int) -> list[Metric]:
    try:
        result = event_loop.run(_load(host, port, token, seconds, connections))
    except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError) as err:
        raise BenchError(f"POST /v1/tool load: {err!r}") from err
    if result.requests == 0:
        raise BenchError("POST /v1/tool load: no answer in the measured time")
    others = {status: n for status, n in result.statuses.items() if not 200 <= status < 300}
    if others:
        counts = ", ".join(f"{status}: {n}" for status, n in sorted(others.items()))
        raise BenchError(f"POST /v1/tool load: answers other than 2xx ({counts})")
    detail = f"{result.requests} requests, {connections} keep-alive connections"
    return [
        Metric("http.rps", "POST /v1/tool over loopback", result.requests / result.seconds,
               "requests/s", "higher", detail),
        Metric("http.p99_ms", "POST /v1/tool p99", percentile(result.latencies, 0.99) * 1e3,
               "ms", "lower", detail),
    ]  # fmt: skip
