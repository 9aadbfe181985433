"""``vedette serve --example`` as a child process: start-to-ready time and idle memory.

The server runs from this interpreter (``python -m vedette``) with its state
folder (``XDG_STATE_HOME``), ``HOME`` and ``TMPDIR`` inside the scratch folder,
on a free loopback port, the caller's rate quota lifted and the store's
ceiling raised so that a load run measures the allow path.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

from vedette.benchmark.common import BenchError, Metric, Scratch

HOST = "127.0.0.1"
READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0
# Ready and then left alone this long before its memory is read.
SETTLE_S = 0.5


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def rss_kib(pid: int) -> int:
    """VmRSS of ``pid`` in KiB, from /proc/PID/status."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError as err:
        raise BenchError(f"cannot read the memory of process {pid}: {err}") from err
    for line in text.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise BenchError(f"/proc/{pid}/status has no VmRSS line")


def health_status(port: int, timeout_s: float = 1.0) -> int | None:
    """The status of ``GET /v1/health``, or ``None`` if nothing answers yet."""
    try:
        with socket.create_connection((HOST, port), timeout=timeout_s) as conn:
            conn.sendall(
                f"GET /v1/health HTTP/1.1\r\nHost: {HOST}:{port}\r\n"
                "Connection: close\r\n\r\n".encode()
            )
            head = b""
            while b"\r\n" not in head:
                chunk = conn.recv(1024)
                if not chunk:
                    return None
                head += chunk
    except OSError:
        return None
    parts = head.split(b" ", 2)
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None


class ExampleServer:
    """One ``vedette serve --example`` child; ``start`` returns once /v1/health
    answered 200, ``stop`` ends it (SIGTERM, then SIGKILL) and is always safe."""

    def __init__(self, scratch: Scratch, name: str) -> None:
        self.home = scratch.folder(name)
        self.port = free_port()
        self.token = secrets.token_urlsafe(24)
        self.process: subprocess.Popen[bytes] | None = None
        self.ready_s = 0.0
        self.log = self.home / "server.log"

    def environment(self) -> dict[str, str]:
        # No VEDETTE_* setting of the caller's reaches the child: one naming a
        # store or socket folder would lead its writes out of the scratch folder.
        env = {name: value for name, value in os.environ.items() if not name.startswith("VEDETTE_")}
        env.update(
            {
                "HOME": str(self.home),
                "XDG_STATE_HOME": str(self.home),
                "TMPDIR": str(self.home),
                "VEDETTE_EXAMPLE_TOKEN": self.token,
                "VEDETTE_QUOTA_RATE_PER_S": "1e9",
                "VEDETTE_QUOTA_BURST": "1e9",
                "VEDETTE_STORE_CEILING_BYTES": str(4 << 30),
                "PYTHONUNBUFFERED": "1",
            }
        )
        return env

    def start(self) -> float:
        """Spawn and wait for the first 200 from /v1/health; the seconds it took."""
        command = [sys.executable, "-m", "vedette", "serve", "--example",
                   "--listen", f"{HOST}:{self.port}"]  # fmt: skip
        with self.log.open("wb") as log:
            began = time.perf_counter()
            self.process = subprocess.Popen(
                command,
                env=self.environment(),
                cwd=self.home,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = began + READY_TIMEOUT_S
        while time.perf_counter() < deadline:
            if self.process.poll() is not None:
                raise BenchError(
                    f"vedette serve --example exited with {self.process.returncode} "
                    f"before it was ready: {self.log_tail()}"
                )
            if health_status(self.port) == 200:
                self.ready_s = time.perf_counter() - began
                return self.ready_s
            time.sleep(0.01)
        raise BenchError(
            f"vedette serve --example did not answer 200 on /v1/health within "
            f"{READY_TIMEOUT_S:.0f} s: {self.log_tail()}"
        )

    def log_tail(self, lines: int = 5) -> str:
        try:
            text = self.log.read_text(errors="replace").strip()
        except OSError:
            return "(no output)"
        return " | ".join(text.splitlines()[-lines:]) or "(no output)"

    @property
    def pid(self) -> int:
        if self.process is None:
            raise BenchError("the example server is not running")
        return self.process.pid

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def __enter__(self) -> ExampleServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def startup_metrics(ready_s: list[float], idle_kib: int) -> list[Metric]:
    starts = f"{len(ready_s)} start" + ("" if len(ready_s) == 1 else "s")
    return [
        Metric("serve.ready_ms", "serve --example start-to-ready (median)",
               statistics.median(ready_s) * 1e3, "ms", "lower",
               f"spawn to first 200 on /v1/health, {starts}"),
        Metric("serve.idle_rss_mib", "serve --example idle RSS", idle_kib / 1024, "MiB",
               "lower", f"VmRSS {SETTLE_S:g} s after ready"),
    ]  # fmt: skip
