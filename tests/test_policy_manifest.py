"""Agent manifests: schema validation and the behavioral fingerprint."""

from __future__ import annotations

import copy
import json

import pytest
from policy_helpers import EXAMPLES

from vedette.errors import ManifestError, PolicyError
from vedette.hashing import HashRole, blake3, canonical_json, require_role
from vedette.policy import AGENT_SCHEMA, AgentManifest, load_agent_manifest

EXAMPLE = json.loads((EXAMPLES / "agent.json").read_text())


def parse(document: object) -> AgentManifest:
    return AgentManifest.from_bytes(json.dumps(document).encode())


def fingerprint(document: object) -> str:
    return str(parse(document).behavioral_fingerprint)


def test_example_manifest_loads():
    agent = load_agent_manifest(EXAMPLES / "agent.json")
    assert (agent.name, agent.version) == ("example-assistant", "1.0.0")
    assert agent.tool_names == ["echo", "fs.read"]
    assert agent.declares_tool("fs.read")
    assert not agent.declares_tool("shell.exec")
    assert agent.tools[0]["args_schema"]["required"] == ["text"]
    assert agent.model["provider"] == "example"
    assert str(agent.prompts["system"]).startswith("sha256:")
    assert agent.config == {}
    assert AGENT_SCHEMA == "vedette.agent/v1"


def test_fingerprint_is_blake3_of_the_canonical_behaviour_section():
    agent = parse(EXAMPLE)
    behaviour = agent.behaviour
    assert sorted(behaviour) == ["config", "model", "prompts", "schema", "tools"]
    assert agent.behavioral_fingerprint == blake3(canonical_json(behaviour))
    assert require_role(agent.behavioral_fingerprint, HashRole.BEHAVIORAL_FINGERPRINT)


def test_fingerprint_ignores_key_order_whitespace_and_cosmetic_fields():
    reordered = json.loads(json.dumps(EXAMPLE, sort_keys=True))
    spaced = AgentManifest.from_bytes(json.dumps(EXAMPLE, indent=7).encode())
    relabelled = {**EXAMPLE, "version": "9.9.9", "description": "other words", "metadata": {}}
    assert fingerprint(reordered) == fingerprint(EXAMPLE)
    assert str(spaced.behavioral_fingerprint) == fingerprint(EXAMPLE)
    assert fingerprint(relabelled) == fingerprint(EXAMPLE)
    without_config = {k: v for k, v in EXAMPLE.items() if k != "config"}
    assert fingerprint({**without_config, "config": {}}) == fingerprint(EXAMPLE)


def changed(path: list, value: object) -> dict:
    document = copy.deepcopy(EXAMPLE)
    node = document
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return document


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (["model", "name"], "bigger-model"),
        (["model", "parameters", "temperature"], 1),
        (["tools", 0, "description"], "Returns its text argument, loudly."),
        (["tools", 1, "args_schema", "additionalProperties"], True),
        (["tools", 1, "name"], "fs.write"),
        (["prompts", "system"], "sha256:" + "1" * 64),
        (["config"], {"tools": "blake3:" + "2" * 64}),
    ],
)
def test_any_behaviour_change_changes_the_fingerprint(path, value):
    assert fingerprint(changed(path, value)) != fingerprint(EXAMPLE)


def test_tool_order_is_behaviour():
    swapped = changed(["tools"], list(reversed(EXAMPLE["tools"])))
    assert fingerprint(swapped) != fingerprint(EXAMPLE)


@pytest.mark.parametrize(
    ("mutation", "at"),
    [
        (lambda d: d.pop("schema"), "schema"),
        (lambda d: d.update(schema="vedette.agent/v2"), "schema"),
        (lambda d: d.pop("name"), "name"),
        (lambda d: d.update(name="1agent"), "name"),
        (lambda d: d.update(name="agent with spaces"), "name"),
        (lambda d: d.update(version=""), "version"),
        (lambda d: d.pop("model"), "model"),
        (lambda d: d["model"].pop("provider"), "model.provider"),
        (lambda d: d["model"].update(seed=1), "model.seed"),
        (lambda d: d.pop("tools"), "tools"),
        (lambda d: d.update(tools={}), "tools"),
        (lambda d: d["tools"][1].pop("description"), "tools[1].description"),
        (lambda d: d["tools"][1].update(args_schema="object"), "tools[1].args_schema"),
        (lambda d: d["tools"][1]["args_schema"].update(type="array"), "tools[1].args_schema.type"),
        (lambda d: d["tools"][1].update(name="echo"), "tools[1].name"),
        (lambda d: d["tools"][0].update(timeout=3), "tools[0].timeout"),
        (lambda d: d["prompts"].update(system="sha256:XYZ"), "prompts.system"),
        (lambda d: d["prompts"].update(system=5), "prompts.system"),
        (lambda d: d.update(config=[]), "config"),
        (lambda d: d.update(permissions=["all"]), "permissions"),
    ],
)
def test_schema_errors_name_the_offending_field(mutation, at):
    document = copy.deepcopy(EXAMPLE)
    mutation(document)
    with pytest.raises(ManifestError) as caught:
        parse(document)
    assert caught.value.at == at
    assert str(caught.value).startswith(f"agent manifest {at}: ")


@pytest.mark.parametrize(
    "data",
    [b"", b"[]", b"\xff", b'{"schema": "vedette.agent/v1", "schema": "vedette.agent/v1"}', b"{"],
)
def test_unparseable_manifests_are_refused(data):
    with pytest.raises(ManifestError) as caught:
        AgentManifest.from_bytes(data)
    assert caught.value.at == "$"
    assert isinstance(caught.value, PolicyError)
    assert isinstance(caught.value, ValueError)


def test_file_errors_name_the_file(tmp_path):
    path = tmp_path / "agent.json"
    path.write_text(json.dumps({**EXAMPLE, "tools": 3}))
    with pytest.raises(ManifestError) as caught:
        load_agent_manifest(path)
    assert str(caught.value).startswith(f"{path}: agent manifest tools: ")
    assert caught.value.at == "tools"


def test_oversized_manifest_is_refused():
    with pytest.raises(ManifestError, match="bound"):
        AgentManifest.from_bytes(b" " * (1024 * 1024 + 1))
