"""Onboarding an MCP server (docs/mcp.md, "Onboarding"): `vedette agent from-mcp`
writes an agent manifest from a real server's tools/list — over stdio and over
Streamable HTTP — that the gateway's pinning then matches tool for tool."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

pytest.importorskip("mcp")

from live_server import wait_for_port
from mcp_upstream import TOOLS

from vedette.mcp.pinning import UpstreamTool, compare
from vedette.policy import load_agent_manifest

UPSTREAM = str(Path(__file__).with_name("mcp_upstream.py"))
VEDETTE = [sys.executable, "-m", "vedette"]


def from_mcp(
    tmp_path: Path, *source: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    command = [*VEDETTE, "agent", "from-mcp", "--name", "mcp-agent", "--model",
               "example/model-1", "--out", str(tmp_path / "agent.json"), *source]  # fmt: skip
    environment = {**os.environ, **(env or {})}
    return subprocess.run(command, capture_output=True, text=True, timeout=120, env=environment)


def check_manifest(path: Path) -> None:
    manifest = load_agent_manifest(path)
    assert manifest.name == "mcp-agent"
    document = json.loads(path.read_text())
    declared = {tool["name"]: tool for tool in document["tools"]}
    assert set(declared) == set(TOOLS)
    for name, (description, schema) in TOOLS.items():
        listed = {"name": name, "description": description, "inputSchema": schema}
        assert compare(UpstreamTool.of(listed), declared[name]) is None, name


def test_a_manifest_from_a_stdio_server_pins_every_tool(tmp_path):
    done = from_mcp(tmp_path, "--", sys.executable, UPSTREAM, str(tmp_path / "calls.log"))
    assert done.returncode == 0, done.stderr
    check_manifest(tmp_path / "agent.json")
    assert "behavioral fingerprint: blake3:" in done.stdout
    assert "review" in done.stdout
    assert not (tmp_path / "calls.log").exists(), "listing calls no tool"


@contextmanager
def http_server(tmp_path: Path, *options: str) -> Iterator[str]:
    """The test server on Streamable HTTP; its endpoint's URL."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, UPSTREAM, str(tmp_path / "calls.log"), "--http", str(port), *options],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        wait_for_port(port, server)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        server.terminate()
        server.communicate(timeout=30)


def test_a_manifest_from_a_streamable_http_server(tmp_path):
    with http_server(tmp_path) as url:
        done = from_mcp(tmp_path, "--url", url)
    assert done.returncode == 0, done.stderr
    check_manifest(tmp_path / "agent.json")


def test_a_server_that_wants_a_key_gets_it_from_the_environment(tmp_path):
    with http_server(tmp_path, "--require-header", "x-upstream-key=sesame") as url:
        without = from_mcp(tmp_path, "--url", url)
        unset = from_mcp(tmp_path, "--url", url, "--header-env", "X-Upstream-Key=ONBOARD_KEY")
        done = from_mcp(
            tmp_path,
            "--url",
            url,
            "--header-env",
            "X-Upstream-Key=ONBOARD_KEY",
            env={"ONBOARD_KEY": "sesame"},
        )
    assert without.returncode == 2
    assert "could not be listed" in without.stderr
    assert unset.returncode == 2
    assert "$ONBOARD_KEY is not set" in unset.stderr
    assert done.returncode == 0, done.stderr
    check_manifest(tmp_path / "agent.json")


def test_a_server_that_does_not_start_is_one_line_and_no_file(tmp_path):
    done = from_mcp(tmp_path, "--", str(tmp_path / "no-such-server"))
    assert done.returncode == 2
    assert "could not be listed" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "agent.json").exists()


def test_an_existing_manifest_is_not_overwritten(tmp_path):
    (tmp_path / "agent.json").write_text("{}")
    done = from_mcp(tmp_path, "--", sys.executable, UPSTREAM, str(tmp_path / "calls.log"))
    assert done.returncode == 2
    assert "exists" in done.stderr
    assert (tmp_path / "agent.json").read_text() == "{}"
