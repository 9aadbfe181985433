"""Origin signatures: every segment a node seals is signed by that node.

A segment's id is the BLAKE3 of its bytes, so anyone holding the bytes can
compute it; only the origin's signature over (origin, seq, id) says which node
sealed it. The blob travels beside the segment (a ``.sig`` file in the store,
a field of the peer SEGMENT frame, a header of the archive's message); its
format is in docs/contracts.md, "Origin signatures".

The signing key is the node's PKI key when the configuration names one
(``[peers] key``/``cert``): verifiers check that certificate against the fleet
CA and that it names the origin. Otherwise the node makes a bare key at first
start (``state_dir/node.key``, 0600) and records its public key in its own
evidence (a ``node_key`` record at every start); verifiers pin that key for the
origin on first sight.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from vedette._core import (
    PrivateKey,
    new_private_key,
    origin_sign,
    origin_verify,
    private_key_from_pem,
)
from vedette.durable import write_durably
from vedette.errors import OriginSignatureError, StoreFullError

if TYPE_CHECKING:
    from vedette.config import Config
    from vedette.store import SegmentInfo, SegmentStore

NODE_KEY_FILE = "node.key"


@dataclass(frozen=True)
class NodeSigner:
    """The key a node signs its sealed segments with, and what names it."""

    origin: str
    key: PrivateKey
    # PEM of the node's certificate; None: the bare key speaks for itself.
    certificate_pem: bytes | None = None

    @classmethod
    def for_config(cls, config: Config) -> NodeSigner:
        """The PKI key and certificate of ``[peers]`` (or ``[archive]``), else the
        node key (made now if new)."""
        for table in (config.peers, config.archive):
            if table is not None and table.key is not None and table.cert is not None:
                key = private_key_from_pem(_read_secret(table.key))
                return cls(config.node_id, key, table.cert.read_bytes())
        return cls(config.node_id, load_or_make_node_key(config.state_dir))

    @property
    def kind(self) -> str:
        return "certificate" if self.certificate_pem is not None else "key"

    @property
    def key_id(self) -> str:
        return self.key.public_key().key_id

    def sign(self, info: SegmentInfo) -> bytes:
        if info.id is None or info.origin != self.origin:
            raise OriginSignatureError(
                f"node {self.origin!r} signs only its own sealed segments, "
                f"not {info.origin!r} seq {info.seq}"
            )
        return origin_sign(self.key, info.origin, info.seq, info.id, self.certificate_pem)

    def record(self) -> dict[str, object]:
        """What the node records about its key (the ``node_key`` evidence record)."""
        public = self.key.public_key()
        return {
            "signer": self.kind,
            "key_id": public.key_id,
            "public_key": public.pem().decode(),
        }


def load_or_make_node_key(state_dir: Path) -> PrivateKey:
    """``state_dir/node.key``: read it, or make it (0600, durably) at first start."""
    path = state_dir / NODE_KEY_FILE
    try:
        return private_key_from_pem(_read_secret(path))
    except FileNotFoundError:
        pass
    key, pem = new_private_key()
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        write_durably(path, pem, 0o600, exclusive=True)
    except FileExistsError:
        # Another process made it between our read and our write: use theirs.
        return private_key_from_pem(_read_secret(path))
    return key


def _read_secret(path: Path) -> bytes:
    """A private key file; refused when others may read it (docs/operations.md)."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        mode = os.fstat(fd).st_mode
        if mode & 0o077:
            raise OriginSignatureError(
                f"{path.name}: readable by others (mode {mode & 0o777:o}); chmod 600 it"
            )
        with os.fdopen(fd, "rb", closefd=False) as handle:
            return handle.read()
    finally:
        os.close(fd)


class OriginSeals:
    """This node's origin signatures in its store: made for each segment it
    seals and read back for whoever ships a segment off the node (the peers,
    the archive), so no own segment leaves unsigned.

    Segments sealed before origin signatures existed are signed too, at the
    next round: the node still holds them and its key, and a signature says
    only which node sealed them (docs/contracts.md, "Origin signatures").
    """

    def __init__(self, store: SegmentStore, signer: NodeSigner) -> None:
        self.store = store
        self.signer = signer
        self._lock = threading.Lock()
        # Ids known to carry a signature, so a round reads no file for them.
        self._signed: set[str] = set()

    def signature(self, info: SegmentInfo) -> bytes | None:
        """The segment's origin signature, made now if it is this node's and unsigned."""
        if info.id is None or not info.sealed:
            return None
        with self._lock:
            blob = self.store.origin_signature(info.id)
            if blob is not None:
                self._signed.add(info.id)
                return blob
            if info.origin != self.signer.origin:
                return None
            blob = self.signer.sign(info)
            try:
                self.store.put_origin_signature(info.id, blob)
            except StoreFullError:
                # A full store has no room for the file until something leaves;
                # the segment still leaves signed (the archive sends this blob),
                # and its acknowledgement is what frees the room.
                return blob
            self._signed.add(info.id)
            return blob

    def sign_pending(self) -> int:
        """Signs every own sealed segment still unsigned; returns how many."""
        made = 0
        held: set[str] = set()
        for info in self.store.segments():
            if info.id is None:
                continue
            held.add(info.id)
            own = info.sealed and info.origin == self.signer.origin
            if own and info.id not in self._signed:
                had = self.store.origin_signature(info.id) is not None
                self.signature(info)
                made += 0 if had else 1
        with self._lock:
            self._signed &= held  # evicted segments are forgotten
        return made


@dataclass
class OriginVerifier:
    """Checks origin signatures: certificates against the fleet CA, bare keys
    against the key pinned for their origin (pinned here on first sight)."""

    ca_pem: str | None = None
    require_certificate: bool = False
    pinned: dict[str, bytes] = field(default_factory=dict)

    def check(self, blob: bytes | None, origin: str, seq: int, segment_id: str) -> str:
        """The signer kind (``certificate`` or ``key``); raises OriginSignatureError."""
        if blob is None:
            raise OriginSignatureError(f"segment {origin} seq {seq} carries no origin signature")
        kind, spki = origin_verify(
            blob,
            origin,
            seq,
            segment_id,
            ca_pem=self.ca_pem,
            pinned_key=self.pinned.get(origin),
            require_certificate=self.require_certificate,
        )
        if kind == "key":
            self.pinned.setdefault(origin, spki)
        return kind

    def pin(self, origin: str, public_key_pem: bytes) -> None:
        """Pins the key an origin recorded in its own evidence (a ``node_key`` record)."""
        from vedette._core import PublicKey

        self.pinned[origin] = PublicKey.from_pem(public_key_pem).spki_der
