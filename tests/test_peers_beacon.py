"""The beacon: announcements become dial candidates, never authorisation."""

from __future__ import annotations

import socket
import ssl
import threading
from pathlib import Path

import pytest
from peer_helpers import fill, frontiers, open_store, service, wait_until
from peer_pki import OpensslCa

from vedette.peers.beacon import SIZE, Beacon, decode, encode


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, OpensslCa]:
    root = tmp_path_factory.mktemp("pki")
    ca = OpensslCa(root / "ca", "test.example")
    other = OpensslCa(root / "other", "other.example")
    ca.issue("a")
    ca.issue("b")
    other.issue("mallory")
    return {"ca": ca, "other": other}


class UntrustedListener:
    """A TLS server with a certificate from another CA; counts application bytes."""

    def __init__(self, ca: OpensslCa) -> None:
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(ca.dir / "mallory.crt", ca.dir / "mallory.key")
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self.received = 0
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while True:
            try:
                raw, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            raw.settimeout(10)
            try:
                with self.ctx.wrap_socket(raw, server_side=True) as tls:
                    while chunk := tls.recv(4096):
                        self.received += len(chunk)
            except (OSError, ssl.SSLError):
                pass

    def close(self) -> None:
        self.sock.close()


def send_beacon(to: str, data: bytes) -> None:
    host, port = to.rsplit(":", 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(data, (host, int(port)))


def test_a_spoofed_beacon_leads_to_a_refused_dial_and_nothing_sent(
    pki: dict[str, OpensslCa], tmp_path: Path
) -> None:
    store = open_store(tmp_path / "a", "a")
    fill(store, 3)
    evil = UntrustedListener(pki["other"])
    with service(store, pki["ca"], "a") as a:
        beacon = Beacon(on_candidate=a.dial, listen="127.0.0.1:0")
        try:
            send_beacon(beacon.address, encode(b"spoofed!", evil.port, "127.0.0.1"))
            target = f"127.0.0.1:{evil.port}"
            wait_until("the candidate", lambda: beacon.candidates() == [target])
            wait_until(
                "the refused handshake",
                lambda: any(
                    e.kind == "handshake_rejected" and e.peer == target for e in a.events()
                ),
            )
            wait_until("the dial to be counted", lambda: evil.connections >= 1)
        finally:
            beacon.stop()
        rejected = next(e for e in a.events() if e.kind == "handshake_rejected")
        assert rejected.detail.startswith("unknown_issuer")
        assert a.status()["handshakes_ok"] == 0
        assert a.status()["handshakes_rejected"]["unknown_issuer"] >= 1
    evil.close()
    evil.thread.join(10)
    assert evil.received == 0, "application bytes reached an untrusted listener"
    store.close()


def test_two_nodes_find_each_other_by_beacon_and_replicate(
    pki: dict[str, OpensslCa], tmp_path: Path
) -> None:
    sa, sb = open_store(tmp_path / "a", "a"), open_store(tmp_path / "b", "b")
    fill(sa, 2)
    with service(sa, pki["ca"], "a") as a, service(sb, pki["ca"], "b") as b:
        port = int(a.listen("127.0.0.1:0").rsplit(":", 1)[1])
        receiver = Beacon(on_candidate=b.dial, listen="127.0.0.1:0")
        sender = Beacon(
            on_candidate=a.dial, send_to=[receiver.address], advertise_port=port, interval_s=1
        )
        try:
            wait_until("replication", lambda: frontiers(sb).get("a") == 2)
        finally:
            sender.stop()
            receiver.stop()
        assert receiver.candidates() == [f"127.0.0.1:{port}"]
    sa.close()
    sb.close()


def test_beacons_are_rate_limited_bounded_and_strictly_parsed() -> None:
    dialled: list[str] = []
    beacon = Beacon(
        on_candidate=dialled.append,
        listen="127.0.0.1:0",
        rate_per_s=1.0,
        burst=50.0,
        max_candidates=4,
    )
    try:
        for bad in (b"", b"VDTB", encode(b"12345678", 1)[:-1] + b"\x00", b"x" * SIZE):
            send_beacon(beacon.address, bad)
        for port in range(1000, 1200):
            send_beacon(beacon.address, encode(b"flooder!", port, "127.0.0.2"))
        wait_until(
            "every datagram to be handled",
            lambda: beacon.received + beacon.rate_limited >= 150,
        )
    finally:
        beacon.stop()
    assert beacon.malformed == 4
    assert beacon.rate_limited > 0
    assert len(dialled) == 4
    assert len(beacon.candidates()) == 4
    assert beacon.refused > 0


def test_decode_refuses_what_cannot_be_dialled() -> None:
    assert decode(encode(b"abcdefgh", 8798)) is not None
    assert decode(encode(b"abcdefgh", 8798, "224.0.0.1")) is None
    assert decode(encode(b"abcdefgh", 8798, "255.255.255.255")) is None
    assert decode(encode(b"abcdefgh", 0)) is None
    assert decode(encode(b"abcdefgh", 8798) + b"\x00") is None
