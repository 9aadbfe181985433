"""Signed releases: pull + verify + activate time, and decision latency during swaps.

1. Pull + verify + activate a release whose bundle is 1 MiB (compressed) from a
   local docker-registry (distribution 2.8) on loopback: the whole lifecycle
   path (copy into a staging image layout, all four steps, persist, swap).
2. p99 of in-process ``Runtime.decide`` latency from 4 threads, with and without
   a release swap every 100 ms (the tag moved between two signed releases and
   the track updated), measured in the same run, phases interleaved.

    python bench/compare_releases.py [--quick]
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import statistics
import sys
import tarfile
import tempfile
import threading
import time
from pathlib import Path

from report import format_seconds, machine, write_section

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from registry_server import start_registry

from vedette.config import AgentConfig, CallerConfig, Config, QuotaConfig, token_digest
from vedette.releases import signing
from vedette.releases.artifacts import build_release, push_release
from vedette.releases.cosign import sign_classic
from vedette.releases.lifecycle import AgentTrack, ReleaseEvents
from vedette.releases.node import NodeReleases
from vedette.releases.oci import OCI_MANIFEST, RegistryClient
from vedette.runtime.identity import Caller
from vedette.runtime.interceptor import Runtime
from vedette.store import SegmentStore

AGENT = "bench-agent"
POLICY = """package vedette

import rego.v1

default decision := {"allow": false, "reason": "denied"}

decision := {"allow": true, "reason": "%s"} if input.tool == "echo"
"""
AGENT_JSON = json.dumps({
    "schema": "vedette.agent/v1", "name": AGENT, "version": "1.0.0",
    "model": {"provider": "bench", "name": "bench"},
    "tools": [{"name": "echo", "description": "echo", "args_schema": {"type": "object"}}],
}).encode()  # fmt: skip


def bundle(reason: str, padding_bytes: int = 0) -> bytes:
    files = {"vedette/policy.rego": (POLICY % reason).encode()}
    if padding_bytes:
        # Incompressible data, so the compressed bundle is about padding_bytes.
        noise = base64.b64encode(os.urandom(padding_bytes)).decode()
        files["vedette/padding/data.json"] = json.dumps({"noise": noise}).encode()
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return raw.getvalue()


def publish(repo, key, reason, tag, padding=0):
    built = build_release(AGENT_JSON, bundle(reason, padding))
    digest = push_release(
        repo, built, tag, sign=lambda d: sign_classic(repo, d, "bench/agent", key)
    )
    return digest, len(built.policy.blobs[0])


def retag(repo, digest, tag):
    repo.put_manifest(repo.get_manifest(digest).data, OCI_MANIFEST, tag)


def config_for(root: Path, ref: str, key_path: Path) -> Config:
    return Config(
        node_id="bench",
        state_dir=root / "state",
        quota=QuotaConfig(rate_per_s=1e9, burst=1e9),
        callers=(CallerConfig("bench", AGENT, token_sha256=token_digest("t")),),
        agents=(AgentConfig(AGENT, release=ref, keys=(key_path,), insecure=True),),
    )


def pull_verify_activate(root: Path, host: str, key, key_path: Path, rounds: int) -> dict:
    with RegistryClient(host, insecure=True) as client:
        repo = client.repository("bench/big")
        a, size_a = publish(repo, key, "big-a", "a", padding=1024 * 1024)
        b, size_b = publish(repo, key, "big-b", "b", padding=1024 * 1024)
        config = config_for(root / "pva", f"oci://{host}/bench/big:stable", key_path)
        with SegmentStore.open(root / "pva-store", ceiling_bytes=1 << 30, node_id="b") as store:
            trusted = signing.TrustedKeys.from_files([key_path])
            track = AgentTrack(
                config.agents[0], root / "pva" / "track", trusted,
                ReleaseEvents(store, "bench"), eval_time_limit_s=0.1,
            )  # fmt: skip
            track.start()
            times = []
            for i in range(rounds):
                digest = a if i % 2 == 0 else b
                retag(repo, digest, "stable")
                started = time.perf_counter()
                outcome = track.update_from(repo, "stable")
                times.append(time.perf_counter() - started)
                if outcome != "activated":
                    raise RuntimeError(f"round {i}: {outcome}")
    return {
        "bundle_bytes": (size_a + size_b) // 2,
        "median_s": statistics.median(times),
        "min_s": min(times),
        "max_s": max(times),
        "rounds": rounds,
    }


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def swap_latency(root: Path, host: str, key, key_path: Path, phase_s: float, phases: int) -> dict:
    with RegistryClient(host, insecure=True) as client:
        repo = client.repository("bench/swap")
        a, _ = publish(repo, key, "a", "small-a")
        b, _ = publish(repo, key, "b", "small-b")
        retag(repo, a, "stable")
        config = config_for(root / "swap", f"oci://{host}/bench/swap:stable", key_path)
        config.state_dir.mkdir(parents=True)
        store = SegmentStore.open(config.store_dir, ceiling_bytes=1 << 30, node_id="bench")
        releases = NodeReleases(config, store, start_pollers=False)
        track = releases.tracks[AGENT]
        if track.update_from(repo, "stable") != "activated":
            raise RuntimeError("the first release did not activate")
        runtime = Runtime(config, releases=releases, store=store)
        caller = Caller("bench", AGENT)
        body = {"tool": "echo", "args": {"text": "hi"}}
        results: dict[str, list[float]] = {"no swaps": [], "swap every 100 ms": []}
        swaps = 0
        try:
            for phase in range(phases * 2):
                label = "no swaps" if phase % 2 == 0 else "swap every 100 ms"
                stop = threading.Event()
                latencies: list[float] = []
                lock = threading.Lock()

                def work(stop=stop, latencies=latencies, lock=lock) -> None:
                    mine = []
                    while not stop.is_set():
                        started = time.perf_counter()
                        decision = runtime.decide(body, caller)
                        mine.append(time.perf_counter() - started)
                        if decision.outcome != "allow":
                            raise RuntimeError(decision.reason)
                    with lock:
                        latencies.extend(mine)

                workers = [threading.Thread(target=work) for _ in range(4)]
                for worker in workers:
                    worker.start()
                started = time.monotonic()
                turn = 0
                while time.monotonic() < started + phase_s:
                    if label != "no swaps":
                        retag(repo, b if turn % 2 == 0 else a, "stable")
                        if track.update_from(repo, "stable") == "activated":
                            swaps += 1
                    # The next swap is due 100 ms after the previous one was due.
                    turn += 1
                    time.sleep(max(0.0, started + turn * 0.1 - time.monotonic()))
                stop.set()
                for worker in workers:
                    worker.join()
                results[label].extend(latencies)
        finally:
            runtime.close()
    out = {label: {"p99_s": p99(v), "p50_s": statistics.median(v), "n": len(v)}
           for label, v in results.items()}  # fmt: skip
    out["swaps"] = swaps  # type: ignore[assignment]
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    info = machine()
    with tempfile.TemporaryDirectory(prefix="vedette-bench-releases-") as tmp:
        root = Path(tmp)
        registry = start_registry(root / "registry")
        try:
            private_pem, public_pem = signing.generate_key_pair(b"bench")
            (root / "cosign.key").write_bytes(private_pem)
            (root / "cosign.pub").write_bytes(public_pem)
            key = signing.load_private_key(root / "cosign.key", b"bench")
            pva = pull_verify_activate(root, registry.host, key, root / "cosign.pub",
                                       4 if args.quick else 20)  # fmt: skip
            swap = swap_latency(root, registry.host, key, root / "cosign.pub",
                                2.0 if args.quick else 5.0, 2 if args.quick else 4)  # fmt: skip
        finally:
            registry.stop()
    base, swapped = swap["no swaps"], swap["swap every 100 ms"]
    ratio = swapped["p99_s"] / base["p99_s"]
    body = f"""## releases

Signed releases (`bench/compare_releases.py`): a local docker-registry 2.8 on
loopback, cosign classic signatures, the whole lifecycle path (copy into a
staging image layout, the four verification steps, persist, atomic swap).

Machine: {info}.

| measurement | result |
|---|---|
| pull + verify + activate, {pva["bundle_bytes"] / 1048576:.2f} MiB compressed bundle | median {format_seconds(pva["median_s"])} (min {format_seconds(pva["min_s"])}, max {format_seconds(pva["max_s"])}; {pva["rounds"]} activations) |
| `Runtime.decide` p99, 4 threads, no swaps | {format_seconds(base["p99_s"])} (p50 {format_seconds(base["p50_s"])}, {base["n"]} decisions) |
| `Runtime.decide` p99, 4 threads, a release swap every 100 ms | {format_seconds(swapped["p99_s"])} (p50 {format_seconds(swapped["p50_s"])}, {swapped["n"]} decisions, {swap["swaps"]} swaps) |
| p99 with swaps / p99 without (goal ≤ 2×) | {ratio:.2f}× — {"met" if ratio <= 2 else "NOT met"} |

Both latency phases ran in the same process, interleaved (no swaps, swaps,
no swaps, …), on the same 2 shared cores; each swap fetches and verifies a
release (the policy compiled anew) on those cores while the deciders run.
"""  # noqa: E501
    write_section("releases", body)
    print(body)


if __name__ == "__main__":
    main()
