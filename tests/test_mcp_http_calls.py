"""The event streams of a Streamable HTTP server's answers, as the gateway
reads them (docs/mcp.md, "Streamable HTTP")."""

from __future__ import annotations

import pytest

pytest.importorskip("mcp")

import anyio
import httpx2

from vedette.mcp.http_calls import MAX_MESSAGE_BYTES, TooLong, server_sent_events


class Chunks(httpx2.AsyncByteStream):
    """A body that arrives in the given pieces."""

    def __init__(self, chunks: list[bytes]) -> None:
        self._chunks = chunks

    async def __aiter__(self):  # type: ignore[override]
        for chunk in self._chunks:
            yield chunk


def events(*chunks: bytes) -> list[bytes]:
    async def read() -> list[bytes]:
        response = httpx2.Response(200, stream=Chunks(list(chunks)))
        return [data async for data in server_sent_events(response)]

    return anyio.run(read)


def test_each_message_event_is_one_message_wherever_the_body_was_cut():
    body = (
        b"id: 1\r\nevent: message\r\ndata: \r\n\r\n"  # a priming event: no data
        b": a comment\n"
        b'event: message\ndata: {"a": 1}\n\n'
        b'data: {"b":\ndata:  2}\n\n'  # two data lines make one message
        b"event: other\ndata: skipped\n\n"
        b'data: {"c": 3}\n\n'
        b'data: {"d": 4}\n'  # the stream ended before the event did: not dispatched
    )
    expected = [b'{"a": 1}', b'{"b":\n 2}', b'{"c": 3}']
    assert events(body) == expected
    assert events(*[body[i : i + 7] for i in range(0, len(body), 7)]) == expected


def test_an_event_over_the_limit_fails_its_read():
    huge = b"data: " + b"x" * (MAX_MESSAGE_BYTES + 1) + b"\n\n"
    with pytest.raises(TooLong):
        events(huge[: len(huge) // 2], huge[len(huge) // 2 :])
