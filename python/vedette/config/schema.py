"""Every setting, declared once: its key (the field), type, bounds, default and
meaning. ``load.py`` checks a configuration against these declarations (with
msgspec), and the tables of docs/configuration.md are generated from them
(``reference.py``; ``tests/test_config_schema.py`` fails when they drift).

A field's bounds are ``msgspec.Meta`` constraints on its type (the aliases
below name the common ones); its meaning is the ``description`` of the
``Meta`` beside them. ``extra`` may carry ``default`` (how the table shows a
default computed at load time) and ``group`` (the table that lists the key,
when it is not the table of its section).
"""

from __future__ import annotations

import os
import re
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from msgspec import Meta

from vedette.config.fields import check_bounds
from vedette.hashing import Digest

_FINITE = sys.float_info.max


def doc(description: str, **extra: Any) -> Meta:
    """A setting's meaning (and how the reference table shows it)."""
    return Meta(description=description, extra=extra or None)


# The kinds of value settings take, with their bounds.
Count = Annotated[int, Meta(ge=1)]
Port = Annotated[int, Meta(ge=1, le=65535)]
Uid = Annotated[int, Meta(ge=0)]
Seconds = Annotated[float, Meta(gt=0, le=_FINITE)]
Rate = Annotated[float, Meta(gt=0, le=_FINITE)]
Burst = Annotated[float, Meta(ge=1, le=_FINITE)]
Share = Annotated[float, Meta(gt=0, le=1)]
OpenShare = Annotated[float, Meta(gt=0, lt=1)]
Name = Annotated[str, Meta(min_length=1)]
# A release reference; an oci-layout:// folder in a file is relative to the file.
ReleaseRef = Annotated[str, Meta(min_length=1, extra={"release_reference": True})]
Token = Annotated[
    str, Meta(pattern=r"^[A-Za-z0-9_-]+$", extra={"expected": "letters, digits, _ or -"})
]
Subject = Annotated[
    str,
    Meta(
        pattern=r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$",
        extra={"expected": "dot-separated tokens of letters, digits, _ or -"},
    ),
]


class Checked:
    """Configuration built in code meets the declared bounds too."""

    def __post_init__(self) -> None:
        check_bounds(self)


def default_state_dir() -> Path:
    """``$XDG_STATE_HOME/vedette``, else ``~/.local/state/vedette``: per user, never shared."""
    import os

    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "vedette"


@dataclass(frozen=True)
class ListenConfig(Checked):
    """The adapter listener and its connection discipline
    (python/vedette/api/listener.py; docs/threat-model.md)."""

    KEY: ClassVar[str] = "listen"

    host: Annotated[
        Name,
        doc(
            "the adapter listener's address; beyond loopback it needs `tls_cert` and "
            "`tls_key`, or `insecure_plaintext = true`"
        ),
    ] = "127.0.0.1"
    port: Annotated[Port, doc("the adapter listener's port")] = 8797
    tls_cert: Annotated[
        Path | None,
        doc("PEM certificate chain: the adapter listener speaks HTTPS (TLS 1.2 or later)"),
    ] = None
    tls_key: Annotated[Path | None, doc("PEM private key of `tls_cert`")] = None
    tls_client_ca: Annotated[
        Path | None,
        doc(
            "PEM CA certificates: every adapter connection must present a client "
            "certificate they issued (the bearer token still names the caller)"
        ),
    ] = None
    insecure_plaintext: Annotated[
        bool,
        doc(
            "`true`: serve plain HTTP on an address beyond loopback (tokens and "
            "arguments cross the network readable; only on a network you trust)"
        ),
    ] = False
    unix_socket: Annotated[
        Path | None,
        doc(
            "a Unix socket for adapters too; the peer's uid (as the kernel reports it) maps "
            "to a caller (`[[callers]]` `uid`); needs `--server uvicorn`"
        ),
    ] = None
    max_body_bytes: Annotated[Count, doc("larger request bodies are refused unread (400)")] = (
        64 * 1024
    )
    head_timeout_s: Annotated[
        Seconds,
        doc(
            "the whole request head must arrive within this many seconds of the accept or of "
            "the end of the previous request; bytes dripped slowly do not extend it (408, "
            "then closed)"
        ),
    ] = 10.0
    body_timeout_s: Annotated[
        Seconds,
        doc("the whole body must arrive within this many seconds of the end of the head (closed)"),
    ] = 10.0
    keepalive_timeout_s: Annotated[
        Seconds, doc("an idle keep-alive connection is closed after this long")
    ] = 5.0
    send_timeout_s: Annotated[
        Seconds, doc("a client that does not read its answer for this long is dropped")
    ] = 10.0
    max_connections: Annotated[
        Count,
        doc(
            "open adapter connections (TCP and Unix socket together); beyond it a new "
            "connection is reset at once. Lowered at start so that adapters can never take "
            "the descriptors the node needs: at most (RLIMIT_NOFILE - descriptors open at "
            "start - a reserve of 256 for the store, peers, releases and the operator socket)"
            " ÷ 2, each connection budgeted its socket and one descriptor for what its call "
            "opens. `vedette serve` raises its soft RLIMIT_NOFILE to the hard one; the cap in"
            " force is in `GET /v1/status` (`listener.adapter.max_connections`)"
        ),
    ] = 4096
    max_connections_per_source: Annotated[
        Count,
        doc(
            "open connections from one address (on the Unix socket: one peer uid); beyond it "
            "reset at once"
        ),
    ] = 128
    max_head_bytes: Annotated[
        int,
        Meta(ge=1024),
        doc(
            "a request head larger is answered 431 and the connection closed; the bytes "
            "beyond the limit are never parsed"
        ),
    ] = 16 * 1024
    max_headers: Annotated[
        Count, doc("a request head with more headers is answered 431 and the connection closed")
    ] = 100
    unauthenticated_rate_per_s: Annotated[
        Rate,
        doc(
            "requests without valid credentials per source address (token bucket); beyond it "
            "429 with `Retry-After`, counted in the refusal summary, never recorded one by "
            "one"
        ),
    ] = 10.0
    unauthenticated_burst: Annotated[Burst, doc("the burst of that token bucket (at least 1)")] = (
        20.0
    )
    unauthenticated_max_sources: Annotated[
        Count, doc("most source addresses tracked at once (least recently seen dropped first)")
    ] = 10_000
    unauthenticated_hold_s: Annotated[
        Seconds,
        doc(
            "beyond that rate, the 429 is sent once a retry would be admitted (its "
            "`Retry-After`), held at most this long, so a flooding connection gets a few "
            "answers a second; the connection stays within the per-source connection cap "
            "meanwhile"
        ),
    ] = 1.0

    def __post_init__(self) -> None:
        from vedette.config.errors import ConfigError

        check_bounds(self)
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ConfigError("listen.tls_cert and listen.tls_key: give both or neither")
        if self.tls_client_ca is not None and self.tls_cert is None:
            raise ConfigError("listen.tls_client_ca: client certificates need listen.tls_cert")
        if self.tls_cert is None and not self.insecure_plaintext and not is_loopback(self.host):
            raise ConfigError(
                f"listen.host: {self.host} is beyond loopback, where plain HTTP would carry "
                "tokens and arguments readable; set listen.tls_cert and listen.tls_key, or "
                "listen.insecure_plaintext = true"
            )


def is_loopback(host: str) -> bool:
    """``localhost`` or a loopback IP literal (127.0.0.0/8, ::1)."""
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name other than localhost may resolve anywhere


@dataclass(frozen=True)
class StoreConfig(Checked):
    """The evidence store (rust/store/; docs/operations.md)."""

    KEY: ClassVar[str] = "store"

    dir: Annotated[
        Path | None,
        doc(
            "the evidence store folder (local disk, owned by you, mode 0700)",
            default="`<state_dir>/store`",
        ),
    ] = None
    ceiling_bytes: Annotated[Count, doc("hard limit on the store's bytes on disk")] = (
        256 * 1024 * 1024
    )
    durability: Annotated[
        Literal["durable", "interval"],
        doc("`interval` trades a bounded loss window for speed (lossy)"),
    ] = "durable"
    seal_after_s: Annotated[
        Seconds,
        doc(
            "when the node has somewhere to send sealed evidence (peers, the archive), the "
            "open segment is also sealed once it is this old, so a quiet node's decisions "
            "leave within about this long; segments are always sealed at a size bound (an "
            "eighth of the ceiling, between 16 KiB and 16 MiB), so a small ceiling never "
            "fills with one open segment. A drain seals the open segment first"
        ),
    ] = 60.0
    high_water: Annotated[
        Share,
        doc(
            "share of the ceiling at or above which the store, and with it the node's health,"
            ' is `degraded` (docs/operations.md, "Evidence store pressure"); above 0 and at'
            " most 1"
        ),
    ] = 0.8


@dataclass(frozen=True)
class QuotaConfig(Checked):
    """Per-caller request quotas (INV-13's sibling for adapters)."""

    KEY: ClassVar[str] = "quota"

    rate_per_s: Annotated[Rate, doc("per-caller request rate (token bucket); over it: 429")] = 50.0
    burst: Annotated[Burst, doc("the burst of each caller's token bucket")] = 100.0
    max_keys: Annotated[Count, doc("most callers tracked at once")] = 10_000


@dataclass(frozen=True)
class PolicyConfig(Checked):
    KEY: ClassVar[str] = "policy"

    eval_timeout_ms: Annotated[Count, doc("a policy evaluation running longer denies")] = 100


@dataclass(frozen=True)
class IntentLimits(Checked):
    KEY: ClassVar[str] = "intent"

    max_depth: Annotated[Count, doc("deepest nesting of `args` and `claims`")] = 32
    max_args_bytes: Annotated[Count, doc("compact-JSON size limit of `args`")] = 32 * 1024
    max_claims_bytes: Annotated[Count, doc("compact-JSON size limit of `claims`")] = 4 * 1024
    retry_window_s: Annotated[
        Seconds,
        doc(
            "a request with a `request_id` already decided for the same caller within the "
            'window is answered again, not re-run (docs/contracts.md, "Retries")'
        ),
    ] = 600.0
    max_retry_entries: Annotated[Count, doc("most decided `request_id`s remembered")] = 10_000


@dataclass(frozen=True)
class EvidenceConfig(Checked):
    KEY: ClassVar[str] = "evidence"

    mask_args: Annotated[
        tuple[Name, ...],
        doc(
            'argument and claim names whose values are written as `"***"` in evidence and '
            "never quoted in a reason; names match at any depth and without regard to ASCII "
            "case (`password` masks `Password`)"
        ),
    ] = ()


@dataclass(frozen=True)
class HttpToolConfig(Checked):
    """An HTTP tool: the args are POSTed as JSON, the JSON reply is the output."""

    KEY: ClassVar[str] = "tools.http[]"

    name: Annotated[Name, doc("the tool's name")]
    url: Annotated[Name, doc("where the args are POSTed as JSON; the JSON reply is the output")]
    timeout_s: Annotated[Seconds, doc("the request's timeout")] = 10.0
    max_response_bytes: Annotated[Count, doc("larger replies fail the call")] = 1024 * 1024


@dataclass(frozen=True)
class FsMount(Checked):
    """A host folder that fs.read and fs.list show to agents under the path ``at``.

    Agents and policies see only ``at`` (``/data/a.csv``), never the host path.
    """

    KEY: ClassVar[str] = "tools.fs_mounts[]"

    at: Annotated[Name, doc("the path agents and policies see (`/data`)")]
    dir: Annotated[
        Path,
        doc(
            "the host folder shown there; symbolic links are never followed and a file with "
            "more than one hard link is not read (another name of it may lie outside the "
            "mount)"
        ),
    ]


@dataclass(frozen=True)
class ToolLimits(Checked):
    """Limits for one tool, in place of the ``[tools]`` defaults."""

    KEY: ClassVar[str] = "tools.limits[]"

    name: Annotated[Name, doc("the tool these limits apply to")]
    timeout_s: Annotated[Seconds | None, doc("its timeout, in place of `tools.timeout_s`")] = None
    max_output_bytes: Annotated[
        Count | None, doc("its output limit, in place of `tools.max_output_bytes`")
    ] = None


@dataclass(frozen=True)
class ToolsConfig(Checked):
    KEY: ClassVar[str] = "tools"

    timeout_s: Annotated[Seconds, doc("a tool call running longer fails (502, `timeout`)")] = 10.0
    max_output_bytes: Annotated[
        Count, doc("larger tool outputs fail (502, `output_too_large`)")
    ] = 1024 * 1024
    limits: tuple[ToolLimits, ...] = ()
    fs_mounts: tuple[FsMount, ...] = ()
    fs_max_read_bytes: Annotated[Count, doc("largest file `fs.read` returns")] = 1024 * 1024
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
class CallerConfig(Checked):
    """An adapter's identity: a bearer token (kept only as its SHA-256) or a Unix uid."""

    KEY: ClassVar[str] = "callers[]"

    id: Annotated[Name, doc("the adapter's name in evidence")]
    agent: Annotated[Name, doc("the one agent it acts for")]
    token_sha256: Annotated[
        Digest | None,
        doc("its bearer token's SHA-256 (`vedette token new` makes both)"),
    ] = None
    uid: Annotated[Uid | None, doc("or the Unix uid it connects to `listen.unix_socket` as")] = None


# Why an agent configured with local files but without ``unsigned = true`` does
# not run (docs/threat-model.md, A-02): the config loader and the runtime say it alike.
UNSIGNED_REFUSED = (
    "its local files (manifest and bundle) are not signed: pack them into a signed "
    "release (`vedette release pack`) and name it in `release`, or set `unsigned = true` "
    "to run them anyway"
)


@dataclass(frozen=True)
class AgentConfig(Checked):
    """One agent's release: local files (``manifest`` and ``bundle``), or a signed
    release watched at ``release`` (``oci://HOST:PORT/REPO:TAG`` or
    ``oci-layout://DIR:TAG``) and verified with the public keys in ``keys``."""

    KEY: ClassVar[str] = "agents[]"

    name: Annotated[Name, doc("the agent's name, as callers name it")]
    manifest: Annotated[
        Path | None,
        doc("unsigned local files: the agent manifest (needs `unsigned = true`)"),
    ] = None
    bundle: Annotated[Path | None, doc("unsigned local files: its policy bundle")] = None
    unsigned: Annotated[
        bool,
        doc(
            "`true`: run `manifest` and `bundle` although nobody signed them; health says "
            "`degraded`, and status, metrics and every decision record say `unsigned`. "
            "Without it local files are refused: pack them into a signed release "
            "(`vedette release pack`) and name it in `release`"
        ),
    ] = False
    release: Annotated[
        ReleaseRef | None,
        doc(
            "`oci://HOST[:PORT]/REPO:TAG`, or `oci-layout://DIR:TAG` for an image-layout "
            "folder (air-gapped nodes; a relative DIR is relative to the file); instead of "
            "`manifest` and `bundle`. `…@sha256:<hex>` instead of `:TAG` pins one release: "
            "the node takes that release even if it is older than the newest it activated "
            '(the one way to go back on purpose, see `docs/operations.md`, "Time and '
            'rollback")',
            group="releases",
        ),
    ] = None
    keys: Annotated[
        tuple[Path, ...],
        doc(
            "trusted cosign public keys (PEM files, or folders whose `*.pub` files are "
            "trusted); a release signed by any one of them verifies. Read again when they "
            "change or on SIGHUP",
            group="releases",
            default="none (required with `release`)",
        ),
    ] = ()
    poll_interval_s: Annotated[
        Seconds,
        doc(
            "how often the tag is checked (±20 % jitter); failures back off (full jitter, "
            "capped at the interval)",
            group="releases",
        ),
    ] = 30.0
    max_staleness_s: Annotated[
        Seconds | None,
        doc(
            "the agent goes deny-all when the registry has been unreachable this long",
            group="releases",
            default="unset (off)",
        ),
    ] = None
    insecure: Annotated[
        bool,
        doc("plain HTTP to the registry (tests, loopback); never the default", group="releases"),
    ] = False
    ca: Annotated[
        Path | None,
        doc(
            "a PEM CA file for a registry with a private certificate",
            group="releases",
            default="system CAs",
        ),
    ] = None
    username: Annotated[
        Name | None,
        doc(
            "registry user; the password is read from `VEDETTE_REGISTRY_PASSWORD`", group="releases"
        ),
    ] = None


@dataclass(frozen=True)
class ReleasesConfig(Checked):
    """The ``[releases]`` table: time and rollback (docs/operations.md, "Time and rollback")."""

    KEY: ClassVar[str] = "releases"

    clock_skew_s: Annotated[
        Seconds,
        doc(
            "how far ahead of this node's clock a release's signed `created` time may be; a "
            "release created later than that is refused (step `created`), and a signed "
            "`created` raises the node's time floor less this much"
        ),
    ] = 300.0
    time_floor_interval_s: Annotated[
        Seconds,
        doc(
            "how often the node's time floor follows its clock to disk (it is also written at"
            " every activation)"
        ),
    ] = 300.0
    revocations: Annotated[
        Path | None,
        doc(
            'a JSON file `{"keys": [key ids], "releases": [release digests]}` refused from '
            "then on; read again when it changes or on SIGHUP, like the trusted keys "
            '(docs/operations.md, "Keys and revocations, live")',
            default="none",
        ),
    ] = None


@dataclass(frozen=True)
class PeersConfig(Checked):
    """The ``[peers]`` table: the peer transport (docs/contracts.md, "Peer sync protocol")."""

    KEY: ClassVar[str] = "peers"

    ca: Annotated[Path, doc("PEM file: the CA peers must chain to")]
    cert: Annotated[Path, doc("PEM file: this node's certificate")]
    key: Annotated[Path, doc("PEM file: this node's key")]
    crl: Annotated[Path, doc("PEM file: the CA's CRL")]
    listen: Annotated[
        Name | None, doc("`IP:PORT` to accept peers on", default="none (dial only)")
    ] = None
    trust_domain: Annotated[
        Name | None,
        doc("when set, a peer's SAN URI must be `spiffe://<trust_domain>/node/<id>`"),
    ] = None
    allow: Annotated[
        tuple[Name, ...],
        doc(
            "identity patterns (`*` matches any run of characters), e.g. "
            "`spiffe://fleet/node/edge-*`",
            default="`[]` (any identity the CA vouches for)",
        ),
    ] = ()
    static: Annotated[tuple[Name, ...], doc("`IP:PORT` addresses dialled and kept connected")] = ()
    rate_in_bytes_per_s: Annotated[
        Rate, doc("per-peer inbound quota, announced to the peer (INV-13)", default="8 MiB/s")
    ] = 8 * 1024 * 1024
    burst_in_bytes: Annotated[Rate, doc("the burst of the inbound quota", default="1 MiB")] = (
        1024 * 1024
    )
    rate_out_bytes_per_s: Annotated[Rate, doc("per-peer outbound pacing", default="8 MiB/s")] = (
        8 * 1024 * 1024
    )
    burst_out_bytes: Annotated[Rate, doc("the burst of the outbound pacing", default="1 MiB")] = (
        1024 * 1024
    )
    quota_margin: Annotated[
        OpenShare,
        doc("a peer whose reads waited on its quota more than this share of 5 s is disconnected"),
    ] = 0.5
    seal_interval_s: Annotated[
        Seconds,
        doc(
            "the open segment is sealed this often, so evidence leaves the node within about "
            "this long"
        ),
    ] = 5.0
    sync_interval_s: Annotated[Seconds, doc("how often changed frontiers are announced")] = 1.0
    idle_timeout_s: Annotated[Seconds, doc("silent connections are closed after this long")] = 60.0
    handshake_timeout_s: Annotated[Seconds, doc("slower handshakes are closed")] = 10.0
    max_connections: Annotated[
        Count,
        doc(
            "authenticated connections at once (pending handshakes: 4 per source address, 64 "
            "in all)"
        ),
    ] = 64
    retry_base_s: Annotated[Seconds, doc("full-jitter exponential backoff of dials: its base")] = (
        0.5
    )
    retry_cap_s: Annotated[Seconds, doc("the cap of that backoff")] = 60.0
    retry_budget: Annotated[
        Count,
        doc("at most this many dials to one address per window, whatever their outcome (INV-12)"),
    ] = 10
    retry_window_s: Annotated[Seconds, doc("the window of `retry_budget`")] = 60.0
    status_file: Annotated[
        Path | None,
        doc(
            "the status `vedette peers status` reads (rewritten every second, mode 0600)",
            default="`<state_dir>/peers-status.json`",
        ),
    ] = None
    beacon_listen: Annotated[
        Name | None,
        doc("`IP:PORT` to receive beacon announcements on (docs/beacon-privacy.md)"),
    ] = None
    beacon_send_to: Annotated[
        tuple[Name, ...],
        doc(
            "`IP:PORT` destinations of this node's announcements (a broadcast address or "
            "neighbours); needs `peers.listen`"
        ),
    ] = ()
    beacon_advertise_address: Annotated[
        Name | None,
        doc("the IPv4 address announced", default="none (receivers use the source address)"),
    ] = None
    beacon_interval_s: Annotated[Seconds, doc("beacon send interval (jittered, at least 1 s)")] = (
        10.0
    )
    beacon_rate_per_s: Annotated[Rate, doc("beacon receive rate limit")] = 10.0
    beacon_max_candidates: Annotated[Count, doc("most beacon candidates kept")] = 16

    def __post_init__(self) -> None:
        from vedette.config.errors import ConfigError

        check_bounds(self)
        addrs = [("listen", self.listen), ("beacon_listen", self.beacon_listen)]
        addrs += [("static", a) for a in self.static]
        addrs += [("beacon_send_to", a) for a in self.beacon_send_to]
        for key, addr in addrs:
            if addr is not None and not _is_ip_port(addr):
                raise ConfigError(f"peers.{key}: expected IP:PORT, got {addr!r}")
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
class ArchiveConfig(Checked):
    """The ``[archive]`` table: sealed evidence published to a NATS JetStream
    stream (python/vedette/archive/)."""

    KEY: ClassVar[str] = "archive"

    servers: Annotated[
        tuple[Name, ...],
        doc(
            "`nats://` or `tls://` URLs of the cluster's servers; the client connects to one "
            "and moves to another when it goes",
            default="required",
        ),
    ]
    stream: Annotated[
        Token,
        doc(
            "the JetStream stream (letters, digits, `_`, `-`); a segment it holds is "
            "acknowledged in the store as `archive:<stream>`"
        ),
    ] = "VEDETTE_EVIDENCE"
    subject_prefix: Annotated[
        Subject,
        doc(
            'segments go to `<subject_prefix>.<origin>` (docs/contracts.md, "Archive '
            'messages"); the stream must take `<subject_prefix>.>` (dot-separated tokens of '
            "letters, digits, `_`, `-`)"
        ),
    ] = "vedette.evidence"
    ca: Annotated[
        Path | None,
        doc("PEM file of the CA the servers' certificates chain to", default="system CAs"),
    ] = None
    cert: Annotated[
        Path | None,
        doc(
            "this node's certificate for TLS client authentication (with `archive.key`, both "
            "or neither), for example the file `vedette pki` made for `[peers]`; without a "
            "`[peers]` table it and its key are also what the node signs its segments with "
            '(docs/contracts.md, "Origin signatures")'
        ),
    ] = None
    key: Annotated[Path | None, doc("the key of `archive.cert`")] = None
    credentials: Annotated[
        Path | None,
        doc("a NATS credentials file (JWT and NKey seed), instead of or beside the certificate"),
    ] = None
    bytes_per_second: Annotated[
        Rate,
        doc(
            "publishing pace (token bucket; burst one second of it, and a message larger than"
            " that waits for a full bucket)",
            default="8 MiB/s",
        ),
    ] = 8 * 1024 * 1024
    in_flight: Annotated[
        Count, doc("segments published at once, and messages waiting for their acknowledgement")
    ] = 8
    publish_timeout_s: Annotated[
        Seconds,
        doc(
            "a message whose acknowledgement has not come within this long fails; its segment"
            " is sent again"
        ),
    ] = 10.0
    retry_base_s: Annotated[
        Seconds,
        doc(
            "full-jitter exponential backoff after failures (`[0, min(cap, "
            "base·2^failures))`): its base"
        ),
    ] = 0.5
    retry_cap_s: Annotated[Seconds, doc("the cap of that backoff")] = 30.0
    retry_budget: Annotated[
        Count, doc("at most this many connection attempts per window, whatever their outcome")
    ] = 10
    retry_window_s: Annotated[Seconds, doc("the window of `retry_budget`")] = 60.0
    create_stream: Annotated[
        bool,
        doc(
            "create the stream when it is missing (subjects `<subject_prefix>.>`, duplicate "
            "window 24 h); `false`: a missing stream is an error, retried with the backoff"
        ),
    ] = True
    replicas: Annotated[
        Count, doc("replicas of a stream the node creates: 3 on a three-server cluster")
    ] = 1

    def __post_init__(self) -> None:
        from vedette.config.errors import ConfigError

        check_bounds(self)
        if not self.servers:
            raise ConfigError("archive.servers: expected at least one nats:// or tls:// URL")
        for url in self.servers:
            if not url.startswith(("nats://", "tls://")):
                raise ConfigError(f"archive.servers: expected nats:// or tls:// URLs, got {url!r}")
        if (self.cert is None) != (self.key is None):
            raise ConfigError("archive.cert and archive.key: give both or neither")


@dataclass(frozen=True)
class OperatorConfig(Checked):
    """The operator listener (``python/vedette/api/operator.py``): a Unix socket,
    and a loopback port with its own token where a scraper needs TCP."""

    KEY: ClassVar[str] = "operator"

    socket: Annotated[
        Path | None,
        doc(
            'the operator socket (docs/operations.md, "Operator socket"): status, metrics, '
            "drains; mode 0600, the node's own user only",
            default="`<state_dir>/operator.sock`",
        ),
    ] = None
    enabled: Annotated[bool, doc("`false`: no operator socket")] = True
    listen: Annotated[
        str | None,
        doc(
            "a loopback `IP:PORT` serving the same routes to a bearer token "
            "(`token_file`), for a metrics scraper that speaks only TCP",
            default="none",
        ),
    ] = None
    token_sha256: Annotated[
        Digest | None,
        doc(
            "the SHA-256 of the operator's bearer token (`vedette token new` makes both); "
            "needed with `listen`. Adapter tokens are never accepted there"
        ),
    ] = None

    def __post_init__(self) -> None:
        from vedette.config.errors import ConfigError

        check_bounds(self)
        if self.listen is None:
            return
        if not _is_ip_port(self.listen) or not is_loopback(self.listen.rpartition(":")[0]):
            raise ConfigError(
                f"operator.listen: expected a loopback IP:PORT, got {self.listen!r} (the "
                "operator listener never leaves the node; reach it over ssh)"
            )
        if self.token_sha256 is None:
            raise ConfigError("operator.listen: needs operator.token_sha256")


@dataclass(frozen=True)
class McpServerConfig(Checked):
    """An MCP server behind ``/mcp`` (docs/mcp.md): a command run on stdio, or a
    Streamable HTTP URL."""

    KEY: ClassVar[str] = "mcp.servers[]"

    name: Annotated[
        str,
        Meta(
            pattern=r"^[A-Za-z][A-Za-z0-9_-]{0,63}$",
            description=(
                "the server's name in status and logs, and the prefix of its tools' names "
                "(`<name>.<tool>`) where two servers, or a server and the node, list the same "
                "tool name"
            ),
            extra={"expected": "a letter, then letters, digits, _ or -, at most 64"},
        ),
    ]
    command: Annotated[
        Name | None, doc("the program that starts a stdio server (or give `url`)")
    ] = None
    args: Annotated[tuple[str, ...], doc("its arguments")] = ()
    env: Annotated[
        dict[str, str],
        doc("variables set for it, on top of the node's environment", default="`{}`"),
    ] = field(default_factory=dict)
    url: Annotated[
        Name | None, doc("a Streamable HTTP server's endpoint, `http(s)://HOST:PORT/PATH`")
    ] = None
    headers: Annotated[
        dict[str, str],
        doc(
            "HTTP headers sent with every request to a `url` server; not for secrets "
            "(see `headers_env`)",
            default="`{}`",
        ),
    ] = field(default_factory=dict)
    headers_env: Annotated[
        dict[str, str],
        doc(
            "HTTP headers whose values are read at start from the environment variables "
            'named, as `{ Authorization = "FILES_MCP_AUTH" }`: a token stays out of this file',
            default="`{}`",
        ),
    ] = field(default_factory=dict)
    timeout_s: Annotated[
        Seconds,
        doc(
            "bounds starting and initializing it, each listing and liveness ping, and each "
            "call (a call is bounded by its tool's timeout too)"
        ),
    ] = 30.0
    resources: Annotated[
        bool,
        doc(
            "pass its resources to clients (listed, read, each read recorded); they are not "
            "pinned or decided by a policy"
        ),
    ] = False
    prompts: Annotated[
        bool,
        doc(
            "pass its prompts to clients (listed, fetched, each fetch recorded); they are not "
            "pinned or decided by a policy"
        ),
    ] = False
    sampling: Annotated[
        bool,
        doc(
            "relay its sampling requests to the client of the call they come in (each one and "
            "its answer recorded); else refused, and not advertised to it"
        ),
    ] = False
    elicitation: Annotated[
        bool,
        doc(
            "relay its elicitation requests to the client of the call they come in (each one "
            "and its answer recorded); else refused, and not advertised to it"
        ),
    ] = False

    def __post_init__(self) -> None:
        from vedette.config.errors import ConfigError

        check_bounds(self)
        if (self.command is None) == (self.url is None):
            raise ConfigError(f"mcp.servers: {self.name!r} needs either command or url")
        if self.url is not None and not self.url.startswith(("http://", "https://")):
            raise ConfigError(f"mcp.servers: {self.name!r} url: expected http:// or https://")
        if (self.headers or self.headers_env) and self.url is None:
            raise ConfigError(f"mcp.servers: {self.name!r} headers: only for a url server")
        for key, names in (("headers", self.headers), ("headers_env", self.headers_env)):
            for header in names:
                if not _HEADER_NAME.fullmatch(header):
                    raise ConfigError(
                        f"mcp.servers: {self.name!r} {key}: {header!r} is not a header name"
                    )
                if header.lower() in _TRANSPORT_HEADERS:
                    raise ConfigError(
                        f"mcp.servers: {self.name!r} {key}: {header!r} is set by the transport"
                    )
        for header, value in self.headers.items():
            if not _header_value_ok(value):
                raise ConfigError(
                    f"mcp.servers: {self.name!r} headers: the value of {header!r} holds a "
                    "line break or NUL"
                )

    def http_headers(self) -> dict[str, str]:
        """``headers``, and ``headers_env`` read from the environment now;
        :class:`ConfigError` naming the variable if one is unset or unusable."""
        from vedette.config.errors import ConfigError

        found = dict(self.headers)
        for header, variable in self.headers_env.items():
            try:
                found[header] = header_value_from(variable)
            except ValueError as err:
                raise ConfigError(
                    f"mcp.servers: {self.name!r} headers_env: {header!r} comes from "
                    f"${variable}, which {err}"
                ) from None
        return found


def header_value_from(variable: str) -> str:
    """The value of environment variable ``variable`` for an HTTP header;
    ``ValueError`` saying what is wrong when it is unset or holds a line
    break or NUL (which would end the header early)."""
    value = os.environ.get(variable)
    if value is None:
        raise ValueError("is not set")
    if not _header_value_ok(value):
        raise ValueError("holds a line break or NUL")
    return value


# RFC 9110's token: what a header's name may be made of.
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
# The headers the MCP transport sets itself on every request.
_TRANSPORT_HEADERS = frozenset(
    {"accept", "content-type", "content-length", "host", "mcp-session-id", "mcp-protocol-version"}
)


def _header_value_ok(value: str) -> bool:
    return not any(char in value for char in "\r\n\0")


@dataclass(frozen=True)
class McpConfig(Checked):
    """The MCP gateway on the adapter listener: ``/mcp`` (docs/mcp.md)."""

    KEY: ClassVar[str] = "mcp"

    servers: tuple[McpServerConfig, ...] = ()
    max_sessions: Annotated[
        Count,
        doc("MCP sessions open at once; a client that would open one more gets 503 until one ends"),
    ] = 256
    session_idle_s: Annotated[Seconds, doc("a session with no request for this long is closed")] = (
        600.0
    )
    page_size: Annotated[
        Annotated[int, Meta(ge=1, le=10000)],
        doc(
            "items in one page of tools/list, resources/list, resources/templates/list and "
            "prompts/list toward a client (on stdio too); the client follows nextCursor for more"
        ),
    ] = 100

    def __post_init__(self) -> None:
        from vedette.config.errors import ConfigError

        check_bounds(self)
        names = [server.name for server in self.servers]
        for name in names:
            if names.count(name) > 1:
                raise ConfigError(f"mcp.servers: the name {name!r} is used twice")


@dataclass(frozen=True)
class Config(Checked):
    KEY: ClassVar[str] = "config"

    node_id: Annotated[
        Name, doc("this node's name in evidence and to peers", default="the host name")
    ] = field(default_factory=socket.gethostname)
    state_dir: Annotated[
        Path,
        doc(
            "per-user state; the store lives in `store/` below it",
            default="`$XDG_STATE_HOME/vedette` or `~/.local/state/vedette`",
        ),
    ] = field(default_factory=default_state_dir)
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
    mcp: McpConfig = McpConfig()

    @property
    def store_dir(self) -> Path:
        return self.store.dir or self.state_dir / "store"

    @property
    def operator_socket(self) -> Path:
        return self.operator.socket or self.state_dir / "operator.sock"

    def agent(self, name: str) -> AgentConfig | None:
        return next((agent for agent in self.agents if agent.name == name), None)
