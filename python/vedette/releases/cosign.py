"""cosign's key-pair signatures, both layouts, offline (no transparency log).

Classic layout (what ``cosign sign --key`` writes, and what vedette signs):
a manifest tagged ``sha256-<hex>.sig`` beside the signed manifest, one layer
per signature of media type ``application/vnd.dev.cosign.simplesigning.v1+json``
whose blob is the simple-signing payload, the base64 DER ECDSA signature over
those exact payload bytes in the layer annotation
``dev.cosignproject.cosign/signature``.

Sigstore bundle v0.3 (``cosign sign --new-bundle-format``, cosign v3's
default): a referrer manifest (``subject`` = the signed manifest) whose layer
is a bundle with a DSSE envelope over an in-toto statement naming the signed
digest; found through the referrers API or its ``sha256-<hex>`` tag fallback.
The signature covers the DSSE pre-authentication encoding (PAE).

Verification is two facts, checked apart so that a failure names its step:
step 1, some signature verifies with a trusted key; step 2, what that signed
payload names is the digest that was pulled.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any, Protocol

from vedette.errors import OciError, SignatureError, VerificationError
from vedette.releases.artifacts import artifact_manifest
from vedette.releases.oci import (
    OCI_MANIFEST,
    Repository,
    check_digest,
    digest_of,
)

SIMPLE_SIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"
SIMPLE_SIGNING_TYPE = "cosign container image signature"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"

BUNDLE_V03 = "application/vnd.dev.sigstore.bundle.v0.3+json"
IN_TOTO = "application/vnd.in-toto+json"
STATEMENT_V1 = "https://in-toto.io/Statement/v1"
COSIGN_SIGN_PREDICATE = "https://sigstore.dev/cosign/sign/v1"

MAX_SIGNATURE_BLOB = 256 * 1024
MAX_SIGNATURES = 32


class Verifier(Protocol):
    """What verification needs of the trusted keys (``signing.TrustedKeys``)."""

    def verify(self, payload: bytes, signature_b64: str) -> Any: ...


class PrivateKeyLike(Protocol):
    def sign(self, payload: bytes) -> bytes: ...


def signature_tag(digest: str) -> str:
    return check_digest(digest).replace(":", "-") + ".sig"


def simple_signing_payload(docker_reference: str, digest: str) -> bytes:
    """The payload cosign signs for an image digest (``cosign generate`` prints it)."""
    payload = {
        "critical": {
            "identity": {"docker-reference": docker_reference},
            "image": {"docker-manifest-digest": check_digest(digest)},
            "type": SIMPLE_SIGNING_TYPE,
        },
        "optional": None,
    }
    return json.dumps(payload, separators=(",", ":")).encode()


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1 pre-authentication encoding of a payload and its type."""
    kind = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


@dataclass(frozen=True)
class Candidate:
    """One signature found for a digest: what was signed and what it claims."""

    layout: str  # "classic" or "bundle"
    signed_bytes: bytes
    signature_b64: str
    claimed_digest: str | None
    problem: str | None = None


@dataclass(frozen=True)
class SignatureCheck:
    layout: str
    key: Any
    claimed_digest: str


# -- signing (classic layout) -------------------------------------------------------


def sign_classic(repo: Repository, digest: str, docker_reference: str, key: PrivateKeyLike) -> str:
    """Sign ``digest`` in cosign's classic layout; returns the signature manifest digest.

    An existing ``.sig`` manifest keeps its signatures; this one is added.
    """
    payload = simple_signing_payload(docker_reference, digest)
    signature = base64.b64encode(key.sign(payload)).decode()
    layer = {
        "mediaType": SIMPLE_SIGNING,
        "digest": digest_of(payload),
        "size": len(payload),
        "annotations": {SIGNATURE_ANNOTATION: signature},
    }
    tag = signature_tag(digest)
    layers: list[dict[str, Any]] = []
    if repo.resolve(tag) is not None:
        existing = repo.get_manifest(tag).json().get("layers") or []
        layers = [entry for entry in existing if isinstance(entry, dict)]
    layers = [entry for entry in layers if entry.get("digest") != layer["digest"]] + [layer]
    diff_ids = [entry["digest"] for entry in layers]
    config = json.dumps(
        {
            "architecture": "",
            "config": {},
            "created": "0001-01-01T00:00:00Z",
            "history": [{"created": "0001-01-01T00:00:00Z"}] * len(layers),
            "os": "",
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        },
        separators=(",", ":"),
    ).encode()
    repo.put_blob(payload)
    repo.put_blob(config)
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": digest_of(config), "size": len(config)},
        "layers": layers,
    }
    data = json.dumps(manifest, separators=(",", ":")).encode()
    return repo.put_manifest(data, OCI_MANIFEST, tag)


def sigstore_bundle(digest: str, name: str, key: PrivateKeyLike, hint: str = "") -> bytes:
    """A Sigstore bundle v0.3 (DSSE, in-toto statement) signing ``digest`` with a key."""
    statement = {
        "_type": STATEMENT_V1,
        "subject": [{"name": name, "digest": {"sha256": check_digest(digest).split(":")[1]}}],
        "predicateType": COSIGN_SIGN_PREDICATE,
        "predicate": {},
    }
    payload = json.dumps(statement, separators=(",", ":")).encode()
    signature = key.sign(pae(IN_TOTO, payload))
    bundle = {
        "mediaType": BUNDLE_V03,
        "verificationMaterial": {"publicKey": {"hint": hint}, "tlogEntries": []},
        "dsseEnvelope": {
            "payload": base64.b64encode(payload).decode(),
            "payloadType": IN_TOTO,
            "signatures": [{"sig": base64.b64encode(signature).decode(), "keyid": ""}],
        },
    }
    return json.dumps(bundle, separators=(",", ":")).encode()


def attach_bundle(repo: Repository, digest: str, size: int, bundle: bytes) -> str:
    """Attach a bundle as a referrer of ``digest`` (and in the tag-schema index)."""
    subject = {"mediaType": OCI_MANIFEST, "digest": check_digest(digest), "size": size}
    manifest = artifact_manifest(BUNDLE_V03, [(BUNDLE_V03, "bundle.json", bundle)], subject=subject)
    repo.put_blob(b"{}")
    repo.put_blob(bundle)
    referrer = repo.put_manifest(manifest, OCI_MANIFEST)
    # The referrers tag schema, for registries without the referrers API.
    tag = digest.replace(":", "-")
    entries: list[dict[str, Any]] = []
    if repo.resolve(tag) is not None:
        entries = list(repo.get_manifest(tag).json().get("manifests") or [])
    entries = [e for e in entries if isinstance(e, dict) and e.get("digest") != referrer]
    entries.append(
        {"mediaType": OCI_MANIFEST, "digest": referrer, "size": len(manifest),
         "artifactType": BUNDLE_V03}
    )  # fmt: skip
    index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
             "manifests": entries}  # fmt: skip
    repo.put_manifest(
        json.dumps(index, separators=(",", ":")).encode(),
        "application/vnd.oci.image.index.v1+json",
        tag,
    )
    return referrer


# -- discovery -------------------------------------------------------------------


def classic_candidates(repo: Repository, digest: str) -> list[Candidate]:
    tag = signature_tag(digest)
    if repo.resolve(tag) is None:
        return []
    manifest = repo.get_manifest(tag).json()
    found = []
    for layer in (manifest.get("layers") or [])[:MAX_SIGNATURES]:
        if not isinstance(layer, dict) or layer.get("mediaType") != SIMPLE_SIGNING:
            continue
        signature = (layer.get("annotations") or {}).get(SIGNATURE_ANNOTATION)
        blob_digest = layer.get("digest")
        if not isinstance(signature, str) or not isinstance(blob_digest, str):
            continue
        payload = repo.get_blob(blob_digest, MAX_SIGNATURE_BLOB)
        claimed, problem = _simple_signing_digest(payload)
        found.append(Candidate("classic", payload, signature, claimed, problem))
    return found


def _simple_signing_digest(payload: bytes) -> tuple[str | None, str | None]:
    try:
        document = json.loads(payload)
        critical = document["critical"]
        kind = critical["type"]
        claimed = critical["image"]["docker-manifest-digest"]
    except (ValueError, KeyError, TypeError):
        return None, "the simple-signing payload is malformed"
    if kind != SIMPLE_SIGNING_TYPE:
        return None, f"the simple-signing payload has type {kind!r}"
    if not isinstance(claimed, str):
        return None, "docker-manifest-digest is not a string"
    return claimed, None


def bundle_candidates(repo: Repository, digest: str) -> list[Candidate]:
    found = []
    for descriptor in repo.referrers(digest)[:MAX_SIGNATURES]:
        if descriptor.get("artifactType") != BUNDLE_V03:
            continue
        referrer = descriptor.get("digest")
        if not isinstance(referrer, str):
            continue
        manifest = repo.get_manifest(referrer).json()
        for layer in manifest.get("layers") or []:
            if not isinstance(layer, dict) or layer.get("mediaType") != BUNDLE_V03:
                continue
            blob = repo.get_blob(str(layer.get("digest")), MAX_SIGNATURE_BLOB)
            found.extend(_bundle_candidate(blob))
    return found


def _bundle_candidate(blob: bytes) -> list[Candidate]:
    try:
        bundle = json.loads(blob)
        if bundle.get("mediaType") != BUNDLE_V03:
            return [Candidate("bundle", b"", "", None, "not a v0.3 bundle")]
        envelope = bundle["dsseEnvelope"]
        payload_type = envelope["payloadType"]
        payload = base64.b64decode(envelope["payload"], validate=True)
        signatures = [s["sig"] for s in envelope["signatures"]]
    except (ValueError, KeyError, TypeError, AttributeError, binascii.Error):
        return [Candidate("bundle", b"", "", None, "the bundle is malformed")]
    claimed, problem = _statement_digest(payload, payload_type)
    signed = pae(payload_type, payload)
    return [
        Candidate("bundle", signed, sig, claimed, problem)
        for sig in signatures[:MAX_SIGNATURES]
        if isinstance(sig, str)
    ]


def _statement_digest(payload: bytes, payload_type: str) -> tuple[str | None, str | None]:
    if payload_type != IN_TOTO:
        return None, f"DSSE payload type {payload_type!r}"
    try:
        statement = json.loads(payload)
        kind = statement["_type"]
        subjects = statement["subject"]
        hexes = [s["digest"]["sha256"] for s in subjects]
    except (ValueError, KeyError, TypeError):
        return None, "the in-toto statement is malformed"
    if kind != STATEMENT_V1 or len(hexes) != 1 or not isinstance(hexes[0], str):
        return None, "the in-toto statement must be v1 with one subject"
    return f"sha256:{hexes[0]}", None


# -- verification ----------------------------------------------------------------


def verify_signatures(repo: Repository, digest: str, trusted: Verifier) -> SignatureCheck:
    """Steps 1 and 2 for a pulled manifest ``digest``.

    Raises ``VerificationError(step=1)`` when no signature verifies with a trusted
    key, ``VerificationError(step=2)`` when one does but names another digest.
    """
    candidates: list[Candidate] = []
    errors: list[str] = []
    for finder in (classic_candidates, bundle_candidates):
        try:
            candidates.extend(finder(repo, digest))
        except OciError as err:
            errors.append(str(err))
    verified: list[tuple[Candidate, Any]] = []
    reasons: list[str] = []
    for candidate in candidates:
        if candidate.problem is not None:
            reasons.append(f"{candidate.layout}: {candidate.problem}")
            continue
        try:
            key = trusted.verify(candidate.signed_bytes, candidate.signature_b64)
        except SignatureError as err:
            reasons.append(f"{candidate.layout}: {err}")
            continue
        verified.append((candidate, key))
    if not verified:
        actual = "no signature found" if not candidates else "; ".join(reasons)
        if errors:
            actual += " (" + "; ".join(errors) + ")"
        raise VerificationError(
            f"step 1 (signature): no signature of {digest} verifies with a trusted key: {actual}",
            1,
            "a signature by a trusted key",
            actual,
        )
    for candidate, key in verified:
        if candidate.claimed_digest == digest:
            return SignatureCheck(candidate.layout, key, digest)
    claimed = verified[0][0].claimed_digest or ""
    raise VerificationError(
        f"step 2 (OCI digest): the signed payload names {claimed}, but {digest} was pulled",
        2,
        digest,
        claimed,
    )


__all__ = [
    "BUNDLE_V03",
    "SIGNATURE_ANNOTATION",
    "SIMPLE_SIGNING",
    "SignatureCheck",
    "attach_bundle",
    "pae",
    "sign_classic",
    "sigstore_bundle",
    "simple_signing_payload",
    "verify_signatures",
]
