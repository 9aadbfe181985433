"""A small agent, its policy bundle and a runtime config, written to a temp folder."""

from __future__ import annotations

import json
from pathlib import Path

from vedette.config import (
    AgentConfig,
    CallerConfig,
    Config,
    EvidenceConfig,
    FsMount,
    QuotaConfig,
    ToolsConfig,
    token_digest,
)

AGENT = "recon"
OTHER_AGENT = "scribe"
TOKENS = {"adapter-a": "token-for-a", "adapter-b": "token-for-b"}

POLICY = """
package vedette

import rego.v1

default decision := {"allow": false, "reason": "no rule allows this call"}

decision := {"allow": true, "reason": "echo is allowed"} if input.tool == "echo"

decision := {"allow": true, "reason": "reading under /data"} if {
    input.tool == "fs.read"
    inside_data
}

decision := {"allow": false, "reason": sprintf("%s is outside /data", [input.args.path])} if {
    input.tool == "fs.read"
    not inside_data
}

inside_data if {
    startswith(input.args.path, "/data/")
    not contains(input.args.path, "..")
}

decision := {"allow": true, "reason": "slow is allowed"} if input.tool == "slow"

decision := {"allow": true, "reason": "boom is allowed"} if input.tool == "boom"

decision := {"allow": true, "reason": "marker is allowed"} if input.tool == "marker"

decision := {"allow": "yes", "reason": "a non-boolean allow"} if input.tool == "weird"
"""


def manifest(name: str, tools: list[tuple]) -> dict:
    """``tools``: ``(name, args schema)``, or ``(name, args schema, description)``."""
    return {
        "schema": "vedette.agent/v1",
        "name": name,
        "version": "1.0.0",
        "model": {"provider": "test", "name": "test-model"},
        "tools": [
            {
                "name": tool[0],
                "description": tool[2] if len(tool) > 2 else f"the {tool[0]} tool",
                "args_schema": tool[1],
            }
            for tool in tools
        ],
    }


ANY_OBJECT: dict = {"type": "object"}
ECHO_SCHEMA = {
    "type": "object",
    "properties": {"text": {"type": "string"}},
    "required": ["text"],
}
PATH_SCHEMA = {
    "type": "object",
    "properties": {"path": {"type": "string"}},
    "required": ["path"],
    "additionalProperties": False,
}


def write_release(root: Path, name: str, tools: list[tuple], policy: str) -> AgentConfig:
    folder = root / name
    bundle = folder / "bundle"
    bundle.mkdir(parents=True)
    (bundle / "policy.rego").write_text(policy)
    (folder / "agent.json").write_text(json.dumps(manifest(name, tools)))
    # Local files: the runtime tests exercise deciding, not release trust.
    return AgentConfig(name, folder / "agent.json", bundle, unsigned=True)


def runtime_config(tmp_path: Path, **changes) -> Config:
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    (data / "a.csv").write_text("x,y\n1,2\n")
    releases = tmp_path / "releases"
    agents = (
        write_release(
            releases,
            AGENT,
            [
                ("echo", ECHO_SCHEMA),
                ("fs.read", PATH_SCHEMA),
                ("slow", ANY_OBJECT),
                ("boom", ANY_OBJECT),
                ("marker", ANY_OBJECT),
                ("weird", ANY_OBJECT),
                ("declared.missing", ANY_OBJECT),
            ],
            POLICY,
        ),
        write_release(releases, OTHER_AGENT, [("echo", ECHO_SCHEMA)], POLICY),
    )
    settings = {
        "node_id": "test-node",
        "state_dir": tmp_path / "state",
        "tools": ToolsConfig(timeout_s=0.5, fs_mounts=(FsMount("/data", data),)),
        "quota": QuotaConfig(rate_per_s=1000, burst=1000),
        "evidence": EvidenceConfig(mask_args=("password",)),
        "callers": (
            CallerConfig("adapter-a", AGENT, token_sha256=token_digest(TOKENS["adapter-a"])),
            CallerConfig("adapter-b", OTHER_AGENT, token_sha256=token_digest(TOKENS["adapter-b"])),
        ),
        "agents": agents,
    }
    settings.update(changes)
    return Config(**settings)
