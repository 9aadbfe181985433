"""Origin signatures: a node signs every segment it seals, with its fleet
certificate or its own node key; a verifier accepts a certificate only when
it chains to the fleet CA and names the origin, and a bare key only when it
is the one pinned for that origin. The store's pressure reaches /v1/health."""

from __future__ import annotations

import dataclasses
import json
import os
import stat

import pytest
from runtime_fixtures import AGENT, runtime_config

from vedette.config import StoreConfig
from vedette.errors import OriginSignatureError
from vedette.origin import NODE_KEY_FILE, NodeSigner, OriginSeals, OriginVerifier
from vedette.peers.pki import init_ca, issue
from vedette.runtime.identity import Caller
from vedette.runtime.interceptor import Runtime
from vedette.store import SegmentStore

CALLER = Caller("adapter-a", AGENT)


def _sealed(store: SegmentStore, text: bytes = b"a record"):
    store.append(text)
    seg_id = store.seal()
    return next(s for s in store.segments() if s.id == seg_id)


@pytest.fixture
def store(tmp_path):
    with SegmentStore.open(tmp_path / "store", ceiling_bytes=8 << 20, node_id="node-a") as s:
        yield s


def test_node_key_is_made_once_owner_only_and_reused(tmp_path):
    config = runtime_config(tmp_path, node_id="node-a")
    first = NodeSigner.for_config(config)
    path = config.state_dir / NODE_KEY_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = NodeSigner.for_config(config)
    assert (first.kind, first.key_id) == ("key", again.key_id)


def test_node_key_readable_by_others_is_refused(tmp_path):
    config = runtime_config(tmp_path, node_id="node-a")
    NodeSigner.for_config(config)
    os.chmod(config.state_dir / NODE_KEY_FILE, 0o644)
    with pytest.raises(OriginSignatureError, match="readable by others"):
        NodeSigner.for_config(config)


def test_bare_key_signature_verifies_and_pins_the_key(tmp_path, store):
    config = runtime_config(tmp_path, node_id="node-a")
    seals = OriginSeals(store, NodeSigner.for_config(config))
    first, second = _sealed(store, b"one"), _sealed(store, b"two")
    assert seals.sign_pending() == 2
    assert seals.sign_pending() == 0, "signed segments are not signed again"
    verifier = OriginVerifier()
    for info in (first, second):
        blob = store.origin_signature(info.id)
        assert verifier.check(blob, "node-a", info.seq, info.id) == "key"
    # The blob names origin, seq and id: it vouches for nothing else.
    blob = store.origin_signature(first.id)
    with pytest.raises(OriginSignatureError):
        verifier.check(blob, "node-b", first.seq, first.id)
    with pytest.raises(OriginSignatureError):
        verifier.check(blob, "node-a", second.seq, first.id)
    with pytest.raises(OriginSignatureError):
        verifier.check(blob, "node-a", first.seq, second.id)
    with pytest.raises(OriginSignatureError, match="no origin signature"):
        verifier.check(None, "node-a", first.seq, first.id)


def test_another_key_for_a_pinned_origin_is_refused(tmp_path, store):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    ours = NodeSigner.for_config(runtime_config(tmp_path / "a", node_id="node-a"))
    forger = NodeSigner.for_config(runtime_config(tmp_path / "b", node_id="node-a"))
    info = _sealed(store)
    verifier = OriginVerifier()
    verifier.pin("node-a", ours.key.public_key().pem())
    with pytest.raises(OriginSignatureError, match="not the one pinned"):
        verifier.check(forger.sign(info), "node-a", info.seq, info.id)
    assert verifier.check(ours.sign(info), "node-a", info.seq, info.id) == "key"
    strict = OriginVerifier(require_certificate=True)
    with pytest.raises(OriginSignatureError, match="certificate is required"):
        strict.check(ours.sign(info), "node-a", info.seq, info.id)


def test_a_node_signs_only_its_own_segments(tmp_path, store):
    info = _sealed(store)
    other = NodeSigner.for_config(runtime_config(tmp_path, node_id="node-b"))
    with pytest.raises(OriginSignatureError, match="only its own"):
        other.sign(info)


def test_certificate_must_chain_to_the_fleet_ca_and_name_the_origin(tmp_path, store):
    ca = init_ca(tmp_path / "pki", "fleet.example")
    other_ca = init_ca(tmp_path / "other", "fleet.example")
    node_a = issue(tmp_path / "pki", "node-a")
    node_b = issue(tmp_path / "pki", "node-b")
    info = _sealed(store)

    def signer(paths, node="node-a"):
        from vedette._core import private_key_from_pem

        return NodeSigner(
            node, private_key_from_pem(paths.key.read_bytes()), paths.cert.read_bytes()
        )

    blob = signer(node_a).sign(info)
    fleet = OriginVerifier(ca_pem=ca.cert.read_text(), require_certificate=True)
    assert fleet.check(blob, "node-a", info.seq, info.id) == "certificate"
    stranger = OriginVerifier(ca_pem=other_ca.cert.read_text())
    with pytest.raises(OriginSignatureError):
        stranger.check(blob, "node-a", info.seq, info.id)
    with pytest.raises(OriginSignatureError, match="no fleet CA"):
        OriginVerifier().check(blob, "node-a", info.seq, info.id)
    # node-b's certificate cannot speak for node-a's segment.
    forged = signer(node_b, node="node-a").sign(info)
    with pytest.raises(OriginSignatureError, match="names node"):
        fleet.check(forged, "node-a", info.seq, info.id)


def test_runtime_records_its_key_and_signs_what_it_seals(tmp_path):
    runtime = Runtime(runtime_config(tmp_path, node_id="node-a"))
    try:
        assert runtime.decide({"tool": "echo", "args": {"text": "x"}}, CALLER).outcome == "allow"
        runtime.flush_evidence()
        runtime.store.seal()
        runtime.housekeep()
        kinds = [json.loads(r)["kind"] for _, r in runtime.store.iter_records()]
        assert "node_key" in kinds
        node_key = next(
            json.loads(r) for _, r in runtime.store.iter_records() if b'"node_key"' in r
        )
        sealed = [s for s in runtime.store.segments() if s.sealed]
        assert sealed
        assert node_key["signer"] == "key"
        verifier = OriginVerifier()
        verifier.pin("node-a", node_key["public_key"].encode())
        for info in sealed:
            blob = runtime.store.origin_signature(info.id)
            assert verifier.check(blob, "node-a", info.seq, info.id) == "key"
    finally:
        runtime.close()


def test_store_pressure_reaches_health_status_and_metrics(tmp_path):
    config = runtime_config(tmp_path, store=StoreConfig(ceiling_bytes=256 * 1024, high_water=0.5))
    runtime = Runtime(config)
    try:
        assert runtime.health()["checks"]["store"] == "ok"
        state = "ok"
        for i in range(20_000):
            if (
                runtime.decide({"tool": "echo", "args": {"text": "x" * 200}}, CALLER).outcome
                != "allow"
            ):
                break
            if i % 50 == 0:
                runtime.flush_evidence()
                state = runtime.health()["checks"]["store"]
                if state == "degraded":
                    break
        assert state == "degraded"
        health = runtime.health()
        assert any("sealed segments acknowledged off-node" in r for r in health["reasons"])
        status = runtime.status()["store"]
        assert status["verdict"] == "degraded"
        assert status["usage_fraction"] >= 0.5
        for _ in range(20_000):
            if (
                runtime.decide({"tool": "echo", "args": {"text": "x" * 200}}, CALLER).outcome
                != "allow"
            ):
                break
        health = runtime.health()
        assert health["status"] == "failing"
        assert health["checks"]["store"] == "failing"
        metrics = runtime.metrics.render().decode()
        assert "vedette_store_failing 1.0" in metrics
        assert "vedette_store_unacked_sealed_bytes" in metrics
    finally:
        runtime.close()


def test_store_high_water_outside_zero_to_one_is_a_config_error():
    from vedette.config import ConfigError

    with pytest.raises(ConfigError, match="high_water"):
        dataclasses.replace(StoreConfig(), high_water=1.5)


def test_a_full_store_still_hands_out_signed_segments(tmp_path):
    from vedette.store import StoreFullError

    signer = NodeSigner.for_config(runtime_config(tmp_path, node_id="node-a"))
    with SegmentStore.open(tmp_path / "store", ceiling_bytes=64 << 10, node_id="node-a") as store:
        full = False
        for i in range(100_000):
            try:
                store.append(b"r" * 200 + str(i).encode())
            except StoreFullError:
                full = True
                break
        assert full
        sealed = [s for s in store.segments() if s.sealed]
        assert sealed, "the size bound sealed segments before the ceiling"
        seals = OriginSeals(store, signer)
        blob = seals.signature(sealed[0])
        # No room for the signature file, but the segment can still leave signed:
        # its acknowledgement is what frees the room.
        assert blob is not None
        assert store.origin_signature(sealed[0].id) is None, "there was room after all"
        assert OriginVerifier().check(blob, "node-a", sealed[0].seq, sealed[0].id) == "key"
