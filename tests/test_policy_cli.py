"""`vedette bundle`, `vedette policy eval` and `vedette agent fingerprint`."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from policy_helpers import ALLOW_ECHO, EXAMPLES, example_input, write_bundle

from vedette.cli import main
from vedette.policy import Bundle, load_agent_manifest


def run(*args: str, stdin: str | None = None):
    return CliRunner().invoke(main, list(args), input=stdin)


def test_bundle_build_is_reproducible_and_prints_the_hash(tmp_path):
    first, second = tmp_path / "a.tar.gz", tmp_path / "b.tar.gz"
    result = run("bundle", "build", str(EXAMPLES / "bundle"), "-o", str(first))
    assert result.exit_code == 0, result.output
    assert run("bundle", "build", str(EXAMPLES / "bundle"), "-o", str(second)).exit_code == 0
    assert first.read_bytes() == second.read_bytes()
    policy_hash = Bundle.load(EXAMPLES / "bundle").policy_hash
    assert result.output == f"{policy_hash}  {first}\n"
    assert Bundle.load(first).policy_hash == policy_hash


def test_bundle_build_refuses_a_bundle_without_entry_point(tmp_path):
    source = write_bundle(tmp_path / "b", {"p.rego": "package other\nx := 1\n"})
    output = tmp_path / "out.tar.gz"
    result = run("bundle", "build", str(source), "-o", str(output))
    assert result.exit_code == 2
    assert "entry-point" in result.output
    assert not output.exists()


def test_bundle_hash_of_directory_and_tarball(tmp_path):
    packed = tmp_path / "b.tar.gz"
    packed.write_bytes(Bundle.load(EXAMPLES / "bundle").to_tar_gz())
    from_dir = run("bundle", "hash", str(EXAMPLES / "bundle"))
    from_tar = run("bundle", "hash", str(packed))
    assert from_dir.exit_code == from_tar.exit_code == 0
    assert from_dir.output == from_tar.output
    assert from_dir.output.startswith("sha256:")


def test_bundle_hash_of_a_corrupt_tarball_fails(tmp_path):
    corrupt = tmp_path / "bad.tar.gz"
    corrupt.write_bytes(b"\x1f\x8b not really")
    result = run("bundle", "hash", str(corrupt))
    assert result.exit_code == 2
    assert "unreadable" in result.output


@pytest.mark.parametrize(
    ("name", "exit_code", "allow"),
    [
        ("echo.json", 0, True),
        ("fs-read-data.json", 0, True),
        ("fs-read-outside.json", 1, False),
        ("fs-read-traversal.json", 1, False),
        ("shell-exec.json", 1, False),
        ("admin-claims.json", 1, False),
    ],
)
def test_policy_eval_exit_codes_on_the_example(name, exit_code, allow):
    result = run(
        "policy",
        "eval",
        "--bundle",
        str(EXAMPLES / "bundle"),
        "--input",
        str(EXAMPLES / "inputs" / name),
    )
    assert result.exit_code == exit_code, result.output
    decision = json.loads(result.output)
    assert decision["allow"] is allow
    assert decision["revision"] == "example-1"
    assert decision["policy_hash"].startswith("sha256:")


def test_policy_eval_reads_standard_input():
    document = json.dumps(example_input("echo", {"text": "hi"}))
    result = run(
        "policy", "eval", "--bundle", str(EXAMPLES / "bundle"), "--input", "-", stdin=document
    )
    assert result.exit_code == 0
    assert json.loads(result.output)["reason"] == "echo is always allowed"


def test_policy_eval_errors_exit_2(tmp_path):
    bad_input = tmp_path / "in.json"
    bad_input.write_text("{not json")
    result = run("policy", "eval", "--bundle", str(EXAMPLES / "bundle"), "--input", str(bad_input))
    assert result.exit_code == 2
    assert "not valid JSON" in result.output
    broken = write_bundle(tmp_path / "b", {"p.rego": "package vedette\ndecision := {\n"})
    good_input = tmp_path / "ok.json"
    good_input.write_text("{}")
    result = run("policy", "eval", "--bundle", str(broken), "--input", str(good_input))
    assert result.exit_code == 2
    assert "rego" in result.output


def test_policy_eval_fault_is_a_deny(tmp_path):
    bundle = write_bundle(tmp_path / "b", {"p.rego": ALLOW_ECHO.replace('"echo is harmless"', "7")})
    document = tmp_path / "in.json"
    document.write_text('{"tool": "echo"}')
    result = run("policy", "eval", "--bundle", str(bundle), "--input", str(document))
    assert result.exit_code == 1
    assert json.loads(result.output)["fault"] == "malformed"


def test_agent_fingerprint(tmp_path):
    result = run("agent", "fingerprint", str(EXAMPLES / "agent.json"))
    assert result.exit_code == 0
    assert (
        result.output == f"{load_agent_manifest(EXAMPLES / 'agent.json').behavioral_fingerprint}\n"
    )
    bad = tmp_path / "agent.json"
    bad.write_text('{"schema": "vedette.agent/v1"}')
    result = run("agent", "fingerprint", str(bad))
    assert result.exit_code == 2
    assert "agent manifest name: is required" in result.output
