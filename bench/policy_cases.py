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


# -- the policy shapes (bench/policies/<shape>/policy.rego) --------------------------
#
# Each shape's data is generated here (fixed seeds), so the repository holds
# only the policies; the bundle vedette loads is written to a temporary folder.

POLICIES = Path(__file__).resolve().parent / "policies"


def _shape(name: str, title: str, data: dict, document: dict, folder: Path) -> Case:
    policy = (POLICIES / name / "policy.rego").read_text()
    bundle = folder / name
    (bundle / "vedette").mkdir(parents=True, exist_ok=True)
    (bundle / "policy.rego").write_text(policy)
    (bundle / "vedette" / "data.json").write_text(json.dumps(data))
    return Case(title, bundle, document, "data.vedette.decision", {"policy.rego": policy},
                {"vedette": data}, True)  # fmt: skip


def paths_case(folder: Path) -> Case:
    departments = [f"dept{i:02d}" for i in range(50)]
    allowed = [f"/srv/data/{d}/**/*.csv" for d in departments]
    denied = [f"/srv/data/{d}/private/**" for d in departments]
    document = {"tool": "fs.read", "caller": {"id": "analyst"},
                "args": {"path": "/srv/data/dept49/reports/2026/q3/sales-eu.csv"}}  # fmt: skip
    return _shape("paths", "glob and regex on paths (50 + 50 globs)",
                  {"allowed": allowed, "denied": denied}, document, folder)  # fmt: skip


def network_case(folder: Path) -> Case:
    allowed = [f"10.{i}.0.0/16" for i in range(200)]
    blocked = ["127.0.0.0/8", "169.254.0.0/16", "100.64.0.0/10", "0.0.0.0/8", "224.0.0.0/4"]
    document = {"tool": "http.get", "caller": {"id": "fetcher"},
                "args": {"url": "http://10.199.30.40/status", "ip": "10.199.30.40"}}  # fmt: skip
    return _shape("network", "CIDR membership (200 networks, 5 blocked)",
                  {"allowed_networks": allowed, "blocked_networks": blocked}, document,
                  folder)  # fmt: skip


def strings_case(folder: Path) -> Case:
    prefixes = [f"tool{i} " for i in range(39)] + ["git log"]
    forbidden = ["rm", "curl", "wget", "sudo", "chmod", "chown", "dd", "mkfs", "nc", "ssh"]
    document = {"tool": "shell.run", "caller": {"id": "builder"},
                "args": {"command": "  Git LOG --oneline -n 20 --stat src/  "}}  # fmt: skip
    return _shape("strings", "string builtins (lower, split, startswith, sprintf)",
                  {"allowed_prefixes": prefixes, "forbidden_words": forbidden, "max_words": 12},
                  document, folder)  # fmt: skip


def inventory_case(folder: Path) -> Case:
    rng = random.Random(11)
    owners = ["alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy"]
    tags = [f"tag{i}" for i in range(20)]
    assets = [
        {"id": f"asset-{i:04d}", "owner": owners[i % len(owners)],
         "tags": ["export", *rng.sample(tags, 3)] if i % 2 == 0 else rng.sample(tags, 3),
         "sensitivity": rng.randrange(3)}
        for i in range(1000)
    ]  # fmt: skip
    wanted = [a["id"] for a in assets if a["owner"] == "alice" and "export" in a["tags"]
              and a["sensitivity"] <= 2][:10]  # fmt: skip
    document = {"tool": "assets.export", "caller": {"id": "alice"},
                "args": {"tag": "export", "ids": wanted}}  # fmt: skip
    return _shape("inventory", "comprehensions over 1,000 assets",
                  {"assets": assets, "max_sensitivity": 2}, document, folder)  # fmt: skip


def deep_case(folder: Path) -> Case:
    def nested(depth: int, width: int) -> object:
        if depth == 0:
            return [f"paragraph {i}: nothing secret here" for i in range(width)]
        return {f"section{i}": nested(depth - 1, width) for i in range(2)} | {
            "title": f"level {depth}"
        }

    document = {"tool": "doc.write", "caller": {"id": "writer"},
                "args": {"document": nested(6, 4)}}  # fmt: skip
    return _shape("deep", "deep input (256 paragraphs, 7 levels)", {}, document, folder)


ZONES = [
    "America/New_York", "America/Chicago", "America/Denver", "America/Los_Angeles",
    "America/Sao_Paulo", "America/Mexico_City", "America/Toronto", "Europe/London",
    "Europe/Berlin", "Europe/Paris", "Europe/Madrid", "Europe/Warsaw", "Europe/Helsinki",
    "Europe/Istanbul", "Africa/Lagos", "Africa/Johannesburg", "Asia/Dubai", "Asia/Kolkata",
    "Asia/Singapore", "Asia/Shanghai", "Asia/Tokyo", "Asia/Seoul", "Asia/Jakarta",
    "Australia/Sydney", "Pacific/Auckland",
]  # fmt: skip


def timezones_case(folder: Path) -> Case:
    weekdays = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday"]
    sites = [
        {"name": f"site-{i:03d}", "zone": ZONES[i % len(ZONES)], "opens": 8, "closes": 18,
         "days": weekdays}
        for i in range(100)
    ]  # fmt: skip
    # 14:30 UTC on a Wednesday: 15:30 in Berlin, where site-008 is.
    document = {"tool": "tickets.create", "caller": {"id": "berlin-desk"},
                "time": "2026-03-04T14:30:00Z", "args": {}}  # fmt: skip
    return _shape("timezones", "named time zones (100 sites in 25 zones)",
                  {"sites": sites, "callers": {"berlin-desk": "site-008"}}, document,
                  folder)  # fmt: skip


def data_rbac_case(folder: Path) -> Case:
    """The RBAC policy of :func:`large_bundle` over about 256 KB of users and roles."""
    archive, _ = large_bundle(256 * 1024)
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(archive))) as bundle_tar:
        data_member = bundle_tar.extractfile("rbac/data.json")
        rego_member = bundle_tar.extractfile("policy.rego")
        assert data_member is not None
        assert rego_member is not None
        data, rego = json.loads(data_member.read()), rego_member.read().decode()
    bundle = folder / "rbac-data"
    (bundle / "rbac").mkdir(parents=True, exist_ok=True)
    (bundle / "policy.rego").write_text(rego)
    (bundle / "rbac" / "data.json").write_text(json.dumps(data))
    role = data["users"]["user1999"][2]
    permission = data["roles"][role][1]
    document = {"user": "user1999", **permission}
    return Case("data-heavy RBAC (256 KB of users and roles)", bundle, document,
                "data.vedette.decision", {"policy.rego": rego}, {"rbac": data}, True)  # fmt: skip


def policy_shapes(folder: Path) -> list[Case]:
    """The seven shapes, with their bundles written under ``folder``."""
    return [
        data_rbac_case(folder),
        paths_case(folder),
        network_case(folder),
        strings_case(folder),
        inventory_case(folder),
        deep_case(folder),
        timezones_case(folder),
    ]
