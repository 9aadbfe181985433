"""Every exception vedette raises, in one hierarchy.

Catch :class:`VedetteError` for anything vedette refuses; the subclasses also
derive from the built-in a caller would expect (``ValueError`` for bad values),
so existing ``except ValueError`` code keeps working.
"""

from __future__ import annotations


class VedetteError(Exception):
    """Base class of all vedette errors."""


def is_rust_panic(err: BaseException) -> bool:
    """True for the exception PyO3 raises when Rust code panics.

    PyO3 makes a panic a ``PanicException``, which derives from
    ``BaseException`` so that ``except Exception`` does not catch it. Decision
    paths must still turn it into a deny, so they test for it by name (the
    class is not importable).
    """
    return type(err).__name__ == "PanicException"


class DigestFormatError(VedetteError, ValueError):
    """A digest's text or bytes are malformed; the message says what is wrong."""


class HashRoleError(VedetteError, ValueError):
    """A digest was offered for a role that requires another algorithm.

    ``role``, ``expected`` and ``given`` name the role, the algorithm(s) it
    requires and the algorithm of the digest offered.
    """

    def __init__(self, message: str, role: str = "", expected: str = "", given: str = "") -> None:
        super().__init__(message)
        self.role = role
        self.expected = expected
        self.given = given

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class CanonicalJsonError(VedetteError, ValueError):
    """A value has no RFC 8785 canonical JSON form (NaN, huge ints, non-str keys, ...)."""


class QuotaError(VedetteError, ValueError):
    """A token bucket was given impossible parameters (e.g. taking more than its burst)."""


class StoreError(VedetteError):
    """The segment store failed or refused an operation; the message says what and where."""


class StoreFullError(StoreError):
    """INV-04: a write would cross the disk ceiling (or the file system is full).

    ``needed``, ``used``, ``ceiling`` and ``evictable`` are in bytes.
    """

    def __init__(
        self,
        message: str,
        needed: int = 0,
        used: int = 0,
        ceiling: int = 0,
        evictable: int = 0,
    ) -> None:
        super().__init__(message)
        self.needed = needed
        self.used = used
        self.ceiling = ceiling
        self.evictable = evictable


class PolicyError(VedetteError):
    """Base class of the policy engine's errors (bundles and agent manifests)."""


class BundleError(PolicyError, ValueError):
    """A policy bundle was refused.

    ``file`` names the file inside the bundle at fault (None when the bundle as
    a whole is, e.g. a corrupt archive) and ``rule`` the bundle rule it broke
    (``path-form``, ``size-limit``, ``entry-point``, ... see docs/contracts.md).
    """

    def __init__(self, message: str, file: str | None = None, rule: str = "") -> None:
        super().__init__(message)
        self.file = file
        self.rule = rule

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class StoreLockedError(StoreError):
    """INV-01: another open store (this or another process) holds the directory."""


class StoreRefusedError(StoreError):
    """INV-01: the directory failed a check at open; ``check`` names it."""

    def __init__(self, message: str, check: str = "") -> None:
        super().__init__(message)
        self.check = check

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class StoreCorruptError(StoreError):
    """Segment bytes do not match their id, structure or chain; nothing was stored."""


class SegmentNotFoundError(StoreError, KeyError):
    """No segment with that id is held (never stored, evicted or quarantined)."""


class ManifestError(PolicyError, ValueError):
    """An agent manifest breaks its schema; ``at`` is the JSON path of the offending value."""

    def __init__(self, message: str, at: str = "") -> None:
        super().__init__(message)
        self.at = at

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class SignatureError(VedetteError, ValueError):
    """A signature did not verify, or a key or signature could not be read."""


class OriginSignatureError(SignatureError):
    """A segment's origin signature is missing, damaged, or not its origin's."""


class KeyFileError(VedetteError, ValueError):
    """A key file is malformed, of an unsupported kind, or its password is wrong."""


class ReleaseError(VedetteError):
    """Base class of the release lifecycle's errors (OCI, verification, activation)."""


class OciError(ReleaseError):
    """A registry or OCI image layout refused a request or answered something invalid."""


class VerificationError(ReleaseError):
    """A release failed a verification step.

    ``step`` is ``1``-``4`` for the four steps of docs/contracts.md (signature, OCI
    digest, behavioral fingerprint, policy hash) or a name for the extra checks
    (``expiry``, ``agent_name``, ``schema``); ``expected`` and ``actual`` are the
    values compared.
    """

    def __init__(
        self, message: str, step: int | str = "", expected: str = "", actual: str = ""
    ) -> None:
        super().__init__(message)
        self.step = step
        self.expected = expected
        self.actual = actual

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class PkiError(VedetteError, ValueError):
    """A certificate, key or CRL could not be made, read or used."""


class PeerError(VedetteError):
    """The peer transport failed or refused an operation."""


class ServeError(VedetteError):
    """The node cannot start serving (its example, listen address, runtime or
    server); the message is one line for ``vedette serve`` to print."""


class InvalidIntent(VedetteError, ValueError):
    """The intent is malformed; the message says how."""
