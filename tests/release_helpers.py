"""Builders for the release tests: keys, bundles, signed releases in a registry."""

from __future__ import annotations

import io
import json
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runtime_fixtures import ANY_OBJECT, ECHO_SCHEMA, manifest

from vedette.config import (
    AgentConfig,
    CallerConfig,
    Config,
    PolicyConfig,
    QuotaConfig,
    token_digest,
)
from vedette.releases import signing
from vedette.releases.artifacts import BuiltRelease, build_release, push_release
from vedette.releases.cosign import sign_classic
from vedette.releases.oci import Repository, parse_reference

AGENT = "recon"
TOKEN = "release-test-token"
PASSWORD = b"correct horse"

POLICY_V1 = """package vedette

import rego.v1

default decision := {"allow": false, "reason": "v1 denies by default"}

decision := {"allow": true, "reason": "v1 allows echo"} if input.tool == "echo"
"""

POLICY_V2 = POLICY_V1.replace("v1 allows echo", "v2 allows echo")


@dataclass
class KeyPair:
    private: signing.PrivateKey
    public_path: Path


def make_key(folder: Path, name: str = "cosign") -> KeyPair:
    folder.mkdir(parents=True, exist_ok=True)
    private_pem, public_pem = signing.generate_key_pair(PASSWORD)
    (folder / f"{name}.key").write_bytes(private_pem)
    (folder / f"{name}.pub").write_bytes(public_pem)
    private = signing.load_private_key(folder / f"{name}.key", PASSWORD)
    return KeyPair(private, folder / f"{name}.pub")


def bundle_bytes(policy: str, extra: dict[str, bytes] | None = None) -> bytes:
    files = {"vedette/policy.rego": policy.encode(), **(extra or {})}
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz") as archive:
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 0
            archive.addfile(info, io.BytesIO(data))
    return raw.getvalue()


def agent_bytes(name: str = AGENT, tools: list[str] | None = None, version: str = "1.0.0") -> bytes:
    document = manifest(name, [(tool, ECHO_SCHEMA if tool == "echo" else ANY_OBJECT)
                               for tool in (tools or ["echo"])])  # fmt: skip
    document["version"] = version
    return json.dumps(document).encode()


def publish(
    repo: Repository,
    key: KeyPair | None,
    tag: str,
    *,
    policy: str = POLICY_V1,
    agent: bytes | None = None,
    version: str | None = None,
    docker_reference: str = "test/recon",
    created: str | None = None,
    expires_at: str | None = None,
) -> tuple[str, BuiltRelease]:
    """Build, push and (when ``key`` is given) sign a release; its digest."""
    built = build_release(
        agent or agent_bytes(),
        bundle_bytes(policy),
        version=version,
        created=created,
        expires_at=expires_at,
    )

    def sign(digest: str) -> None:
        if key is not None:
            sign_classic(repo, digest, docker_reference, key.private)

    digest = push_release(repo, built, tag, sign=sign)
    return digest, built


def open_repo(ref: str) -> Repository:
    from vedette.releases.repositories import open_repository

    return open_repository(parse_reference(ref), insecure=True)


def release_config(tmp_path: Path, release: str, keys: list[Path], **agent: object) -> Config:
    return Config(
        node_id="release-node",
        state_dir=tmp_path / "state",
        quota=QuotaConfig(rate_per_s=1000, burst=1000),
        policy=PolicyConfig(eval_timeout_ms=10_000),
        callers=(CallerConfig("adapter", AGENT, token_sha256=token_digest(TOKEN)),),
        agents=(
            AgentConfig(AGENT, release=release, keys=tuple(keys), insecure=True, **agent),  # type: ignore[arg-type]
        ),
    )


def release_events(store: object) -> list[dict]:
    """The release_event records in an open store, oldest first."""
    found = []
    for _, record in store.iter_records():  # type: ignore[attr-defined]
        document = json.loads(record)
        if document.get("kind") == "release_event":
            found.append(document)
    return found


def publish_document(
    repo: Repository,
    key: KeyPair | None,
    tag: str,
    *,
    agent: bytes,
    bundle: bytes,
    fingerprint_of: bytes | None = None,
    policy_hash_of: bytes | None = None,
    agent_name: str = AGENT,
    expires_at: str | None = None,
    docker_reference: str = "test/recon",
    created: str | None = "now",
) -> str:
    """Push agent and bundle as given, with a release document whose fingerprint
    and policy hash may come from *other* files (to build tampered releases that
    are nevertheless signed by a trusted key)."""
    from vedette.policy import AgentManifest, Bundle
    from vedette.releases.artifacts import (
        ReleaseDocument,
        agent_artifact,
        now_rfc3339,
        policy_artifact,
        release_artifact,
    )

    agent_a, policy_a = agent_artifact(agent), policy_artifact(bundle)
    agent_a.push(repo)
    policy_a.push(repo)
    document = ReleaseDocument(
        agent_name=agent_name,
        version="9.9.9",
        agent_digest=agent_a.digest,
        behavioral_fingerprint=AgentManifest.from_bytes(
            fingerprint_of or agent
        ).behavioral_fingerprint,
        policy_digest=policy_a.digest,
        policy_hash=Bundle.from_bytes(policy_hash_of or bundle).policy_hash,
        expires_at=expires_at,
        created=now_rfc3339() if created == "now" else created,
    )
    digest = release_artifact(document).push(repo, tag)
    if key is not None:
        sign_classic(repo, digest, docker_reference, key.private)
    return digest


# A policy input the example policies allow.
ECHO_INPUT = {"tool": "echo", "args": {"text": "hi"}, "caller": {"id": "t"}, "claims": {}}


class ManualClock:
    """A wall clock the test sets (``clock.now = …``)."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class TrackNode:
    """One agent's track on a node, watching ``<ref>:stable`` in a real
    registry; ``restart()`` makes a new track over the same state folder."""

    def __init__(self, tmp_path: Path, host: str, name: str, now: float, **agent: object) -> None:
        from vedette.releases.lifecycle import ReleaseEvents
        from vedette.releases.oci import RegistryClient
        from vedette.store import SegmentStore

        self.tmp_path = tmp_path
        self.host = host
        self.client = RegistryClient(host, insecure=True)
        self.repo = self.client.repository(f"vedette/{name}")
        self.key = make_key(tmp_path / "keys")
        self.repository_ref = f"oci://{host}/vedette/{name}"
        self.ref = f"{self.repository_ref}:stable"
        self.config = release_config(tmp_path, self.ref, [self.key.public_path], **agent)
        self.store = SegmentStore.open(tmp_path / "store", ceiling_bytes=64 << 20, node_id="n")
        self.events = ReleaseEvents(self.store, "n")
        self.clock = ManualClock(now)
        self.root = self.config.state_dir / "releases" / AGENT
        self.track = self.restart()

    def restart(self, release: str | None = None) -> Any:
        """A new track (and time floor) over the same state, as after a reboot;
        ``release`` replaces the agent's release reference."""
        import dataclasses

        from vedette.releases.lifecycle import AgentTrack

        agent = self.config.agents[0]
        if release is not None:
            agent = dataclasses.replace(agent, release=release)
        trusted = signing.TrustedKeys.from_files(list(agent.keys))
        self.track = AgentTrack(
            agent, self.root, trusted, self.events, eval_time_limit_s=5.0, clock=self.clock
        )
        self.track.start()
        return self.track

    def reason(self) -> str | None:
        release = self.track.active()
        return None if release is None else release.engine.evaluate(ECHO_INPUT).reason

    def close(self) -> None:
        self.client.close()
        self.store.close()
