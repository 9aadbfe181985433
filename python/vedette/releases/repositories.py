"""Opening the repository a release reference names: an OCI registry's
(``releases/oci.py``) or an image-layout folder (``releases/layout.py``)."""

from __future__ import annotations

import os

from vedette.releases.layout import LayoutRepository
from vedette.releases.oci import (
    DEFAULT_TIMEOUT_S,
    Reference,
    RegistryAuth,
    RegistryClient,
    Repository,
)


def open_repository(
    reference: Reference,
    *,
    insecure: bool = False,
    ca: str | os.PathLike[str] | None = None,
    auth: RegistryAuth | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> Repository:
    """The repository a reference names (a registry's, or an image-layout folder)."""
    if reference.kind == "layout":
        assert reference.layout_dir is not None
        return LayoutRepository(reference.layout_dir)
    client = RegistryClient(
        reference.registry, insecure=insecure, ca=ca, auth=auth, timeout_s=timeout_s
    )
    return client.repository(reference.repository)
