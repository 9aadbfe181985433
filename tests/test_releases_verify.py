"""The four verification steps and the lifecycle's answer to a failed one: one
tamper test per step, each ending rejected, not activated, a ``release.rejected``
event with the step in the store, and the previous release still serving."""

from __future__ import annotations

import base64
import json

import pytest
from release_helpers import (
    AGENT,
    POLICY_V1,
    POLICY_V2,
    agent_bytes,
    bundle_bytes,
    make_key,
    publish,
    publish_document,
    release_config,
    release_events,
)

from vedette.errors import VerificationError
from vedette.releases import signing
from vedette.releases.cosign import (
    SIGNATURE_ANNOTATION,
    attach_bundle,
    signature_tag,
    sigstore_bundle,
)
from vedette.releases.layout import LayoutRepository
from vedette.releases.lifecycle import AgentTrack, ReleaseEvents
from vedette.releases.oci import OCI_MANIFEST, RegistryClient
from vedette.releases.verify import fetch_release, verify_release
from vedette.store import SegmentStore

ECHO = {"tool": "echo", "args": {"text": "hi"}, "caller": {"id": "t"}, "claims": {}}


class World:
    """A registry repository, a trusted key, a store and one agent's track."""

    def __init__(self, registry, tmp_path, name):
        self.client = RegistryClient(registry.host, insecure=True)
        self.repo = self.client.repository(f"vedette/{name}")
        self.key = make_key(tmp_path / "keys")
        self.ref = registry.ref(f"vedette/{name}", "stable")
        self.config = release_config(tmp_path, self.ref, [self.key.public_path])
        self.store = SegmentStore.open(tmp_path / "store", ceiling_bytes=64 << 20, node_id="n")
        self.events = ReleaseEvents(self.store, "n")
        self.track = self.new_track()

    def new_track(self) -> AgentTrack:
        agent = self.config.agents[0]
        trusted = signing.TrustedKeys.from_files(list(agent.keys))
        root = self.config.state_dir / "releases" / AGENT
        return AgentTrack(agent, root, trusted, self.events, eval_time_limit_s=5.0)

    def serving_reason(self) -> str:
        release = self.track.active()
        assert release is not None
        return release.engine.evaluate(ECHO).reason

    def rejected(self) -> list[dict]:
        return [e for e in release_events(self.store) if e["event"] == "release.rejected"]

    def close(self):
        self.client.close()
        self.store.close()


@pytest.fixture
def world(registry, tmp_path, request):
    name = request.node.name.lower().replace("_", "-").replace("[", "-").replace("]", "")
    w = World(registry, tmp_path, name[:60].strip("-"))
    first, _ = publish(w.repo, w.key, "stable", policy=POLICY_V1)
    assert w.track.update_from(w.repo, "stable") == "activated"
    assert w.track.active_digest == first
    assert w.serving_reason() == "v1 allows echo"
    yield w
    w.close()


def assert_rejected_at(world, step):
    assert world.track.update_from(world.repo, "stable") == "rejected"
    events = world.rejected()
    assert events, "no release.rejected event was recorded"
    assert events[-1]["step"] == step
    assert world.serving_reason() == "v1 allows echo"  # the previous release still serves
    assert [e["event"] for e in release_events(world.store)].count("release.activated") == 1


def test_a_signed_release_activates_and_its_events_are_recorded(world):
    events = [e["event"] for e in release_events(world.store)]
    assert events == ["release.fetched", "release.verified", "release.activated"]
    publish(world.repo, world.key, "stable", policy=POLICY_V2)
    assert world.track.update_from(world.repo, "stable") == "activated"
    assert world.serving_reason() == "v2 allows echo"


def test_an_in_flight_holder_keeps_its_engine_across_a_swap(world):
    held = world.track.active()
    publish(world.repo, world.key, "stable", policy=POLICY_V2)
    world.track.update_from(world.repo, "stable")
    assert held.engine.evaluate(ECHO).reason == "v1 allows echo"
    assert world.serving_reason() == "v2 allows echo"


# -- step 1: signature ----------------------------------------------------------------


class _Flipping:
    def __init__(self, key):
        self.key = key

    def sign(self, payload):
        der = bytearray(self.key.sign(payload))
        der[-5] ^= 0x01
        return bytes(der)


def test_step1_a_flipped_signature_byte_is_rejected(world):
    from vedette.releases.cosign import sign_classic

    digest, _ = publish(world.repo, None, "stable", policy=POLICY_V2)
    sign_classic(world.repo, digest, "test/recon", _Flipping(world.key.private))
    assert_rejected_at(world, 1)


def test_step1_a_signature_by_an_untrusted_key_is_rejected(world, tmp_path):
    stranger = make_key(tmp_path / "stranger")
    publish(world.repo, stranger, "stable", policy=POLICY_V2)
    assert_rejected_at(world, 1)


def test_step1_a_signature_over_other_bytes_is_rejected(world):
    """The .sig layer holds this release's payload with the signature of another's."""
    from vedette.releases.cosign import sign_classic

    first = world.track.active_digest
    digest, _ = publish(world.repo, None, "stable", policy=POLICY_V2)
    sign_classic(world.repo, digest, "test/recon", world.key.private)
    old_signature = _signature_annotations(world.repo, first)[0]
    _rewrite_signatures(world.repo, digest, old_signature)
    assert_rejected_at(world, 1)


def test_step1_an_unsigned_release_is_rejected(world):
    publish(world.repo, None, "stable", policy=POLICY_V2)
    assert_rejected_at(world, 1)
    assert world.rejected()[-1]["actual"].startswith("no signature found")


# -- step 2: OCI digests ------------------------------------------------------------


def test_step2_the_tag_moved_to_another_manifest_with_a_copied_signature(world):
    first = world.track.active_digest
    other, _ = publish(world.repo, None, "stable", policy=POLICY_V2)
    sig = world.repo.get_manifest(signature_tag(first))
    world.repo.put_manifest(sig.data, OCI_MANIFEST, signature_tag(other))
    assert_rejected_at(world, 2)
    event = world.rejected()[-1]
    assert (event["expected"], event["actual"]) == (other, first)


def test_step2_a_tampered_blob_in_an_image_layout_is_rejected(world, tmp_path):
    digest, built = publish(world.repo, world.key, "stable", policy=POLICY_V2)
    layout = LayoutRepository(tmp_path / "usb", create=True)
    fetch_release(world.repo, "stable", layout, tag="stable")
    bundle = built.policy.blobs[0]
    blob = tmp_path / "usb" / "blobs" / "sha256" / _hex_of(bundle)
    blob.write_bytes(bundle_bytes(POLICY_V1))
    trusted = signing.TrustedKeys.from_files([world.key.public_path])
    with pytest.raises(VerificationError) as caught:
        verify_release(LayoutRepository(tmp_path / "usb"), "stable", trusted, agent_name=AGENT)
    assert caught.value.step == 2
    assert world.track.update_from(LayoutRepository(tmp_path / "usb"), digest) == "rejected"
    assert world.rejected()[-1]["step"] == 2
    assert world.serving_reason() == "v1 allows echo"


# -- step 3: behavioral fingerprint ---------------------------------------------------


def test_step3_an_agent_manifest_with_a_tool_added_is_rejected(world):
    publish_document(
        world.repo, world.key, "stable",
        agent=agent_bytes(tools=["echo", "shell.exec"]), bundle=bundle_bytes(POLICY_V2),
        fingerprint_of=agent_bytes(),
    )  # fmt: skip
    assert_rejected_at(world, 3)


# -- step 4: policy hash ------------------------------------------------------------


def test_step4_a_bundle_whose_policy_changed_is_rejected(world):
    publish_document(
        world.repo, world.key, "stable",
        agent=agent_bytes(), bundle=bundle_bytes(POLICY_V2.replace("echo", "anything")),
        policy_hash_of=bundle_bytes(POLICY_V2),
    )  # fmt: skip
    assert_rejected_at(world, 4)


def test_step4_a_bundle_that_does_not_compile_is_rejected(world):
    publish_document(
        world.repo, world.key, "stable",
        agent=agent_bytes(), bundle=bundle_bytes("package vedette\n\nother := 1\n"),
    )  # fmt: skip
    assert_rejected_at(world, 4)
    assert "compile" in world.rejected()[-1]["reason"]


# -- the checks beside the steps -------------------------------------------------------


def test_a_release_for_another_agent_is_rejected(world):
    publish_document(
        world.repo, world.key, "stable",
        agent=agent_bytes(name="scribe"), bundle=bundle_bytes(POLICY_V2), agent_name="scribe",
    )  # fmt: skip
    assert_rejected_at(world, "agent_name")


def test_an_expired_release_is_rejected(world):
    publish_document(
        world.repo, world.key, "stable",
        agent=agent_bytes(), bundle=bundle_bytes(POLICY_V2), expires_at="2020-01-01T00:00:00Z",
    )  # fmt: skip
    assert_rejected_at(world, "expiry")


def test_a_rejected_digest_is_not_fetched_again(world, tmp_path):
    stranger = make_key(tmp_path / "stranger")
    publish(world.repo, stranger, "stable", policy=POLICY_V2)
    assert world.track.update_from(world.repo, "stable") == "rejected"
    assert world.track.update_from(world.repo, "stable") == "known-bad"
    assert len(world.rejected()) == 1


# -- Sigstore bundle v0.3 -------------------------------------------------------------


def test_a_sigstore_bundle_signature_verifies_through_the_tag_fallback(world):
    digest, built = publish(world.repo, None, "stable", policy=POLICY_V2)
    bundle = sigstore_bundle(digest, "test/recon", world.key.private)
    attach_bundle(world.repo, digest, len(built.release.manifest), bundle)
    assert world.track.update_from(world.repo, "stable") == "activated"
    verified = [e for e in release_events(world.store) if e["event"] == "release.verified"]
    assert verified[-1]["signature"] == "bundle"
    assert world.serving_reason() == "v2 allows echo"


def test_a_sigstore_bundle_by_an_untrusted_key_is_rejected(world, tmp_path):
    stranger = make_key(tmp_path / "stranger")
    digest, built = publish(world.repo, None, "stable", policy=POLICY_V2)
    bundle = sigstore_bundle(digest, "test/recon", stranger.private)
    attach_bundle(world.repo, digest, len(built.release.manifest), bundle)
    assert_rejected_at(world, 1)


def test_a_sigstore_bundle_for_another_digest_is_rejected_at_step2(world):
    first = world.track.active_digest
    digest, built = publish(world.repo, None, "stable", policy=POLICY_V2)
    bundle = sigstore_bundle(first, "test/recon", world.key.private)
    attach_bundle(world.repo, digest, len(built.release.manifest), bundle)
    assert_rejected_at(world, 2)


# -- helpers ---------------------------------------------------------------------------


def _hex_of(data: bytes) -> str:
    from vedette.releases.oci import digest_of

    return digest_of(data).split(":")[1]


def _signature_annotations(repo, digest):
    layers = repo.get_manifest(signature_tag(digest)).json()["layers"]
    return [layer["annotations"][SIGNATURE_ANNOTATION] for layer in layers]


def _rewrite_signatures(repo, digest, signature):
    manifest = repo.get_manifest(signature_tag(digest)).json()
    for layer in manifest["layers"]:
        layer["annotations"][SIGNATURE_ANNOTATION] = signature
    repo.put_manifest(json.dumps(manifest).encode(), OCI_MANIFEST, signature_tag(digest))
    assert base64.b64decode(signature)


def test_a_signed_manifest_that_is_not_a_release_is_rejected(world):
    """Signed by a trusted key, but an agent artifact where a release should be."""
    from vedette.releases.artifacts import agent_artifact
    from vedette.releases.cosign import sign_classic

    artifact = agent_artifact(agent_bytes())
    digest = artifact.push(world.repo, "stable")
    sign_classic(world.repo, digest, "test/recon", world.key.private)
    assert_rejected_at(world, "schema")
