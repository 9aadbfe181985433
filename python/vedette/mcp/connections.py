"""The clients' connections, to tell them of changes after the request that
made them known has ended (docs/mcp.md, "Tool pinning" and "Resources and
prompts").

The MCP SDK hands each request a ``ServerSession`` of its own, gone with the
request; the ``Connection`` behind it lives as long as the client's
connection (the stdio pipe, or an HTTP session), and its outbound channel
reaches the client outside any request. Connections are held weakly: one that
has ended is forgotten with it.
"""

from __future__ import annotations

import weakref

from mcp import types
from mcp.server.connection import Connection
from mcp.server.session import ServerSession
from mcp.types.version import HANDSHAKE_PROTOCOL_VERSIONS

Connections = weakref.WeakSet[Connection]


def connection_of(session: ServerSession) -> Connection:
    """The connection a request's session belongs to (the SDK keeps it private)."""
    connection: Connection = session._connection
    return connection


def in_handshake_era(connection: Connection) -> bool:
    """Whether the client hears of changes as notifications on its
    connection (a 2026-07-28 client hears of them on its listen streams)."""
    return connection.protocol_version in HANDSHAKE_PROTOCOL_VERSIONS


async def notify(connection: Connection, notification: types.ServerNotification) -> None:
    """Send ``notification`` on the connection's own channel."""
    data = notification.model_dump(by_alias=True, mode="json", exclude_none=True)
    await connection.outbound.notify(data["method"], data.get("params"))
