"""Serve an ASGI app with uvicorn on a loopback port, in a thread, for the tests;
and wait for a `vedette serve` process to answer."""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import uvicorn


@contextmanager
def live_server(app: Any) -> Iterator[str]:
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="test-uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def wait_until_healthy(url: str, process: subprocess.Popen[str], timeout_s: float = 30) -> None:
    """Until ``url``'s /v1/health answers 200; kills the process and raises with
    its output if it exits or does not answer in time."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if httpx.get(f"{url}/v1/health", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"the node did not start: {process.communicate()[0]}")
        time.sleep(0.1)


def operator_client(socket_path: Path) -> httpx.Client:
    """A client of a node's operator socket (python/vedette/api/operator.py), where
    status and metrics are served."""
    transport = httpx.HTTPTransport(uds=str(socket_path))
    return httpx.Client(transport=transport, base_url="http://node", timeout=10)


def wait_for_port(port: int, process: subprocess.Popen[str], timeout_s: float = 30) -> None:
    """Until 127.0.0.1:``port`` accepts a connection; kills ``process`` and raises
    with its output if it exits or the port does not open in time."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError as err:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                output = process.communicate()
                raise RuntimeError(f"nothing listens on port {port}: {output}") from err
            time.sleep(0.1)
