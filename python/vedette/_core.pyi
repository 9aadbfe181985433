# Type stubs for the Rust extension module (rust/bindings/). Keep in step with it.
from typing_extensions import Buffer
from os import PathLike
from typing import Any, final

__all__ = [
    "MAX_FILE_HASH_THREADS",
    "Digest",
    "Hasher",
    "ManualClock",
    "QuotaTable",
    "TokenBucket",
    "__version__",
    "blake3",
    "canonical_json",
    "hash_file",
    "hash_roles",
    "require_role",
    "sha256",
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
