"""The three OCI artifacts of a release, and the release document.

Each artifact is an OCI image manifest with an ``artifactType``, the empty
config descriptor and titled layers:

| artifact | artifactType | layer (title) |
|---|---|---|
| agent | ``application/vnd.vedette.agent.v1`` | the agent manifest (``agent.json``) |
| policy | ``application/vnd.cncf.openpolicyagent.config.v1+json`` | the OPA bundle |
| release | ``application/vnd.vedette.release.v1`` | the release document (``release.json``) |

The policy artifact is the layout OPA and its tooling push and pull (the OPA
bundle as one ``application/vnd.cncf.openpolicyagent.layer.v1.tar+gzip`` layer).
The release document names the agent and policy manifests by digest; the
release manifest's digest is what signatures cover.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from vedette.errors import OciError, VerificationError
from vedette.hashing import Digest, HashRole, require_role
from vedette.policy import AgentManifest, Bundle
from vedette.releases.oci import EMPTY_DIGEST, OCI_MANIFEST, Manifest, Repository

EMPTY_MEDIA_TYPE = "application/vnd.oci.empty.v1+json"
TITLE = "org.opencontainers.image.title"

AGENT_ARTIFACT = "application/vnd.vedette.agent.v1"
AGENT_LAYER = "application/vnd.vedette.agent.manifest.v1+json"
POLICY_ARTIFACT = "application/vnd.cncf.openpolicyagent.config.v1+json"
POLICY_LAYER = "application/vnd.cncf.openpolicyagent.layer.v1.tar+gzip"
RELEASE_ARTIFACT = "application/vnd.vedette.release.v1"
RELEASE_LAYER = "application/vnd.vedette.release.v1+json"

RELEASE_SCHEMA = "vedette.release/v1"
MAX_DOCUMENT_BYTES = 64 * 1024

EMPTY_DESCRIPTOR = {"mediaType": EMPTY_MEDIA_TYPE, "digest": EMPTY_DIGEST, "size": 2}


def artifact_manifest(
    artifact_type: str,
    layers: list[tuple[str, str, bytes]],
    annotations: dict[str, str] | None = None,
    subject: dict[str, Any] | None = None,
) -> bytes:
    """An OCI image manifest: ``layers`` are (media type, title, bytes)."""
    from vedette.releases.oci import digest_of

    document: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": artifact_type,
        "config": EMPTY_DESCRIPTOR,
        "layers": [
            {
                "mediaType": media_type,
                "digest": digest_of(data),
                "size": len(data),
                "annotations": {TITLE: title},
            }
            for media_type, title, data in layers
        ],
    }
    if subject is not None:
        document["subject"] = subject
    if annotations:
        document["annotations"] = annotations
    return json.dumps(document, separators=(",", ":"), sort_keys=True).encode()


@dataclass(frozen=True)
class ReleaseDocument:
    """The signed statement binding one agent to one policy bundle (docs/contracts.md)."""

    agent_name: str
    version: str
    agent_digest: str
    behavioral_fingerprint: Digest
    policy_digest: str
    policy_hash: Digest
    expires_at: str | None = None
    # When the release was made (RFC 3339): what rollback protection orders
    # releases by, and a time the node can trust (docs/contracts.md). Optional:
    # documents made before it existed stay readable.
    created: str | None = None
    schema: str = RELEASE_SCHEMA

    def to_json(self) -> bytes:
        document: dict[str, Any] = {
            "schema": self.schema,
            "agent_name": self.agent_name,
            "version": self.version,
            "agent": {
                "digest": self.agent_digest,
                "behavioral_fingerprint": str(self.behavioral_fingerprint),
            },
            "policy": {"digest": self.policy_digest, "policy_hash": str(self.policy_hash)},
        }
        if self.expires_at is not None:
            document["expires_at"] = self.expires_at
        if self.created is not None:
            document["created"] = self.created
        return json.dumps(document, indent=2, sort_keys=True).encode() + b"\n"

    @classmethod
    def from_json(cls, data: bytes) -> ReleaseDocument:
        """Parse and check the shape; raises ``VerificationError(step="schema")``."""

        def bad(problem: str, actual: str = "") -> VerificationError:
            return VerificationError(
                f"release document: {problem}", "schema", RELEASE_SCHEMA, actual
            )

        try:
            doc = json.loads(data)
        except (ValueError, UnicodeDecodeError) as err:
            raise bad(f"not JSON ({err})") from None
        if not isinstance(doc, dict):
            raise bad("not a JSON object")
        schema = doc.get("schema")
        if schema != RELEASE_SCHEMA:
            raise bad(f"unknown schema {schema!r}", str(schema))
        try:
            agent, policy = doc["agent"], doc["policy"]
            fields = {
                "agent_name": doc["agent_name"],
                "version": doc["version"],
                "agent_digest": agent["digest"],
                "fingerprint": agent["behavioral_fingerprint"],
                "policy_digest": policy["digest"],
                "policy_hash": policy["policy_hash"],
            }
        except (KeyError, TypeError) as err:
            raise bad(f"missing field {err}") from None
        expires_at, created = doc.get("expires_at"), doc.get("created")
        optional = {"expires_at": expires_at, "created": created}
        for name, value in [*fields.items(), *optional.items()]:
            if name in optional and value is None:
                continue
            if not isinstance(value, str) or not value:
                raise bad(f"{name} is not a non-empty string")
        try:
            fingerprint = require_role(fields["fingerprint"], HashRole.BEHAVIORAL_FINGERPRINT)
            policy_hash = require_role(fields["policy_hash"], HashRole.POLICY_HASH)
            for key in ("agent_digest", "policy_digest"):
                require_role(fields[key], HashRole.OCI_DIGEST)
        except ValueError as err:
            raise bad(str(err)) from None
        for name, value in optional.items():
            if value is not None:
                parse_time(value, name)
        return cls(
            agent_name=fields["agent_name"],
            version=fields["version"],
            agent_digest=fields["agent_digest"],
            behavioral_fingerprint=fingerprint,
            policy_digest=fields["policy_digest"],
            policy_hash=policy_hash,
            expires_at=expires_at,
            created=created,
        )


def parse_time(text: str, name: str = "expires_at") -> datetime.datetime:
    try:
        moment = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise VerificationError(
            f"release document: {name} {text!r} is not an RFC 3339 time",
            "schema",
            "RFC 3339 time",
            text,
        ) from None
    if moment.tzinfo is None:
        raise VerificationError(
            f"release document: {name} {text!r} has no time zone",
            "schema",
            "RFC 3339 time",
            text,
        )
    return moment


def now_rfc3339() -> str:
    moment = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    return moment.isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class BuiltArtifact:
    manifest: bytes
    blobs: tuple[bytes, ...]

    @property
    def digest(self) -> str:
        from vedette.releases.oci import digest_of

        return digest_of(self.manifest)

    def push(self, repo: Repository, tag: str | None = None) -> str:
        repo.put_blob(b"{}")
        for blob in self.blobs:
            repo.put_blob(blob)
        return repo.put_manifest(self.manifest, OCI_MANIFEST, tag)


@dataclass(frozen=True)
class BuiltRelease:
    agent: BuiltArtifact
    policy: BuiltArtifact
    release: BuiltArtifact
    document: ReleaseDocument


def agent_artifact(agent_json: bytes) -> BuiltArtifact:
    return BuiltArtifact(
        artifact_manifest(AGENT_ARTIFACT, [(AGENT_LAYER, "agent.json", agent_json)]), (agent_json,)
    )


def policy_artifact(bundle_tar_gz: bytes) -> BuiltArtifact:
    return BuiltArtifact(
        artifact_manifest(POLICY_ARTIFACT, [(POLICY_LAYER, "bundle.tar.gz", bundle_tar_gz)]),
        (bundle_tar_gz,),
    )


def release_artifact(document: ReleaseDocument) -> BuiltArtifact:
    data = document.to_json()
    annotations = {
        "org.opencontainers.image.version": document.version,
        "dev.vedette.agent": document.agent_name,
    }
    return BuiltArtifact(
        artifact_manifest(RELEASE_ARTIFACT, [(RELEASE_LAYER, "release.json", data)], annotations),
        (data,),
    )


def build_release(
    agent_json: bytes,
    bundle_tar_gz: bytes,
    *,
    version: str | None = None,
    expires_at: str | None = None,
    created: str | None = None,
) -> BuiltRelease:
    """The three artifacts for an agent manifest and a bundle (``.tar.gz`` bytes).

    The agent manifest and bundle are checked (and the bundle compiled) first,
    so a release that could never activate is never built. ``created`` is
    now (UTC, to the second) unless given.
    """
    from vedette.policy import PolicyEngine

    manifest = AgentManifest.from_bytes(agent_json)
    bundle = Bundle.from_bytes(bundle_tar_gz)
    PolicyEngine(bundle)
    agent = agent_artifact(agent_json)
    policy = policy_artifact(bundle_tar_gz)
    document = ReleaseDocument(
        agent_name=manifest.name,
        version=version or manifest.version,
        agent_digest=agent.digest,
        behavioral_fingerprint=manifest.behavioral_fingerprint,
        policy_digest=policy.digest,
        policy_hash=bundle.policy_hash,
        expires_at=expires_at,
        created=created or now_rfc3339(),
    )
    return BuiltRelease(agent, policy, release_artifact(document), document)


def push_release(
    repo: Repository,
    built: BuiltRelease,
    tag: str | None,
    progress: Callable[[str], None] = lambda _: None,
    sign: Callable[[str], object] | None = None,
) -> str:
    """Push agent, policy and release; the release digest.

    The release is pushed by digest, then ``sign(digest)`` runs, and only then
    is ``tag`` moved to it: a node polling the tag never sees it on a release
    whose signature is not there yet.
    """
    progress(f"agent   {built.agent.push(repo)}")
    progress(f"policy  {built.policy.push(repo)}")
    digest = built.release.push(repo)
    progress(f"release {digest}")
    if sign is not None:
        sign(digest)
    if tag is not None:
        repo.put_manifest(built.release.manifest, OCI_MANIFEST, tag)
        progress(f"tagged  {tag}")
    return digest


def single_layer(manifest: Manifest, artifact_type: str, layer_type: str) -> dict[str, Any]:
    """The one layer descriptor of an artifact manifest of the expected kind."""
    document = manifest.json()
    if document.get("artifactType") != artifact_type:
        raise OciError(
            f"manifest {manifest.digest}: artifactType {document.get('artifactType')!r}, "
            f"expected {artifact_type!r}"
        )
    layers = [
        layer
        for layer in document.get("layers") or []
        if isinstance(layer, dict) and layer.get("mediaType") == layer_type
    ]
    if len(layers) != 1:
        raise OciError(f"manifest {manifest.digest}: expected one {layer_type} layer")
    layer = layers[0]
    if not isinstance(layer.get("digest"), str) or not isinstance(layer.get("size"), int):
        raise OciError(f"manifest {manifest.digest}: malformed layer descriptor")
    return layer
