"""The four-step verification of a release (docs/contracts.md), and the checks beside it.

``verify_release`` pulls everything a release names from one repository and
returns a :class:`VerifiedRelease` only if all of these hold, in order:

1. signature: a cosign signature of the release manifest digest verifies with
   a trusted key (classic layout or Sigstore bundle v0.3);
2. OCI digests: the signed payload names the digest pulled, and every pulled
   manifest and blob hashes to the digest that names it;
   then ``schema`` (a known release schema), ``agent_name`` (the document is
   for the agent this track serves), ``expiry`` (not past ``expires_at``),
   ``created`` (not made further ahead of the node's clock than the skew
   allowance, when asked) and ``rollback`` (not older than the newest release
   the track activated, when given one: docs/contracts.md, "Verification");
3. behavioral fingerprint: BLAKE3 of the agent manifest's behaviour section
   equals the document's ``behavioral_fingerprint``;
4. policy hash: SHA-256 of the bundle's canonical file listing equals the
   document's ``policy_hash``, and the bundle compiles.

Every failure raises :class:`VerificationError` with ``step``, ``expected`` and
``actual``. Problems reaching the source raise :class:`OciError` (nothing was
verified, nothing can be concluded about the release).
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from vedette.errors import BundleError, ManifestError, OciError, VerificationError
from vedette.policy import AgentManifest, Bundle, PolicyEngine
from vedette.releases.artifacts import (
    AGENT_ARTIFACT,
    AGENT_LAYER,
    MAX_DOCUMENT_BYTES,
    POLICY_ARTIFACT,
    POLICY_LAYER,
    RELEASE_ARTIFACT,
    RELEASE_LAYER,
    ReleaseDocument,
    parse_time,
    single_layer,
)
from vedette.releases.cosign import BUNDLE_V03, Verifier, signature_tag, verify_signatures
from vedette.releases.oci import (
    MAX_BLOB_BYTES,
    OCI_MANIFEST,
    Manifest,
    OciDigestError,
    Repository,
    check_digest,
    copy_artifact,
    is_digest,
    names_digest,
)
from vedette.releases.trust import ReleaseMark, check_rollback

STEP_NAMES: dict[int | str, str] = {
    1: "signature",
    2: "OCI digest",
    "schema": "schema",
    "agent_name": "agent name",
    "expiry": "expiry",
    "created": "created",
    "rollback": "rollback",
    "revoked": "revoked",
    3: "behavioral fingerprint",
    4: "policy hash",
}


@dataclass(frozen=True)
class VerifiedRelease:
    """A release that passed every step, with the exact bytes that passed."""

    digest: str
    document: ReleaseDocument
    manifests: dict[str, Manifest]  # "release", "agent", "policy"
    agent_json: bytes
    bundle_tar_gz: bytes
    agent: AgentManifest
    engine: PolicyEngine
    signature_layout: str
    # The id of the trusted key whose signature verified (release events and
    # every decision record name it: docs/contracts.md, "Release events").
    signed_by: str


StepReport = Callable[[int | str, str], None]


def verify_release(
    repo: Repository,
    reference: str,
    trusted: Verifier,
    *,
    agent_name: str | None = None,
    now: datetime.datetime | None = None,
    eval_time_limit_s: float = 0.1,
    max_blob_bytes: int = MAX_BLOB_BYTES,
    report: StepReport = lambda step, detail: None,
    max_created: datetime.datetime | None = None,
    newest: ReleaseMark | None = None,
    revoked: frozenset[str] = frozenset(),
) -> VerifiedRelease:
    """Verify the release at ``reference`` (a tag or a digest) in ``repo``.

    ``report(step, detail)`` is called after each step that passed. With
    ``max_created``, a release created after it is refused (step ``created``);
    with ``newest``, a release older than it is refused (step ``rollback``); a
    digest in ``revoked`` is refused before anything is read (step ``revoked``).
    """
    digest = check_digest(reference) if names_digest(reference) else repo.resolve(reference)
    if digest is None:
        raise OciError(f"{repo.describe()}: no tag {reference!r}")
    if digest in revoked:
        raise VerificationError(
            f"revoked: the release {digest} is on the node's revocation list",
            "revoked",
            "a release not revoked",
            digest,
        )
    signature = verify_signatures(repo, digest, trusted)
    report(1, f"{signature.layout} signature by key {_key_id(signature.key)}")

    release_manifest = _fetch_manifest(repo, digest, "release")

    layer = _layer(release_manifest, RELEASE_ARTIFACT, RELEASE_LAYER)
    document_bytes = _fetch_blob(repo, layer, min(MAX_DOCUMENT_BYTES, max_blob_bytes))
    document = ReleaseDocument.from_json(document_bytes)
    agent_manifest = _fetch_manifest(repo, document.agent_digest, "agent")
    policy_manifest = _fetch_manifest(repo, document.policy_digest, "policy")
    agent_json = _fetch_blob(repo, _layer(agent_manifest, AGENT_ARTIFACT, AGENT_LAYER),
                             max_blob_bytes)  # fmt: skip
    bundle_bytes = _fetch_blob(
        repo, _layer(policy_manifest, POLICY_ARTIFACT, POLICY_LAYER), max_blob_bytes
    )
    report(2, f"release {digest}, agent {document.agent_digest}, policy {document.policy_digest}")

    report("schema", document.schema)
    if agent_name is not None and document.agent_name != agent_name:
        raise VerificationError(
            f"agent_name: the release is for {document.agent_name!r}, not {agent_name!r}",
            "agent_name",
            agent_name,
            document.agent_name,
        )
    report("agent_name", document.agent_name)
    if document.expires_at is not None:
        moment = now or datetime.datetime.now(datetime.timezone.utc)
        if moment >= parse_time(document.expires_at):
            raise VerificationError(
                f"expiry: the release expired at {document.expires_at}",
                "expiry",
                f"before {document.expires_at}",
                moment.isoformat(),
            )
        report("expiry", f"valid until {document.expires_at}")
    else:
        report("expiry", "no expiry")
    if max_created is not None and document.created is not None:
        if parse_time(document.created, "created") > max_created:
            limit = max_created.isoformat()
            raise VerificationError(
                f"created: release {document.version} was created at {document.created}, "
                f"after {limit} (this node's time plus the clock skew allowance)",
                "created",
                f"created no later than {limit}",
                document.created,
            )
        report("created", document.created)
    if newest is not None:
        check_rollback(ReleaseMark.of(digest, document), newest)
        report("rollback", f"not older than {newest.describe()}")

    try:
        agent = AgentManifest.from_bytes(agent_json)
    except ManifestError as err:
        raise VerificationError(
            f"step 3 (behavioral fingerprint): the agent manifest is invalid: {err}",
            3,
            str(document.behavioral_fingerprint),
            f"invalid manifest ({err})",
        ) from None
    if agent.behavioral_fingerprint != document.behavioral_fingerprint:
        raise VerificationError(
            "step 3 (behavioral fingerprint): the agent manifest's behaviour is not the one signed",
            3,
            str(document.behavioral_fingerprint),
            str(agent.behavioral_fingerprint),
        )
    if agent.name != document.agent_name:
        raise VerificationError(
            f"step 3 (behavioral fingerprint): the agent manifest names {agent.name!r}",
            3,
            document.agent_name,
            agent.name,
        )
    report(3, str(agent.behavioral_fingerprint))

    try:
        bundle = Bundle.from_bytes(bundle_bytes)
    except BundleError as err:
        raise VerificationError(
            f"step 4 (policy hash): the bundle is refused: {err}",
            4,
            str(document.policy_hash),
            f"refused bundle ({err})",
        ) from None
    if bundle.policy_hash != document.policy_hash:
        raise VerificationError(
            "step 4 (policy hash): the bundle's files are not the ones signed",
            4,
            str(document.policy_hash),
            str(bundle.policy_hash),
        )
    try:
        engine = PolicyEngine(bundle, time_limit=eval_time_limit_s)
    except BundleError as err:
        raise VerificationError(
            f"step 4 (policy hash): the bundle does not compile: {err}",
            4,
            "a bundle that compiles",
            str(err),
        ) from None
    report(4, str(bundle.policy_hash))

    return VerifiedRelease(
        digest=digest,
        document=document,
        manifests={"release": release_manifest, "agent": agent_manifest, "policy": policy_manifest},
        agent_json=agent_json,
        bundle_tar_gz=bundle_bytes,
        agent=agent,
        engine=engine,
        signature_layout=signature.layout,
        signed_by=_key_id(signature.key),
    )


def _layer(manifest: Manifest, artifact_type: str, layer_type: str) -> dict[str, Any]:
    """The one layer of an artifact of the expected kind; else the release is malformed."""
    try:
        return single_layer(manifest, artifact_type, layer_type)
    except OciError as err:
        raise VerificationError(
            f"schema: {err}", "schema", f"{artifact_type} with one {layer_type} layer", str(err)
        ) from None


def _fetch_manifest(repo: Repository, digest: str, what: str) -> Manifest:
    try:
        return repo.get_manifest(digest)
    except OciDigestError as err:
        raise VerificationError(
            f"step 2 (OCI digest): the {what} manifest hashes to {err.actual}, not {digest}",
            2,
            err.expected,
            err.actual,
        ) from None


def _fetch_blob(repo: Repository, descriptor: dict[str, Any], limit: int) -> bytes:
    digest = str(descriptor["digest"])
    if descriptor["size"] > limit:
        raise OciError(f"blob {digest}: {descriptor['size']} bytes is over the {limit}-byte limit")
    try:
        data = repo.get_blob(digest, limit)
    except OciDigestError as err:
        raise VerificationError(
            f"step 2 (OCI digest): blob {digest} hashes to {err.actual}",
            2,
            err.expected,
            err.actual,
        ) from None
    if len(data) != descriptor["size"]:
        raise VerificationError(
            f"step 2 (OCI digest): blob {digest} has {len(data)} bytes, "
            f"its descriptor says {descriptor['size']}",
            2,
            str(descriptor["size"]),
            str(len(data)),
        )
    return data


def _key_id(key: Any) -> str:
    return str(getattr(key, "key_id", "?"))


def fetch_release(
    source: Repository,
    reference: str,
    target: Repository,
    *,
    tag: str | None = None,
    max_blob_bytes: int = MAX_BLOB_BYTES,
) -> str:
    """Copy a release and its signatures from ``source`` into ``target``; its digest.

    Copies the release, agent and policy artifacts, the classic ``.sig``
    manifest and any Sigstore-bundle referrers, each byte checked against its
    digest on the way. Nothing is verified here: verify from ``target`` after.
    A digest mismatch raises ``VerificationError(step=2)``.
    """
    digest = check_digest(reference) if names_digest(reference) else source.resolve(reference)
    if digest is None:
        raise OciError(f"{source.describe()}: no tag {reference!r}")
    try:
        copy_artifact(source, target, digest, max_blob_bytes)
        sig_tag = signature_tag(digest)
        sig = source.resolve(sig_tag)
        if sig is not None:
            copy_artifact(source, target, sig, max_blob_bytes)
            target.put_manifest(target.get_manifest(sig).data, OCI_MANIFEST, sig_tag)
        for descriptor in source.referrers(digest):
            referrer = descriptor.get("digest")
            if descriptor.get("artifactType") == BUNDLE_V03 and isinstance(referrer, str):
                copy_artifact(source, target, referrer, max_blob_bytes)
        release = target.get_manifest(digest).json()
        layer = (release.get("layers") or [{}])[0]
        document = json.loads(target.get_blob(str(layer.get("digest")), MAX_DOCUMENT_BYTES))
        for part in ("agent", "policy"):
            named = document.get(part, {}).get("digest") if isinstance(document, dict) else None
            if isinstance(named, str) and is_digest(named):
                copy_artifact(source, target, named, max_blob_bytes)
    except OciDigestError as err:
        raise VerificationError(
            f"step 2 (OCI digest): {err}", 2, err.expected, err.actual
        ) from None
    except (ValueError, AttributeError, TypeError, IndexError):
        pass  # a malformed release document is for verification to reject
    if tag is not None:
        target.put_manifest(target.get_manifest(digest).data, OCI_MANIFEST, tag)
    return digest
