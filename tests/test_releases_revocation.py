"""Keys and revocations, live (docs/operations.md, "Keys and revocations, live";
docs/threat-model.md, A-02): a trusted key added without a restart, a key and a
release revoked while serving, a revocation list that cannot be read; and who
changed what: node starts and configuration changes in the evidence."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from release_helpers import AGENT, make_key, release_config, release_events
from runtime_fixtures import ECHO_SCHEMA, POLICY, write_release

from vedette.config import ReleasesConfig
from vedette.releases.pack import bundle_bytes, pack_release
from vedette.releases.revocations import RevocationsError, TrustWatch
from vedette.runtime.identity import Caller
from vedette.serve import build_runtime, wait_for_releases
from vedette.store import SegmentStore

VEDETTE = str(Path(sys.executable).with_name("vedette"))
ECHO = {"tool": "echo", "args": {"text": "hi"}}
POLICY_V2 = POLICY.replace("package vedette", "package vedette\n\n# v2")


class Node:
    """A node whose one agent trusts the keys in ``keys/`` and runs the release
    tagged ``stable`` in an image layout, with a revocation list."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp = tmp_path
        self.keys = tmp_path / "keys"
        self.keys.mkdir()
        self.signer_a = make_key(tmp_path / "signer-a")
        self.signer_b = make_key(tmp_path / "signer-b")
        self.layout = tmp_path / "layout"
        self.revocations = tmp_path / "revocations.json"
        self.revocations.write_text('{"keys": [], "releases": []}')
        files = write_release(tmp_path / "files", AGENT, [("echo", ECHO_SCHEMA)], POLICY)
        self.agent_json = files.manifest.read_bytes()
        self.bundle = files.bundle
        config = release_config(tmp_path, f"oci-layout://{self.layout}:stable", [self.keys])
        self.config = dataclasses.replace(
            config, releases=ReleasesConfig(revocations=self.revocations)
        )
        self.runtime = None

    def trust(self, signer) -> None:  # type: ignore[no-untyped-def]
        shutil.copy(signer.public_path, self.keys / f"{signer.public_path.parent.name}.pub")

    def pack(self, signer, policy: str = POLICY, version: str = "1.0.0") -> str:  # type: ignore[no-untyped-def]
        bundle = self.tmp / f"bundle-{version}"
        shutil.copytree(self.bundle, bundle)
        (bundle / "policy.rego").write_text(policy)
        return pack_release(
            self.layout, "stable", self.agent_json, bundle_bytes(bundle), signer.private,
            version=version,
        )  # fmt: skip

    def start(self):  # type: ignore[no-untyped-def]
        self.runtime = build_runtime(self.config)
        return self.runtime

    def reload(self) -> None:
        """What the watch does within a second of a change (run now)."""
        self.runtime.releases.watch.check()  # type: ignore[union-attr]

    def decide(self):  # type: ignore[no-untyped-def]
        return self.runtime.decide(ECHO, Caller("adapter", AGENT))  # type: ignore[union-attr]

    def events(self, name: str) -> list[dict]:
        return [e for e in release_events(self.runtime.store) if e["event"] == name]  # type: ignore[union-attr]

    def revoke(self, keys: list[str] = (), releases: list[str] = ()) -> None:  # type: ignore[assignment]
        self.revocations.write_text(json.dumps({"keys": list(keys), "releases": list(releases)}))

    def wait_for(self, what: str, check) -> None:  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + 60
        while not check():
            assert time.monotonic() < deadline, f"never happened: {what}"
            time.sleep(0.05)

    def close(self) -> None:
        if self.runtime is not None:
            self.runtime.close()


@pytest.fixture
def node(tmp_path):
    n = Node(tmp_path)
    yield n
    n.close()


def test_a_trusted_key_added_without_a_restart(node):
    node.trust(node.signer_a)
    node.pack(node.signer_b)  # signed by a key the node does not trust yet
    node.start()
    node.wait_for("the release refused", lambda: node.events("release.rejected"))
    assert node.decide().outcome == "deny"
    node.trust(node.signer_b)
    node.reload()
    [reloaded] = node.events("keys.reloaded")
    assert len(reloaded["added"]) == 1
    assert reloaded["removed"] == []
    node.wait_for("the release activated", lambda: node.decide().outcome == "allow")
    activated = node.events("release.activated")
    assert activated[-1]["key_id"] == reloaded["added"][0]


def test_a_key_revoked_while_serving_drops_its_release_at_once(node):
    node.trust(node.signer_a)
    node.pack(node.signer_a)
    node.start()
    wait_for_releases(node.runtime)
    assert node.decide().outcome == "allow"
    served = node.runtime.status()["agents"][AGENT]
    key_id, digest = served["signed_by"], served["active_digest"]
    node.revoke(keys=[key_id])
    node.reload()
    decision = node.decide()
    assert decision.outcome == "deny"
    assert "no longer trusted" in decision.reason
    [revoked] = node.events("release.revoked")
    assert revoked["digest"] == digest
    [reloaded] = node.events("keys.reloaded")
    assert reloaded["removed"] == [key_id]
    assert reloaded["revocations"]["keys"] == [key_id]
    assert node.runtime.health()["agents"][AGENT] == "deny_all"


def test_a_release_revoked_while_serving_falls_back_to_the_last_known_good(node):
    node.trust(node.signer_a)
    first = node.pack(node.signer_a, version="1.0.0")
    node.start()
    wait_for_releases(node.runtime)
    second = node.pack(node.signer_a, POLICY_V2, version="1.1.0")
    node.runtime.releases.pollers[0].wake()  # type: ignore[attr-defined]
    node.wait_for(
        "the second release active",
        lambda: node.runtime.status()["agents"][AGENT]["active_digest"] == second,
    )
    node.revoke(releases=[second])
    node.reload()
    agent = node.runtime.status()["agents"][AGENT]
    assert agent["active_digest"] == first
    assert agent["serving"] == "lkg"
    assert node.decide().outcome == "allow"
    [revoked] = node.events("release.revoked")
    assert revoked["digest"] == second
    # The tag still names the revoked release: refused at step "revoked" from now on.
    node.runtime.releases.pollers[0].wake()  # type: ignore[attr-defined]
    node.wait_for(
        "the tag refused",
        lambda: any(e.get("step") == "revoked" for e in node.events("release.rejected")),
    )
    assert node.runtime.status()["agents"][AGENT]["active_digest"] == first


def test_an_unreadable_revocation_list_keeps_the_trust_in_force(node):
    node.trust(node.signer_a)
    node.pack(node.signer_a)
    node.start()
    wait_for_releases(node.runtime)
    key_id = node.runtime.status()["agents"][AGENT]["signed_by"]
    node.revoke(keys=[key_id])
    node.reload()
    assert node.decide().outcome == "deny"
    node.revocations.write_text("{not json")  # a half-written file
    node.reload()
    [failed] = node.events("keys.reload_failed")
    assert "not JSON" in failed["reason"]
    assert node.decide().outcome == "deny", "the key stays revoked"


def test_a_revocation_list_that_cannot_be_read_at_start_stops_the_node(node):
    node.trust(node.signer_a)
    node.revocations.write_text('{"keys": ["not a digest"]}')
    with pytest.raises(RevocationsError, match="sha256"):
        node.start()


def test_a_signal_reloads_without_any_file_changing(tmp_path):
    causes: list[str] = []
    watch = TrustWatch([tmp_path], causes.append)
    watch.check()
    assert causes == []
    watch.request()
    watch.check()
    assert causes == ["signal"]
    (tmp_path / "new.pub").write_text("x")
    watch.check()
    assert causes[-1].startswith("changed: ")


# -- a real node: SIGHUP and who changed what ------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def serve(node: Node, port: int, quota: int) -> subprocess.Popen[str]:
    config = node.tmp / "vedette.toml"
    config.write_text(
        f"""
node_id = "audit-node"
state_dir = "{node.tmp / "state"}"
[listen]
port = {port}
[quota]
rate_per_s = {quota}
burst = {quota}
[releases]
revocations = "{node.revocations}"
[[agents]]
name = "{AGENT}"
release = "oci-layout://{node.layout}:stable"
keys = ["{node.keys}"]
"""
    )
    return subprocess.Popen(
        [VEDETTE, "serve", "--config", str(config)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip


def stop(process: subprocess.Popen[str]) -> str:
    process.send_signal(signal.SIGTERM)
    return process.communicate(timeout=60)[0]


def records(node: Node, kind: str) -> list[dict]:
    with SegmentStore.open_read_only(node.tmp / "state" / "store") as store:
        found = [json.loads(record) for _, record in store.iter_records()]
    return [r for r in found if r.get("kind") == kind]


def wait_for_socket(path: Path, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 60
    while not path.is_socket():
        assert process.poll() is None, process.communicate()[0]
        assert time.monotonic() < deadline, "the node did not start"
        time.sleep(0.1)


def test_sighup_reloads_and_every_start_and_change_of_config_is_recorded(node):
    node.trust(node.signer_a)
    node.pack(node.signer_a)
    port = free_port()
    process = serve(node, port, quota=100)
    wait_for_socket(node.tmp / "state" / "operator.sock", process)
    os.kill(process.pid, signal.SIGHUP)
    time.sleep(1.5)  # the watch turns once a second; the reload is in the evidence below
    assert process.poll() is None, "SIGHUP must not stop the node"
    stop(process)
    process = serve(node, port, quota=100)  # the same configuration
    wait_for_socket(node.tmp / "state" / "operator.sock", process)
    stop(process)
    process = serve(node, port, quota=200)  # the quota changed
    wait_for_socket(node.tmp / "state" / "operator.sock", process)
    stop(process)

    reloads = [e for e in records(node, "release_event") if e["event"] == "keys.reloaded"]
    assert [e["cause"] for e in reloads] == ["signal"]
    starts = records(node, "node_start")
    assert len(starts) == 3
    assert starts[0]["config_digest"] == starts[1]["config_digest"] != starts[2]["config_digest"]
    assert set(starts[0]["sections"]) >= {"quota", "agents", "trusted_keys", "releases"}
    changes = records(node, "config_changed")
    assert len(changes) == 1, "an unchanged restart records no change"
    assert changes[0]["changed"] == ["quota"]
    assert changes[0]["previous_digest"] == starts[1]["config_digest"]
    assert changes[0]["digest"] == starts[2]["config_digest"]
