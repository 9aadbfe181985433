"""A small-fleet PKI for the peer transport: one CA per trust domain, node
certificates for mutual TLS, and a signed CRL.

A PKI directory holds::

    ca.crt        the CA certificate (ECDSA P-256; URI SAN spiffe://<trust domain>)
    ca.key        its private key, mode 0600 (keep this directory off the nodes)
    crl.pem       the CA's CRL; re-signed by every revoke and by resign_crl()
    NODE.crt      a node certificate: SAN URI spiffe://<trust domain>/node/NODE and
                  DNS NODE, EKU serverAuth + clientAuth, a random 128-bit serial
    NODE.key      its private key, mode 0600

The CRL is valid for :data:`CRL_VALIDITY_DAYS` days (its ``nextUpdate``); peers
reject an expired CRL, so it must be re-signed (``vedette pki crl``) and copied
to the nodes before then. Revoking reads the current CRL, checks it is the
CA's own, adds the certificate's serial and increments the CRL number: the CRL
is the only revocation record, there is no separate index to drift from it.

Every function raises :class:`~vedette.errors.PkiError` for anything it
refuses (bad names, existing files, a certificate from another CA, ...).
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

from vedette._core import (
    pki_check_node_name,
    pki_crl_entries,
    pki_issue,
    pki_new_ca,
    pki_sign_crl,
)
from vedette.durable import read_bounded, write_durably
from vedette.errors import PkiError

__all__ = [
    "CA_VALIDITY_DAYS",
    "CLOCK_SKEW_SECONDS",
    "CRL_VALIDITY_DAYS",
    "NODE_VALIDITY_DAYS",
    "CaPaths",
    "CrlInfo",
    "NodePaths",
    "crl_info",
    "init_ca",
    "issue",
    "resign_crl",
    "revoke",
]

CA_VALIDITY_DAYS = 3650
"""Default CA lifetime: ten years."""
NODE_VALIDITY_DAYS = 365
"""Default node certificate lifetime: one year."""
CRL_VALIDITY_DAYS = 30
"""Default CRL lifetime (nextUpdate - thisUpdate); re-sign before it runs out."""
CLOCK_SKEW_SECONDS = 300
"""Certificates and CRLs start this long before now, for nodes with slightly slow clocks."""

_DAY = 86_400
_MAX_PEM_BYTES = 16 * 1024 * 1024  # a CRL with ~100k entries; anything bigger is not ours


class CaPaths(NamedTuple):
    cert: Path
    key: Path
    crl: Path


class NodePaths(NamedTuple):
    cert: Path
    key: Path


class CrlInfo(NamedTuple):
    """What a CRL says: the revoked serials (big-endian bytes) and its number."""

    revoked: list[bytes]
    number: int


def _ca_paths(directory: Path) -> CaPaths:
    return CaPaths(directory / "ca.crt", directory / "ca.key", directory / "crl.pem")


def _read(path: Path) -> str:
    try:
        data = read_bounded(path, _MAX_PEM_BYTES)
    except OSError as err:
        raise PkiError(f"{path}: {err.strerror or err}") from err
    try:
        return data.decode("ascii")
    except UnicodeDecodeError:
        raise PkiError(f"{path}: not PEM text") from None


def _write(path: Path, text: str, mode: int, *, replace: bool = False) -> None:
    try:
        write_durably(path, text.encode("ascii"), mode, exclusive=not replace)
    except FileExistsError:
        raise PkiError(f"{path} exists; refusing to overwrite it") from None
    except OSError as err:
        raise PkiError(f"{path}: {err.strerror or err}") from err


def _window(
    days: int, not_before: int | None, not_after: int | None, now: int | None = None
) -> tuple[int, int]:
    if days < 1:
        raise PkiError(f"days must be at least 1, got {days}")
    now = int(time.time()) if now is None else now
    start = now - CLOCK_SKEW_SECONDS if not_before is None else int(not_before)
    end = now + days * _DAY if not_after is None else int(not_after)
    if start >= end:
        raise PkiError(f"validity window is empty: not_before {start} >= not_after {end}")
    return start, end


@contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """Serialises CRL updates in one directory (two revokes must not lose one)."""
    try:
        fd = os.open(directory / ".pki.lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    except OSError as err:
        raise PkiError(f"{directory}: cannot lock: {err.strerror or err}") from err
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def init_ca(
    directory: str | os.PathLike[str],
    trust_domain: str,
    days: int = CA_VALIDITY_DAYS,
    *,
    crl_days: int = CRL_VALIDITY_DAYS,
) -> CaPaths:
    """Make ``ca.crt``, ``ca.key`` (0600) and an empty signed ``crl.pem`` in ``directory``.

    The directory is created (0700) if missing; existing CA files are never
    overwritten.
    """
    directory = Path(directory)
    paths = _ca_paths(directory)
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as err:
        raise PkiError(f"{directory}: {err.strerror or err}") from err
    for path in paths:
        if os.path.lexists(path):
            raise PkiError(f"{path} exists; refusing to overwrite a CA")
    start, end = _window(days, None, None)
    cert_pem, key_pem = pki_new_ca(trust_domain, start, end)
    with _locked(directory):
        _write(paths.key, key_pem, 0o600)
        _write(paths.cert, cert_pem, 0o644)
        _sign_crl(directory, [], crl_days, previous=False)
    return paths


def issue(
    directory: str | os.PathLike[str],
    node: str,
    days: int = NODE_VALIDITY_DAYS,
    *,
    not_before: int | None = None,
    not_after: int | None = None,
    replace: bool = False,
) -> NodePaths:
    """Issue ``NODE.crt`` and ``NODE.key`` (0600) from the CA in ``directory``.

    ``node`` must be one lowercase DNS label (a-z, 0-9, inner '-'). Existing
    files are kept unless ``replace`` (renewal: the old certificate stays valid
    until it expires or is revoked).

    ``not_before`` / ``not_after`` (Unix seconds) override the window computed
    from ``days``: for tests (an already expired or not yet valid certificate)
    and for staged rollouts (a certificate that starts at a planned time).
    """
    directory = Path(directory)
    pki_check_node_name(node)
    ca = _ca_paths(directory)
    paths = NodePaths(directory / f"{node}.crt", directory / f"{node}.key")
    if not replace:
        for path in paths:
            if os.path.lexists(path):
                raise PkiError(f"{path} exists; use replace (--force) to renew it")
    start, end = _window(days, not_before, not_after)
    cert_pem, key_pem = pki_issue(_read(ca.cert), _read(ca.key), node, start, end)
    _write(paths.key, key_pem, 0o600, replace=replace)
    _write(paths.cert, cert_pem, 0o644, replace=replace)
    return paths


def revoke(
    directory: str | os.PathLike[str],
    cert_path: str | os.PathLike[str],
    *,
    crl_days: int = CRL_VALIDITY_DAYS,
) -> Path:
    """Add the certificate at ``cert_path`` to the CA's CRL and re-sign it.

    Earlier revocations are kept and the CRL number increases by one. A
    certificate the CA did not issue is refused. Revoking twice is harmless.
    """
    directory = Path(directory)
    cert_pem = _read(Path(cert_path))
    with _locked(directory):
        return _sign_crl(directory, [cert_pem], crl_days, previous=True)


def resign_crl(directory: str | os.PathLike[str], *, crl_days: int = CRL_VALIDITY_DAYS) -> Path:
    """Re-sign ``crl.pem`` with the same entries and a fresh validity window."""
    directory = Path(directory)
    with _locked(directory):
        return _sign_crl(directory, [], crl_days, previous=True)


def crl_info(directory: str | os.PathLike[str]) -> CrlInfo:
    """The revoked serials and number of ``crl.pem`` (its signature is checked)."""
    ca = _ca_paths(Path(directory))
    revoked, number = pki_crl_entries(_read(ca.cert), _read(ca.crl))
    return CrlInfo(revoked, number)


def _sign_crl(directory: Path, revoke_pems: list[str], crl_days: int, *, previous: bool) -> Path:
    ca = _ca_paths(directory)
    this_update, next_update = _window(crl_days, None, None)
    previous_pem = _read(ca.crl) if previous else None
    crl_pem = pki_sign_crl(
        _read(ca.cert), _read(ca.key), previous_pem, revoke_pems, this_update, next_update
    )
    _write(ca.crl, crl_pem, 0o644, replace=True)
    return ca.crl
