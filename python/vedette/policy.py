"""Policy: OPA bundles, Rego decisions and agent manifests.

A :class:`Bundle` is an OPA-format bundle (a directory or a ``.tar.gz``) that
passed the bundle rules of ``docs/contracts.md``; its ``policy_hash`` is the
SHA-256 of its canonical file listing. A :class:`PolicyEngine` compiles a
bundle once and evaluates ``data.vedette.decision`` for an input dict,
returning a :class:`Decision`. Evaluation releases the GIL, may run on many
threads at once, and never raises: undefined decisions, evaluation errors,
time-outs, malformed decisions and inputs without a JSON form all deny, with
``Decision.fault`` saying which.

An :class:`AgentManifest` is a validated agent manifest; its
``behavioral_fingerprint`` is the BLAKE3 of the canonical JSON of its
behaviour section.
"""

from __future__ import annotations

import os
from pathlib import Path

from vedette._core import (
    AGENT_SCHEMA,
    POLICY_ENTRY_POINT,
    AgentManifest,
    Bundle,
    BundleLimits,
    Decision,
    PolicyEngine,
)
from vedette.errors import BundleError, ManifestError, PolicyError

FAULTS = ("undefined", "error", "timeout", "malformed", "panic")
"""The values of ``Decision.fault``: why the engine denied without the policy saying so."""


def load_engine(
    path: str | os.PathLike[str],
    *,
    time_limit: float = 0.1,
    limits: BundleLimits | None = None,
) -> PolicyEngine:
    """Read the bundle at ``path`` (directory or ``.tar.gz``) and compile it.

    Raises :class:`BundleError` if the bundle breaks a rule (including a missing
    ``data.vedette.decision``), ``OSError`` if it cannot be read.
    """
    return PolicyEngine(Bundle.load(path, limits), time_limit=time_limit)


def load_agent_manifest(path: str | os.PathLike[str]) -> AgentManifest:
    """Read and validate the agent manifest at ``path``.

    Raises :class:`ManifestError` whose message starts with the file name and
    names the JSON path of the offending value, or ``OSError``.
    """
    data = Path(path).read_bytes()
    try:
        return AgentManifest.from_bytes(data)
    except ManifestError as err:
        raise ManifestError(f"{os.fspath(path)}: {err}", err.at) from None


__all__ = [
    "AGENT_SCHEMA",
    "FAULTS",
    "POLICY_ENTRY_POINT",
    "AgentManifest",
    "Bundle",
    "BundleError",
    "BundleLimits",
    "Decision",
    "ManifestError",
    "PolicyEngine",
    "PolicyError",
    "load_agent_manifest",
    "load_engine",
]
