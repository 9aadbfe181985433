"""Who may be a peer beyond "chains to the CA": the allow-list and the trust
domain (INV-09); and what a node does when its own TLS files become
unreadable or unusable while it runs: live connections closed, new ones
refused, said in its status and events, and back to normal once the files are
fixed, without a restart (docs/threat-model.md, "Peer identity")."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from peer_helpers import (
    FAST,
    fill,
    frontiers,
    open_store,
    parse_frames,
    s_client,
    service,
    wait_until,
)
from peer_pki import OpensslCa
from prometheus_client import CollectorRegistry, generate_latest

from vedette.config import load_config
from vedette.peers.node import PeerNode
from vedette.peers.service import PeerService
from vedette.store import SegmentStore

HELLO = 1


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> OpensslCa:
    ca = OpensslCa(tmp_path_factory.mktemp("pki") / "ca", "test.example")
    for node in ("a", "b", "c"):
        ca.issue(node)
    # Issued by the same CA: one named in another trust domain, one by a DNS name only.
    ca.issue("foreign", san="URI:spiffe://elsewhere.example/node/foreign")
    ca.issue("dnsonly", san="DNS:dnsonly")
    return ca


def _rejected(svc: PeerService | PeerNode, reason: str) -> int:
    return int(svc.status()["handshakes_rejected"].get(reason, 0))


def _refusals_naming(svc: PeerService, text: str) -> list[str]:
    return [
        e.detail
        for e in svc.events()
        if e.kind == "handshake_rejected"
        and e.detail.startswith("not_allowed")
        and text in e.detail
    ]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _peer_node(
    tmp_path: Path, ca: OpensslCa, node: str, store: SegmentStore, table: str
) -> PeerNode:
    """``node`` as ``vedette serve`` runs its peers, from a ``[peers]`` table."""
    path = tmp_path / f"{node}.toml"
    path.write_text(
        f"""
node_id = "{node}"
state_dir = "{tmp_path / f"state-{node}"}"
[peers]
ca = "{ca.ca}"
cert = "{ca.dir / f"{node}.crt"}"
key = "{ca.dir / f"{node}.key"}"
crl = "{ca.crl}"
listen = "127.0.0.1:{_free_port()}"
sync_interval_s = 0.05
retry_base_s = 0.02
retry_cap_s = 0.2
retry_budget = 1000
{table}
"""
    )
    return PeerNode(load_config(path, env={}), store)


def test_a_peer_outside_the_allow_list_is_refused_and_one_inside_syncs(
    ca: OpensslCa, tmp_path: Path
) -> None:
    """a allows only b. c's certificate chains to the same CA: refused when it
    dials a and when a dials it, in the handshake; no segment crosses either
    way, and the refusals show in a's status and metrics."""
    sa, sb, sc = (open_store(tmp_path / n, n) for n in ("a", "b", "c"))
    fill(sa, 3)
    fill(sb, 2)
    fill(sc, 2)
    c = service(sc, ca, "c", retry_budget=1000)
    c_addr = c.listen("127.0.0.1:0")
    # The allow-list and trust domain as an operator writes them, in the [peers] table.
    a = _peer_node(
        tmp_path,
        ca,
        "a",
        sa,
        f'trust_domain = "test.example"\nallow = ["spiffe://test.example/node/b"]\n'
        f'static = ["{c_addr}"]\nidle_timeout_s = 2.0\n',
    )
    b = service(sb, ca, "b", idle_timeout_s=2.0)
    try:
        (a_addr,) = a.service.listening()
        b.dial(a_addr)
        c.dial(a_addr)
        wait_until("b and a to sync", lambda: frontiers(sb).get("a", 0) >= 3)
        wait_until("a to hold b's segments", lambda: frontiers(sa).get("b") == 2)
        # c dialling a, and a dialling c: both refused, again and again.
        wait_until(
            "a to refuse c both ways, more than once",
            lambda: (
                len(_refusals_naming(a.service, "spiffe://test.example/node/c")) >= 4
                and (a.status()["dials"][0]["last_error"] or "").startswith("not_allowed")
            ),
        )
        for detail in _refusals_naming(a.service, "spiffe://test.example/node/c"):
            assert "matches no allow pattern" in detail, detail
        # The independent client with c's certificate gets nothing; with b's, a HELLO.
        before = _rejected(a, "not_allowed")
        assert s_client(a_addr, ca, "c") == b""
        wait_until("s_client's refusal", lambda: _rejected(a, "not_allowed") > before)
        assert parse_frames(s_client(a_addr, ca, "b"))[:1] == [HELLO]

        status = a.status()
        assert {p["node"] for p in status["peers"]} == {"b"}, status["peers"]
        (dial,) = status["dials"]
        assert dial["address"] == c_addr
        assert not dial["connected"]
        assert "c" not in frontiers(sa), "a took segments from a peer it does not allow"
        assert "a" not in frontiers(sc), "a peer a does not allow got its segments"
        assert c.status()["segments_in"] == 0
        registry = CollectorRegistry()
        a.register_metrics(registry)
        metrics = generate_latest(registry).decode()
        counted = re.search(
            r'^vedette_peer_handshakes_rejected_total\{reason="not_allowed"\} (\S+)$',
            metrics,
            re.MULTILINE,
        )
        assert counted is not None, metrics
        assert float(counted.group(1)) >= 5
    finally:
        b.stop()
        a.stop()
        c.stop()
        sa.close()
        sb.close()
        sc.close()


@pytest.mark.parametrize("who", ["foreign", "dnsonly"])
def test_a_certificate_outside_the_trust_domain_is_refused_and_one_inside_is_accepted(
    ca: OpensslCa, tmp_path: Path, who: str
) -> None:
    """a sets trust_domain = test.example. ``who`` holds a certificate from
    the same CA naming spiffe://elsewhere.example/node/foreign, or a DNS name
    only: refused both ways. b's spiffe://test.example/node/b is accepted and
    syncs; a node without a trust domain accepts ``who`` (so it is the trust
    domain that refuses it, not the certificate)."""
    sa, sb, sw, sl = (open_store(tmp_path / n, n) for n in ("a", "b", who, "c"))
    fill(sa, 2)
    fill(sb, 1)
    fill(sw, 2)
    loose_files = {**ca.files(who), "trust_domain": None}
    with (
        service(sa, ca, "a", retry_budget=1000) as a,
        service(sb, ca, "b") as b,
        PeerService(sw, **loose_files, **{**FAST, "retry_budget": 1000}) as w,  # type: ignore[arg-type]
        PeerService(sl, **{**ca.files("c"), "trust_domain": None}, **FAST) as loose,  # type: ignore[arg-type]
    ):
        assert ca.files("a")["trust_domain"] == "test.example"
        a_addr, w_addr = a.listen("127.0.0.1:0"), w.listen("127.0.0.1:0")
        w.dial(a_addr)
        a.dial(w_addr)
        b.dial(a_addr)
        wait_until("b and a to sync", lambda: frontiers(sb).get("a") == 2)
        wait_until("a to hold b's segment", lambda: frontiers(sa).get("b") == 1)
        assert any(p["identity"] == "spiffe://test.example/node/b" for p in a.status()["peers"])
        refused = "elsewhere.example" if who == "foreign" else "no spiffe://"
        wait_until(
            f"a to refuse {who} both ways, more than once",
            lambda: (
                len(_refusals_naming(a, refused)) >= 4
                and (a.status()["dials"][0]["last_error"] or "").startswith("not_allowed")
            ),
        )
        before = _rejected(a, "not_allowed")
        assert s_client(a_addr, ca, who) == b""
        wait_until("s_client's refusal", lambda: _rejected(a, "not_allowed") > before)
        assert {p["node"] for p in a.status()["peers"]} == {"b"}
        assert who not in frontiers(sa)
        assert "a" not in frontiers(sw)
        assert w.status()["segments_in"] == 0
        # The same certificate, to a node with no trust domain: a completed handshake.
        w.dial(loose.listen("127.0.0.1:0"))
        wait_until(
            f"the node without a trust domain to accept {who}",
            lambda: any(p["node"] == who and p["connected"] for p in loose.status()["peers"]),
        )
    for store in (sa, sb, sw, sl):
        store.close()


# --- TLS files that become unreadable while the node runs -----------------------------


def _child_command() -> list[str] | None:
    """The child's command line: as root, without the capabilities that read
    any file whatever its mode, so that chmod 000 stops its reads as it would
    any other user's; None when that cannot be done here."""
    child = [sys.executable, str(Path(__file__).with_name("peer_child.py"))]
    if os.geteuid() != 0:
        return child
    if shutil.which("setpriv") is None:
        return None
    return ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--", *child]


class ChildPeer:
    """Node ``a`` in a child process (tests/peer_child.py), driven over a pipe."""

    def __init__(self, command: list[str], spec: dict[str, Any], log: Path) -> None:
        self._log = log
        with log.open("w") as err:
            self.proc = subprocess.Popen(
                [*command, json.dumps(spec)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
            )

    def call(self, op: str, **args: Any) -> Any:
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        self.proc.stdin.write(json.dumps({"op": op, **args}) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise AssertionError(f"the child exited: {self._log.read_text()}")
        answer = json.loads(line)
        if "error" in answer:
            raise AssertionError(f"{op}: {answer['error']}")
        return answer["ok"]

    def status(self) -> dict[str, Any]:
        return dict(self.call("status"))

    def events(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.call("events") if e["kind"] == kind]

    def close(self) -> None:
        try:
            if self.proc.poll() is None:
                self.call("stop")
                self.proc.wait(30)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(30)
            for pipe in (self.proc.stdin, self.proc.stdout):
                if pipe is not None:
                    pipe.close()


# (which file of a's, how it becomes unusable)
BREAKS = [
    ("key", "chmod"),
    ("cert", "chmod"),
    ("crl", "chmod"),
    ("ca", "chmod"),
    ("cert", "garbage"),
    ("crl", "garbage"),
    ("key", "removed"),
]


@pytest.fixture
def own_files(ca: OpensslCa, tmp_path: Path) -> dict[str, Path]:
    """Copies of a's PKI files, which the test breaks and mends."""
    own = tmp_path / "a-pki"
    own.mkdir()
    files = {"ca": ca.ca, "cert": ca.dir / "a.crt", "key": ca.dir / "a.key", "crl": ca.crl}
    return {name: Path(shutil.copy2(path, own / path.name)) for name, path in files.items()}


@pytest.fixture
def child_a(
    ca: OpensslCa, tmp_path: Path, own_files: dict[str, Path], request: pytest.FixtureRequest
) -> Iterator[ChildPeer]:
    command = _child_command()
    if command is None:
        pytest.skip("running as root without setpriv: chmod 000 cannot stop this node's reads")
    spec = {
        "store": str(tmp_path / "a"),
        "node": "a",
        "files": {
            "ca": str(own_files["ca"]),
            "cert": str(own_files["cert"]),
            "key": str(own_files["key"]),
            "crl": [str(own_files["crl"])],
            "trust_domain": ca.trust_domain,
        },
        "limits": {**FAST, "retry_budget": 1000},
    }
    child = ChildPeer(command, spec, tmp_path / "child.log")
    try:
        yield child
    finally:
        child.close()


def _put_back(target: Path, content: bytes, mode: int) -> None:
    """Writes ``target`` beside and renames it, with its mode from the start."""
    tmp = target.with_name(target.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as out:
        out.write(content)
    tmp.replace(target)


def _link_up(svc: PeerService, node: str) -> bool:
    return any(p["node"] == node and p["connected"] for p in svc.status()["peers"])


@pytest.mark.parametrize(("which", "way"), BREAKS, ids=[f"{w}-{f}" for f, w in BREAKS])
def test_unreadable_tls_files_close_live_connections_refuse_new_ones_and_recover(
    ca: OpensslCa,
    tmp_path: Path,
    own_files: dict[str, Path],
    child_a: ChildPeer,
    which: str,
    way: str,
) -> None:
    """a (a child process, so that chmod 000 stops its reads even as root)
    has a live link from b and one to c. One of its TLS files becomes
    unreadable (chmod 000), garbage, or goes: both links are closed and said
    to be (``certificate_refused``, naming the file), redials both ways are
    refused (``tls_config``), an independent client gets no byte, and no
    segment crosses. Fixed again, the links come back and sync, no restart."""
    a = child_a
    sb, sc = open_store(tmp_path / "b", "b"), open_store(tmp_path / "c", "c")
    with (
        service(sb, ca, "b", retry_budget=1000) as b,
        service(sc, ca, "c", retry_budget=1000) as c,
    ):
        a_addr = a.call("listen", addr="127.0.0.1:0")
        c_addr = c.listen("127.0.0.1:0")
        b.dial(a_addr)
        a.call("dial", addr=c_addr)
        a.call("fill", segments=2, record="before")
        wait_until(
            "the first sync",
            lambda: frontiers(sb).get("a") == 2 and frontiers(sc).get("a") == 2,
        )
        wait_until("both links up", lambda: a.status()["connections"] == 2)
        target = own_files[which]
        original = target.read_bytes()
        mode = target.stat().st_mode & 0o777
        if way == "chmod":
            target.chmod(0)
            # The harness's own precondition: the node can no longer read it.
            assert not a.call("readable", path=str(target))
        elif way == "garbage":
            target.write_bytes(b"not PEM at all\n" * 8)
        else:
            target.unlink()

        # Live connections closed, and said why.
        wait_until("a to close its live links", lambda: a.status()["connections"] == 0)
        refused = a.events("certificate_refused")
        assert {e["peer"] for e in refused} >= {
            "spiffe://test.example/node/b",
            "spiffe://test.example/node/c",
        }, refused
        for event in refused:
            assert event["detail"].startswith("PKI files unusable"), event
            assert target.name in event["detail"], event
        wait_until(
            "b and c to see the links go",
            lambda: not _link_up(b, "a") and not _link_up(c, "a"),
        )

        # New connections refused, both ways, and counted.
        wait_until(
            "b's redials to be refused",
            lambda: a.status()["handshakes_rejected"].get("tls_config", 0) >= 3,
        )
        wait_until(
            "a's redials to c to be refused",
            lambda: (a.status()["dials"][0]["last_error"] or "").startswith("tls_config"),
        )
        assert target.name in a.status()["dials"][0]["last_error"]
        received = s_client(a_addr, ca, "b")
        assert received == b"", "a client got bytes from a node without usable TLS files"
        a.call("fill", segments=1, record="while broken")
        seen = a.status()["handshakes_rejected"]["tls_config"]
        wait_until(
            "more refused redials",
            lambda: a.status()["handshakes_rejected"]["tls_config"] >= seen + 3,
        )
        status = a.status()
        assert status["connections"] == 0
        assert not any(p["connected"] for p in status["peers"])
        assert frontiers(sb).get("a") == frontiers(sc).get("a") == 2, "a segment crossed"
        # The state is reported, naming the file (the node's health says degraded).
        assert target.name in (status["tls_error"] or "")
        reloads = status["tls_reloads"]

        # Readable again: both links come back and the segment held back crosses.
        if way == "chmod":
            target.chmod(mode)
        else:
            _put_back(target, original, mode)
        wait_until(
            "the links to come back and sync",
            lambda: frontiers(sb).get("a") == 3 and frontiers(sc).get("a") == 3,
        )
        status = a.status()
        assert status["connections"] == 2
        assert status["tls_error"] is None
        assert status["tls_reloads"] > reloads
        assert _link_up(b, "a")
        assert _link_up(c, "a")
    sb.close()
    sc.close()
