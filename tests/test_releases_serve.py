"""`vedette serve` with an agent whose release comes from a real registry."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
from live_server import operator_client
from registry_server import free_port
from release_helpers import AGENT, POLICY_V1, POLICY_V2, TOKEN, make_key, publish

from vedette.releases.oci import RegistryClient
from vedette.store import SegmentStore

VEDETTE = str(Path(sys.executable).with_name("vedette"))


def write_config(tmp_path, ref, key_path, port):
    from vedette.config import token_digest

    config = tmp_path / "vedette.toml"
    config.write_text(
        f'node_id = "serve-node"\nstate_dir = "{tmp_path / "state"}"\n'
        f"[listen]\nport = {port}\n"
        # Generous: a loaded test machine must not turn an allow into a timeout deny.
        "[policy]\neval_timeout_ms = 10000\n"
        f'[[callers]]\nid = "adapter"\nagent = "{AGENT}"\n'
        f'token_sha256 = "{token_digest(TOKEN)}"\n'
        f'[[agents]]\nname = "{AGENT}"\nrelease = "{ref}"\nkeys = ["{key_path}"]\n'
        "poll_interval_s = 0.5\ninsecure = true\n"
    )
    return config


def call(url):
    return httpx.post(
        f"{url}/v1/tool",
        json={"tool": "echo", "args": {"text": "hi"}},
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=10,
    )


def wait_for(condition, limit_s=180.0):
    deadline = time.monotonic() + limit_s
    while True:
        try:
            if condition():
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "the condition did not come true"
        time.sleep(0.1)


def test_serve_activates_a_signed_release_and_follows_the_tag(registry, tmp_path):
    key = make_key(tmp_path / "keys")
    ref = registry.ref("vedette/served", "stable")
    with RegistryClient(registry.host, insecure=True) as client:
        repo = client.repository("vedette/served")
        first, _ = publish(repo, key, "stable", policy=POLICY_V1)
        port = free_port()
        config = write_config(tmp_path, ref, key.public_path, port)
        process = subprocess.Popen(
            [VEDETTE, "serve", "--config", str(config)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=dict(os.environ),
        )  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        operator = operator_client(tmp_path / "state" / "operator.sock")
        try:
            wait_for(lambda: call(url).status_code == 200)
            answer = call(url).json()
            assert answer["decision"] == "allow"
            status = operator.get("/v1/status").json()["agents"][AGENT]
            assert status["active_digest"] == first
            assert status["health"] == "ok"
            assert status["release"] == ref
            assert [e["event"] for e in status["events"]][-1] == "release.activated"
            assert httpx.get(f"{url}/v1/health", timeout=10).json()["agents"][AGENT] == "ok"
            metrics = operator.get("/metrics").text
            assert 'vedette_release_events_total{agent="recon",event="release.activated"' in metrics

            second, _ = publish(repo, key, "stable", policy=POLICY_V2)
            wait_for(
                lambda: operator.get("/v1/status").json()["agents"][AGENT]["active_digest"]
                == second
            )  # fmt: skip
            assert call(url).json()["decision"] == "allow"
        finally:
            operator.close()
            process.send_signal(signal.SIGTERM)
            output = process.communicate(timeout=120)[0]
        assert process.returncode == 0, output
    with SegmentStore.open_read_only(tmp_path / "state" / "store") as store:
        import json

        records = [json.loads(r) for _, r in store.iter_records()]
    events = [r["event"] for r in records if r["kind"] == "release_event"]
    assert events.count("release.activated") == 2
    decisions = [r for r in records if r["kind"] == "decision"]
    assert second in decisions[-1]["release"]["source"]


def test_health_and_status_report_each_release_state(registry, tmp_path):
    from release_helpers import release_config

    from vedette.releases.node import NodeReleases
    from vedette.runtime.interceptor import Runtime

    key = make_key(tmp_path / "keys")
    ref = registry.ref("vedette/health", "stable")
    with RegistryClient(registry.host, insecure=True) as client:
        repo = client.repository("vedette/health")
        config = release_config(tmp_path, ref, [key.public_path])
        config.state_dir.mkdir(parents=True)
        store = SegmentStore.open(config.store_dir, ceiling_bytes=64 << 20, node_id="n")
        releases = NodeReleases(config, store, start_pollers=False)
        runtime = Runtime(config, releases=releases, store=store)
        try:
            assert runtime.health() == {
                "status": "failing",
                "reasons": [f"releases: agent {AGENT} denies every call (no usable release)"],
                "checks": {"releases": "failing", "store": "ok"},
                "agents": {AGENT: "deny_all"},
            }
            publish(repo, key, "stable", policy=POLICY_V1)
            track = releases.tracks[AGENT]
            assert track.update_from(repo, "stable") == "activated"
            assert runtime.health() == {
                "status": "ok",
                "reasons": [],
                "checks": {"releases": "ok", "store": "ok"},
                "agents": {AGENT: "ok"},
            }
            track.contact_failed("OciError: connection refused", 1)
            assert runtime.health() == {
                "status": "degraded",
                "reasons": [
                    f"releases: agent {AGENT} serves a release the control plane has not "
                    "confirmed lately"
                ],
                "checks": {"releases": "degraded", "store": "ok"},
                "agents": {AGENT: "stale"},
            }
            status = runtime.status()["agents"][AGENT]
            assert status["state"] == "active"
            assert status["control_plane"]["reachable"] is False
            assert status["control_plane"]["last_error"] == "OciError: connection refused"
            metrics = runtime.metrics.render().decode()
            assert 'vedette_release_health{agent="recon",state="stale"} 1.0' in metrics
        finally:
            runtime.close()
