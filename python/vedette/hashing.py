"""Hashing with fixed hash roles (BLAKE3 and SHA-256), and RFC 8785 canonical JSON.

Every digest is a :class:`Digest`: an algorithm and 32 bytes, written
``blake3:<64 hex>`` or ``sha256:<64 hex>``. Each use of a digest has a role
that fixes its algorithm (see :class:`HashRole`); :func:`require_role` is the
check every boundary applies.

``blake3``, ``sha256`` and ``Hasher.update`` accept any bytes-like object
without copying it, and release the GIL for inputs larger than 4 KiB.
"""

from __future__ import annotations

from enum import Enum

from vedette._core import (
    MAX_FILE_HASH_THREADS,
    Digest,
    Hasher,
    blake3,
    canonical_json,
    hash_file,
    hash_roles,
    sha256,
)
from vedette._core import require_role as _require_role
from vedette.errors import CanonicalJsonError, DigestFormatError, HashRoleError

ALGORITHMS = ("blake3", "sha256")


class HashRole(str, Enum):
    """What a digest is for; each role admits only the algorithms in :data:`ROLE_ALGORITHMS`."""

    BEHAVIORAL_FINGERPRINT = "behavioral_fingerprint"
    """BLAKE3 of the canonical JSON of an agent manifest's behaviour section."""
    SEGMENT_ID = "segment_id"
    """BLAKE3 of a sealed evidence segment."""
    OCI_DIGEST = "oci_digest"
    """SHA-256 of an OCI manifest or blob."""
    POLICY_HASH = "policy_hash"
    """SHA-256 of a policy bundle's canonical file listing."""
    PAYLOAD_DIGEST = "payload_digest"
    """Caller-supplied bytes: either algorithm."""


ROLE_ALGORITHMS: dict[str, tuple[str, ...]] = hash_roles()


def require_role(digest: Digest | str, role: HashRole | str) -> Digest:
    """Return ``digest`` (parsed if given as text) if its algorithm fits ``role``.

    Raises :class:`HashRoleError` naming the role, the expected and the given
    algorithm, or :class:`DigestFormatError` if text does not parse.
    """
    return _require_role(digest, role.value if isinstance(role, HashRole) else role)


__all__ = [
    "ALGORITHMS",
    "MAX_FILE_HASH_THREADS",
    "ROLE_ALGORITHMS",
    "CanonicalJsonError",
    "Digest",
    "DigestFormatError",
    "HashRole",
    "HashRoleError",
    "Hasher",
    "blake3",
    "canonical_json",
    "hash_file",
    "require_role",
    "sha256",
]
