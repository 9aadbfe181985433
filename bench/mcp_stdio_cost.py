"""Where a tools/call's time goes in ``vedette mcp``, without the SDK's client.

A plain JSON-RPC client (one line out, one line in, one call at a time) calls
``say`` on ``bench/mcp_echo_server.py`` directly and through ``vedette mcp``,
alternating, and reports for each: calls per second, p50 and p99, and the CPU
time per call of the first process it talks to (the server, or vedette: its
event loop thread and its evidence writer thread apart). With the SDK's
client out of the way, what remains above the direct figure is vedette's own
cost: its CPU per call, the fdatasync of each allow record, and the extra pipe
hops. Prints a table; ``python bench/mcp_stdio_cost.py [--calls N] [--rounds R]
[--event-loops]`` (the last also runs ``vedette mcp`` with uvloop hidden).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from compare_mcp import SERVER, VEDETTE, free_port, write_node
from report import hide_uvloop, machine

from vedette import event_loop

TICK = os.sysconf("SC_CLK_TCK")
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 0,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-11-25",
        "capabilities": {},
        "clientInfo": {"name": "bench", "version": "1"},
    },
}


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds (user + system) by thread name of process ``pid``."""
    found: dict[str, float] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            name = (task / "comm").read_text().strip()
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        found[name] = found.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / TICK
    return found


def one_round(
    command: list[str], calls: int, env: dict[str, str] | None = None
) -> dict[str, float]:
    process = subprocess.Popen(
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0, env=env
    )
    assert process.stdin is not None
    assert process.stdout is not None
    stdin, stdout = process.stdin, process.stdout

    def ask(message: dict) -> dict:
        stdin.write(json.dumps(message).encode() + b"\n")
        return json.loads(stdout.readline())

    def call(number: int) -> dict:
        params = {"name": "say", "arguments": {"text": "hello"}}
        return ask({"jsonrpc": "2.0", "id": number, "method": "tools/call", "params": params})

    try:
        ask(INITIALIZE)
        stdin.write(b'{"jsonrpc":"2.0","method":"notifications/initialized"}\n')
        for number in range(1, 201):  # warm-up
            call(number)
        before, started = thread_cpu(process.pid), time.perf_counter()
        latencies = []
        for number in range(1000, 1000 + calls):
            sent = time.perf_counter()
            answer = call(number)
            latencies.append(time.perf_counter() - sent)
            if "result" not in answer:
                raise SystemExit(f"a call was not answered with a result: {answer}")
        elapsed, after = time.perf_counter() - started, thread_cpu(process.pid)
    finally:
        stdin.close()
        process.wait(timeout=30)
    latencies.sort()
    cpu = {name: (after[name] - before.get(name, 0.0)) / calls * 1e6 for name in after}
    return {
        "per_s": calls / elapsed,
        "p50_us": latencies[len(latencies) // 2] * 1e6,
        "p99_us": latencies[int(len(latencies) * 0.99)] * 1e6,
        "cpu_us": sum(cpu.values()),
        "loop_cpu_us": cpu.get("vedette", 0.0),
        "writer_cpu_us": cpu.get("vedette-evidenc", 0.0),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--event-loops",
        action="store_true",
        help="also through `vedette mcp` with uvloop hidden (asyncio's own loop), alternating",
    )
    args = parser.parse_args()
    facts = machine()
    workdir = Path(tempfile.mkdtemp(prefix="vedette-mcp-cost-"))
    try:
        config = write_node(workdir, free_port(), None)
        server = [sys.executable, str(SERVER)]
        gateway = [str(VEDETTE), "mcp", "--config", str(config), "--caller", "bench", "--"]
        runs: dict[str, list[dict[str, float]]] = {"direct": [], "via": []}
        if args.event_loops:
            runs["via-asyncio"] = []
            without_uvloop = hide_uvloop(dict(os.environ), workdir)
        for _ in range(args.rounds):
            runs["direct"].append(one_round(server, args.calls))
            runs["via"].append(one_round([*gateway, *server], args.calls))
            if args.event_loops:
                runs["via-asyncio"].append(
                    one_round([*gateway, *server], args.calls, without_uvloop)
                )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    def median(kind: str, key: str) -> float:
        return statistics.median(run[key] for run in runs[kind])

    print(f"Machine: {facts}.")
    print(f"{args.rounds} rounds of {args.calls} calls each, alternating; medians.\n")
    print("| | calls/s | p50 | p99 | CPU per call of the process called |")
    print("|---|---|---|---|---|")
    labels = {
        "direct": "the server directly",
        "via": f"through `vedette mcp` ({event_loop.loop_name()})",
        "via-asyncio": "through `vedette mcp` (asyncio's own loop)",
    }
    for kind in runs:
        label = labels[kind]
        cpu = f"{median(kind, 'cpu_us'):.0f} µs"
        if kind != "direct":
            cpu += (
                f" (event loop {median(kind, 'loop_cpu_us'):.0f} µs, "
                f"evidence writer {median(kind, 'writer_cpu_us'):.0f} µs)"
            )
        print(
            f"| {label} | {median(kind, 'per_s'):.0f} | {median(kind, 'p50_us'):.0f} µs | "
            f"{median(kind, 'p99_us'):.0f} µs | {cpu} |"
        )
    added = median("via", "p50_us") - median("direct", "p50_us")
    print(f"\nadded p50: {added:.0f} µs")


if __name__ == "__main__":
    main()
