"""The node as ``vedette serve`` runs it: its configuration (from a file or the
embedded example), its runtime, and its listeners on uvicorn or granian.

The command itself is python/vedette/cli/serve.py; what cannot start here raises
:class:`ServeError` with a one-line message, which the command prints.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import secrets
import signal
import socket
import ssl
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vedette import event_loop
from vedette.config import (
    Config,
    load_config,
)
from vedette.errors import ServeError

if TYPE_CHECKING:
    from vedette.runtime.health import Health
    from vedette.runtime.interceptor import Runtime
    from vedette.runtime.releases import Releases
    from vedette.runtime.tools import ToolRegistry
    from vedette.store import SegmentStore

# uvicorn.server.STARTUP_FAILURE, the code uvicorn exits with when a listener
# cannot start (uvicorn does not export the name).
UVICORN_STARTUP_FAILURE = 3
# Where `vedette serve --server granian` leaves its ServeSpec for the worker.
SPEC_VARIABLE = "VEDETTE_SERVE_SPEC"


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6) as a host and a port; a ``ServeError``
    for anything else."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ServeError(f"expected HOST:PORT, got {text!r}")
    return host.strip("[]"), int(port)


@dataclasses.dataclass(frozen=True)
class ServeSpec:
    """What `vedette serve` was asked for; a server's worker process rebuilds the
    same configuration from it."""

    config_path: str | None
    listen: str | None
    example: bool
    token: str | None = None
    state_dir: str | None = None

    def resolve(self) -> tuple[Config, str | None]:
        host, port = parse_listen(self.listen) if self.listen else ("127.0.0.1", 8797)
        if self.example:
            from vedette.example import example_config

            token = (
                self.token or os.environ.get("VEDETTE_EXAMPLE_TOKEN") or secrets.token_urlsafe(24)
            )
            state = Path(self.state_dir) if self.state_dir else None
            return example_config(host, port, token, state), token
        overrides: dict[str, object] = {}
        if self.listen:
            overrides = {"listen.host": host, "listen.port": port}
        config_path = Path(self.config_path) if self.config_path else None
        return load_config(config_path, overrides=overrides), None


def build_runtime(config: Config, tools: ToolRegistry | None = None) -> Runtime:
    """The composition root: the node's parts for ``config``, built and wired
    here and nowhere else (docs/architecture.md, "Arrows"). The store; the
    releases (agents with a signed ``release`` get the lifecycle: verification,
    last-known-good, a poller each); the runtime; and, when configured, the
    peer transport and the archive uplink, joined to the runtime's health,
    status, metrics and shutdown. ``tools`` replaces the registry the config
    describes (the MCP gateway's upstream tools)."""
    from vedette.runtime.evidence import open_store
    from vedette.runtime.interceptor import Runtime

    store = open_store(config)
    try:
        releases = _signed_releases(config, store)
    except BaseException:
        store.close()
        raise
    runtime = Runtime(config, releases=releases, store=store, tools=tools)
    try:
        _attach_peers(config, runtime)
        _attach_archive(config, runtime)
        _record_start(config, runtime)
    except BaseException:
        runtime.close()  # a bad [peers] table must not leave the store locked
        raise
    return runtime


# The section digests of the configuration the node last started with.
LAST_CONFIG_FILE = "config-sections.json"


def _record_start(config: Config, runtime: Runtime) -> None:
    """Who changed what: a ``node_start`` record with the digest of the effective
    configuration, per section, and what its files hold (trusted key ids, local
    policy hashes); and ``config_changed``, naming the sections, when that
    differs from the last start (docs/contracts.md, "Node events")."""
    from vedette import __version__
    from vedette.config.digest import changed_sections, config_digest, section_digests
    from vedette.durable import write_durably

    sections = section_digests(config, _file_contents(config, runtime))
    digest = config_digest(sections)
    last = config.state_dir / LAST_CONFIG_FILE
    try:
        previous = json.loads(last.read_bytes())
    except (OSError, ValueError):
        previous = None  # the first start here, or a file we cannot trust: no diff
    fields = {"version": __version__, "pid": os.getpid(), "config_digest": digest}
    runtime.record_event_now("node_start", {**fields, "sections": sections})
    if isinstance(previous, dict) and isinstance(previous.get("sections"), dict):
        before = {str(k): str(v) for k, v in previous["sections"].items()}
        if config_digest(before) != digest:
            runtime.record_event_now(
                "config_changed",
                {
                    "digest": digest,
                    "previous_digest": config_digest(before),
                    "changed": changed_sections(before, sections),
                },
            )
    try:
        write_durably(last, json.dumps({"sections": sections}).encode())
    except OSError as err:  # the next start then records no diff; this one is recorded
        logging.getLogger("vedette.serve").warning("%s: %s", last, err)


def _file_contents(config: Config, runtime: Runtime) -> dict[str, Any]:
    """What the files the configuration names hold, where the digest of the
    configuration alone would miss a change: each signed agent's trusted key
    ids, each unsigned agent's policy hash and behavioural fingerprint."""
    from vedette.releases.revocations import key_files
    from vedette.releases.signing import load_public_key

    keys: dict[str, list[str]] = {}
    local: dict[str, dict[str, Any]] = {}
    for agent in config.agents:
        if agent.release is not None:
            try:
                keys[agent.name] = sorted(
                    load_public_key(path).key_id for path in key_files(agent.keys)
                )
            except Exception as err:  # the release lifecycle reports it; the digest notes it
                keys[agent.name] = [f"unreadable: {type(err).__name__}"]
            continue
        active = runtime.releases.active(agent.name)
        local[agent.name] = (
            {k: active.describe()[k] for k in ("policy_hash", "behavioral_fingerprint")}
            if active is not None
            else {"unavailable": True}
        )
    return {"trusted_keys": keys, "local_files": local}


def wait_for_releases(runtime: Runtime, timeout_s: float = 30.0) -> None:
    """Until every agent has an active release: a signed one is fetched and
    verified by its poller after the node starts, and until then its agent
    denies every call. ``ServeError`` names the agents still without one."""
    import time

    deadline = time.monotonic() + timeout_s
    while True:
        waiting = [a for a in runtime.releases.agents() if runtime.releases.active(a) is None]
        if not waiting:
            return
        if time.monotonic() > deadline:
            reasons = "; ".join(runtime.releases.unavailable_reason(a) for a in waiting)
            raise ServeError(f"no active release after {timeout_s:.0f} s: {reasons}")
        time.sleep(0.01)


def _signed_releases(config: Config, store: SegmentStore) -> Releases | None:
    """The release lifecycle, when an agent names a signed ``release``; None
    lets the runtime load the agents' local files."""
    if not any(agent.release is not None for agent in config.agents):
        return None
    from vedette.releases.node import NodeReleases

    return NodeReleases(config, store)


def _attach_peers(config: Config, runtime: Runtime) -> None:
    """The peer transport, when the configuration has a ``[peers]`` table."""
    if config.peers is None:
        return
    from vedette.peers.node import PeerNode

    node = PeerNode(config, runtime.store)
    runtime.on_close(node.stop)
    node.register_metrics(runtime.metrics.registry)
    runtime.add_status_source("peers", node.status)
    runtime.add_health_source("peers", lambda: _peers_health(node.service.status()))


def _peers_health(status: dict[str, Any]) -> Health:
    """Degraded while the peer TLS files cannot be used: the node still decides
    and records, but no evidence leaves or arrives (docs/operations.md, "Health").
    The reason names no file (health is an adapter's to read); the operator's
    status does (``peers.tls_error``)."""
    from vedette.runtime.health import Health

    if status.get("tls_error"):
        reason = "the peer TLS files cannot be used; no segment moves (status: peers.tls_error)"
        return Health("degraded", (reason,))
    return Health.ok()


def _attach_archive(config: Config, runtime: Runtime) -> None:
    """The archive uplink, when the configuration has an ``[archive]`` table: it
    signs with the runtime's origin seals, wakes when a segment is sealed, and
    its state joins /v1/health, /v1/status and /metrics."""
    if config.archive is None:
        return
    from vedette.archive.uplink import ArchiveUplink

    uplink = ArchiveUplink(config.archive, runtime.store, signatures=runtime.seals.signature)
    runtime.on_close(uplink.stop)
    runtime.on_sealed(uplink.wake)
    runtime.add_health_source("archive", uplink.health)
    runtime.add_status_source("archive", uplink.status)
    runtime.metrics.registry.register(uplink.collector())


def start_runtime(config: Config, tools: ToolRegistry | None = None) -> Runtime:
    """The runtime, or a one-line error (a store another process holds, a bad
    ``[peers]`` table) before anything says the node is serving."""
    from vedette.errors import PeerError, PkiError, StoreError

    try:
        return build_runtime(config, tools)
    except (PeerError, PkiError) as err:
        raise ServeError(f"peers: {err}") from err
    except StoreError as err:
        raise ServeError(f"evidence store: {err}") from err


def serve_uvicorn(config: Config, announce: Callable[[], None]) -> None:
    """Run the node on uvicorn until a signal stops it; ``announce`` is called
    once the runtime is up, before the listeners open."""
    from vedette.api import create_app

    tls = _adapter_tls(config)
    runtime = start_runtime(config)
    announce()
    # uvicorn drains in-flight calls on SIGTERM/SIGINT, then re-raises the
    # signal; these handlers turn that into a normal exit so the store closes.
    for stop in (signal.SIGTERM, signal.SIGINT):
        signal.signal(stop, _exit_cleanly)
    # SIGHUP reads the trusted keys and the revocation list again (and never
    # stops the node, as it would by default).
    reload = getattr(runtime.releases, "request_reload", None)
    signal.signal(signal.SIGHUP, (lambda s, f: reload()) if reload else signal.SIG_IGN)
    try:
        if config.mcp.servers:
            event_loop.run(_serve_with_mcp(config, runtime, tls))
        else:
            event_loop.run(_serve(create_app(runtime), config, runtime, tls))
    except SystemExit as stop:
        # An address in use, a socket it cannot bind: uvicorn has logged why,
        # and the node cannot run.
        if stop.code == UVICORN_STARTUP_FAILURE:
            raise ServeError("a listener could not start (the reason is above)") from None
        raise
    finally:
        runtime.close()


def _mcp_endpoint(config: Config, runtime: Runtime) -> Any:
    """``/mcp``, in front of ``[[mcp.servers]]`` (docs/mcp.md); it needs the MCP SDK."""
    try:
        from vedette.mcp.http import McpEndpoint
    except ImportError:
        from vedette.mcp.errors import INSTALL_HINT

        raise ServeError(f"mcp.servers: {INSTALL_HINT}") from None
    from vedette.api.peer import PEER_UID

    return McpEndpoint(runtime, config, PEER_UID)


async def _serve_with_mcp(config: Config, runtime: Runtime, tls: dict[str, Any]) -> None:
    """The listeners, with the MCP gateway's upstreams connected while they serve."""
    from vedette.api import create_app

    endpoint = _mcp_endpoint(config, runtime)
    async with endpoint.running():
        await _serve(create_app(runtime, mcp=endpoint), config, runtime, tls)


def serve_granian(config: Config, spec: ServeSpec, announce: Callable[[], None]) -> None:
    """Run the node on granian, in one worker process that rebuilds the
    configuration from ``spec``; ``announce`` as for :func:`serve_uvicorn`."""
    try:
        from granian import Granian
        from granian.constants import Interfaces
    except ImportError as err:
        raise ServeError("--server granian needs `pip install vedette[granian]`") from err
    if config.listen.unix_socket is not None:
        raise ServeError(
            "listen.unix_socket needs --server uvicorn (peer credentials are read there)"
        )
    if config.listen.tls_cert is not None or config.operator.listen is not None:
        raise ServeError("listen.tls_cert and operator.listen need --server uvicorn")
    if config.mcp.servers:
        raise ServeError("mcp.servers needs --server uvicorn")
    # The worker opens the store; check here first that it can, so a store
    # another process holds is a one-line error, not a worker's traceback.
    start_runtime(config).close()
    announce()
    # One worker: the store admits one process (INV-01). It rebuilds this
    # configuration from the spec, so both sides agree on token and state folder.
    os.environ[SPEC_VARIABLE] = json.dumps(dataclasses.asdict(spec))
    Granian(
        "vedette.serve:app_from_environment",
        address=config.listen.host,
        port=config.listen.port,
        interface=Interfaces.ASGI,
        workers=1,
        factory=True,
        log_level="warning",  # type: ignore[arg-type]
    ).serve()


def app_from_environment() -> Any:
    """The ASGI app for a server that imports it in a worker process (granian):
    the worker rebuilds the configuration `vedette serve` resolved, from the
    spec :func:`serve_granian` left in the environment."""
    import contextlib

    from vedette.api import create_app

    spec = ServeSpec(**json.loads(os.environ[SPEC_VARIABLE]))
    config, _ = spec.resolve()
    runtime = build_runtime(config)

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        yield
        runtime.close()

    return create_app(runtime, lifespan=lifespan)


class _LinkedServer:
    """Runs the node's servers together (each with the sockets it was given, if
    any); a signal stops them all."""

    def __init__(self, servers: list[tuple[Any, list[socket.socket] | None]]) -> None:
        self.servers = [server for server, _ in servers]
        self.sockets = [sockets for _, sockets in servers]
        for server in self.servers:
            original = server.handle_exit

            def handle_exit(sig: int, frame: Any, original: Any = original) -> None:
                original(sig, frame)
                for other in self.servers:
                    other.should_exit = True

            server.handle_exit = handle_exit

    async def serve(self) -> None:
        await asyncio.gather(
            *(
                server.serve(sockets)
                for server, sockets in zip(self.servers, self.sockets, strict=True)
            )
        )


def _listeners(config: Config, runtime: Runtime) -> tuple[Any, Any]:
    """The adapter and operator listeners' connection discipline
    (python/vedette/api/listener.py), wired into health, status and metrics."""
    from vedette.api.listener import (
        OPERATOR_MAX_CONNECTIONS,
        DescriptorBudgetError,
        Limits,
        Listener,
        ListenerCollector,
        adapter_connection_cap,
        open_descriptors,
        raise_descriptor_limit,
    )

    try:
        cap = adapter_connection_cap(
            config.listen.max_connections, raise_descriptor_limit(), open_descriptors()
        )
    except DescriptorBudgetError as err:
        raise ServeError(str(err)) from err
    adapters = Listener("adapter", Limits.of(config.listen, cap))
    operator = Listener("operator", Limits.of(config.listen, OPERATOR_MAX_CONNECTIONS))
    runtime.add_health_source("listener", adapters.health)
    runtime.add_status_source(
        "listener", lambda: {"adapter": adapters.status(), "operator": operator.status()}
    )
    runtime.metrics.registry.register(ListenerCollector([adapters, operator]))
    return adapters, operator


async def _serve(app: Any, config: Config, runtime: Runtime, tls: dict[str, Any]) -> None:
    import uvicorn

    adapters, operator_listener = _listeners(config, runtime)
    common: dict[str, Any] = {
        "log_level": "warning",
        "timeout_graceful_shutdown": 10,
        # Decisions are logged as evidence, not as access-log lines.
        "access_log": False,
        # No X-Forwarded-* rewriting of the client address: nothing here may
        # take a request's word for who or where it comes from.
        "proxy_headers": False,
        "server_header": False,
        # No upgrades: every listener speaks plain HTTP/1.1.
        "ws": "none",
        "timeout_keep_alive": config.listen.keepalive_timeout_s,
    }
    adapter_protocol = adapters.protocol()
    servers: list[tuple[Any, list[socket.socket] | None]] = [
        (
            uvicorn.Server(
                uvicorn.Config(
                    app,
                    host=config.listen.host,
                    port=config.listen.port,
                    http=adapter_protocol,
                    **tls,
                    **common,
                )
            ),
            None,
        )
    ]
    if config.listen.unix_socket is not None:
        # The Unix socket shares the adapter listener's connection budget.
        uds = uvicorn.Config(
            app, uds=str(config.listen.unix_socket), http=adapter_protocol, **common
        )
        servers.append((uvicorn.Server(uds), None))
    if config.operator.enabled:
        from vedette.api.operator import create_operator_app, operator_socket

        operator = uvicorn.Config(
            create_operator_app(runtime), http=operator_listener.protocol(), **common
        )
        servers.append((uvicorn.Server(operator), [operator_socket(config.operator_socket)]))
    if config.operator.listen is not None and config.operator.token_sha256 is not None:
        from vedette.api.operator import create_operator_app

        host, _, port = config.operator.listen.rpartition(":")
        scraped = uvicorn.Config(
            create_operator_app(runtime, token_sha256=config.operator.token_sha256),
            host=host.strip("[]"),
            port=int(port),
            http=operator_listener.protocol(),
            **common,
        )
        servers.append((uvicorn.Server(scraped), None))
    try:
        await _LinkedServer(servers).serve()
    finally:
        if config.operator.enabled:
            config.operator_socket.unlink(missing_ok=True)


def _adapter_tls(config: Config) -> dict[str, Any]:
    """uvicorn's TLS settings for the adapter listener (``listen.tls_*``): TLS 1.2
    or later (Python's default floor), client certificates required when a CA
    is given. Files that cannot be read stop the node at start."""
    listen = config.listen
    if listen.tls_cert is None:
        return {}
    # Load them once here so a bad file is a one-line error, not a traceback
    # from inside the server.
    try:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(listen.tls_cert, listen.tls_key)
        if listen.tls_client_ca is not None:
            context.load_verify_locations(cafile=listen.tls_client_ca)
    except OSError as err:  # ssl.SSLError is one
        raise ServeError(f"listen.tls_*: the adapter listener's TLS files: {err}") from err
    tls: dict[str, Any] = {
        "ssl_certfile": str(listen.tls_cert),
        "ssl_keyfile": str(listen.tls_key),
    }
    if listen.tls_client_ca is not None:
        tls["ssl_ca_certs"] = str(listen.tls_client_ca)
        tls["ssl_cert_reqs"] = ssl.CERT_REQUIRED
    return tls


def _exit_cleanly(signum: int, frame: object) -> None:
    raise SystemExit(0)
