"""The MCP gateway: tools/call through vedette against the same upstream directly.

Round trips per second through vedette against the same SDK client calling
the same upstream directly, on stdio and over Streamable HTTP; the latency
vedette adds; memory per connected client.

The upstream is ``bench/mcp_echo_server.py`` (the MCP SDK's low-level server,
one tool that returns its text). The client is the SDK's own ``Client``, one
call at a time. Through vedette every call is decided by the agent's policy
and its allow record made durable (fdatasync) before it goes upstream, and its
outcome recorded after. Direct and gateway runs alternate round by round;
medians are reported.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from pathlib import Path

import httpx
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp_echo_server import SAY_DESCRIPTION, SAY_SCHEMA
from report import machine, write_section

from vedette.config import token_digest

BENCH = Path(__file__).parent
SERVER = BENCH / "mcp_echo_server.py"
VEDETTE = Path(sys.executable).parent / "vedette"
TOKEN = "bench-mcp-token"
MODERN = "2026-07-28"
POLICY = """package vedette

import rego.v1

default decision := {"allow": false, "reason": "no rule allows this call"}

decision := {"allow": true, "reason": "the bench's one tool"} if input.tool == "say"
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_node(workdir: Path, port: int, upstream_url: str | None) -> Path:
    """A node whose agent declares ``say`` and whose policy allows it."""
    agent = {
        "schema": "vedette.agent/v1",
        "name": "bench-agent",
        "version": "1.0.0",
        "model": {"provider": "bench", "name": "bench-model"},
        "tools": [{"name": "say", "description": SAY_DESCRIPTION, "args_schema": SAY_SCHEMA}],
    }
    (workdir / "bundle").mkdir(parents=True, exist_ok=True)
    (workdir / "bundle" / "policy.rego").write_text(POLICY)
    (workdir / "agent.json").write_text(json.dumps(agent))
    servers = f'\n[[mcp.servers]]\nname = "bench"\nurl = "{upstream_url}"\n' if upstream_url else ""
    config = workdir / f"vedette-{port}.toml"
    config.write_text(
        f"""
node_id = "bench-mcp"
state_dir = "{workdir / f"state-{port}"}"

[listen]
host = "127.0.0.1"
port = {port}

[store]
ceiling_bytes = 17179869184

# The bench measures the gateway, not the caller's rate quota.
[quota]
rate_per_s = 1000000
burst = 1000000

[[callers]]
id = "bench"
agent = "bench-agent"
token_sha256 = "{token_digest(TOKEN)}"

[[agents]]
name = "bench-agent"
manifest = "{workdir / "agent.json"}"
bundle = "{workdir / "bundle"}"
unsigned = true
{servers}"""
    )
    return config


def stdio_client(config: Path | None, mode: str = "legacy") -> Client:
    """The SDK client of the echo server on stdio; through ``vedette mcp`` with ``config``."""
    command = [sys.executable, str(SERVER)]
    if config is not None:
        gateway = [str(VEDETTE), "mcp", "--config", str(config), "--caller", "bench", "--"]
        command = [*gateway, *command]
    return Client(StdioServerParameters(command=command[0], args=command[1:]), mode=mode)


@asynccontextmanager
async def http_client(url: str, mode: str) -> AsyncIterator[Client]:
    """The SDK client of a Streamable HTTP endpoint, with the bench caller's token."""
    async with create_mcp_http_client(headers={"Authorization": f"Bearer {TOKEN}"}) as http:
        transport = streamable_http_client(url, http_client=http)
        async with Client(transport, mode=mode, cache=None) as client:
            yield client


Connect = Callable[[], AbstractAsyncContextManager[Client]]


async def round_trips(make: Connect, seconds: float) -> dict[str, float]:
    """One client, one call at a time, for ``seconds`` after a warm-up."""
    async with make() as client:
        for _ in range(50):
            await client.call_tool("say", {"text": "warm"})
        latencies: list[float] = []
        start = time.perf_counter()
        while time.perf_counter() - start < seconds:
            began = time.perf_counter()
            result = await client.call_tool("say", {"text": "hello"})
            latencies.append(time.perf_counter() - began)
            if result.is_error:
                raise RuntimeError(f"the call failed: {result}")
        elapsed = time.perf_counter() - start
    latencies.sort()
    return {
        "per_s": len(latencies) / elapsed,
        "p50_us": latencies[len(latencies) // 2] * 1e6,
        "p99_us": latencies[int(len(latencies) * 0.99)] * 1e6,
    }


def paired(
    direct: Connect, gateway: Connect, seconds: float, rounds: int
) -> dict[str, dict[str, float]]:
    """Direct and through vedette, alternating; the median of each figure."""
    runs: dict[str, list[dict[str, float]]] = {"direct": [], "gateway": []}
    for _ in range(rounds):
        runs["direct"].append(asyncio.run(round_trips(direct, seconds)))
        runs["gateway"].append(asyncio.run(round_trips(gateway, seconds)))
    print(runs)
    return {
        side: {key: statistics.median(run[key] for run in found) for key in found[0]}
        for side, found in runs.items()
    }


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def pid_of(*words: str) -> int:
    """The process whose command line holds every word (the gateway the SDK started)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if all(word in command for word in words) and "compare_mcp" not in command:
            return int(entry.name)
    raise RuntimeError(f"no process with {words}")


async def stdio_gateway_rss(config: Path) -> int:
    async with stdio_client(config) as client:
        await client.call_tool("say", {"text": "hello"})
        return rss_kib(pid_of("mcp", str(config)))


async def per_client_kib(url: str, pid: int, clients: int) -> float:
    """RSS the node grows by per open MCP session (handshake era: each holds a session)."""
    before = rss_kib(pid)
    async with AsyncExitStack() as stack:
        for _ in range(clients):
            client = await stack.enter_async_context(http_client(url, "legacy"))
            await client.list_tools()
        await asyncio.sleep(1)
        during = rss_kib(pid)
    return (during - before) / clients


def wait_until(check: Callable[[], bool], what: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while not check():
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not start")
        time.sleep(0.1)


def answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code < 500
    except httpx.TransportError:
        return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short runs; do not write RESULTS.md")
    args = parser.parse_args()
    facts = machine()
    print(facts)
    seconds, rounds, clients = (2.0, 1, 10) if args.quick else (5.0, 3, 50)
    workdir = Path(tempfile.mkdtemp(prefix="vedette-bench-mcp-"))
    processes: list[subprocess.Popen[bytes]] = []
    try:
        stdio_config = write_node(workdir, free_port(), None)
        stdio: dict[str, dict[str, dict[str, float]]] = {}
        for mode in ("legacy", "auto"):
            stdio[mode] = paired(
                lambda mode=mode: stdio_client(None, mode),
                lambda mode=mode: stdio_client(stdio_config, mode),
                seconds,
                rounds,
            )
            print("stdio", mode, stdio[mode])
        stdio_rss = asyncio.run(stdio_gateway_rss(stdio_config))
        print("gateway RSS KiB", stdio_rss)

        upstream_port, node_port = free_port(), free_port()
        upstream = subprocess.Popen([sys.executable, str(SERVER), "--http", str(upstream_port)])
        processes.append(upstream)
        upstream_url = f"http://127.0.0.1:{upstream_port}/mcp"
        wait_until(lambda: answers(upstream_url), "the upstream", upstream)
        config = write_node(workdir, node_port, upstream_url)
        node = subprocess.Popen([str(VEDETTE), "serve", "--config", str(config)])
        processes.append(node)
        node_url = f"http://127.0.0.1:{node_port}"
        wait_until(lambda: answers(f"{node_url}/v1/health"), "vedette serve", node)
        http: dict[str, dict[str, dict[str, float]]] = {}
        for mode in (MODERN, "legacy"):
            http[mode] = paired(
                lambda mode=mode: http_client(upstream_url, mode),
                lambda mode=mode: http_client(f"{node_url}/mcp", mode),
                seconds,
                rounds,
            )
            print("http", mode, http[mode])
        per_client = asyncio.run(per_client_kib(f"{node_url}/mcp", node.pid, clients))
        node_rss = rss_kib(node.pid)
        print("per client KiB", per_client, "node RSS KiB", node_rss)
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
        shutil.rmtree(workdir, ignore_errors=True)

    def verdict(met: bool) -> str:
        return "met" if met else "NOT met"

    rows = []
    checks = [
        ("stdio", "handshake era (2025-11-25)", stdio["legacy"]),
        ("stdio", MODERN, stdio["auto"]),
    ] + [
        ("Streamable HTTP", mode if mode == MODERN else "handshake era (2025-11-25)", http[mode])
        for mode in (MODERN, "legacy")
    ]
    for transport, era, found in checks:
        direct, gateway = found["direct"], found["gateway"]
        ratio = gateway["per_s"] / direct["per_s"]
        added50 = gateway["p50_us"] - direct["p50_us"]
        added99 = gateway["p99_us"] - direct["p99_us"]
        rows.append(
            f"| {transport}, {era} | {direct['per_s']:.0f} | {gateway['per_s']:.0f} | "
            f"{ratio:.2f}× — {verdict(ratio >= 0.8)} | {added50 / 1000:.2f} ms | "
            f"{added99 / 1000:.2f} ms — {verdict(added99 <= 1000)} |"
        )
    table = "\n".join(rows)
    body = f"""## MCP gateway: tools/call through vedette against the upstream directly

Machine: {facts}.
Command: `python bench/compare_mcp.py`. The MCP SDK's own client, one call at a
time for {seconds:.0f} s after a warm-up, calling `say` on the SDK's low-level
server (`bench/mcp_echo_server.py`) directly and through vedette (`vedette mcp`
on stdio; `/mcp` of `vedette serve` in front of the server's Streamable HTTP
endpoint). Through vedette each call is decided by the policy, its allow
record made durable (fdatasync) before the call goes upstream, and its outcome
recorded. {rounds} rounds each, alternating; medians.

| transport, protocol | direct calls/s | through vedette calls/s | ratio (goal ≥ 0.8×) | \
added p50 | added p99 (goal ≤ 1 ms) |
|---|---|---|---|---|---|
{table}

| memory | |
|---|---|
| `vedette mcp` (one client; its upstream not counted), RSS | {stdio_rss / 1024:.1f} MB |
| `vedette serve` with `/mcp`, RSS after the runs | {node_rss / 1024:.1f} MB |
| each further connected client of `/mcp` ({clients} sessions held open, handshake era) | \
{per_client:.1f} KiB |
"""
    print(body)
    if not args.quick:
        write_section("mcp", body)


if __name__ == "__main__":
    main()
