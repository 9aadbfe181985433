"""Only signed releases run (docs/threat-model.md, A-02): local files are packed
into a signed image layout with `vedette release pack` and verified like any
release; unsigned files run only with `unsigned = true`, and then health,
status, metrics and every decision record say so."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from release_helpers import AGENT, PASSWORD, make_key, release_config, release_events
from runtime_fixtures import ECHO_SCHEMA, POLICY, runtime_config, write_release

from vedette.config import ConfigError, load_config
from vedette.runtime.identity import Caller
from vedette.runtime.interceptor import Runtime
from vedette.serve import build_runtime, wait_for_releases
from vedette.store import SegmentStore

VEDETTE = str(Path(sys.executable).with_name("vedette"))
ECHO = {"tool": "echo", "args": {"text": "hi"}}


def decision_records(store_dir: Path) -> list[dict]:
    with SegmentStore.open_read_only(store_dir) as store:
        records = [json.loads(record) for _, record in store.iter_records()]
    return [record for record in records if record.get("kind") == "decision"]


def test_local_files_without_unsigned_are_refused_at_load(tmp_path):
    path = tmp_path / "vedette.toml"
    path.write_text('[[agents]]\nname = "recon"\nmanifest = "a.json"\nbundle = "b"\n')
    with pytest.raises(ConfigError, match=r"agents\[0\]: .*not signed.*vedette release pack"):
        load_config(path, env={}, overrides={})
    path.write_text(path.read_text() + "unsigned = true\n")
    assert load_config(path, env={}, overrides={}).agents[0].unsigned


def test_a_signed_release_cannot_be_declared_unsigned(tmp_path):
    path = tmp_path / "vedette.toml"
    path.write_text(
        '[[agents]]\nname = "recon"\nrelease = "oci-layout://r:x"\nkeys = ["k.pub"]\n'
        "unsigned = true\n"
    )
    with pytest.raises(ConfigError, match=r"agents\[0\]\.unsigned"):
        load_config(path, env={}, overrides={})


def test_the_runtime_refuses_local_files_without_unsigned(tmp_path):
    config = runtime_config(tmp_path)
    signed_off = tuple(dataclasses.replace(a, unsigned=False) for a in config.agents)
    runtime = Runtime(dataclasses.replace(config, agents=signed_off))
    try:
        decision = runtime.decide(ECHO, Caller("adapter-a", "recon"))
        assert decision.outcome == "deny"
        assert "not signed" in (decision.reason or "")
        assert runtime.health()["agents"]["recon"] == "deny_all"
    finally:
        runtime.close()


def test_an_unsigned_agent_is_said_to_be_unsigned_everywhere(tmp_path):
    runtime = Runtime(runtime_config(tmp_path))
    try:
        decision = runtime.decide(ECHO, Caller("adapter-a", "recon"))
        assert decision.outcome == "allow"
        health = runtime.health()
        assert health["status"] == "degraded"
        assert (
            "releases: agent recon runs unsigned local files (unsigned = true)"
            in (health["reasons"])
        )
        assert runtime.status()["agents"]["recon"]["signed"] is False
        assert 'vedette_agent_unsigned{agent="recon"} 1.0' in runtime.metrics.render().decode()
        runtime.flush_evidence()
    finally:
        runtime.close()
    (record,) = decision_records(tmp_path / "state" / "store")
    assert record["release"]["signed"] is False
    assert "signed_by" not in record["release"]


def test_a_packed_release_runs_verified_and_names_its_key(tmp_path):
    key = make_key(tmp_path / "keys")
    agent = write_release(tmp_path / "files", AGENT, [("echo", ECHO_SCHEMA)], POLICY)
    layout = tmp_path / "layout"
    packed = subprocess.run(
        [VEDETTE, "release", "pack", "--agent", str(agent.manifest), "--bundle",
         str(agent.bundle), "--key", str(tmp_path / "keys" / "cosign.key"), "--to",
         str(layout), "--tag", "stable"],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "VEDETTE_PASSWORD": PASSWORD.decode()},
    )  # fmt: skip
    assert packed.returncode == 0, packed.stderr
    assert f'release = "oci-layout://{layout.resolve()}:stable"' in packed.stdout
    # The same four steps as a registry's release, from the layout.
    verified = subprocess.run(
        [VEDETTE, "release", "verify", f"oci-layout://{layout}:stable", "--key",
         str(key.public_path)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert verified.returncode == 0, verified.stdout + verified.stderr

    config = release_config(tmp_path, f"oci-layout://{layout}:stable", [key.public_path])
    runtime = build_runtime(config)
    try:
        wait_for_releases(runtime)
        decision = runtime.decide(ECHO, Caller("adapter", AGENT))
        assert decision.outcome == "allow"
        key_id = runtime.status()["agents"][AGENT]["signed_by"]
        assert runtime.status()["agents"][AGENT]["signed"] is True
        assert runtime.health()["agents"][AGENT] == "ok"
        runtime.flush_evidence()
        events = release_events(runtime.store)
    finally:
        runtime.close()
    (record,) = decision_records(tmp_path / "state" / "store")
    assert record["release"]["signed"] is True
    assert record["release"]["signed_by"] == key_id
    activated = [e for e in events if e["event"] == "release.activated"]
    assert activated
    assert activated[-1]["key_id"] == key_id


def test_pack_refuses_a_bundle_that_does_not_compile(tmp_path):
    make_key(tmp_path / "keys")
    agent = write_release(tmp_path / "files", AGENT, [("echo", ECHO_SCHEMA)], "package broken {")
    packed = subprocess.run(
        [VEDETTE, "release", "pack", "--agent", str(agent.manifest), "--bundle",
         str(agent.bundle), "--key", str(tmp_path / "keys" / "cosign.key"), "--to",
         str(tmp_path / "layout")],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "VEDETTE_PASSWORD": PASSWORD.decode()},
    )  # fmt: skip
    assert packed.returncode == 2, packed.stdout + packed.stderr
    assert not (tmp_path / "layout" / "index.json").exists()
