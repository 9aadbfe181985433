# Type stubs for the Rust extension module (rust/bindings/). Keep in step with it.
from os import PathLike
from typing import Any, Literal, final

from typing_extensions import Buffer

__all__ = [
    "AGENT_SCHEMA",
    "MAX_FILE_HASH_THREADS",
    "POLICY_ENTRY_POINT",
    "AgentManifest",
    "ArgsValidator",
    "Bundle",
    "BundleLimits",
    "Decision",
    "Digest",
    "DurableQueue",
    "Hasher",
    "ManualClock",
    "PeerService",
    "PolicyEngine",
    "QuotaTable",
    "RetrySchedule",
    "Store",
    "TokenBucket",
    "__version__",
    "backoff_ceiling",
    "blake3",
    "canonical_json",
    "hash_file",
    "hash_roles",
    "read_sealed_segment",
    "require_role",
    "sha256",
    "shared_fs_name",
    "store_acknowledge_quarantine",
    "store_recorded_config",
]

__version__: str
MAX_FILE_HASH_THREADS: int

# hashing

@final
class Digest:
    """An algorithm and 32 bytes; text form ``<algorithm>:<64 lowercase hex>``."""

    def __new__(cls, algorithm: str, value: Buffer) -> Digest: ...
    @staticmethod
    def parse(text: str) -> Digest:
        """Strict parse; raises DigestFormatError saying what is wrong."""
    @property
    def algorithm(self) -> str: ...
    @property
    def raw(self) -> bytes: ...
    def hex(self) -> str: ...
    def __bytes__(self) -> bytes: ...
    def __eq__(self, other: object, /) -> bool:
        """Constant-time over the bytes; digests of different algorithms are never equal."""
    def __hash__(self) -> int: ...

@final
class Hasher:
    """Incremental hashing; ``copy()`` forks the state."""

    def __new__(cls, algorithm: str = "blake3", data: Buffer | None = None) -> Hasher: ...
    @property
    def algorithm(self) -> str: ...
    def update(self, data: Buffer) -> None: ...
    def copy(self) -> Hasher: ...
    def digest(self) -> Digest:
        """Digest of everything so far; the hasher can keep going."""

def blake3(data: Buffer) -> Digest: ...
def sha256(data: Buffer) -> Digest: ...
def hash_file(
    path: str | PathLike[str], algorithm: str = "blake3", threads: int | None = None
) -> Digest:
    """Hash a file's contents (memory-mapped; BLAKE3 over up to MAX_FILE_HASH_THREADS
    threads, all cores when ``threads`` is None). Raises OSError with the filename."""

def require_role(digest: Digest | str, role: str) -> Digest: ...
def hash_roles() -> dict[str, tuple[str, ...]]: ...
def canonical_json(value: Any) -> bytes:
    """RFC 8785 canonical JSON bytes; raises CanonicalJsonError for values it cannot represent."""

# quota

@final
class ManualClock:
    def __new__(cls, start: float = 0.0) -> ManualClock: ...
    def advance(self, seconds: float) -> None: ...
    @property
    def now(self) -> float: ...

@final
class TokenBucket:
    def __new__(
        cls, rate_per_s: float, burst: float, *, clock: ManualClock | None = None
    ) -> TokenBucket: ...
    def try_take(self, n: float = 1.0) -> bool: ...
    def wait_time(self, n: float = 1.0) -> float: ...
    @property
    def available(self) -> float: ...
    @property
    def rate_per_s(self) -> float: ...
    @property
    def burst(self) -> float: ...

@final
class QuotaTable:
    def __new__(
        cls,
        rate_per_s: float,
        burst: float,
        max_keys: int,
        *,
        clock: ManualClock | None = None,
    ) -> QuotaTable: ...
    def try_take(self, key: str, n: float = 1.0) -> bool: ...
    def wait_time(self, key: str, n: float = 1.0) -> float: ...
    def available(self, key: str) -> float: ...
    def __len__(self) -> int: ...
    @property
    def max_keys(self) -> int: ...
    @property
    def evictions(self) -> int: ...
    @property
    def rate_per_s(self) -> float: ...
    @property
    def burst(self) -> float: ...

# store

@final
class Store:
    @staticmethod
    def open(
        path: str,
        ceiling_bytes: int,
        node_id: str,
        durability: str = "durable",
        sync_interval_s: float = 0.05,
        segment_max_bytes: int | None = None,
        segment_max_age_s: float | None = None,
        max_record_bytes: int | None = None,
        high_water: float = 0.8,
    ) -> Store: ...
    @staticmethod
    def open_read_only(path: str) -> Store: ...
    def put_origin_signature(self, segment_id: str, blob: Buffer) -> None: ...
    def origin_signature(self, segment_id: str) -> bytes | None: ...
    def reopen(self) -> None: ...
    def check(self) -> dict[str, Any]: ...
    def health(self) -> dict[str, Any]: ...
    def take_events(self) -> list[tuple[str, str, int]]: ...
    def quarantine(self) -> list[dict[str, Any]]: ...
    def append(self, record: Buffer) -> int: ...
    def append_many(self, records: Any) -> int:
        """Returns the first position; the batch's positions are consecutive."""
    def flush(self) -> None: ...
    def seal(self) -> str | None: ...
    def ack(self, segment_id: str, by: str) -> None: ...
    def ack_all(self, segment_ids: list[str], by: str) -> None: ...
    def segments(self) -> list[dict[str, Any]]: ...
    def usage(self) -> dict[str, int]: ...
    def commit_stats(self) -> tuple[int, int, int]: ...
    def chain_heads(self) -> list[tuple[str, int, str]]: ...
    def get_segment(self, segment_id: str) -> bytes: ...
    def import_segment(self, data: Buffer, expected_id: str | None = None) -> str: ...
    def read_records(
        self, since: int | None = None, origin: str | None = None
    ) -> list[tuple[int, bytes]]: ...
    def verify(self, progress: Any = None) -> dict[str, Any]: ...
    def recovery(self) -> dict[str, Any]: ...
    @property
    def node_id(self) -> str: ...
    @property
    def path(self) -> str: ...
    def close(self) -> None: ...

@final
class DurableQueue:
    """Appends that return a ticket at once; finished tickets are reported through
    `fileno()` (an eventfd an event loop watches) and `take_completed()`."""

    def __new__(cls, store: Store) -> DurableQueue: ...
    def submit(self, record: Buffer) -> int:
        """Queues a copy of `record`; returns its ticket. Never waits for the disk."""
    def submit_lazy(self, record: Buffer) -> int:
        """Queues a copy of `record` to be written with the next batch (or within
        the lazy delay, 10 ms); returns its ticket."""
    def commit(self) -> None:
        """Has what is queued written now, lazy records included."""
    def fileno(self) -> int: ...
    def take_completed(self) -> list[tuple[int, int, BaseException | None]]:
        """`[(first, last, error_or_None), ...]`: tickets `first..=last` are durable
        (error None) or failed with `error`."""
    def flush(self) -> None:
        """Blocks until every record submitted before the call is written or failed."""
    def close(self) -> None:
        """Writes what is queued, then stops the writer thread."""

def store_recorded_config(path: str) -> tuple[str, int]: ...
def shared_fs_name(f_type: int) -> str | None: ...
def store_acknowledge_quarantine(path: str, report_id: str, by: str) -> None: ...
def read_sealed_segment(data: Buffer, *, records: bool = False) -> dict[str, Any]: ...

# policy

POLICY_ENTRY_POINT: str
AGENT_SCHEMA: str

@final
class BundleLimits:
    """Bounds on a bundle; every field defaults to the value in docs/contracts.md."""

    def __new__(
        cls,
        *,
        max_compressed_bytes: int | None = None,
        max_decompressed_bytes: int | None = None,
        max_entries: int | None = None,
        max_file_bytes: int | None = None,
        max_path_bytes: int | None = None,
        max_path_depth: int | None = None,
    ) -> BundleLimits: ...
    @property
    def max_compressed_bytes(self) -> int: ...
    @property
    def max_decompressed_bytes(self) -> int: ...
    @property
    def max_entries(self) -> int: ...
    @property
    def max_file_bytes(self) -> int: ...
    @property
    def max_path_bytes(self) -> int: ...
    @property
    def max_path_depth(self) -> int: ...

@final
class Bundle:
    """An OPA bundle that passed the bundle rules; raises BundleError otherwise."""

    @staticmethod
    def load(path: str | PathLike[str], limits: BundleLimits | None = None) -> Bundle: ...
    @staticmethod
    def from_bytes(data: Buffer, limits: BundleLimits | None = None) -> Bundle: ...
    @property
    def policy_hash(self) -> Digest: ...
    @property
    def revision(self) -> str: ...
    @property
    def roots(self) -> list[str]: ...
    @property
    def rego_version(self) -> int: ...
    @property
    def metadata(self) -> dict[str, Any]: ...
    @property
    def files(self) -> list[str]: ...
    def canonical_listing(self) -> str: ...
    def to_tar_gz(self) -> bytes: ...

@final
class PolicyEngine:
    """A compiled, warmed bundle; ``evaluate`` releases the GIL and never raises."""

    def __new__(
        cls, bundle: Bundle, *, time_limit: float = 0.1, reuse: str = "pool"
    ) -> PolicyEngine: ...
    def evaluate(self, input: Any) -> Decision: ...
    def evaluate_json(self, input: str | Buffer) -> Decision: ...
    @property
    def policy_hash(self) -> Digest: ...
    @property
    def revision(self) -> str: ...
    @property
    def time_limit(self) -> float: ...

@final
class Decision:
    """``allow`` is True only for a well-formed allow from the policy."""

    @property
    def allow(self) -> bool: ...
    @property
    def reason(self) -> str: ...
    @property
    def fault(self) -> str | None: ...
    @property
    def result(self) -> Any: ...
    def to_dict(self) -> dict[str, Any]: ...

@final
class AgentManifest:
    """A validated agent manifest; raises ManifestError naming the JSON path otherwise."""

    @staticmethod
    def from_bytes(data: Buffer) -> AgentManifest: ...
    @property
    def name(self) -> str: ...
    @property
    def version(self) -> str: ...
    @property
    def description(self) -> str | None: ...
    @property
    def model(self) -> dict[str, Any]: ...
    @property
    def tools(self) -> list[dict[str, Any]]: ...
    @property
    def tool_names(self) -> list[str]: ...
    @property
    def prompts(self) -> dict[str, Digest]: ...
    @property
    def config(self) -> dict[str, Digest]: ...
    @property
    def behaviour(self) -> dict[str, Any]: ...
    @property
    def behavioral_fingerprint(self) -> Digest: ...
    def declares_tool(self, name: str) -> bool: ...

@final
class ArgsValidator:
    """A tool's argument JSON Schema, compiled once (the draft its `$schema` names,
    2020-12 otherwise); references to other documents are never fetched."""

    def __new__(cls, schema_json: Buffer) -> ArgsValidator:
        """Compiles the schema given as JSON text; ValueError if it is not a valid schema."""
    def problem(self, args_json: Buffer) -> str | None:
        """None when the arguments (JSON text) fit the schema, else what is wrong and where."""

# gate: one intent from body bytes to a verdict and its record (vedette.runtime)

__all__ += [
    "DECISION_OUTCOMES",
    "DETACH_ABOVE_BYTES",
    "LATENCY_BUCKETS",
    "NAME_RULE",
    "DecisionMetrics",
    "Gate",
    "ReleasePlan",
    "Verdict",
    "event_record",
    "evidence_timestamp",
    "is_name",
    "parse_intent",
]

DETACH_ABOVE_BYTES: int
# How a call was decided, as its evidence record says (rust/gate/decide.rs).
_DecisionOutcome = Literal["allow", "deny", "invalid", "unauthenticated", "over_quota"]
DECISION_OUTCOMES: tuple[_DecisionOutcome, ...]
LATENCY_BUCKETS: list[float]

@final
class DecisionMetrics:
    """Decision counts by outcome, tool and agent, and the latency histogram."""

    def __new__(cls) -> DecisionMetrics: ...
    def record(self, outcome: str, tool: str, agent: str, seconds: float) -> None: ...
    def counts(self) -> list[tuple[str, str, str, int]]:
        """`[(outcome, tool, agent, count), ...]`"""
    def latency(self) -> tuple[list[int], int, float]:
        """(cumulative counts per bucket of LATENCY_BUCKETS then +Inf, count, sum in seconds)"""

def parse_intent(
    body: Buffer, max_depth: int, max_args_bytes: int, max_claims_bytes: int
) -> tuple[str, dict[str, Any], dict[str, Any], str | None]:
    """`(tool, args, claims, request_id)` of a request body; InvalidIntent says what is wrong."""

NAME_RULE: str

def event_record(node_id: str, kind: str, fields_json: Buffer) -> bytes:
    """An evidence record made outside a gate (release events)."""

def evidence_timestamp(unix_ns: int) -> str:
    """A moment as evidence records write it (RFC 3339 UTC, nanoseconds)."""

def is_name(name: str) -> bool:
    """The one rule for agent and tool names (see NAME_RULE)."""

@final
class ReleasePlan:
    """What is active for one agent, compiled for deciding."""

    def __new__(
        cls,
        agent: str,
        engine: PolicyEngine,
        validators: dict[str, ArgsValidator],
        tool_names: list[str],
        behavioral_fingerprint: str,
        description_json: Buffer,
    ) -> ReleasePlan: ...
    @property
    def agent(self) -> str: ...

@final
class Verdict:
    """One call's verdict and the decision record to make durable."""

    @property
    def outcome(self) -> _DecisionOutcome:
        """ "allow", "deny", "invalid" or "over_quota"."""
    @property
    def allowed(self) -> bool: ...
    @property
    def decision_id(self) -> str: ...
    @property
    def reason(self) -> str: ...
    @property
    def retry_after_s(self) -> float | None: ...
    @property
    def request_id(self) -> str | None:
        """The intent's request_id, when the body parsed and had one."""
    @property
    def tool(self) -> str | None:
        """The intent's tool, when the body parsed."""
    @property
    def record(self) -> bytes: ...
    def args(self) -> dict[str, Any] | None:
        """The intent's arguments as a new dict (None when the body did not parse)."""

@final
class Gate:
    """The node-wide decision gate: limits, quotas, the tools this node has,
    decision ids and evidence records."""

    def __new__(
        cls,
        *,
        node_id: str,
        mask_args: list[str],
        max_depth: int,
        max_args_bytes: int,
        max_claims_bytes: int,
        quotas: QuotaTable,
        tools: list[str],
    ) -> Gate: ...
    def decide(
        self,
        plan: ReleasePlan | None,
        caller: str,
        agent: str,
        body: Buffer,
        unavailable: str = "",
    ) -> Verdict:
        """Parses, validates, checks the quota and declared tools, and evaluates
        `body` for `caller` of `agent`, without the GIL."""
    def set_tools(self, tools: list[str]) -> None:
        """Replaces the set of tools this node can run."""
    def next_id(self) -> str: ...
    def take_quota(self, caller: str) -> float | None:
        """Takes one token from `caller`'s quota: None when taken, else the wait."""
    def event_record(self, kind: str, fields_json: Buffer) -> bytes:
        """Any other evidence record: the common header and `fields_json`'s members."""
    def decision_record(
        self,
        *,
        decision_id: str,
        outcome: _DecisionOutcome,
        reason: str | None,
        caller: str | None = None,
        agent: str | None = None,
        tool: str | None = None,
    ) -> bytes:
        """A decision record for a call decided outside `decide`."""
    def outcome_record(
        self,
        *,
        decision_id: str,
        tool: str,
        status: str,
        duration_ms: float,
        output_digest: str | None = None,
        output_bytes: int | None = None,
        error_type: str | None = None,
        error_message: str | None = None,
    ) -> bytes: ...

# crypto: signing keys (vedette.releases.signing)

__all__ += [
    "PrivateKey",
    "PublicKey",
    "decrypt_private_key",
    "generate_key_pair",
]

@final
class PublicKey:
    """An ECDSA P-256 public key (SPKI)."""

    @staticmethod
    def from_pem(pem: Buffer) -> PublicKey: ...
    def pem(self) -> bytes: ...
    @property
    def spki_der(self) -> bytes: ...
    @property
    def key_id(self) -> str: ...
    def verify(self, payload: Buffer, signature_der: Buffer) -> None: ...
    def __eq__(self, other: object, /) -> bool: ...
    def __hash__(self) -> int: ...

@final
class PrivateKey:
    """An ECDSA P-256 private key."""

    def sign(self, payload: Buffer) -> bytes: ...
    def public_key(self) -> PublicKey: ...

def decrypt_private_key(pem: Buffer, password: Buffer) -> PrivateKey: ...
def generate_key_pair(
    password: Buffer, *, scrypt_n: int = 65536, scrypt_r: int = 8, scrypt_p: int = 1
) -> tuple[bytes, bytes]: ...

# crypto: the small-fleet PKI (vedette.peers.pki)

__all__ += [
    "pki_check_node_name",
    "pki_crl_entries",
    "pki_issue",
    "pki_new_ca",
    "pki_sign_crl",
]

def pki_new_ca(trust_domain: str, not_before: int, not_after: int) -> tuple[str, str]: ...
def pki_issue(
    ca_cert_pem: str, ca_key_pem: str, node: str, not_before: int, not_after: int
) -> tuple[str, str]: ...
def pki_sign_crl(
    ca_cert_pem: str,
    ca_key_pem: str,
    previous_crl_pem: str | None,
    revoke_cert_pems: list[str],
    this_update: int,
    next_update: int,
) -> str: ...
def pki_crl_entries(ca_cert_pem: str, crl_pem: str) -> tuple[list[bytes], int]: ...
def pki_check_node_name(node: str) -> None: ...

# crypto: origin signatures (vedette.origin)

__all__ += [
    "new_private_key",
    "origin_sign",
    "origin_verify",
    "private_key_from_pem",
]

def private_key_from_pem(pem: Buffer) -> PrivateKey: ...
def new_private_key() -> tuple[PrivateKey, bytes]: ...
def origin_sign(
    key: PrivateKey,
    origin: str,
    seq: int,
    segment_id: str,
    certificate_pem: Buffer | None = None,
) -> bytes: ...
def origin_verify(
    blob: Buffer,
    origin: str,
    seq: int,
    segment_id: str,
    *,
    ca_pem: str | None = None,
    pinned_key: Buffer | None = None,
    require_certificate: bool = False,
) -> tuple[Literal["certificate", "key"], bytes]: ...

# peers

def backoff_ceiling(base_s: float, cap_s: float, failures: int) -> float:
    """The longest wait after ``failures`` failures in a row: min(cap, base·2^failures)."""

@final
class RetrySchedule:
    """The spacing of dials to one remote: full-jitter backoff and a budget of
    dials per window (``rust/peers/retry.rs``)."""

    def __new__(
        cls, base_s: float, cap_s: float, budget: int, window_s: float
    ) -> RetrySchedule: ...
    def wait_s(self) -> float: ...
    def attempt(self) -> None: ...
    def failed(self) -> float: ...
    def succeeded(self) -> None: ...
    @property
    def attempts(self) -> int: ...
    @property
    def failures(self) -> int: ...

@final
class PeerService:
    def __new__(
        cls,
        store: Store,
        *,
        ca: str,
        cert: str,
        key: str,
        crl: list[str],
        trust_domain: str | None = None,
        allow: list[str] = ...,
        rate_in: float = 8388608.0,
        burst_in: float = 1048576.0,
        rate_out: float = 8388608.0,
        burst_out: float = 1048576.0,
        quota_margin: float = 0.5,
        quota_window_s: float = 5.0,
        handshake_timeout_s: float = 10.0,
        idle_timeout_s: float = 60.0,
        sync_interval_s: float = 1.0,
        max_connections: int = 64,
        max_pending_per_addr: int = 4,
        max_pending: int = 64,
        max_dial_targets: int = 64,
        max_frame_bytes: int = 16793600,
        max_want_entries: int = 64,
        retry_base_s: float = 0.5,
        retry_cap_s: float = 60.0,
        retry_budget: int = 10,
        retry_window_s: float = 60.0,
        max_events: int = 1024,
        workers: int = 2,
    ) -> PeerService: ...
    def listen(self, addr: str) -> str:
        """Listens on `addr` ("host:port"); returns the address bound."""
    def dial(self, addr: str) -> None: ...
    def probe(self, addr: str, count: int = 1) -> int:
        """Completes `count` full handshakes with `addr` in a row; returns how many."""
    def reload(self) -> None: ...
    def stop(self, grace_s: float = 2.0) -> None: ...
    def listening(self) -> list[str]: ...
    def events(self, since: int = 0) -> list[dict[str, Any]]: ...
    def status(self) -> dict[str, Any]: ...
