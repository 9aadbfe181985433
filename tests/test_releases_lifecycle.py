"""The release lifecycle fails closed: LKG, deny-all, an unreachable or lying
control plane, max_staleness; and the poller picks up a newly pushed release."""

from __future__ import annotations

import http.server
import json
import threading
import time

import pytest
from registry_server import free_port, start_registry
from release_helpers import (
    POLICY_V1,
    POLICY_V2,
    TrackNode,
    publish,
    release_events,
)

from vedette.releases.oci import RegistryClient
from vedette.releases.poller import Backoff, Poller


class Node(TrackNode):
    # Ahead of the creation time releases built here carry (now): a clock
    # behind them would refuse them (step created) or sit behind the floor.
    def __init__(self, tmp_path, host, name, **agent):
        super().__init__(tmp_path, host, name, 4_000_000_000.0, **agent)

    def event_names(self) -> list[str]:
        return [e["event"] for e in release_events(self.store)]

    def slot(self, digest):
        return self.track.root / digest.replace(":", "-")


@pytest.fixture
def node(registry, tmp_path, request):
    n = Node(tmp_path, registry.host, request.node.name.lower().replace("_", "-")[:50].strip("-"))
    yield n
    n.close()


def two_releases(node):
    """v1 then v2 activated: v2 is active, v1 the last-known-good."""
    v1, _ = publish(node.repo, node.key, "stable", policy=POLICY_V1)
    assert node.track.update_from(node.repo, "stable") == "activated"
    v2, _ = publish(node.repo, node.key, "stable", policy=POLICY_V2)
    assert node.track.update_from(node.repo, "stable") == "activated"
    assert (node.track.active_digest, node.track.lkg_digest) == (v2, v1)
    return v1, v2


def corrupt(slot):
    """Flip a byte in every blob of a persisted release folder."""
    for blob in (slot / "blobs" / "sha256").iterdir():
        data = bytearray(blob.read_bytes())
        data[len(data) // 2] ^= 0xFF
        blob.write_bytes(bytes(data))


def test_a_fresh_node_without_releases_is_deny_all(node):
    assert node.track.active() is None
    assert node.track.health() == "deny_all"
    assert node.event_names() == ["release.deny_all"]


def test_a_restart_re_verifies_and_serves_the_persisted_active(node):
    two_releases(node)
    node.restart()
    assert node.reason() == "v2 allows echo"
    assert node.track.health() == "ok"


def test_a_corrupt_persisted_active_falls_back_to_the_lkg(node):
    _, v2 = two_releases(node)
    corrupt(node.slot(v2))
    node.restart()
    assert node.reason() == "v1 allows echo"
    assert node.track.health() == "lkg"
    names = node.event_names()
    assert names[-2:] == ["release.rejected", "release.fallback_lkg"]


def test_a_signature_removed_from_the_persisted_active_falls_back_to_the_lkg(node):
    _, v2 = two_releases(node)
    index = node.slot(v2) / "index.json"
    document = json.loads(index.read_text())
    name = "org.opencontainers.image.ref.name"
    document["manifests"] = [
        m
        for m in document["manifests"]
        if not m.get("annotations", {}).get(name, "").endswith(".sig")
    ]
    index.write_text(json.dumps(document))
    node.restart()
    assert node.reason() == "v1 allows echo"
    rejected = [e for e in release_events(node.store) if e["event"] == "release.rejected"]
    assert rejected[-1]["step"] == 1


def test_both_persisted_releases_corrupt_is_deny_all(node):
    v1, v2 = two_releases(node)
    corrupt(node.slot(v2))
    corrupt(node.slot(v1))
    node.restart()
    assert node.track.active() is None
    assert node.track.health() == "deny_all"
    assert node.event_names()[-1] == "release.deny_all"
    assert "no persisted release verifies" in node.track.unavailable_reason()


def test_registry_down_at_start_serves_the_persisted_release(tmp_path):
    server = start_registry(tmp_path / "registry")
    node = Node(tmp_path, server.host, "down-at-start")
    try:
        publish(node.repo, node.key, "stable", policy=POLICY_V1)
        assert node.track.update_from(node.repo, "stable") == "activated"
        server.stop()
        node.restart()
        poller = Poller(node.track, node.repo, interval_s=1)
        assert poller.poll_once() == "unreachable"
        assert node.reason() == "v1 allows echo"
        assert node.track.health() == "stale"
        assert node.event_names()[-1] == "controlplane.unreachable"
        assert node.track.describe()["control_plane"]["unreachable_since"] is not None
    finally:
        server.stop()
        node.close()


def test_down_past_max_staleness_is_deny_all_and_restored_serves_again(tmp_path):
    port = free_port()
    server = start_registry(tmp_path / "registry", port=port)
    node = Node(tmp_path, server.host, "stale", max_staleness_s=60.0)
    try:
        publish(node.repo, node.key, "stable", policy=POLICY_V1)
        assert node.track.update_from(node.repo, "stable") == "activated"
        server.stop()
        poller = Poller(node.track, node.repo, interval_s=1)
        node.clock.now += 30
        assert poller.poll_once() == "unreachable"
        assert node.reason() == "v1 allows echo"  # stale, still within max_staleness
        node.clock.now += 31
        assert poller.poll_once() == "unreachable"
        assert node.track.active() is None
        assert node.track.health() == "deny_all"
        assert "max_staleness_s" in node.track.unavailable_reason()
        assert node.event_names()[-1] == "release.deny_all"
        assert poller.attempts == 2
        server = start_registry(tmp_path / "registry", port=port)
        assert poller.poll_once() == "current"
        assert node.reason() == "v1 allows echo"
        assert node.event_names()[-1] == "controlplane.restored"
        assert node.track.health() == "ok"
    finally:
        server.stop()
        node.close()


def test_the_backoff_is_full_jitter_capped_and_the_attempt_counter_monotonic(node):
    import random

    backoff = Backoff(base_s=1.0, cap_s=8.0)
    rng = random.Random(7)
    delays = [backoff.delay(failures, rng) for failures in range(1, 40) for _ in range(20)]
    assert all(0 <= d <= 8.0 for d in delays)
    assert max(delays) > 4.0  # the cap is reached, not just the base
    with RegistryClient(f"127.0.0.1:{free_port()}", insecure=True) as nobody:
        poller = Poller(node.track, nobody.repository("vedette/x"), interval_s=10,
                        backoff=backoff, rng=random.Random(1))  # fmt: skip
        outcomes = [poller.poll_once() for _ in range(3)]
    assert outcomes == ["unreachable"] * 3
    assert (poller.attempts, poller.failures) == (3, 3)
    assert all(0 <= poller.next_delay() <= 8.0 for _ in range(100))
    publish(node.repo, node.key, "stable", policy=POLICY_V1)
    poller.source = node.repo
    assert poller.poll_once() == "activated"
    assert (poller.attempts, poller.failures) == (4, 0)  # the attempt counter never resets
    assert all(8.0 <= poller.next_delay() <= 12.0 for _ in range(100))  # interval ± 20 %


def test_the_poller_activates_a_newly_pushed_release(node):
    publish(node.repo, node.key, "stable", policy=POLICY_V1)
    poller = Poller(node.track, node.repo, interval_s=0.2)
    poller.start()
    try:
        wait_for(lambda: node.reason() == "v1 allows echo")
        publish(node.repo, node.key, "stable", policy=POLICY_V2)
        wait_for(lambda: node.reason() == "v2 allows echo")
    finally:
        poller.stop()
    assert node.event_names().count("release.activated") == 2


def wait_for(condition, limit_s=180.0):
    """Bounded wait for something the poller does on its own schedule."""
    deadline = time.monotonic() + limit_s
    while not condition():
        assert time.monotonic() < deadline, "the condition did not come true"
        time.sleep(0.05)


# -- a registry that lies --------------------------------------------------------------


class Liar(http.server.BaseHTTPRequestHandler):
    mode = "garbage"

    def log_message(self, *args):
        pass

    def do_HEAD(self):
        self.do_GET()

    def do_GET(self):
        mode = type(self).mode
        if mode == "garbage":
            body, kind = b"\x00\xffnot json at all", "application/vnd.oci.image.manifest.v1+json"
        elif mode == "huge":
            body, kind = (
                b"{" + b" " * (5 * 1024 * 1024) + b"}",
                ("application/vnd.oci.image.manifest.v1+json"),
            )
        elif mode == "wrong-type":
            body, kind = b"<html>hello</html>", "text/html"
        else:
            self.send_response(500)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


@pytest.fixture
def liar():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Liar)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize(
    ("mode", "message"),
    [("garbage", "not JSON"), ("huge", "limit"), ("wrong-type", "content type"),
     ("error", "HTTP 500")],
)  # fmt: skip
def test_a_registry_answering_nonsense_is_a_clear_error_and_nothing_activates(
    liar, tmp_path, mode, message
):
    Liar.mode = mode
    host = f"127.0.0.1:{liar.server_address[1]}"
    node = Node(tmp_path, host, "liar")
    try:
        poller = Poller(node.track, node.repo, interval_s=1)
        assert poller.poll_once() == "unreachable"
        assert message in node.track.last_error
        assert node.track.active() is None
        assert "release.activated" not in node.event_names()
    finally:
        node.close()


def test_a_node_fed_from_an_image_layout_activates_what_is_pulled_into_it(node, tmp_path):
    from vedette.releases.layout import LayoutRepository
    from vedette.releases.verify import fetch_release

    usb = tmp_path / "usb"
    layout = LayoutRepository(usb)  # not there yet: the stick is not plugged in
    poller = Poller(node.track, layout, interval_s=1)
    assert poller.poll_once() == "unreachable"
    assert "not an OCI image layout" in node.track.last_error
    publish(node.repo, node.key, "stable", policy=POLICY_V1)
    fetch_release(node.repo, "stable", LayoutRepository(usb, create=True), tag="stable")
    assert poller.poll_once() == "activated"
    assert node.reason() == "v1 allows echo"
    publish(node.repo, node.key, "stable", policy=POLICY_V2)
    fetch_release(node.repo, "stable", LayoutRepository(usb, create=True), tag="stable")
    assert poller.poll_once() == "activated"
    assert node.reason() == "v2 allows echo"
    assert node.event_names()[-1] == "release.activated"


def test_a_release_tagged_before_it_was_signed_is_taken_once_the_signature_is_there(node):
    from vedette.releases.cosign import sign_classic

    digest, _ = publish(node.repo, None, "stable", policy=POLICY_V1)  # tagged, not signed
    poller = Poller(node.track, node.repo, interval_s=1)
    assert poller.poll_once() == "rejected"
    sign_classic(node.repo, digest, "test/recon", node.key.private)
    assert poller.poll_once() == "known-bad"  # not fetched at every poll
    node.clock.now += max(60.0, 10 * node.config.agents[0].poll_interval_s) + 1
    assert poller.poll_once() == "activated"
    assert node.reason() == "v1 allows echo"


def test_a_node_serving_its_lkg_heals_from_the_registry(node):
    _, v2 = two_releases(node)
    corrupt(node.slot(v2))
    node.restart()
    assert node.track.health() == "lkg"
    assert node.track.update_from(node.repo, "stable") == "activated"  # v2 fetched anew
    assert node.reason() == "v2 allows echo"
    node.restart()  # the copy on disk is good again
    assert node.track.health() == "ok"
    assert node.reason() == "v2 allows echo"
