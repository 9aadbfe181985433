"""Peer credentials on the Unix-socket listener.

The kernel reports the uid of the process at the other end of a Unix socket
(``SO_PEERCRED``); it cannot be forged by the client. This protocol reads it
once per connection and hands it to the app in the request scope's state, under
a key only this protocol sets, so a TCP request never carries one.
"""

from __future__ import annotations

import asyncio
import socket
import struct

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

PEER_UID = "vedette.peer_uid"
_UCRED = struct.Struct("3i")  # pid, uid, gid


def peer_uid(sock: socket.socket | None) -> int | None:
    if sock is None or sock.family != socket.AF_UNIX or not hasattr(socket, "SO_PEERCRED"):
        return None
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
    except OSError:
        return None
    _, uid, _ = _UCRED.unpack(raw)
    return int(uid)


class PeerCredentialsProtocol(HttpToolsProtocol):
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.peer_uid = peer_uid(transport.get_extra_info("socket"))

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.scope["state"][PEER_UID] = self.peer_uid
