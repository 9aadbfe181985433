"""The runtime's configuration: one typed, validated object with embedded defaults.

Sources, later ones winning: the defaults below, a TOML file (``vedette.toml``),
environment variables ``VEDETTE_<SECTION>_<KEY>`` (for example
``VEDETTE_LISTEN_PORT=9000``), and command-line flags passed as ``overrides``
(``{"listen.port": 9000}``). Every value is checked on load; an error names the
dotted key, what was expected and what was given. Unknown keys are errors too,
so a typo never silently leaves a default in force.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import sys
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from vedette.errors import VedetteError
from vedette.hashing import Digest, DigestFormatError, HashRole, require_role, sha256

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised only on Python 3.10
    import tomli as tomllib

ENV_PREFIX = "VEDETTE_"


class ConfigError(VedetteError, ValueError):
    """The configuration is invalid; the message names the key."""


def default_state_dir() -> Path:
    """``$XDG_STATE_HOME/vedette``, else ``~/.local/state/vedette``: per user, never shared."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "vedette"


@dataclass(frozen=True)
class ListenConfig:
    host: str = "127.0.0.1"
    port: int = 8797
    # Optional Unix socket for adapters; the peer's uid maps to a caller.
    unix_socket: Path | None = None
    max_body_bytes: int = 64 * 1024
    # Connection discipline (docs/configuration.md, "Connections";
    # python/vedette/api/listener.py).
    head_timeout_s: float = 10.0
    body_timeout_s: float = 10.0
    keepalive_timeout_s: float = 5.0
    send_timeout_s: float = 10.0
    max_connections: int = 4096
    max_connections_per_source: int = 128
    max_head_bytes: int = 16 * 1024
    max_headers: int = 100
    # Requests without valid credentials, per source address (429 beyond it).
    unauthenticated_rate_per_s: float = 10.0
    unauthenticated_burst: float = 20.0
    unauthenticated_max_sources: int = 10_000
    # Beyond that rate the 429 is sent when a retry would be admitted (its
    # Retry-After), held at most this long: a flooding connection then gets a
    # few answers a second instead of thousands (docs/threat-model.md).
    unauthenticated_hold_s: float = 1.0

    def __post_init__(self) -> None:
        # Counts and times are checked to be positive on load; these need more.
        if self.max_head_bytes < 1024:
            raise ConfigError(f"listen.max_head_bytes: expected >= 1024, got {self.max_head_bytes}")
        if self.unauthenticated_burst < 1:
            raise ConfigError(
                f"listen.unauthenticated_burst: expected >= 1, got {self.unauthenticated_burst}"
            )


@dataclass(frozen=True)
class StoreConfig:
    # Default: <state_dir>/store.
    dir: Path | None = None
    ceiling_bytes: int = 256 * 1024 * 1024
    durability: Literal["durable", "interval"] = "durable"
    # A segment is sealed at a size bound (an eighth of the ceiling, between
    # 16 KiB and 16 MiB), or once its first record is this old when the node
    # has somewhere to send sealed evidence (peers, the archive).
    seal_after_s: float = 60.0
    # Above this share of the ceiling the node reports itself degraded.
    high_water: float = 0.8

    def __post_init__(self) -> None:
        if not 0 < self.high_water <= 1:
            raise ConfigError(
                f"store.high_water: expected a share from 0 to 1, got {self.high_water}"
            )


@dataclass(frozen=True)
class QuotaConfig:
    rate_per_s: float = 50.0
    burst: float = 100.0
    max_keys: int = 10_000


@dataclass(frozen=True)
class PolicyConfig:
    eval_timeout_ms: int = 100


@dataclass(frozen=True)
class IntentLimits:
    max_depth: int = 32
    max_args_bytes: int = 32 * 1024
    max_claims_bytes: int = 4 * 1024
    # A request_id decided within this window is answered again, not re-run.
    retry_window_s: float = 600.0
    max_retry_entries: int = 10_000


@dataclass(frozen=True)
class EvidenceConfig:
    # Argument and claim names whose values are written as "***" in evidence.
    mask_args: tuple[str, ...] = ()


@dataclass(frozen=True)
class HttpToolConfig:
    name: str
    url: str
    timeout_s: float = 10.0
    max_response_bytes: int = 1024 * 1024


@dataclass(frozen=True)
class FsMount:
    """A host folder that fs.read and fs.list show to agents under the path ``at``.

    Agents and policies see only ``at`` (``/data/a.csv``), never the host path.
    """

    at: str
    dir: Path


@dataclass(frozen=True)
class ToolLimits:
    """Limits for one tool, in place of the ``[tools]`` defaults."""

    name: str
    timeout_s: float | None = None
    max_output_bytes: int | None = None


@dataclass(frozen=True)
class ToolsConfig:
    # Defaults for every tool; `limits` entries override them per tool.
    timeout_s: float = 10.0
    max_output_bytes: int = 1024 * 1024
    limits: tuple[ToolLimits, ...] = ()
    # What fs.read and fs.list may reach; none means those tools refuse everything.
    fs_mounts: tuple[FsMount, ...] = ()
    fs_max_read_bytes: int = 1024 * 1024
    http: tuple[HttpToolConfig, ...] = ()

    def limits_for(self, name: str) -> tuple[float, int]:
        """(timeout in seconds, output limit in bytes) for the tool ``name``."""
        for entry in self.limits:
            if entry.name == name:
                return (
                    entry.timeout_s if entry.timeout_s is not None else self.timeout_s,
                    entry.max_output_bytes
                    if entry.max_output_bytes is not None
                    else self.max_output_bytes,
                )
        return self.timeout_s, self.max_output_bytes


@dataclass(frozen=True)
class CallerConfig:
    """An adapter's identity: a bearer token (kept only as its SHA-256) or a Unix uid."""

    id: str
    agent: str
    token_sha256: Digest | None = None
    uid: int | None = None


@dataclass(frozen=True)
class AgentConfig:
    """One agent's release: local files (``manifest`` and ``bundle``), or a signed
    release watched at ``release`` (``oci://HOST:PORT/REPO:TAG`` or
    ``oci-layout://DIR:TAG``) and verified with the public keys in ``keys``."""

    name: str
    manifest: Path | None = None
    bundle: Path | None = None
    release: str | None = None
    keys: tuple[Path, ...] = ()
    poll_interval_s: float = 30.0
    # Unreachable control plane for longer than this: deny-all (off when unset).
    max_staleness_s: float | None = None
    # Plain HTTP to the registry; never the default.
    insecure: bool = False
    ca: Path | None = None
    # Registry user; the password comes from VEDETTE_REGISTRY_PASSWORD.
    username: str | None = None


@dataclass(frozen=True)
class ReleasesConfig:
    """The ``[releases]`` table: time and rollback (docs/configuration.md,
    "Signed releases"; docs/operations.md, "Time and rollback")."""

    # How far a release's signed creation time may be ahead of this node's
    # clock; signed creation times raise the time floor less this much.
    clock_skew_s: float = 300.0
    # How often the time floor follows the clock to disk.
    time_floor_interval_s: float = 300.0


@dataclass(frozen=True)
class PeersConfig:
    """The ``[peers]`` table: the peer transport (docs/configuration.md, docs/contracts.md)."""

    ca: Path
    cert: Path
    key: Path
    crl: Path
    # HOST:PORT (a literal IP) to accept peers on; none: dial only.
    listen: str | None = None
    trust_domain: str | None = None
    # Identity patterns (`*` wildcard) a peer's SAN URI or DNS name must match.
    allow: tuple[str, ...] = ()
    # HOST:PORT addresses dialled and kept connected.
    static: tuple[str, ...] = ()
    rate_in_bytes_per_s: float = 8 * 1024 * 1024
    burst_in_bytes: float = 1024 * 1024
    rate_out_bytes_per_s: float = 8 * 1024 * 1024
    burst_out_bytes: float = 1024 * 1024
    quota_margin: float = 0.5
    # Evidence leaves the node once sealed: seal the open segment this often.
    seal_interval_s: float = 5.0
    sync_interval_s: float = 1.0
    idle_timeout_s: float = 60.0
    handshake_timeout_s: float = 10.0
    max_connections: int = 64
    retry_base_s: float = 0.5
    retry_cap_s: float = 60.0
    retry_budget: int = 10
    retry_window_s: float = 60.0
    # Read by `vedette peers status`; default <state_dir>/peers-status.json.
    status_file: Path | None = None
    # Beacon (docs/beacon-privacy.md): IP:PORT to receive announcements on,
    # IP:PORT destinations to send them to (a broadcast address, or neighbours).
    beacon_listen: str | None = None
    beacon_send_to: tuple[str, ...] = ()
    # The address announced; none: receivers use the datagram's source address.
    beacon_advertise_address: str | None = None
    beacon_interval_s: float = 10.0
    beacon_rate_per_s: float = 10.0
    beacon_max_candidates: int = 16

    def __post_init__(self) -> None:
        addrs = [("listen", self.listen), ("beacon_listen", self.beacon_listen)]
        addrs += [("static", a) for a in self.static]
        addrs += [("beacon_send_to", a) for a in self.beacon_send_to]
        for key, addr in addrs:
            if addr is not None and not _is_ip_port(addr):
                raise ConfigError(f"peers.{key}: expected IP:PORT, got {addr!r}")
        if not 0 < self.quota_margin < 1:
            raise ConfigError(
                f"peers.quota_margin: expected a number in (0, 1), got {self.quota_margin}"
            )
        if self.beacon_send_to and self.listen is None:
            raise ConfigError("peers.beacon_send_to: a beacon announces peers.listen; set it")


def _is_ip_port(text: str) -> bool:
    import ipaddress

    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        return False
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class ArchiveConfig:
    """The ``[archive]`` table: sealed evidence published to a NATS JetStream
    stream (python/vedette/archive/; docs/configuration.md, "Archive")."""

    # nats:// or tls:// URLs of the cluster's servers (any of them will do).
    servers: tuple[str, ...]
    stream: str = "VEDETTE_EVIDENCE"
    # Segments go to <subject_prefix>.<node>; the stream must take <subject_prefix>.>.
    subject_prefix: str = "vedette.evidence"
    # TLS: the CA the servers chain to, and this node's certificate and key
    # (client authentication), e.g. the files `vedette pki` made for [peers].
    ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None
    # Or (and) a NATS credentials file (JWT and NKey seed).
    credentials: Path | None = None
    bytes_per_second: float = 8 * 1024 * 1024
    # Messages published whose acknowledgement has not come back yet.
    in_flight: int = 8
    publish_timeout_s: float = 10.0
    retry_base_s: float = 0.5
    retry_cap_s: float = 30.0
    # At most this many connection attempts per window, whatever their outcome.
    retry_budget: int = 10
    retry_window_s: float = 60.0
    # Create the stream when it is missing, with this many replicas.
    create_stream: bool = True
    replicas: int = 1

    def __post_init__(self) -> None:
        if not self.servers:
            raise ConfigError("archive.servers: expected at least one nats:// or tls:// URL")
        for url in self.servers:
            if not url.startswith(("nats://", "tls://")):
                raise ConfigError(f"archive.servers: expected nats:// or tls:// URLs, got {url!r}")
        if (self.cert is None) != (self.key is None):
            raise ConfigError("archive.cert and archive.key: give both or neither")
        name_ok = self.stream and all(c.isalnum() or c in "_-" for c in self.stream)
        if not name_ok:
            raise ConfigError(
                f"archive.stream: expected letters, digits, _ or -, got {self.stream!r}"
            )
        tokens = self.subject_prefix.split(".")
        if not all(t and all(c.isalnum() or c in "_-" for c in t) for t in tokens):
            raise ConfigError(
                "archive.subject_prefix: expected dot-separated tokens of letters, digits, _ or -,"
                f" got {self.subject_prefix!r}"
            )


@dataclass(frozen=True)
class OperatorConfig:
    """The operator socket (``python/vedette/api/operator.py``)."""

    # Default: <state_dir>/operator.sock.
    socket: Path | None = None
    enabled: bool = True


@dataclass(frozen=True)
class Config:
    node_id: str = field(default_factory=socket.gethostname)
    state_dir: Path = field(default_factory=default_state_dir)
    listen: ListenConfig = ListenConfig()
    store: StoreConfig = StoreConfig()
    quota: QuotaConfig = QuotaConfig()
    policy: PolicyConfig = PolicyConfig()
    intent: IntentLimits = IntentLimits()
    evidence: EvidenceConfig = EvidenceConfig()
    tools: ToolsConfig = ToolsConfig()
    callers: tuple[CallerConfig, ...] = ()
    agents: tuple[AgentConfig, ...] = ()
    releases: ReleasesConfig = ReleasesConfig()
    peers: PeersConfig | None = None
    archive: ArchiveConfig | None = None
    operator: OperatorConfig = OperatorConfig()

    @property
    def store_dir(self) -> Path:
        return self.store.dir or self.state_dir / "store"

    @property
    def operator_socket(self) -> Path:
        return self.operator.socket or self.state_dir / "operator.sock"

    def agent(self, name: str) -> AgentConfig | None:
        return next((agent for agent in self.agents if agent.name == name), None)


def load_config(
    path: Path | str | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, object] | None = None,
) -> Config:
    """Defaults, then the TOML file, then ``VEDETTE_*`` variables, then ``overrides``."""
    data: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except OSError as err:
            raise ConfigError(f"{path}: cannot read: {err.strerror or err}") from err
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
            raise ConfigError(f"{path}: not valid TOML: {err}") from err
        base = path.parent
        data = _resolve_relative_paths(data, base)
    for key, text in _env_overrides(os.environ if env is None else env).items():
        _set_dotted(data, key, text)
    for key, value in (overrides or {}).items():
        _set_dotted(data, key, value)
    config: Config = _build(Config, data, "")
    _check_agents(config)
    return config


def _check_agents(config: Config) -> None:
    """Each agent has either local files or a signed release with its keys."""
    for i, agent in enumerate(config.agents):
        key = f"agents[{i}]"
        if agent.release is None:
            if agent.manifest is None or agent.bundle is None:
                missing = "manifest" if agent.manifest is None else "bundle"
                raise ConfigError(f"{key}.{missing}: required (or set {key}.release)")
            continue
        if agent.manifest is not None or agent.bundle is not None:
            raise ConfigError(f"{key}.release: give either release or manifest and bundle")
        if not agent.keys:
            raise ConfigError(f"{key}.keys: required with release (trusted public key files)")
        if not agent.release.startswith(("oci://", "oci-layout://")):
            raise ConfigError(
                f"{key}.release: expected oci://HOST:PORT/REPO:TAG (or @sha256:…) or "
                f"oci-layout://DIR:TAG, "
                f"got {agent.release!r}"
            )
        from vedette.errors import OciError
        from vedette.releases.oci import parse_reference

        # A tag is watched; a digest pins one release (docs/operations.md,
        # "Time and rollback": the one way to go back to an older release).
        try:
            parse_reference(agent.release)
        except OciError as err:
            raise ConfigError(f"{key}.release: {err}") from None


def _env_overrides(env: Mapping[str, str]) -> dict[str, str]:
    """``VEDETTE_LISTEN_PORT`` → ``listen.port``; only scalar keys of known sections."""
    found = {}
    sections = {f.name for f in dataclasses.fields(Config)}
    for name, value in env.items():
        if not name.startswith(ENV_PREFIX) or name == "VEDETTE_PASSWORD":
            continue
        rest = name[len(ENV_PREFIX) :].lower()
        if rest in sections:
            found[rest] = value
            continue
        section, _, key = rest.partition("_")
        if section in sections and key:
            found[f"{section}.{key}"] = value
    return found


def _set_dotted(data: dict[str, Any], key: str, value: object) -> None:
    *parents, leaf = key.split(".")
    node = data
    for part in parents:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{key}: {part} is not a section")
        node = child
    node[leaf] = value


def _resolve_relative_paths(data: dict[str, Any], base: Path) -> dict[str, Any]:
    """Relative paths in a config file are relative to the file, not the working directory."""

    def resolve(value: Any, key: str) -> Any:
        if isinstance(value, dict):
            return {k: resolve(v, f"{key}.{k}" if key else k) for k, v in value.items()}
        if isinstance(value, list):
            return [resolve(item, key) for item in value]
        if isinstance(value, str) and key.rsplit(".", 1)[-1] in _PATH_KEYS:
            return str(base / value) if not Path(value).is_absolute() else value
        layout = "oci-layout://"
        if key.endswith(".release") and isinstance(value, str) and value.startswith(layout):
            folder = value[len(layout) :]
            return value if folder.startswith("/") else layout + str(base / folder)
        return value

    resolved: dict[str, Any] = resolve(data, "")
    return resolved


_PATH_KEYS = {"state_dir", "dir", "unix_socket", "socket", "manifest", "bundle", "keys", "ca"}
# The [peers] table's files.
_PATH_KEYS |= {"cert", "key", "crl", "status_file"}
# The [archive] table's credentials file.
_PATH_KEYS |= {"credentials"}


def _build(cls: type[Any], data: object, key: str) -> Any:
    if not isinstance(data, Mapping):
        raise ConfigError(f"{key or 'config'}: expected a table, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        where = f"{key}." if key else ""
        raise ConfigError(f"{where}{unknown[0]}: unknown key (known: {', '.join(sorted(fields))})")
    hints = typing.get_type_hints(cls)
    values = {}
    for name, value in data.items():
        values[name] = _coerce(hints[name], value, f"{key}.{name}" if key else name)
    try:
        return cls(**values)
    except TypeError as err:
        missing = [n for n, f in fields.items() if _required(f) and n not in values]
        if missing:
            where = f"{key}." if key else ""
            raise ConfigError(f"{where}{missing[0]}: required") from err
        raise ConfigError(f"{key or 'config'}: {err}") from err


def _required(f: dataclasses.Field[Any]) -> bool:
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING


def _coerce(hint: Any, value: object, key: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        # An empty value (as an environment variable can only give) clears an optional.
        if type(None) in args and (value is None or value == ""):
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(inner[0], value, key)
    if origin is Literal:
        if value not in args:
            choices = ", ".join(repr(a) for a in args)
            raise ConfigError(f"{key}: expected one of {choices}, got {value!r}")
        return value
    if origin is tuple:
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, list | tuple):
            raise ConfigError(f"{key}: expected a list, got {type(value).__name__}")
        return tuple(_coerce(args[0], item, f"{key}[{i}]") for i, item in enumerate(items))
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return _build(hint, value, key)
    return _scalar(hint, value, key)


def _scalar(hint: Any, value: object, key: str) -> Any:
    def bad(expected: str) -> ConfigError:
        return ConfigError(f"{key}: expected {expected}, got {value!r}")

    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        raise bad("true or false")
    if hint is int:
        if isinstance(value, bool):
            raise bad("an integer")
        try:
            number = int(value) if isinstance(value, int | str) else None
        except ValueError:
            number = None
        # Every count, size and limit must be at least 1; only a uid may be 0 (root).
        least = 0 if key.endswith(".uid") else 1
        if number is None or number < least:
            raise bad("an integer >= 0" if least == 0 else "an integer >= 1")
        if key.endswith(".port") and not 0 < number < 65536:
            raise bad("a port from 1 to 65535")
        return number
    if hint is float:
        if isinstance(value, bool):
            raise bad("a number")
        try:
            number_f = float(value) if isinstance(value, int | float | str) else None
        except ValueError:
            number_f = None
        if number_f is None or not (number_f > 0 and number_f != float("inf")):
            raise bad("a finite number > 0")
        return number_f
    if hint is str:
        if not isinstance(value, str) or not value:
            raise bad("a non-empty string")
        return value
    if hint is Path:
        if not isinstance(value, str | Path) or not str(value):
            raise bad("a path")
        return Path(value).expanduser()
    if hint is Digest:
        if not isinstance(value, str):
            raise bad("a 'sha256:<64 hex>' digest")
        try:
            digest = require_role(Digest.parse(value), HashRole.PAYLOAD_DIGEST)
        except (DigestFormatError, ValueError) as err:
            raise ConfigError(f"{key}: {err}") from err
        if digest.algorithm != "sha256":
            raise bad("a 'sha256:<64 hex>' digest")
        return digest
    raise ConfigError(f"{key}: unsupported setting type {hint!r}")  # pragma: no cover


def token_digest(token: str) -> Digest:
    """What the config keeps of a bearer token: its SHA-256, never the token."""
    return sha256(token.encode("utf-8"))
