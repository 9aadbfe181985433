"""An OCI image-layout folder as a :class:`~vedette.releases.oci.Repository`.

The second source of releases beside registries, for air-gapped nodes seeded
from a USB stick or a tarball (``vedette release pull REF --to DIR``, then
``release = "oci-layout://DIR:TAG"``). Every blob read is checked against its
digest, exactly as one received from a registry.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

from vedette.durable import write_durably
from vedette.errors import OciError
from vedette.releases.oci import (
    MAX_BLOB_BYTES,
    MAX_MANIFEST_BYTES,
    OCI_INDEX,
    Manifest,
    _checked,
    _index_entries,
    _manifest,
    check_digest,
    check_tag,
    digest_of,
    fallback_referrers,
    is_digest,
    names_digest,
)

LAYOUT_VERSION = {"imageLayoutVersion": "1.0.0"}
REF_NAME = "org.opencontainers.image.ref.name"


class LayoutRepository:
    """An OCI image-layout folder (``oci-layout``, ``index.json``, ``blobs/sha256``).

    Tags are the ``org.opencontainers.image.ref.name`` annotations of
    ``index.json``. Writes are atomic (temporary file, fsync, rename).
    """

    def __init__(self, root: str | os.PathLike[str], *, create: bool = False) -> None:
        self.root = Path(root)
        if create:
            (self.root / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
            if not (self.root / "oci-layout").exists():
                _write_atomic(self.root / "oci-layout", json.dumps(LAYOUT_VERSION).encode())
            if not (self.root / "index.json").exists():
                self._write_index([])

    def describe(self) -> str:
        return f"oci-layout://{self.root}"

    def _index(self) -> list[dict[str, Any]]:
        # Checked on every read, not once: a removable medium may come and go.
        if not (self.root / "oci-layout").is_file():
            raise OciError(f"{self.root}: not an OCI image layout (no oci-layout file)")
        try:
            data = (self.root / "index.json").read_bytes()
        except OSError as err:
            raise OciError(f"{self.root}/index.json: {err.strerror or err}") from None
        return _index_entries(data, f"{self.root}/index.json")

    def _write_index(self, entries: list[dict[str, Any]]) -> None:
        index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}
        _write_atomic(self.root / "index.json", json.dumps(index, indent=2).encode())

    def _blob_path(self, digest: str) -> Path:
        return self.root / "blobs" / "sha256" / check_digest(digest).split(":", 1)[1]

    def resolve(self, tag: str) -> str | None:
        for entry in self._index():
            if (entry.get("annotations") or {}).get(REF_NAME) == tag:
                digest = entry.get("digest")
                return check_digest(digest) if isinstance(digest, str) else None
        return None

    def get_manifest(self, reference: str) -> Manifest:
        digest = check_digest(reference) if names_digest(reference) else self.resolve(reference)
        if digest is None:
            raise OciError(f"{self.describe()}: no tag {reference!r}")
        data = self._read(digest, MAX_MANIFEST_BYTES, f"manifest {digest}")
        media_type = ""
        with contextlib.suppress(ValueError, AttributeError):
            media_type = json.loads(data).get("mediaType") or ""
        return _manifest(data, media_type, digest, f"manifest {digest}")

    def get_blob(self, digest: str, max_bytes: int = MAX_BLOB_BYTES) -> bytes:
        return self._read(digest, max_bytes, f"blob {digest}")

    def _read(self, digest: str, limit: int, what: str) -> bytes:
        path = self._blob_path(digest)
        try:
            with path.open("rb") as file:
                data = file.read(limit + 1)
        except FileNotFoundError:
            raise OciError(f"{self.describe()}: {what} is missing") from None
        except OSError as err:
            raise OciError(f"{self.describe()}: {what}: {err.strerror or err}") from None
        if len(data) > limit:
            raise OciError(f"{what}: over the {limit}-byte limit")
        return _checked(data, digest, f"{self.describe()}: {what}")

    def put_blob(self, data: bytes) -> str:
        digest = digest_of(data)
        path = self._blob_path(digest)
        if not path.exists():
            _write_atomic(path, data)
        return digest

    def put_manifest(self, data: bytes, media_type: str, tag: str | None = None) -> str:
        digest = self.put_blob(data)
        entries = self._index()
        descriptor: dict[str, Any] = {"mediaType": media_type, "digest": digest, "size": len(data)}
        with contextlib.suppress(ValueError, AttributeError):
            document = json.loads(data)
            if document.get("artifactType"):
                descriptor["artifactType"] = document["artifactType"]
        if tag is not None:
            check_tag(tag)
            descriptor["annotations"] = {REF_NAME: tag}
            entries = [e for e in entries if (e.get("annotations") or {}).get(REF_NAME) != tag]
        elif any(e.get("digest") == digest for e in entries):
            return digest
        entries.append(descriptor)
        self._write_index(entries)
        return digest

    def referrers(self, digest: str) -> list[dict[str, Any]]:
        found = []
        for entry in self._index():
            candidate = entry.get("digest")
            if not isinstance(candidate, str) or not is_digest(candidate):
                continue
            try:
                document = self.get_manifest(candidate).json()
            except OciError:
                continue
            subject = document.get("subject")
            if isinstance(subject, dict) and subject.get("digest") == digest:
                found.append(
                    {k: v for k, v in entry.items() if k != "annotations"}
                    | {"artifactType": document.get("artifactType", "")}
                )
        return found or fallback_referrers(self, digest)


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_durably(path, data)
