"""`vedette release push|verify|pull|status` against a real registry."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from release_helpers import POLICY_V1, agent_bytes, make_key

from vedette.releases.oci import RegistryClient

VEDETTE = str(Path(sys.executable).with_name("vedette"))


def run(*args, password="correct horse", check=True):
    env = {**os.environ, "VEDETTE_PASSWORD": password}
    result = subprocess.run(
        [VEDETTE, "release", *args], capture_output=True, text=True, env=env, timeout=120
    )
    if check:
        assert result.returncode == 0, result.stdout + result.stderr
    return result


def sources(tmp_path):
    (tmp_path / "agent.json").write_bytes(agent_bytes())
    bundle = tmp_path / "bundle" / "vedette"
    bundle.mkdir(parents=True)
    (bundle / "policy.rego").write_text(POLICY_V1)
    return tmp_path / "agent.json", tmp_path / "bundle"


def test_push_then_verify_prints_every_step(registry, tmp_path):
    key = make_key(tmp_path / "keys")
    agent, bundle = sources(tmp_path)
    target = f"{registry.host}/vedette/cli:stable"
    pushed = run("push", "--agent", str(agent), "--bundle", str(bundle), "--to", target,
                 "--key", str(tmp_path / "keys" / "cosign.key"), "--insecure")  # fmt: skip
    assert "signed" in pushed.stdout
    verified = run("verify", target, "--key", str(key.public_path), "--insecure")
    lines = verified.stdout.splitlines()
    for label in ("step 1 (signature)", "step 2 (OCI digest)", "step 3 (behavioral fingerprint)",
                  "step 4 (policy hash)", "schema", "agent name", "expiry"):  # fmt: skip
        assert any(line.startswith(f"ok    {label}") for line in lines), verified.stdout
    assert lines[-1].startswith("verified recon 1.0.0 sha256:")


def test_verify_with_an_untrusted_key_fails_at_step_1(registry, tmp_path):
    make_key(tmp_path / "keys")
    stranger = make_key(tmp_path / "stranger")
    agent, bundle = sources(tmp_path)
    target = f"{registry.host}/vedette/cli-untrusted:stable"
    run("push", "--agent", str(agent), "--bundle", str(bundle), "--to", target,
        "--key", str(tmp_path / "keys" / "cosign.key"), "--insecure")  # fmt: skip
    result = run("verify", target, "--key", str(stranger.public_path), "--insecure", check=False)
    assert result.returncode == 1
    assert result.stdout.startswith("FAIL  step 1 (signature)")
    assert "expected: a signature by a trusted key" in result.stdout


def test_every_registry_command_needs_insecure_for_plain_http(registry, tmp_path):
    key = make_key(tmp_path / "keys")
    result = run("verify", f"{registry.host}/vedette/cli:stable", "--key",
                 str(key.public_path), check=False)  # fmt: skip
    # The registry cannot be read, so nothing was verified: cannot run, not a failed step.
    assert result.returncode == 2
    assert "https://" in result.stdout


def test_pull_to_a_layout_then_serve_from_it(registry, tmp_path):
    key = make_key(tmp_path / "keys")
    agent, bundle = sources(tmp_path)
    target = f"{registry.host}/vedette/cli-pull:stable"
    run("push", "--agent", str(agent), "--bundle", str(bundle), "--to", target,
        "--key", str(tmp_path / "keys" / "cosign.key"), "--insecure")  # fmt: skip
    usb = tmp_path / "usb"
    pulled = run("pull", target, "--to", str(usb), "--key", str(key.public_path), "--insecure")
    assert "verified recon 1.0.0" in pulled.stdout
    verified = run("verify", f"oci-layout://{usb}:stable", "--key", str(key.public_path))
    assert verified.stdout.splitlines()[-1].startswith("verified recon")
    with RegistryClient(registry.host, insecure=True) as client:
        assert client.repository("vedette/cli-pull").resolve("stable") in pulled.stdout


def test_a_wrong_key_password_is_a_clear_error(registry, tmp_path):
    make_key(tmp_path / "keys")
    agent, bundle = sources(tmp_path)
    result = run("push", "--agent", str(agent), "--bundle", str(bundle), "--to",
                 f"{registry.host}/vedette/cli-pw:stable", "--key",
                 str(tmp_path / "keys" / "cosign.key"), "--insecure",
                 password="wrong", check=False)  # fmt: skip
    assert result.returncode == 2  # a key it cannot use: cannot run
    assert "Error" in result.stderr
    assert "Traceback" not in result.stderr


def test_status_reads_the_persisted_state(tmp_path):
    state = tmp_path / "state" / "releases" / "recon"
    state.mkdir(parents=True)
    (state / "state.json").write_text(json.dumps({"active": "sha256:" + "a" * 64, "lkg": None}))
    key = tmp_path / "cosign.pub"
    key.write_text("unused")
    config = tmp_path / "vedette.toml"
    config.write_text(
        f'state_dir = "{tmp_path / "state"}"\n[[agents]]\nname = "recon"\n'
        f'release = "oci://127.0.0.1:1/vedette/recon:stable"\nkeys = ["{key}"]\n'
    )
    result = run("status", "--config", str(config), "--json")
    assert json.loads(result.stdout)["recon"]["active"] == "sha256:" + "a" * 64
