"""A signed release in an OCI image-layout folder: what ``vedette release pack``
writes and what ``vedette serve --example`` runs.

A node runs only signed releases (docs/threat-model.md, A-02). A release kept
on the node's own disk is no exception: it is packed, signed with a cosign
key, into a layout folder that an ``[[agents]]`` table names as
``release = "oci-layout://DIR:TAG"``, and verified by the same four steps as
one pulled from a registry.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from vedette.policy import Bundle
from vedette.releases.artifacts import build_release, push_release
from vedette.releases.cosign import PrivateKeyLike, sign_classic
from vedette.releases.layout import LayoutRepository
from vedette.releases.oci import parse_reference


def bundle_bytes(path: Path) -> bytes:
    """A bundle folder as its reproducible ``.tar.gz``, or a ``.tar.gz`` as read."""
    return Bundle.load(path).to_tar_gz() if path.is_dir() else path.read_bytes()


def pack_release(
    layout_dir: Path,
    tag: str,
    agent_json: bytes,
    bundle_tar_gz: bytes,
    key: PrivateKeyLike,
    *,
    version: str | None = None,
    expires_at: str | None = None,
    progress: Callable[[str], None] = lambda _: None,
) -> str:
    """Builds the release, writes it into ``layout_dir`` (created if missing),
    signs it, then tags it ``tag``; returns the release digest."""
    reference = parse_reference(f"oci-layout://{layout_dir}:{tag}")
    built = build_release(agent_json, bundle_tar_gz, version=version, expires_at=expires_at)
    repo = LayoutRepository(layout_dir, create=True)

    def sign(digest: str) -> None:
        signature = sign_classic(repo, digest, reference.docker_reference(), key)
        progress(f"signed  {signature} (tag {digest.replace(':', '-')}.sig)")

    return push_release(repo, built, tag, progress=progress, sign=sign)
