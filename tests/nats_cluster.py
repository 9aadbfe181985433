"""A three-server NATS JetStream cluster on loopback, with TLS, for the archive's
tests and benchmarks.

Real ``nats-server`` processes (Debian's package; scripts/test installs it),
each with its own JetStream folder, client port and cluster port, client
connections over TLS with client certificates verified against a test CA made
by the ``openssl`` command (tests/peer_pki.py). ``stop(i)`` kills one server
(SIGKILL), ``start(i)`` brings it back with its data; ``stop_all()`` and
``start_all()`` do the whole cluster.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.peer_pki import OpensslCa

SERVERS = 3


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class NatsCluster:
    def __init__(
        self, directory: Path, *, tls: bool = True, servers: int = SERVERS, max_payload_mb: int = 1
    ) -> None:
        binary = shutil.which("nats-server") or "/usr/sbin/nats-server"
        if not Path(binary).exists():
            raise RuntimeError("nats-server is required (scripts/test installs Debian's package)")
        self.binary = binary
        self.dir = directory
        self.tls = tls
        self.count = servers
        self.max_payload_mb = max_payload_mb
        self.client_ports = [_free_port() for _ in range(servers)]
        self.cluster_ports = [_free_port() for _ in range(servers)]
        self.procs: list[subprocess.Popen[bytes] | None] = [None] * servers
        directory.mkdir(parents=True, exist_ok=True)
        self.ca: OpensslCa | None = None
        if tls:
            self.ca = OpensslCa(directory / "pki", "archive.test")
            self.ca.issue("nats", san="IP:127.0.0.1,DNS:localhost")
            self.ca.issue("node-a")
            self.ca.issue("node-b")
        for i in range(servers):
            self._write_config(i)

    @property
    def urls(self) -> list[str]:
        scheme = "tls" if self.tls else "nats"
        return [f"{scheme}://127.0.0.1:{port}" for port in self.client_ports]

    def client_tls(self, node: str = "node-a") -> dict[str, Path]:
        """``ca``, ``cert`` and ``key`` for an ``[archive]`` table."""
        assert self.ca is not None
        return {
            "ca": self.ca.ca,
            "cert": self.ca.dir / f"{node}.crt",
            "key": self.ca.dir / f"{node}.key",
        }

    def _write_config(self, i: int) -> None:
        routes = ",\n    ".join(
            f"nats-route://127.0.0.1:{port}" for j, port in enumerate(self.cluster_ports) if j != i
        )
        tls = ""
        if self.ca is not None:
            tls = f"""
tls {{
  cert_file: "{self.ca.dir / "nats.crt"}"
  key_file: "{self.ca.dir / "nats.key"}"
  ca_file: "{self.ca.ca}"
  verify: true
  timeout: 5
}}
"""
        (self.dir / f"s{i}").mkdir(exist_ok=True)
        (self.dir / f"s{i}.conf").write_text(
            f"""
server_name: s{i}
listen: 127.0.0.1:{self.client_ports[i]}
max_payload: {self.max_payload_mb}MB
jetstream {{
  store_dir: "{self.dir / f"s{i}"}"
  max_memory_store: 64MB
  max_file_store: 2GB
}}
{tls}
cluster {{
  name: vedette-archive-test
  listen: 127.0.0.1:{self.cluster_ports[i]}
  routes: [
    {routes}
  ]
}}
"""
        )

    def start(self, i: int) -> None:
        assert self.procs[i] is None, f"server {i} is running"
        log = open(self.dir / f"s{i}.log", "ab")  # noqa: SIM115 - the process keeps it
        self.procs[i] = subprocess.Popen(
            [self.binary, "-c", str(self.dir / f"s{i}.conf")], stdout=log, stderr=log
        )
        log.close()

    def stop(self, i: int) -> None:
        proc = self.procs[i]
        if proc is None:
            return
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        self.procs[i] = None

    def start_all(self) -> None:
        for i in range(self.count):
            if self.procs[i] is None:
                self.start(i)
        self.wait_ready()

    def stop_all(self) -> None:
        for i in range(self.count):
            self.stop(i)

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        """Until every running server answers and JetStream has a meta leader."""
        import asyncio

        asyncio.run(self._wait_ready(timeout_s))

    async def _wait_ready(self, timeout_s: float) -> None:
        import nats

        deadline = time.monotonic() + timeout_s
        last: Exception | None = None
        while time.monotonic() < deadline:
            for i, proc in enumerate(self.procs):
                if proc is not None and proc.poll() is not None:
                    log = (self.dir / f"s{i}.log").read_text(errors="replace")[-2000:]
                    raise RuntimeError(f"nats-server s{i} exited: {log}")
            try:
                nc = await nats.connect(
                    servers=self.urls, **self.connect_options(), connect_timeout=2,
                    allow_reconnect=False,
                )  # fmt: skip
                try:
                    await nc.jetstream().account_info()
                    return
                finally:
                    await nc.close()
            except Exception as err:  # not up yet
                last = err
            await asyncio_sleep(0.25)
        raise RuntimeError(f"the NATS cluster did not become ready: {last!r}")

    def connect_options(self, node: str = "node-a") -> dict[str, object]:
        """Keyword arguments for ``nats.connect`` as ``node``."""
        if self.ca is None:
            return {}
        import ssl

        files = self.client_tls(node)
        context = ssl.create_default_context(cafile=str(files["ca"]))
        context.load_cert_chain(str(files["cert"]), str(files["key"]))
        return {"tls": context}

    def close(self) -> None:
        self.stop_all()


async def asyncio_sleep(seconds: float) -> None:
    import asyncio

    await asyncio.sleep(seconds)


@contextmanager
def nats_cluster(
    directory: Path, *, tls: bool = True, max_payload_mb: int = 1
) -> Iterator[NatsCluster]:
    cluster = NatsCluster(directory, tls=tls, max_payload_mb=max_payload_mb)
    try:
        cluster.start_all()
        yield cluster
    finally:
        cluster.close()
