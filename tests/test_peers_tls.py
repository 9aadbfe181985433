"""The peer listener against an independent TLS client (``openssl s_client``)
and against malformed frames over a real TLS connection (INV-09, INV-07)."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path

import pytest
from peer_helpers import (
    client_context,
    frame,
    frame_bodies,
    hello,
    open_store,
    parse_frames,
    read_all,
    s_client,
    service,
    tls_connect,
    wait_until,
)
from peer_pki import OpensslCa

from vedette.peers.service import PeerService
from vedette.store import SegmentStore

HELLO = 1
BYE = 6


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, OpensslCa | Path]:
    root = tmp_path_factory.mktemp("pki")
    ca = OpensslCa(root / "ca", "test.example")
    other = OpensslCa(root / "other", "other.example")
    # Another CA under the same name as the real one: only its signature differs.
    impostor = OpensslCa(root / "impostor", "test.example")
    for node in ("a", "good", "revoked", "flood", "b"):
        ca.issue(node)
    ca.issue("old", start="20200101000000Z", end="20210101000000Z")
    ca.revoke(ca.dir / "revoked.crt")
    other.issue("stranger")
    impostor.issue("a")
    return {"ca": ca, "other": other, "impostor": impostor}


@pytest.fixture
def listener(
    pki: dict[str, OpensslCa], tmp_path: Path
) -> Iterator[tuple[PeerService, str, SegmentStore]]:
    store = open_store(tmp_path / "a", "a")
    store.append(b"secret evidence")
    store.seal()
    svc = service(store, pki["ca"], "a", idle_timeout_s=2.0)
    addr = svc.listen("127.0.0.1:0")
    yield svc, addr, store
    svc.stop()
    store.close()


@pytest.mark.parametrize(
    ("who", "reason"),
    [
        (None, "no_certificate"),
        ("stranger", "unknown_issuer"),
        ("impostor", "bad_signature"),
        ("revoked", "revoked"),
        ("old", "expired"),
    ],
)
def test_a_client_without_a_valid_certificate_gets_no_protocol_byte(
    listener: tuple[PeerService, str, SegmentStore],
    pki: dict[str, OpensslCa],
    who: str | None,
    reason: str,
) -> None:
    svc, addr, _ = listener
    issuer = {"stranger": pki["other"], "impostor": pki["impostor"]}.get(who or "", pki["ca"])
    received = s_client(addr, issuer, "a" if who == "impostor" else who)
    assert received == b"", f"{len(received)} bytes reached an unauthenticated client"
    wait_until(reason, lambda: svc.status()["handshakes_rejected"].get(reason, 0) >= 1)
    assert svc.status()["handshakes_ok"] == 0


def test_a_valid_client_gets_hello_and_garbage_closes_the_connection(
    listener: tuple[PeerService, str, SegmentStore], pki: dict[str, OpensslCa]
) -> None:
    svc, addr, _ = listener
    # Nothing sent: the handshake succeeds and the node's HELLO arrives (the
    # listener closes the idle connection after idle_timeout_s).
    received = s_client(addr, pki["ca"], "good")
    assert parse_frames(received)[:1] == [HELLO]
    wait_until("idle close", lambda: _kinds(svc).count("idle_timeout") >= 1)
    # Garbage after the handshake: the connection is closed as a protocol error.
    received = s_client(addr, pki["ca"], "good", send=b"\x05\x00\x00\x00\xffjunk" * 4)
    # At most the HELLO and a BYE got out before the close (they may be lost to the reset).
    assert parse_frames(received) in ([], [HELLO], [HELLO, BYE])
    wait_until("protocol error", lambda: "protocol_error" in _kinds(svc))
    assert svc.status()["handshakes_ok"] == 2


def _kinds(svc: PeerService) -> list[str]:
    return [e.kind for e in svc.events()]


MALFORMED = {
    "oversized_length": struct.pack("<I", 0xFFFF_FFF0) + b"\x01",
    "unknown_type": frame(b"\x7f"),
    "truncated_hello": frame(b"\x01\x01\x00"),
    "want_before_hello": frame(b"\x02\x00\x00"),
    "trailing_bytes": hello() + frame(b"\x04" + bytes(33)),
    "want_over_the_bound": hello()
    + frame(b"\x02" + struct.pack("<H", 65) + (b"\x01a" + bytes(8)) * 65),
    "empty_frame": struct.pack("<I", 0),
    "wrong_version": hello(version=99),
    # A node of the protocol before origin signatures travelled.
    "version_1": hello(version=1),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_frames_close_the_connection(
    listener: tuple[PeerService, str, SegmentStore], pki: dict[str, OpensslCa], case: str
) -> None:
    svc, addr, store = listener
    with tls_connect(client_context(pki["ca"], "good"), addr) as sock:
        sock.sendall(MALFORMED[case])
        received = read_all(sock)
    types = parse_frames(received)
    assert types[0] == HELLO
    assert 3 not in types, "a segment was sent to a peer that broke the protocol"
    # The connection ends with a BYE saying why (code 1 protocol, 3 version).
    assert types[-1] == BYE
    assert frame_bodies(received)[-1][1] in (1, 3)
    wait_until("the protocol error event", lambda: "protocol_error" in _kinds(svc))
    # The listener is unharmed: a well-behaved peer still gets its HELLO.
    with tls_connect(client_context(pki["ca"], "good"), addr) as sock:
        sock.sendall(hello())
        first = sock.recv(5)
    assert first[4:5] == bytes([HELLO])
    assert store.segments()[0].sealed
