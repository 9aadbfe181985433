"""Connection discipline of the adapter listener (docs/threat-model.md,
"Connections"), against a real `vedette serve --example` process over real
sockets: idle, slow and oversized connections are closed, connections are
capped in all and per source while a legitimate caller is still answered,
refusals are counted rather than recorded, and under a descriptor limit
(`prlimit`) holding more connections than it allows never starves the store.

No timing is asserted: every wait below is bounded only so that a listener
that never closes a connection fails the test instead of hanging it.
"""

from __future__ import annotations

import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from live_server import operator_client, wait_until_healthy

from vedette.store import SegmentStore

VEDETTE = str(Path(sys.executable).with_name("vedette"))
TOKEN = "listener-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
ECHO = {"tool": "echo", "args": {"text": "hello"}}
# Any wait for the server to act is bounded by this (a failure, never a timing claim).
PATIENCE_S = 60.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Node:
    def __init__(self, url: str, port: int, process: subprocess.Popen[str], home: Path) -> None:
        self.url, self.port, self.process, self.home = url, port, process, home
        self.sockets: list[socket.socket] = []
        # Status and metrics are on the operator socket, apart from the flood.
        self.operator = operator_client(home / "vedette" / "example" / "operator.sock")

    @property
    def store_dir(self) -> Path:
        return self.home / "vedette" / "example" / "store"

    def metric(self, name: str, **labels: str) -> float:
        text = self.operator.get("/metrics").text
        wanted = ",".join(f'{key}="{value}"' for key, value in labels.items())
        pattern = re.escape(name) + (r"\{" + re.escape(wanted) + r"\}" if wanted else "")
        match = re.search(rf"^{pattern} (\S+)$", text, re.M)
        return float(match.group(1)) if match else 0.0

    def dropped(self, reason: str) -> float:
        return self.metric(
            "vedette_listener_connections_dropped_total", listener="adapter", reason=reason
        )

    def wait_for(self, what: str, check) -> None:  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + PATIENCE_S
        while not check():
            if time.monotonic() > deadline:
                raise AssertionError(f"never happened: {what}")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(30)

    def records(self) -> list[dict]:
        self.stop()
        with SegmentStore.open_read_only(self.store_dir) as store:
            return [json.loads(record) for _, record in store.iter_records()]


@contextmanager
def serve(tmp_path: Path, nofile: int | None = None, **listen: object) -> Iterator[Node]:
    port = free_port()
    home = tmp_path / "home"
    (home / "tmp").mkdir(parents=True)
    env = {
        **os.environ,
        "VEDETTE_EXAMPLE_TOKEN": TOKEN,
        "XDG_STATE_HOME": str(home),
        "TMPDIR": str(home / "tmp"),
        # The example caller's own quota is not what these tests are about.
        "VEDETTE_QUOTA_RATE_PER_S": "100000",
        "VEDETTE_QUOTA_BURST": "100000",
        **{f"VEDETTE_LISTEN_{key.upper()}": str(value) for key, value in listen.items()},
    }
    command = [VEDETTE, "serve", "--example", "--listen", f"127.0.0.1:{port}"]
    if nofile is not None:
        command = ["prlimit", f"--nofile={nofile}:{nofile}", *command]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True
    )
    url = f"http://127.0.0.1:{port}"
    wait_until_healthy(url, process)
    node = Node(url, port, process, home)
    try:
        yield node
    finally:
        for sock in node.sockets:
            sock.close()
        node.operator.close()
        if process.poll() is None:
            process.kill()
        process.communicate()


def connect(node: Node, source: str = "127.0.0.1") -> socket.socket:
    sock = socket.socket()
    node.sockets.append(sock)
    sock.bind((source, 0))
    sock.connect(("127.0.0.1", node.port))
    return sock


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes (or resets) the connection."""
    sock.settimeout(PATIENCE_S)
    received = b""
    try:
        while chunk := sock.recv(65536):
            received += chunk
    except ConnectionResetError:
        pass
    except TimeoutError as err:
        raise AssertionError("the server never closed the connection") from err
    return received


def refused_at_once(sock: socket.socket) -> bool:
    """True when the server reset or closed a fresh connection without a word."""
    sock.settimeout(PATIENCE_S)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def vedette_pid(node: Node) -> int:
    """The serving process (under prlimit it is the same process, exec'd)."""
    return node.process.pid


# -- idle, slow and oversized ----------------------------------------------------


def test_an_idle_connection_is_closed_at_the_head_deadline(tmp_path):
    with serve(tmp_path, head_timeout_s=1) as node:
        sock = connect(node)
        answer = read_until_closed(sock)
        assert answer == b"" or answer.startswith(b"HTTP/1.1 408 ")
        assert node.dropped("head_timeout") == 1
        # The listener still serves.
        assert httpx.post(f"{node.url}/v1/tool", json=ECHO, headers=AUTH).status_code == 200


def test_a_slow_drip_cannot_extend_the_head_deadline(tmp_path):
    with serve(tmp_path, head_timeout_s=2) as node:
        sock = connect(node)
        head = b"POST /v1/tool HTTP/1.1\r\nHost: x\r\nX-Drip: " + b"a" * 400
        sent = 0
        closed = False
        for byte in head:  # one byte every 0.1 s: 500 bytes would take 50 s
            try:
                sock.send(bytes([byte]))
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
            sent += 1
            readable, _, _ = select.select([sock], [], [], 0.1)
            if readable:
                closed = True
                break
        assert closed, "the drip was never cut off"
        assert sent < len(head)
        answer = read_until_closed(sock)
        assert answer == b"" or answer.startswith(b"HTTP/1.1 408 ")
        assert node.dropped("head_timeout") == 1


def test_a_100_mib_header_is_refused_early_and_memory_stays_put(tmp_path):
    with serve(tmp_path) as node:
        pid = vedette_pid(node)
        before = rss_kb(pid)
        sock = connect(node)
        received: list[bytes] = []
        reader = threading.Thread(target=lambda: received.append(read_until_closed(sock)))
        reader.start()
        sock.sendall(b"POST /v1/tool HTTP/1.1\r\nHost: x\r\nX-Big: ")
        chunk = b"a" * (1 << 20)
        sent = 0
        try:
            while sent < 100 << 20:
                sock.sendall(chunk)
                sent += len(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass
        reader.join(PATIENCE_S)
        # The server stopped reading long before 100 MiB and said why.
        assert sent < 100 << 20
        assert node.dropped("head_too_large") == 1
        assert received[0] == b"" or received[0].startswith(b"HTTP/1.1 431 ")
        # Loose: the default server grew by ~200 MB for this header.
        assert rss_kb(pid) - before < 32 * 1024
        assert httpx.post(f"{node.url}/v1/tool", json=ECHO, headers=AUTH).status_code == 200


def test_too_many_headers_are_refused_with_431(tmp_path):
    with serve(tmp_path) as node:
        for count, reason in ((10_000, "head_too_large"), (101, "too_many_headers")):
            sock = connect(node)
            headers = b"".join(b"X-%d: a\r\n" % i for i in range(count))
            sock.sendall(b"GET /v1/health HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n")
            answer = read_until_closed(sock)
            assert answer.startswith(b"HTTP/1.1 431 "), answer[:80]
            assert node.dropped(reason) == 1
        # 100 headers are fine.
        headers = {f"X-{i}": "a" for i in range(90)}
        assert httpx.get(f"{node.url}/v1/health", headers=headers).status_code == 200


def test_an_idle_keep_alive_connection_is_closed(tmp_path):
    with serve(tmp_path, keepalive_timeout_s=1) as node:
        sock = connect(node)
        sock.sendall(b"GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = read_until_closed(sock)
        assert answer.startswith(b"HTTP/1.1 200 ")
        assert b"connection: close" not in answer.lower()  # it was kept alive, then closed
        assert node.dropped("idle_timeout") == 1


def test_a_client_that_never_reads_is_dropped(tmp_path):
    with serve(tmp_path, send_timeout_s=1) as node:
        sock = socket.socket()
        node.sockets.append(sock)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", node.port))
        request = b"GET /openapi.json HTTP/1.1\r\nHost: x\r\n\r\n"
        sock.settimeout(PATIENCE_S)
        dropped = False
        for _ in range(10_000):  # never a recv(); a few requests at a time, not a pipeline
            try:
                sock.sendall(request * 4)
            except (BrokenPipeError, ConnectionResetError):
                dropped = True
                break
            except TimeoutError:
                break  # the server stopped reading and never dropped us
            time.sleep(0.02)
        assert dropped
        assert node.dropped("send_timeout") == 1
        assert httpx.get(f"{node.url}/v1/health").status_code == 200


def test_too_many_pipelined_requests_drop_the_connection(tmp_path):
    with serve(tmp_path) as node:
        sock = connect(node)
        slow = json.dumps({"tool": "echo", "args": {"text": "x"}}).encode()
        one = (
            b"POST /v1/tool HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
            + TOKEN.encode()
            + b"\r\nContent-Length: %d\r\n\r\n%s" % (len(slow), slow)
        )
        sock.sendall(one * 200)
        answer = read_until_closed(sock)
        assert answer.count(b"HTTP/1.1 200 ") < 200
        assert node.dropped("too_many_pipelined") == 1


# -- caps ---------------------------------------------------------------------------


def test_per_source_and_total_caps_refuse_while_a_caller_is_still_answered(tmp_path):
    settings = {"max_connections": 20, "max_connections_per_source": 10, "keepalive_timeout_s": 120}
    with serve(tmp_path, head_timeout_s=120, **settings) as node:
        legit = httpx.Client(base_url=node.url, headers=AUTH)
        assert legit.post("/v1/tool", json=ECHO).status_code == 200  # its connection is open
        held = [connect(node, "127.0.0.2") for _ in range(10)]
        node.wait_for(
            "10 held",
            lambda: node.operator.get("/v1/status").json()["listener"]["adapter"]["open"] == 11,
        )
        extra = connect(node, "127.0.0.2")
        assert refused_at_once(extra)
        health = legit.get("/v1/health").json()
        assert health["checks"]["listener"] == "degraded"
        assert any("per source" in reason for reason in health["reasons"])
        # Another source is still let in, and the caller is still answered.
        assert httpx.post(f"{node.url}/v1/tool", json=ECHO, headers=AUTH).status_code == 200
        held += [connect(node, "127.0.0.3") for _ in range(9)]  # 20 open: the cap
        node.wait_for(
            "20 held",
            lambda: node.operator.get("/v1/status").json()["listener"]["adapter"]["open"] == 20,
        )
        assert refused_at_once(connect(node, "127.0.0.4"))
        response = legit.post("/v1/tool", json=ECHO)
        assert response.status_code == 200
        assert response.json()["decision"] == "allow"
        health = legit.get("/v1/health").json()
        assert health["status"] == "degraded"
        assert any("at the cap (20 of 20)" in reason for reason in health["reasons"])
        status = node.operator.get("/v1/status").json()["listener"]["adapter"]
        assert status["refused_total"] == {"max_connections": 1, "max_connections_per_source": 1}
        assert (
            node.metric(
                "vedette_listener_connections_refused_total",
                listener="adapter",
                reason="max_connections",
            )
            == 1
        )
        for sock in held:
            sock.close()
        node.wait_for("health ok again", lambda: legit.get("/v1/health").json()["status"] == "ok")
        legit.close()


def test_an_unauthenticated_flood_adds_no_records_beyond_the_summary(tmp_path):
    # Answered at once, so that 2,000 refusals take seconds (the hold has its own test).
    with serve(tmp_path, unauthenticated_hold_s=0.0001) as node:
        statuses: dict[int, int] = {}
        with httpx.Client(base_url=node.url) as flood:
            for i in range(2000):
                headers = {"Authorization": f"Bearer wrong-{i}"}
                status = flood.post("/v1/tool", json=ECHO, headers=headers).status_code
                statuses[status] = statuses.get(status, 0) + 1
        assert set(statuses) <= {401, 429}
        assert statuses.get(429, 0) > 0  # the per-address limit answered the rest
        assert httpx.post(f"{node.url}/v1/tool", json=ECHO, headers=AUTH).status_code == 200
        records = node.records()
    decisions = [r for r in records if r.get("kind") == "decision"]
    refused = [r for r in decisions if r["outcome"] in ("unauthenticated", "over_quota")]
    assert [r["outcome"] for r in refused] == ["unauthenticated"]
    summaries = [r for r in records if r.get("kind") == "refusal_summary"]
    counted = sum(entry["counted"] for s in summaries for entry in s["refusals"])
    assert counted == 1999
    assert [r["outcome"] for r in decisions if r["outcome"] == "allow"] == ["allow"]


# -- small things an adapter must not be able to do ------------------------------------


def test_two_authorization_headers_are_refused(tmp_path):
    with serve(tmp_path) as node:
        sock = connect(node)
        body = json.dumps(ECHO).encode()
        sock.sendall(
            b"POST /v1/tool HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer wrong\r\n"
            b"Authorization: Bearer " + TOKEN.encode() + b"\r\nConnection: close\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
        )
        answer = read_until_closed(sock)
        assert answer.startswith(b"HTTP/1.1 401 "), answer[:80]


def test_a_trailing_slash_is_not_redirected_to_the_host_header(tmp_path):
    with serve(tmp_path) as node:
        response = httpx.post(
            f"{node.url}/v1/tool/", json=ECHO, headers={**AUTH, "Host": "evil.example"}
        )
        assert response.status_code not in (301, 302, 307, 308)
        assert "location" not in response.headers


# -- descriptors ---------------------------------------------------------------------------


def test_more_idle_connections_than_descriptors_never_starve_the_node(tmp_path):
    """Under `prlimit --nofile=400` a flood of idle connections from many sources
    hits the connection cap; the caller's calls are still allowed with their
    evidence, health is degraded while the cap is hit and ok after."""
    with serve(tmp_path, nofile=400, head_timeout_s=300) as node:
        legit = httpx.Client(base_url=node.url, headers=AUTH)
        assert legit.get("/v1/health").status_code == 200  # its connection is open
        cap = node.operator.get("/v1/status").json()["listener"]["adapter"]["max_connections"]
        assert 1 <= cap < 400 // 2
        held: list[socket.socket] = []
        for i in range(450):  # more than the process could ever have open
            try:
                held.append(connect(node, f"127.0.1.{i % 200 + 1}"))
            except OSError:
                break
        node.wait_for(
            "the cap reached", lambda: legit.get("/v1/health").json()["status"] == "degraded"
        )
        allowed = []
        for i in range(50):
            response = legit.post("/v1/tool", json={"tool": "echo", "args": {"text": f"c{i}"}})
            assert response.status_code == 200, response.text
            allowed.append(response.json()["decision_id"])
        refused = node.operator.get("/v1/status").json()["listener"]["adapter"]["refused_total"]
        assert refused["max_connections"] > 0
        reasons = legit.get("/v1/health").json()["reasons"]
        assert any("adapter connections" in reason for reason in reasons)
        for sock in held:
            sock.close()
        node.wait_for("health ok", lambda: legit.get("/v1/health").json()["status"] == "ok")
        # A new connection is served again.
        assert httpx.post(f"{node.url}/v1/tool", json=ECHO, headers=AUTH).status_code == 200
        legit.close()
        output_before_stop = node.process.poll()
        assert output_before_stop is None
        records = node.records()
    recorded = {r.get("decision_id") for r in records if r.get("outcome") == "allow"}
    assert set(allowed) <= recorded
    assert not [r for r in records if "Too many open files" in json.dumps(r)]


@pytest.mark.parametrize("count", [1])
def test_the_listener_module_documents_its_reserve(count):
    from vedette.api.listener import DESCRIPTOR_RESERVE, adapter_connection_cap

    assert adapter_connection_cap(4096, 1 << 20, 50) == 4096
    assert adapter_connection_cap(4096, 400, 40) == (400 - 40 - DESCRIPTOR_RESERVE) // 2


def test_beyond_the_limit_an_unauthenticated_answer_waits_for_its_retry_after(tmp_path):
    # 2 per second, burst 2: the third request in a row is over the limit and
    # its 429 comes when a retry would be admitted (~0.5 s), not at once.
    listen = {"unauthenticated_rate_per_s": 2, "unauthenticated_burst": 2}
    with serve(tmp_path, **listen) as node, httpx.Client(base_url=node.url) as flood:
        wrong = {"Authorization": "Bearer wrong"}
        assert [flood.post("/v1/tool", json=ECHO, headers=wrong).status_code for _ in range(2)] == [
            401,
            401,
        ]
        started = time.monotonic()
        statuses = [flood.post("/v1/tool", json=ECHO, headers=wrong).status_code for _ in range(8)]
        elapsed = time.monotonic() - started
        # Each 429 came only once a retry would be admitted (the bucket refills at
        # 2/s, so ~0.5 s each), and that retry is then answered 401: one
        # connection gets the per-address rate and no more, however fast the node.
        assert set(statuses) == {401, 429}, statuses
        held = statuses.count(429)
        assert held >= 3, statuses
        assert elapsed >= 0.45 * held, (elapsed, statuses)
        # A caller with a valid token is never held.
        assert httpx.post(f"{node.url}/v1/tool", json=ECHO, headers=AUTH).status_code == 200
