"""Signing and verifying releases with cosign-compatible ECDSA P-256 keys.

One crypto stack for the package: the Rust core signs and verifies with ring.
Keys are exactly cosign's: a public key is PEM ``PUBLIC KEY`` (SPKI, P-256),
a private key file is cosign's encrypted format (PEM ``ENCRYPTED SIGSTORE
PRIVATE KEY``, scrypt + NaCl secretbox over the PKCS#8 key; the older
``ENCRYPTED COSIGN PRIVATE KEY`` label is read too), and a signature is the
ASN.1 DER ECDSA signature over the exact payload bytes, base64-encoded where
cosign's layout carries it as text. See ``docs/contracts.md`` ("Signing keys").

Errors: :class:`~vedette.errors.SignatureError` when a signature does not verify
or cannot be read; :class:`~vedette.errors.KeyFileError` when a key or key file is
malformed, of another kind (RSA, Ed25519, P-384, ...), or its password is wrong.
Key material never appears in a message or a ``repr``.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Iterable

from vedette._core import PrivateKey, PublicKey, decrypt_private_key
from vedette._core import generate_key_pair as _generate_key_pair
from vedette.durable import read_bounded
from vedette.errors import KeyFileError, SignatureError

__all__ = [
    "MAX_KEY_FILE_BYTES",
    "PrivateKey",
    "PublicKey",
    "TrustedKeys",
    "generate_key_pair",
    "load_private_key",
    "load_public_key",
    "sign_payload",
    "verify_payload",
]

MAX_KEY_FILE_BYTES = 64 * 1024
"""Key files larger than this are refused unread (a cosign key file is under 1 KiB)."""

# A DER P-256 signature is at most 72 bytes: 96 base64 characters. Longer text
# is refused before decoding.
_MAX_SIGNATURE_B64 = 128


def _password_bytes(password: bytes | str) -> bytes:
    if isinstance(password, str):
        return password.encode("utf-8")
    if isinstance(password, bytes | bytearray | memoryview):
        return bytes(password)
    raise TypeError(f"password must be bytes or str, not {type(password).__name__}")


def _read_key_file(path: str | os.PathLike[str]) -> bytes:
    try:
        return read_bounded(path, MAX_KEY_FILE_BYTES)
    except OSError as err:
        raise KeyFileError(f"{os.fspath(path)}: {err.strerror or err}") from err


def _decode_signature(signature_b64: str) -> bytes:
    if not isinstance(signature_b64, str):
        raise SignatureError(
            f"signature must be base64 text (str), not {type(signature_b64).__name__}"
        )
    text = signature_b64.strip()
    if not text or len(text) > _MAX_SIGNATURE_B64:
        raise SignatureError(f"signature is {len(text)} characters: not a base64 DER signature")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as err:
        raise SignatureError(f"signature is not valid base64: {err}") from err


def load_private_key(path: str | os.PathLike[str], password: bytes | str) -> PrivateKey:
    """Open a cosign encrypted private key file with ``password``.

    Raises :class:`KeyFileError` naming the cause (``wrong password``,
    malformed file, unsupported key type or curve, scrypt parameters beyond the
    accepted bounds). scrypt runs with the GIL released.
    """
    data = _read_key_file(path)
    try:
        return decrypt_private_key(data, _password_bytes(password))
    except KeyFileError as err:
        raise KeyFileError(f"{os.fspath(path)}: {err}") from None


def load_public_key(path: str | os.PathLike[str]) -> PublicKey:
    """Read a PEM ``PUBLIC KEY`` file (ECDSA P-256); :class:`KeyFileError` otherwise."""
    data = _read_key_file(path)
    try:
        return PublicKey.from_pem(data)
    except KeyFileError as err:
        raise KeyFileError(f"{os.fspath(path)}: {err}") from None


def verify_payload(payload: bytes, signature_b64: str, public_key_pem: bytes) -> None:
    """Check a base64 DER ECDSA P-256 signature over exactly ``payload``.

    Raises :class:`SignatureError` if it does not verify, or if the signature or
    the key cannot be read (a bad key here is a failed verification too).
    """
    signature = _decode_signature(signature_b64)
    try:
        key = PublicKey.from_pem(public_key_pem)
    except KeyFileError as err:
        raise SignatureError(f"public key not usable: {err}") from None
    key.verify(payload, signature)


def sign_payload(payload: bytes, key: PrivateKey) -> str:
    """Sign ``payload`` and return the base64 of the DER signature (cosign's form)."""
    return base64.b64encode(key.sign(payload)).decode("ascii")


def generate_key_pair(password: bytes | str) -> tuple[bytes, bytes]:
    """A new P-256 key pair: ``(encrypted private key PEM, public key PEM)``.

    The private key is sealed as ``cosign generate-key-pair`` seals it (scrypt
    N=65536, r=8, p=1; NaCl secretbox), so cosign can use it and vedette can
    use cosign's. Runs with the GIL released.
    """
    return _generate_key_pair(_password_bytes(password))


class TrustedKeys:
    """A set of trusted public keys; a signature is accepted if any one verifies it.

    Several keys are trusted at once during a rotation: the new key is added
    to every node before releases are signed with it, and the old one is
    removed once no release signed with it remains in use.
    """

    def __init__(self, keys: Iterable[PublicKey]) -> None:
        unique: dict[str, PublicKey] = {}
        for key in keys:
            if not isinstance(key, PublicKey):
                raise TypeError(f"TrustedKeys takes PublicKey objects, not {type(key).__name__}")
            unique.setdefault(key.key_id, key)
        if not unique:
            raise KeyFileError("no trusted keys given: at least one public key is required")
        self._keys = tuple(unique.values())

    @classmethod
    def from_files(cls, paths: Iterable[str | os.PathLike[str]]) -> TrustedKeys:
        """Load each PEM public key file; any unreadable file raises :class:`KeyFileError`."""
        return cls(load_public_key(path) for path in paths)

    @property
    def keys(self) -> tuple[PublicKey, ...]:
        return self._keys

    def __len__(self) -> int:
        return len(self._keys)

    def __repr__(self) -> str:
        return f"TrustedKeys({[key.key_id for key in self._keys]!r})"

    def verify(self, payload: bytes, signature_b64: str) -> PublicKey:
        """Return the key that verifies the signature; :class:`SignatureError` if none does."""
        signature = _decode_signature(signature_b64)
        for key in self._keys:
            try:
                key.verify(payload, signature)
            except SignatureError:
                continue
            return key
        ids = ", ".join(key.key_id for key in self._keys)
        raise SignatureError(
            f"signature does not verify with any of the {len(self._keys)} trusted keys ({ids})"
        )
