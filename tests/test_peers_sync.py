"""Two and more in-process peer services over loopback mutual TLS: replication,
acknowledgement and eviction, per-peer quotas (INV-13) and bounded retry (INV-12)."""

from __future__ import annotations

import random
import socket
import threading
import time
from pathlib import Path

import pytest
from peer_helpers import (
    client_context,
    fill,
    frontiers,
    hello,
    open_store,
    service,
    tls_connect,
    wait_until,
)
from peer_pki import OpensslCa

from vedette._core import origin_sign, private_key_from_pem
from vedette.errors import PeerError, PkiError, StoreFullError
from vedette.peers.service import PeerService
from vedette.store import SegmentStore


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> OpensslCa:
    ca = OpensslCa(tmp_path_factory.mktemp("pki") / "ca", "test.example")
    for node in ("a", "b", "c", "flood", "d"):
        ca.issue(node)
    return ca


def test_two_services_replicate_both_ways(ca: OpensslCa, tmp_path: Path) -> None:
    sa, sb = open_store(tmp_path / "a", "a"), open_store(tmp_path / "b", "b")
    fill(sa, 6)
    fill(sb, 3)
    with service(sa, ca, "a") as a, service(sb, ca, "b") as b:
        b.dial(a.listen("127.0.0.1:0"))
        wait_until("replication", lambda: frontiers(sa) == frontiers(sb) == {"a": 6, "b": 3})
        fill(sa, 2, b"later")
        wait_until("the later segments", lambda: frontiers(sb).get("a") == 8)
        # The same bytes, under the same ids, on both sides; no duplicates.
        ids_a = sorted(s.id for s in sa.segments() if s.sealed)
        ids_b = sorted(s.id for s in sb.segments() if s.sealed)
        assert ids_a == ids_b
        assert len(set(ids_a)) == len(ids_a) == 11
        status = a.status()
        (peer,) = status["peers"]
        assert peer["identity"] == "spiffe://test.example/node/b"
        assert peer["connected"]
        assert peer["quota"] == "ok"
        assert peer["bytes_out"] > 0
        assert peer["segments_out"] == 8
        assert status["handshakes_rejected"] == {}
    sa.close()
    sb.close()


def test_a_segment_with_a_forged_origin_signature_is_refused(ca: OpensslCa, tmp_path: Path) -> None:
    """b relays two of a's segments: one signed by a, one signed in a's name with
    b's own certificate. c takes the first with its signature and refuses the second."""
    sa, sb, sc = (open_store(tmp_path / n, n) for n in ("a", "b", "c"))
    fill(sa, 2)
    for info, signer in zip([s for s in sa.segments() if s.sealed], ("a", "b"), strict=True):
        sb.import_segment(sa.get_segment(info.id), info.id)
        key = private_key_from_pem((ca.dir / f"{signer}.key").read_bytes())
        cert = (ca.dir / f"{signer}.crt").read_bytes()
        sb.put_origin_signature(info.id, origin_sign(key, "a", info.seq, info.id, cert))
    with service(sb, ca, "b") as b, service(sc, ca, "c") as c:
        c.dial(b.listen("127.0.0.1:0"))
        wait_until("the refusal", lambda: c.status()["origin_refused"] >= 1)
        wait_until("the genuine segment", lambda: frontiers(sc) == {"a": 1})
        (event,) = [e for e in c.events() if e.kind == "origin_refused"]
        assert event.detail.startswith("a #1 ")
        assert "not the origin" in event.detail
        (held,) = [s for s in sc.segments() if s.sealed]
        assert sc.origin_signature(held.id) == sb.origin_signature(held.id)
        assert c.status()["segments_in"] == 1
    for store in (sa, sb, sc):
        store.close()


def test_acknowledged_segments_become_evictable_under_a_small_ceiling(
    ca: OpensslCa, tmp_path: Path
) -> None:
    ceiling = 256 << 10
    sa = open_store(tmp_path / "a", "a", ceiling=ceiling)
    record = b"x" * 8000
    with pytest.raises(StoreFullError):  # noqa: PT012 - fill until the ceiling refuses
        for _ in range(1000):
            sa.append(record)
    assert sa.usage().evictable_bytes == 0
    sb = open_store(tmp_path / "b", "b")
    with service(sa, ca, "a") as a, service(sb, ca, "b") as b:
        b.dial(a.listen("127.0.0.1:0"))
        sealed = [s for s in sa.segments() if s.sealed]
        wait_until(
            "acks",
            lambda: all(s.acked_by == ("b",) for s in sa.segments() if s.sealed),
        )
        assert sa.usage().evictable_bytes > 0
        # Now appends succeed: the acknowledged, replicated segments are evicted.
        for _ in range(20):
            sa.append(record)
        held = {s.id for s in sa.segments() if s.sealed}
        assert any(s.id not in held for s in sealed), "nothing was evicted"
        assert {s.id for s in sealed} <= {s.id for s in sb.segments() if s.sealed}
    sa.close()
    sb.close()


def test_a_flooding_peer_is_held_to_its_quota_while_another_keeps_syncing(
    ca: OpensslCa, tmp_path: Path
) -> None:
    rate = 256 * 1024
    sa, sb = open_store(tmp_path / "a", "a"), open_store(tmp_path / "b", "b")
    a = service(sa, ca, "a", rate_in=rate, burst_in=32 * 1024, quota_window_s=5.0)
    b = service(sb, ca, "b")
    addr = a.listen("127.0.0.1:0")
    b.dial(addr)
    flooding = threading.Event()
    sent = [0]

    def flood() -> None:
        # Valid HELLO frames of ~4 KiB each, as fast as the socket takes them.
        frame = hello([(f"origin-{i:04d}", 0) for i in range(200)])
        with tls_connect(client_context(ca, "flood"), addr) as sock:
            flooding.set()
            try:
                while True:
                    sock.sendall(frame)
                    sent[0] += len(frame)
            except OSError:
                pass

    thread = threading.Thread(target=flood, daemon=True)
    thread.start()
    flooding.wait(30)
    fill(sa, 5)
    wait_until("b to sync during the flood", lambda: frontiers(sb).get("a") == 5)
    assert thread.is_alive(), "the flood ended before the other peer had synced"
    wait_until("the flood to be cut off", lambda: a.status()["quota_exceeded"] >= 1, 120)
    thread.join(30)
    flood_link = next(p for p in a.status()["peers"] if p["node"] == "flood")
    cut = next(e for e in a.events() if e.kind == "quota_exceeded")
    seconds = (cut.unix_ms - flood_link["since_unix_ms"]) / 1000
    measured = flood_link["bytes_in"] / seconds
    assert abs(measured - rate) <= 0.1 * rate, f"{measured:.0f} bytes/s against {rate}"
    assert sent[0] > flood_link["bytes_in"], "the flooder was not sending faster than its quota"
    assert flood_link["quota"] == "exceeded"
    assert not flood_link["connected"]
    # b, within its own quota, is still connected.
    assert any(p["node"] == "b" and p["connected"] for p in a.status()["peers"])
    b.stop()
    a.stop()
    sa.close()
    sb.close()


def test_the_outbound_quota_holds_a_sender_within_10_percent_of_its_rate(
    ca: OpensslCa, tmp_path: Path
) -> None:
    """a sends b ~2.2 MiB of sealed segments under rate_out = 256 KiB/s (burst
    64 KiB); b reads at its default 8 MiB/s, which a's quota alone must hold
    down. Measured at b (frame bytes received over time), the rate is within
    10 % of 256 KiB/s: over the whole transfer with the burst taken off, and
    over the window that starts once the burst has arrived (every byte in it
    paid for at the rate). Without the quota the transfer takes well under a
    second. Slower would mean the machine cannot keep 16 wake-ups a second."""
    rate, burst = 256 * 1024, 64 * 1024
    segments, record = 140, random.Random(7).randbytes(16000)
    sa = SegmentStore.open(tmp_path / "a", 8 << 20, "a", segment_max_bytes=64 << 10)
    sb = open_store(tmp_path / "b", "b")
    fill(sa, segments, record)
    with (
        service(sa, ca, "a", rate_out=float(rate), burst_out=float(burst)) as a,
        service(sb, ca, "b") as b,
    ):
        b.dial(a.listen("127.0.0.1:0"))
        samples: list[tuple[float, int]] = []  # (monotonic time, bytes b received from a)
        wall_minus_monotonic = time.time() - time.monotonic()
        deadline = time.monotonic() + 120
        while True:
            before = time.monotonic()
            status = b.status()
            at = (before + time.monotonic()) / 2
            links = [p for p in status["peers"] if p["node"] == "a"]
            if links:
                samples.append((at, links[0]["bytes_in"]))
            if status["segments_in"] == segments:
                break
            assert time.monotonic() < deadline, f"{status['segments_in']} segments in 120 s"
            time.sleep(0.005)
        wait_until("the last segment on b", lambda: frontiers(sb) == {"a": segments})
        (sent,) = a.status()["peers"]
        assert sent["segments_out"] == segments
        (link,) = b.status()["peers"]
    frame = len(record) + 1024  # a SEGMENT frame: the segment, its header and signature
    total = samples[-1][1]
    assert total > segments * len(record)
    # The whole transfer, from when b admitted the connection, less the burst
    # that went out at once.
    connected = link["since_unix_ms"] / 1000 - wall_minus_monotonic
    whole = (total - burst) / (samples[-1][0] - connected)
    assert abs(whole - rate) <= 0.1 * rate, f"{whole:.0f} bytes/s against {rate}"
    # After the burst: from when more than it (and two frames) had arrived, to
    # two frames before the end (a still had segments queued for b).
    first = next(i for i, (_, got) in enumerate(samples) if got >= burst + 2 * frame)
    last = max(i for i, (_, got) in enumerate(samples) if got <= total - 2 * frame)
    (ta, ba), (tb, bb) = samples[first], samples[last]
    assert tb - ta > 6.0, f"a window of {tb - ta:.1f} s is too short to measure a rate"
    steady = (bb - ba) / (tb - ta)
    assert abs(steady - rate) <= 0.1 * rate, f"after the burst: {steady:.0f} bytes/s against {rate}"
    sa.close()
    sb.close()


def test_a_dead_peer_is_dialled_no_more_than_the_budget(ca: OpensslCa, tmp_path: Path) -> None:
    sa = open_store(tmp_path / "a", "a")
    dead = socket.socket()
    dead.bind(("127.0.0.1", 0))
    addr = f"127.0.0.1:{dead.getsockname()[1]}"
    dead.close()
    limits = {"retry_base_s": 0.001, "retry_cap_s": 0.01, "retry_budget": 4}
    with service(sa, ca, "a", **limits, retry_window_s=3600.0) as a:
        a.dial(addr)
        wait_until("the budget to be spent", lambda: a.status()["dials"][0]["attempts"] >= 4)
        # Ample time for many more dials at a 10 ms backoff cap: none is made.
        time.sleep(1.0)
        (dial,) = a.status()["dials"]
        assert dial["attempts"] == 4
        assert dial["failures"] == 4
        assert not dial["connected"]
        assert sum(e.kind == "dial_failed" for e in a.events()) == 4
    sa.close()


def test_unusable_files_and_settings_are_refused(ca: OpensslCa, tmp_path: Path) -> None:
    sa = open_store(tmp_path / "a", "a")
    files = {**ca.files("a"), "cert": tmp_path / "missing.crt"}
    with pytest.raises(PkiError, match=r"missing\.crt"):
        PeerService(sa, **files)  # type: ignore[arg-type]
    with pytest.raises(PeerError, match="CRL"):
        PeerService(sa, **{**ca.files("a"), "crl": []})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="rate_in"):
        service(sa, ca, "a", rate_in=0.0)
    with service(sa, ca, "a") as a, pytest.raises(ValueError, match="host:port"):
        a.dial("localhost")
    sa.close()


def test_revoking_a_connected_peer_cuts_it_off_without_a_restart(
    ca: OpensslCa, tmp_path: Path
) -> None:
    sa, sd = open_store(tmp_path / "a", "a"), open_store(tmp_path / "d", "d")
    fill(sa, 2)
    with service(sa, ca, "a") as a, service(sd, ca, "d") as d:
        d.dial(a.listen("127.0.0.1:0"))
        wait_until("the first sync", lambda: frontiers(sd).get("a") == 2)
        ca.revoke(ca.dir / "d.crt")  # rewrites crl.pem in place, as `vedette pki revoke` does
        wait_until("the cut-off", lambda: any(e.kind == "certificate_refused" for e in a.events()))
        wait_until("a refused redial", lambda: "revoked" in a.status()["handshakes_rejected"])
        assert not any(p["connected"] for p in a.status()["peers"])
        fill(sa, 1, b"after revocation")
        time.sleep(0.5)
        assert frontiers(sd).get("a") == 2, "a revoked peer still received segments"
    sa.close()
    sd.close()
