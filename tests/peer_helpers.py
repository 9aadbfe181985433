"""Shared helpers for the peer transport tests: stores, services, waiting."""

from __future__ import annotations

import socket
import ssl
import struct
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from peer_pki import OpensslCa

from vedette.peers.service import PeerService
from vedette.store import SegmentStore

# Generous: these bound how long a broken build takes to fail, not how fast it must be.
WAIT_S = 60.0


def wait_until(what: str, done: Callable[[], bool], timeout: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def open_store(path: Path, node: str, ceiling: int = 8 << 20) -> SegmentStore:
    return SegmentStore.open(path, ceiling, node, segment_max_bytes=16 << 10)


def fill(store: SegmentStore, segments: int, record: bytes = b"evidence") -> None:
    for i in range(segments):
        store.append(record + b" %d" % i)
        store.seal()


def frontiers(store: SegmentStore) -> dict[str, int]:
    """Per origin, the number of sealed segments held from 0 without a gap."""
    out: dict[str, int] = {}
    seqs: dict[str, set[int]] = {}
    for s in store.segments():
        if s.sealed:
            seqs.setdefault(s.origin, set()).add(s.seq)
    for origin, held in seqs.items():
        n = 0
        while n in held:
            n += 1
        out[origin] = n
    return out


FAST: dict[str, Any] = {
    "sync_interval_s": 0.05,
    "retry_base_s": 0.02,
    "retry_cap_s": 0.2,
    "retry_budget": 100,
    "retry_window_s": 10.0,
    "handshake_timeout_s": 5.0,
}


def service(store: SegmentStore, ca: OpensslCa, node: str, **limits: Any) -> PeerService:
    return PeerService(store, **ca.files(node), **{**FAST, **limits})  # type: ignore[arg-type]


def client_context(ca: OpensslCa, node: str | None) -> ssl.SSLContext:
    """A plain Python TLS client (the standard library's), as a peer would connect."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.check_hostname = False
    ctx.load_verify_locations(ca.ca)
    if node is not None:
        ctx.load_cert_chain(ca.dir / f"{node}.crt", ca.dir / f"{node}.key")
    return ctx


def tls_connect(ctx: ssl.SSLContext, addr: str) -> ssl.SSLSocket:
    host, port = addr.rsplit(":", 1)
    raw = socket.create_connection((host, int(port)), timeout=WAIT_S)
    return ctx.wrap_socket(raw, server_hostname=None)


def s_client(addr: str, ca: OpensslCa, node: str | None, send: bytes = b"") -> bytes:
    """Runs ``openssl s_client`` (an independent TLS client) as ``node``, its
    certificate and key from ``ca``'s directory; returns the application bytes
    it received before the other side closed."""
    args = ["openssl", "s_client", "-connect", addr, "-tls1_3", "-quiet", "-ign_eof"]
    args += ["-CAfile", str(ca.ca)]
    if node is not None:
        args += ["-cert", str(ca.dir / f"{node}.crt"), "-key", str(ca.dir / f"{node}.key")]
    done = subprocess.run(args, input=send, capture_output=True, timeout=60)
    return done.stdout


def frame(body: bytes) -> bytes:
    return struct.pack("<I", len(body)) + body


def hello(frontiers: list[tuple[str, int]] = (), accept_rate: int = 0, version: int = 2) -> bytes:  # type: ignore[assignment]
    body = bytes([1]) + struct.pack("<HQH", version, accept_rate, len(frontiers))
    for origin, nxt in frontiers:
        body += bytes([len(origin)]) + origin.encode() + struct.pack("<Q", nxt)
    return frame(body)


def read_all(sock: ssl.SSLSocket) -> bytes:
    """Everything the other side sends until it closes the connection."""
    out = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except (ssl.SSLError, ConnectionResetError, OSError):
            return out
        if not chunk:
            return out
        out += chunk


def parse_frames(data: bytes) -> list[int]:
    """The frame types in ``data``."""
    return [body[0] for body in frame_bodies(data)]


def frame_bodies(data: bytes) -> list[bytes]:
    """The whole frame bodies in ``data`` (a cut-off last frame is left out)."""
    bodies = []
    while len(data) >= 5:
        (n,) = struct.unpack("<I", data[:4])
        if len(data) < 4 + n:
            break
        bodies.append(data[4 : 4 + n])
        data = data[4 + n :]
    return bodies
