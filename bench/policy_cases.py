"""The policies and inputs the policy benchmarks run, shared by both suites."""

from __future__ import annotations

import gzip
import io
import json
import random
import tarfile
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "python" / "vedette" / "examples"
EXAMPLE_BUNDLE = EXAMPLES / "bundle"
RBAC_BUNDLE = Path(__file__).resolve().parent / "policies" / "rbac"


@dataclass(frozen=True)
class Case:
    """A policy, the input to evaluate it on, and how the anchors query it."""

    name: str
    bundle: Path
    input: dict
    # The rule the anchors evaluate; vedette always evaluates data.vedette.decision.
    anchor_rule: str
    # Modules and data as the anchors load them (they have no bundle reader).
    modules: dict[str, str]
    data: dict
    expected_allow: bool


def example_case() -> Case:
    modules = {"policy.rego": (EXAMPLE_BUNDLE / "vedette" / "policy.rego").read_text()}
    data = {"vedette": json.loads((EXAMPLE_BUNDLE / "vedette" / "data.json").read_text())}
    document = json.loads((EXAMPLES / "inputs" / "fs-read-data.json").read_text())
    return Case(
        "example policy (fs.read allowed)",
        EXAMPLE_BUNDLE,
        document,
        "data.vedette.decision",
        modules,
        data,
        True,
    )


def rbac_case() -> Case:
    modules = {"rbac.rego": (RBAC_BUNDLE / "rbac.rego").read_text()}
    return Case(
        "OPA RBAC example (bob write foo123 → deny)",
        RBAC_BUNDLE,
        {"subject": "bob", "resource": "foo123", "action": "write"},
        "data.rbac.allow",
        modules,
        {},
        False,
    )


def large_bundle(target_bytes: int = 1 << 20, seed: int = 7) -> tuple[bytes, int]:
    """A .tar.gz bundle whose data.json is about ``target_bytes`` of RBAC data.

    Returns the archive and the uncompressed size of its data.json.
    """
    rng = random.Random(seed)
    users: dict[str, list[str]] = {}
    roles: dict[str, list[dict[str, str]]] = {}
    data = b""
    i = 0
    while len(data) < target_bytes:
        for _ in range(500):
            users[f"user{i}"] = [f"role{rng.randrange(2000)}" for _ in range(3)]
            roles[f"role{i % 2000}"] = [
                {
                    "action": f"action{rng.randrange(10000)}",
                    "resource": f"resource{rng.randrange(10000)}",
                }
                for _ in range(2)
            ]
            i += 1
        data = json.dumps({"users": users, "roles": roles}).encode()
    rego = b"""package vedette

default decision := {"allow": false, "reason": "no role grants this"}

decision := {"allow": true, "reason": "granted"} if {
\tsome role in data.rbac.users[input.user]
\tsome permission in data.rbac.roles[role]
\tpermission.action == input.action
\tpermission.resource == input.resource
}
"""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as archive:
        for name, content in (("rbac/data.json", data), ("policy.rego", rego)):
            info = tarfile.TarInfo(name)
            info.size = len(content)
            archive.addfile(info, io.BytesIO(content))
    return gzip.compress(raw.getvalue(), mtime=0), len(data)
