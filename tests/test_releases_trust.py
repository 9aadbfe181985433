"""Rollback and time: an older release under a moved tag is refused while the
current one keeps serving, a digest pin goes back on purpose, expiry is
enforced while serving, and the node's time floor holds a clock that is
behind it (docs/operations.md, "Time and rollback"; docs/threat-model.md,
"A-04: rollback and time"). Every time comes from a fake clock."""

from __future__ import annotations

import json

import pytest
from release_helpers import (
    POLICY_V1,
    POLICY_V2,
    TrackNode,
    agent_bytes,
    bundle_bytes,
    publish,
    publish_document,
    release_events,
)

from vedette.releases.oci import OCI_MANIFEST
from vedette.releases.poller import Poller
from vedette.releases.trust import FLOOR_FILE, iso

POLICY_V3 = POLICY_V1.replace("v1 allows echo", "v3 allows echo")
T0 = 4_000_000_000.0  # 2096-10-02: a fake "now"


class Node(TrackNode):
    def __init__(self, tmp_path, host, name):
        super().__init__(tmp_path, host, name, T0)

    def publish(self, policy, *, version, created, expires_at=None):
        digest, built = publish(
            self.repo, self.key, "stable", policy=policy, version=version,
            created=iso(created), expires_at=None if expires_at is None else iso(expires_at),
        )  # fmt: skip
        return digest, built

    def retag(self, built) -> None:
        """Whoever controls the registry moves the tag to an earlier, signed release."""
        self.repo.put_manifest(built.release.manifest, OCI_MANIFEST, "stable")

    def events_named(self, name: str) -> list[dict]:
        return [e for e in release_events(self.store) if e["event"] == name]

    def state(self) -> dict:
        return json.loads((self.root / "state.json").read_text())


@pytest.fixture
def node(registry, tmp_path, request):
    n = Node(tmp_path, registry.host, request.node.name.lower().replace("_", "-")[:50].strip("-"))
    yield n
    n.close()


def older_then_newer(node):
    """1.2 (an hour old) then 1.4 (a minute old) activated: 1.4 serves."""
    old, old_built = node.publish(POLICY_V1, version="1.2", created=T0 - 3600)
    assert node.track.update_from(node.repo, "stable") == "activated"
    new, _ = node.publish(POLICY_V2, version="1.4", created=T0 - 60)
    assert node.track.update_from(node.repo, "stable") == "activated"
    assert node.reason() == "v2 allows echo"
    return old, old_built, new


# -- rollback -------------------------------------------------------------------------


def test_a_rolled_back_tag_is_refused_and_the_current_release_keeps_serving(node):
    old, old_built, new = older_then_newer(node)
    node.retag(old_built)
    assert node.track.update_from(node.repo, "stable") == "rejected"
    assert node.reason() == "v2 allows echo"
    assert node.track.active_digest == new
    assert node.track.health() == "ok"
    [refused] = node.events_named("release.rollback_refused")
    assert (refused["digest"], refused["step"]) == (old, "rollback")
    assert "release 1.2 (created" in refused["reason"]
    assert "older than the newest activated 1.4 (created" in refused["reason"]
    assert not node.events_named("release.rejected")
    assert node.state()["newest"]["digest"] == new


def test_the_newest_mark_survives_a_restart_and_still_refuses_the_rollback(node):
    _, old_built, _ = older_then_newer(node)
    node.restart()
    node.retag(old_built)
    assert node.track.update_from(node.repo, "stable") == "rejected"
    assert node.reason() == "v2 allows echo"
    assert node.events_named("release.rollback_refused")


def test_a_release_without_created_is_older_than_one_with_it(node):
    """A document made before ``created`` existed, validly signed, replayed under the tag."""
    older_then_newer(node)
    legacy = publish_document(
        node.repo, node.key, "stable", agent=agent_bytes(), bundle=bundle_bytes(POLICY_V3),
        created=None,
    )  # fmt: skip
    assert node.track.update_from(node.repo, "stable") == "rejected"
    assert node.reason() == "v2 allows echo"
    assert node.events_named("release.rollback_refused")[-1]["digest"] == legacy


def test_an_unreadable_newest_mark_refuses_every_release_under_the_tag(node):
    older_then_newer(node)
    state = node.state()
    state["newest"] = {"digest": 7}
    (node.root / "state.json").write_text(json.dumps(state))
    node.restart()
    assert node.reason() == "v2 allows echo"  # what serves keeps serving
    node.publish(POLICY_V3, version="1.5", created=T0 - 10)
    assert node.track.update_from(node.repo, "stable") == "rejected"
    assert node.events_named("release.rollback_refused")[-1]["step"] == "rollback"
    assert any("unreadable newest" in r for r in node.track.describe()["time"]["reasons"])


def test_a_digest_pin_to_the_older_release_is_accepted(node):
    old, _, new = older_then_newer(node)
    node.restart(release=f"{node.repository_ref}@{old}")
    assert node.track.pinned
    assert node.track.update_from(node.repo, old) == "activated"
    assert node.reason() == "v1 allows echo"
    assert not node.events_named("release.rollback_refused")
    # Going back on purpose does not lower the mark: unpinned, the tag must move on.
    assert node.state()["newest"]["digest"] == new


def test_a_release_created_beyond_the_skew_allowance_is_refused(node):
    node.publish(POLICY_V1, version="1.0", created=T0 + 3600)
    assert node.track.update_from(node.repo, "stable") == "rejected"
    [rejected] = node.events_named("release.rejected")
    assert rejected["step"] == "created"
    assert node.track.active() is None


# -- expiry while serving -----------------------------------------------------------------


def test_an_expiry_passing_while_serving_falls_back_to_the_lkg(node):
    node.publish(POLICY_V1, version="1.2", created=T0 - 3600, expires_at=T0 + 86400)
    assert node.track.update_from(node.repo, "stable") == "activated"
    active, _ = node.publish(POLICY_V2, version="1.4", created=T0 - 60, expires_at=T0 + 600)
    assert node.track.update_from(node.repo, "stable") == "activated"
    poller = Poller(node.track, node.repo)
    poller.run_once()
    assert node.reason() == "v2 allows echo"

    node.clock.now = T0 + 601
    assert node.track.active() is None  # denied at once, before the tick
    poller.run_once()  # the poller's loop: the tick, then a poll
    assert node.reason() == "v1 allows echo"
    assert (node.track.serving, node.track.health()) == ("lkg", "lkg")
    [expired] = node.events_named("release.expired")
    assert expired["digest"] == active
    assert node.events_named("release.fallback_lkg")[-1]["failed"] == active
    # The tag still names the expired release: refused, the LKG keeps serving.
    assert node.events_named("release.rejected")[-1]["step"] == "expiry"


def test_an_expiry_passing_with_the_lkg_expired_too_is_deny_all(node):
    node.publish(POLICY_V1, version="1.2", created=T0 - 3600, expires_at=T0 + 300)
    assert node.track.update_from(node.repo, "stable") == "activated"
    node.publish(POLICY_V2, version="1.4", created=T0 - 60, expires_at=T0 + 600)
    assert node.track.update_from(node.repo, "stable") == "activated"

    node.clock.now = T0 + 601
    node.track.tick()
    assert node.track.active() is None
    assert node.track.serving == "deny_all"
    assert "expired" in node.track.unavailable_reason()
    names = [e["event"] for e in release_events(node.store)]
    assert names[-3:] == ["release.expired", "release.rejected", "release.deny_all"]
    assert node.events_named("release.rejected")[-1]["step"] == "expiry"


# -- the time floor ---------------------------------------------------------------------


def test_a_clock_behind_the_floor_is_treated_as_the_floor_and_reported(node):
    # A release valid until T0 + 6000, activated while it was valid.
    node.publish(POLICY_V1, version="1.2", created=T0 - 200, expires_at=T0 + 6000)
    assert node.track.update_from(node.repo, "stable") == "activated"
    node.clock.now = T0 + 7000
    node.track.tick()  # the floor follows the clock to disk; the release has expired
    assert node.track.serving == "deny_all"

    # A board without a real-time clock boots at the epoch.
    node.clock.now = 0.0
    node.restart()
    assert node.track.active() is None  # at the epoch it would still be "valid"
    assert node.events_named("release.rejected")[-1]["step"] == "expiry"
    [behind] = node.events_named("clock.behind_floor")
    assert behind["floor"] == iso(T0 + 7000)
    assert node.track.describe()["time"]["behind_floor"]
    assert any("behind the time floor" in r for r in node.track.describe()["time"]["reasons"])

    # A release that expired before the floor is refused, though "valid" at the epoch.
    node.publish(POLICY_V2, version="1.3", created=T0 + 6500, expires_at=T0 + 6900)
    assert node.track.update_from(node.repo, "stable") == "rejected"
    assert node.events_named("release.rejected")[-1]["step"] == "expiry"

    # A newer release valid at the floor activates; the health says the clock is behind.
    node.publish(POLICY_V3, version="1.4", created=T0 + 7030, expires_at=T0 + 86400)
    assert node.track.update_from(node.repo, "stable") == "activated"
    assert node.reason() == "v3 allows echo"
    assert node.track.health() == "clock_behind"

    node.clock.now = T0 + 7060
    node.track.tick()
    assert node.track.health() == "ok"
    assert node.events_named("clock.caught_up")


def test_the_floor_is_persisted_across_a_restart(node):
    floor_file = node.root.parent / FLOOR_FILE
    node.track.tick()  # first reading: persisted
    assert json.loads(floor_file.read_text())["floor"] == T0
    node.clock.now = T0 + 100
    node.track.tick()  # within the persist interval: not yet on disk
    assert json.loads(floor_file.read_text())["floor"] == T0
    node.clock.now = T0 + 400
    node.track.tick()
    assert json.loads(floor_file.read_text())["floor"] == T0 + 400

    node.clock.now = 0.0
    node.restart()
    assert node.track.floor.floor == T0 + 400
    assert node.track.health() == "deny_all"  # no release yet; the floor is reported
    assert node.track.clock_behind
    assert node.events_named("clock.behind_floor")[-1]["floor"] == iso(T0 + 400)


def test_a_signed_creation_time_raises_the_floor_less_the_skew(node):
    """Behind the floor the node cannot judge a creation time ahead of it: a
    signed one is the best time it has, and raises the floor (less the skew)."""
    node.clock.now = 0.0
    node.publish(POLICY_V1, version="1.0", created=T0 + 3600, expires_at=T0 + 86400)
    assert node.track.update_from(node.repo, "stable") == "activated"
    floor_file = node.root.parent / FLOOR_FILE
    assert json.loads(floor_file.read_text())["floor"] == T0 + 3600 - 300
    assert node.track.floor.now() == T0 + 3300
