"""Beacon: UDP announcements that tell neighbours where this node can be dialled.

A beacon is unauthenticated by design: receiving one only adds a *dial
candidate*; whether a connection follows is decided by the mutual-TLS
handshake (INV-09), which a spoofed beacon cannot pass. What a beacon says is
kept to what dialling needs (docs/beacon-privacy.md): a pseudonym drawn at
random when the beacon starts (not the node id, and unlinkable across
restarts), the sync protocol's version, a port, and optionally an IPv4
address (otherwise the datagram's source address is used).

Wire format, 21 bytes, network byte order::

    magic "VDTB" | beacon version u8 (1) | protocol version u16
    | pseudonym [8] | IPv4 [4] (0.0.0.0: use the source address) | port u16

Bounds (INV-07): announcements are sent at most once per ``interval_s`` per
destination; received ones pass a token bucket (``rate_per_s``, ``burst``)
before they are parsed; the candidate table holds at most ``max_candidates``
addresses and a full table takes no new one.

This runs in Python on one thread: it handles a few datagrams per second,
is off every hot path, and only calls ``PeerService.dial``, so the Rust
transport's surface stays the handshake and the sync protocol.
"""

from __future__ import annotations

import ipaddress
import logging
import secrets
import socket
import struct
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from vedette.quota import TokenBucket

log = logging.getLogger("vedette.peers.beacon")

MAGIC = b"VDTB"
BEACON_VERSION = 1
PROTOCOL_VERSION = 1
_FORMAT = struct.Struct("!4sBH8s4sH")
SIZE = _FORMAT.size


@dataclass(frozen=True)
class Announcement:
    protocol: int
    pseudonym: str
    address: str | None
    port: int


def encode(pseudonym: bytes, port: int, address: str | None = None) -> bytes:
    ip = ipaddress.IPv4Address(address or "0.0.0.0").packed
    return _FORMAT.pack(MAGIC, BEACON_VERSION, PROTOCOL_VERSION, pseudonym, ip, port)


def decode(data: bytes) -> Announcement | None:
    """The announcement in ``data``, or None if it is not exactly one."""
    if len(data) != SIZE:
        return None
    magic, version, protocol, pseudonym, ip, port = _FORMAT.unpack(data)
    if magic != MAGIC or version != BEACON_VERSION or port == 0:
        return None
    address = ipaddress.IPv4Address(ip)
    # Nothing a node could be dialled at: multicast, broadcast, 0.x other than 0.0.0.0.
    if address.is_multicast or address == ipaddress.IPv4Address("255.255.255.255"):
        return None
    if not address.is_unspecified and address.packed[0] == 0:
        return None
    return Announcement(
        protocol, pseudonym.hex(), None if address.is_unspecified else str(address), port
    )


def _addr(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host.strip("[]"), int(port)


class Beacon:
    """Sends this node's announcement and turns received ones into dial candidates."""

    def __init__(
        self,
        *,
        on_candidate: Callable[[str], None],
        listen: str | None = None,
        send_to: Sequence[str] = (),
        advertise_port: int | None = None,
        advertise_address: str | None = None,
        interval_s: float = 10.0,
        rate_per_s: float = 10.0,
        burst: float = 20.0,
        max_candidates: int = 16,
    ) -> None:
        if send_to and advertise_port is None:
            raise ValueError("a beacon that sends needs the port to advertise")
        self.pseudonym = secrets.token_bytes(8)
        self._on_candidate = on_candidate
        self._send_to = [_addr(a) for a in send_to]
        self._interval = max(1.0, interval_s)
        self._message = (
            encode(self.pseudonym, advertise_port, advertise_address)
            if advertise_port is not None
            else b""
        )
        self._bucket = TokenBucket(rate_per_s, burst)
        self._max = max_candidates
        self._candidates: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()
        self.received = 0
        self.rate_limited = 0
        self.malformed = 0
        self.refused = 0
        self.sent = 0
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        self._sock.settimeout(0.2)
        if listen is not None:
            self._sock.bind(_addr(listen))
        else:
            self._sock.bind(("0.0.0.0", 0))
        self.address = "{}:{}".format(*self._sock.getsockname())
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="vedette-beacon", daemon=True)
        self._thread.start()

    def candidates(self) -> list[str]:
        with self._lock:
            return list(self._candidates)

    def status(self) -> dict[str, object]:
        return {
            "address": self.address,
            "candidates": self.candidates(),
            "received": self.received,
            "rate_limited": self.rate_limited,
            "malformed": self.malformed,
            "refused": self.refused,
            "sent": self.sent,
        }

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self._sock.close()

    def _run(self) -> None:
        next_send = time.monotonic()
        while not self._stop.is_set():
            if self._message and time.monotonic() >= next_send:
                for dest in self._send_to:
                    try:
                        self._sock.sendto(self._message, dest)
                        self.sent += 1
                    except OSError as err:
                        log.debug("beacon to %s: %s", dest, err)
                # Jittered so that nodes started together do not send together.
                next_send = time.monotonic() + self._interval * (
                    0.75 + secrets.randbelow(500) / 1000
                )
            try:
                data, (source, _) = self._sock.recvfrom(SIZE + 1)
            except TimeoutError:
                continue
            except OSError:
                if self._stop.is_set():
                    return
                continue
            self._receive(data, source)

    def _receive(self, data: bytes, source: str) -> None:
        # The bucket comes first: a flood costs one check per datagram, no parsing.
        if not self._bucket.try_take(1):
            self.rate_limited += 1
            return
        self.received += 1
        found = decode(data)
        if found is None or found.pseudonym == self.pseudonym.hex():
            self.malformed += found is None
            return
        if found.protocol != PROTOCOL_VERSION:
            self.refused += 1
            return
        candidate = f"{found.address or source}:{found.port}"
        with self._lock:
            if candidate in self._candidates:
                self._candidates.move_to_end(candidate)
                self._candidates[candidate] = time.monotonic()
                return
            if len(self._candidates) >= self._max:
                self.refused += 1
                return
            self._candidates[candidate] = time.monotonic()
        try:
            self._on_candidate(candidate)
        except Exception as err:  # the transport refused it (its own bound): keep going
            self.refused += 1
            log.info("beacon candidate %s not dialled: %s", candidate, err)
