"""The MCP gateway over Streamable HTTP, with real MCP peers: ``vedette serve``
with two ``[[mcp.servers]]`` (the test upstream on stdio, and another copy of
it over Streamable HTTP), and the SDK's own client in both protocol eras
(docs/mcp.md, "Over HTTP")."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

pytest.importorskip("mcp")

import anyio
from live_server import operator_client, wait_for_port, wait_until_healthy
from mcp import Client, types
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.exceptions import MCPError
from mcp_clients import Heard, ProgressLog, TheClient, texts
from mcp_upstream import (
    EMPTY_SCHEMA,
    RESOURCE_TEXT,
    RESOURCE_URI,
    TEXT_SCHEMA,
    TOOLS,
    TOUCHED_TEXT,
)
from registry_server import free_port
from runtime_fixtures import write_release

from vedette.config import load_config, token_digest
from vedette.mcp.asks import EVENT as CLIENT_REQUEST_EVENT
from vedette.mcp.errors import DENIED, TOOL_FAILED
from vedette.mcp.passthrough import PROMPT_GET_EVENT, RESOURCE_READ_EVENT
from vedette.mcp.pinning import MISMATCH_EVENT
from vedette.mcp.upstream import send_subscription
from vedette.store import SegmentStore

pytestmark = pytest.mark.timeout(180)

UPSTREAM = Path(__file__).parent / "mcp_upstream.py"
VEDETTE = Path(sys.executable).parent / "vedette"
AGENT = "mcp-agent"
TOKEN = "desktop-token"
OTHER_TOKEN = "laptop-token"
# A caller whose agent has no usable release (its policy does not compile).
STRANDED_TOKEN = "stranded-token"
STRANDED_AGENT = "stranded-agent"
MODERN = "2026-07-28"

POLICY = """
package vedette

import rego.v1

default decision := {"allow": false, "reason": "no rule allows this call"}

decision := {"allow": true, "reason": "allowed over /mcp"} if {
    input.tool in {
        "local.echo", "remote.echo", "fail", "hang", "sample", "local.progress", "remote.progress"
    }
}

decision := {"allow": false, "reason": "secrets stay where they are"} if {
    input.tool == "secret.read"
}

# Two values for one complete rule: evaluating a call to broken fails.
decision := {"allow": true, "reason": "one"} if input.tool == "broken"

decision := {"allow": true, "reason": "two"} if input.tool == "broken"
"""


@dataclass(frozen=True)
class Node:
    url: str
    config: Path
    local_log: Path
    remote_log: Path
    operator: Path

    @staticmethod
    def calls(log: Path, key: str = "tool") -> list[str]:
        """What an upstream logged: its tool calls, or its ``resource`` reads
        and ``prompt`` fetches."""
        if not log.exists():
            return []
        entries = [json.loads(line) for line in log.read_text().splitlines()]
        return [entry[key] for entry in entries if key in entry]

    def records(self) -> list[dict]:
        store = SegmentStore.open_read_only(load_config(self.config).store_dir)
        try:
            return [json.loads(record) for _, record in store.iter_records()]
        finally:
            store.close()

    def of_decision(self, decision_id: str) -> list[dict]:
        return [r for r in self.records() if r.get("decision_id") == decision_id]

    def decision_and_outcome(self, decision_id: str) -> list[dict]:
        """The records of an allowed call, once its outcome is written: the
        node writes an outcome with the next commit or 10 ms after the
        answer (docs/contracts.md), so a reader may have to wait a moment."""
        deadline = time.monotonic() + 10
        while True:
            found = self.of_decision(decision_id)
            if len(found) > 1 or time.monotonic() > deadline:
                return found
            time.sleep(0.02)


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    tmp_path = tmp_path_factory.mktemp("mcp-http")
    declared = [
        ("local.echo", TEXT_SCHEMA, TOOLS["echo"][0]),
        ("remote.echo", TEXT_SCHEMA, TOOLS["echo"][0]),
        ("secret.read", EMPTY_SCHEMA, TOOLS["secret.read"][0]),
        ("fail", EMPTY_SCHEMA, TOOLS["fail"][0]),
        ("broken", EMPTY_SCHEMA, TOOLS["broken"][0]),
        ("hang", EMPTY_SCHEMA, TOOLS["hang"][0]),
        ("sample", TEXT_SCHEMA, TOOLS["sample"][0]),
        ("local.progress", EMPTY_SCHEMA, TOOLS["progress"][0]),
        ("remote.progress", EMPTY_SCHEMA, TOOLS["progress"][0]),
        ("drifted", EMPTY_SCHEMA, "What this tool did when it was reviewed."),
    ]
    agent = write_release(tmp_path / "releases", AGENT, declared, POLICY)
    stranded = write_release(
        tmp_path / "releases", STRANDED_AGENT, declared, "package vedette\n\nthis is not rego"
    )
    local_log, remote_log = tmp_path / "local-calls.jsonl", tmp_path / "remote-calls.jsonl"
    remote_port, port = free_port(), free_port()
    remote = subprocess.Popen(
        [sys.executable, str(UPSTREAM), str(remote_log), "--http", str(remote_port),
         "--tools", "echo,progress"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    config = tmp_path / "vedette.toml"
    operator = tmp_path / "operator.sock"
    config.write_text(
        f"""
node_id = "mcp-http-node"
state_dir = "{tmp_path / "state"}"

[listen]
host = "127.0.0.1"
port = {port}
max_body_bytes = 65536

[operator]
socket = "{operator}"

[tools]
timeout_s = 5

[[callers]]
id = "desktop"
agent = "{AGENT}"
token_sha256 = "{token_digest(TOKEN)}"

[[callers]]
id = "laptop"
agent = "{AGENT}"
token_sha256 = "{token_digest(OTHER_TOKEN)}"

[[callers]]
id = "stranded"
agent = "{STRANDED_AGENT}"
token_sha256 = "{token_digest(STRANDED_TOKEN)}"

[[agents]]
name = "{AGENT}"
manifest = "{agent.manifest}"
bundle = "{agent.bundle}"
unsigned = true

[[agents]]
name = "{STRANDED_AGENT}"
manifest = "{stranded.manifest}"
bundle = "{stranded.bundle}"
unsigned = true

[[mcp.servers]]
name = "local"
command = "{sys.executable}"
args = ["{UPSTREAM}", "{local_log}"]
prompts = true
sampling = true

[[mcp.servers]]
name = "remote"
url = "http://127.0.0.1:{remote_port}/mcp"
resources = true
prompts = true
"""
    )
    wait_for_port(remote_port, remote)
    server = subprocess.Popen(
        [str(VEDETTE), "serve", "--config", str(config)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(url, server)
        yield Node(url, config, local_log, remote_log, operator)
    finally:
        stop(server, remote)


def stop(*processes: subprocess.Popen[str]) -> None:
    """SIGTERM to each, then each waited for (killed after 30 s)."""
    for process in processes:
        process.send_signal(signal.SIGTERM)
    for process in processes:
        try:
            process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


@asynccontextmanager
async def client(
    node: Node, mode: str, token: str = TOKEN, **options: Any
) -> AsyncIterator[Client]:
    """The SDK's client of ``/mcp``, as ``token``'s caller, in protocol
    ``mode`` (``options``: more arguments of the SDK's ``Client``)."""
    async with create_mcp_http_client(headers={"Authorization": f"Bearer {token}"}) as http:
        transport = streamable_http_client(f"{node.url}/mcp", http_client=http)
        async with Client(transport, mode=mode, **options) as session:
            yield session


async def listed(session: Client) -> set[str]:
    return {tool.name for tool in (await session.list_tools()).tools}


@pytest.mark.parametrize("mode", ["legacy", MODERN])
def test_both_eras_list_pinned_tools_and_every_call_goes_through_the_gate(node, mode):
    seen: dict[str, object] = {}

    async def main() -> None:
        async with client(node, mode) as session:
            seen["version"] = session.protocol_version
            seen["tools"] = await listed(session)
            seen["local"] = texts(await session.call_tool("local.echo", {"text": "to local"}))
            seen["remote"] = texts(await session.call_tool("remote.echo", {"text": "to remote"}))
            for tool in ("secret.read", "broken"):
                with pytest.raises(MCPError) as caught:
                    await session.call_tool(tool, {})
                seen[tool] = caught.value

    local_before, remote_before = Node.calls(node.local_log), Node.calls(node.remote_log)
    anyio.run(main)
    assert (seen["version"] == MODERN) == (mode == MODERN)
    # Colliding names are prefixed with the server's name (echo is also a tool
    # of the node itself); undeclared tools and the drifted one are not listed.
    assert seen["tools"] == {
        "local.echo", "remote.echo", "secret.read", "fail", "broken", "hang", "sample",
        "local.progress", "remote.progress",
    }  # fmt: skip
    assert seen["local"] == ["to local"]
    assert seen["remote"] == ["to remote"]
    assert Node.calls(node.local_log)[len(local_before) :] == ["echo"]
    assert Node.calls(node.remote_log)[len(remote_before) :] == ["echo"]
    for tool, words in (("secret.read", "secrets stay"), ("broken", "")):
        error = seen[tool]
        assert isinstance(error, MCPError)
        assert error.code == DENIED, error
        assert error.data["decision"] == "deny"
        assert words in error.data["reason"]
        (record,) = node.of_decision(error.data["decision_id"])
        assert (record["outcome"], record["tool"]) == ("deny", tool)
        assert record["caller"] == "desktop"


def test_an_upstream_error_result_is_passed_on_and_recorded(node):
    answers: list[types.CallToolResult] = []

    async def main() -> None:
        async with client(node, MODERN) as session:
            answers.append(await session.call_tool("fail", {}))

    anyio.run(main)
    (answer,) = answers
    assert answer.is_error
    assert texts(answer) == ["it failed"]
    decisions = [r for r in node.records() if r.get("tool") == "fail" and r["kind"] == "decision"]
    found = node.decision_and_outcome(decisions[-1]["decision_id"])
    assert [r["kind"] for r in found] == ["decision", "tool_outcome"]
    assert found[1]["error"]["type"] == "is_error"


def test_a_tool_that_differs_from_the_manifest_is_hidden_and_recorded(node):
    events = [r for r in node.records() if r.get("kind") == MISMATCH_EVENT]
    fields = {(e["tool"], e["field"]) for e in events}
    assert ("drifted", "description") in fields
    assert ("hidden", "undeclared") in fields
    with operator_client(node.operator) as operator:
        status = operator.get("/v1/status").json()
        metrics = operator.get("/metrics").text
    for field in ("description", "undeclared"):
        line = f'vedette_mcp_tool_mismatches_total{{agent="{AGENT}",field="{field}"}} '
        assert line in metrics, metrics
        assert float(metrics.split(line, 1)[1].split()[0]) >= 1
    mcp = status["mcp"]
    assert mcp["servers"]["local"]["connected"]
    assert mcp["servers"]["remote"]["connected"]
    assert mcp["refused"][AGENT]["drifted"] == "description"


def test_requests_without_a_valid_token_are_refused_and_recorded(node):
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    for headers in ({}, {"Authorization": "Bearer not-a-token"}):
        answer = httpx.post(f"{node.url}/mcp", json=body, headers=headers, timeout=10)
        assert answer.status_code == 401
        assert answer.headers["www-authenticate"] == "Bearer"
        assert answer.json()["error"]["code"] == -32600
    refused = [r for r in node.records() if r.get("outcome") == "unauthenticated"]
    assert refused, "unauthenticated requests to /mcp are recorded"


def test_a_session_belongs_to_the_caller_that_opened_it(node):
    accept = {"Accept": "application/json, text/event-stream"}
    initialize = {
        "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                   "clientInfo": {"name": "raw", "version": "1"}},
    }  # fmt: skip
    opened = httpx.post(
        f"{node.url}/mcp",
        json=initialize,
        headers={**accept, "Authorization": f"Bearer {TOKEN}"},
        timeout=10,
    )
    assert opened.status_code == 200, opened.text
    session = opened.headers["mcp-session-id"]
    listing = {"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {}}
    common = {**accept, "mcp-session-id": session, "mcp-protocol-version": "2025-06-18"}
    stolen = httpx.post(
        f"{node.url}/mcp",
        json=listing,
        headers={**common, "Authorization": f"Bearer {OTHER_TOKEN}"},
        timeout=10,
    )
    assert stolen.status_code == 404
    own = httpx.post(
        f"{node.url}/mcp", json=listing, headers={**common, "Authorization": f"Bearer {TOKEN}"},
        timeout=10,
    )  # fmt: skip
    assert own.status_code == 200


def modern_headers(method: str, **extra: str) -> dict[str, str]:
    return {
        "Authorization": f"Bearer {TOKEN}",
        "Accept": "application/json, text/event-stream",
        "Content-Type": "application/json",
        "mcp-protocol-version": MODERN,
        "mcp-method": method,
        **extra,
    }


def modern_body(method: str, params: dict, id_: int = 1) -> dict:
    meta = {
        "io.modelcontextprotocol/protocolVersion": MODERN,
        "io.modelcontextprotocol/clientCapabilities": {},
    }
    return {"jsonrpc": "2.0", "id": id_, "method": method, "params": {**params, "_meta": meta}}


def test_malformed_oversize_unknown_and_mismatched_requests_get_errors(node):
    url = f"{node.url}/mcp"
    before = Node.calls(node.local_log)
    # Not JSON.
    bad = httpx.post(url, content=b"{not json", headers=modern_headers("tools/list"), timeout=10)
    assert bad.status_code == 400
    # Over the listener's body limit.
    big = modern_body("tools/call", {"name": "local.echo", "arguments": {"text": "x" * 70000}})
    over = httpx.post(
        url, json=big, headers=modern_headers("tools/call", **{"mcp-name": "local.echo"}),
        timeout=10,
    )  # fmt: skip
    assert over.status_code == 413
    # A method nobody serves.
    unknown = httpx.post(
        url, json=modern_body("tasks/unknown", {}),
        headers=modern_headers("tasks/unknown"), timeout=10,
    )  # fmt: skip
    assert unknown.json()["error"]["code"] == -32601
    # The Mcp-Method header says one thing, the body another.
    call = modern_body("tools/call", {"name": "local.echo", "arguments": {"text": "sneaky"}})
    mismatch = httpx.post(url, json=call, headers=modern_headers("tools/list"), timeout=10)
    assert mismatch.status_code == 400
    assert mismatch.json()["error"]["code"] == -32020
    # A batch of calls.
    batch = [call, {**call, "id": 2}]
    batched = httpx.post(
        url, json=batch, headers=modern_headers("tools/call", **{"mcp-name": "local.echo"}),
        timeout=10,
    )  # fmt: skip
    assert batched.status_code >= 400
    assert Node.calls(node.local_log) == before  # nothing of these reached the upstream
    assert httpx.get(f"{node.url}/v1/health", timeout=10).status_code == 200
    good = httpx.post(
        url, json=call, headers=modern_headers("tools/call", **{"mcp-name": "local.echo"}),
        timeout=10,
    )  # fmt: skip
    assert good.status_code == 200, good.text
    assert Node.calls(node.local_log)[len(before) :] == ["echo"]


def test_a_caller_whose_agent_has_no_active_release_is_denied_and_sees_no_tools(node):
    seen: dict[str, object] = {}

    async def main() -> None:
        async with client(node, MODERN, STRANDED_TOKEN) as session:
            seen["tools"] = await listed(session)
            with pytest.raises(MCPError) as caught:
                await session.call_tool("local.echo", {"text": "anyone?"})
            seen["error"] = caught.value

    before = Node.calls(node.local_log)
    anyio.run(main)
    assert seen["tools"] == set()
    error = seen["error"]
    assert isinstance(error, MCPError)
    assert error.code == DENIED
    assert "no active release" in error.data["reason"]
    assert Node.calls(node.local_log) == before  # the upstream never saw it
    (record,) = node.of_decision(error.data["decision_id"])
    assert (record["outcome"], record["caller"]) == ("deny", "stranded")


@pytest.mark.parametrize("mode", ["legacy", MODERN])
def test_resources_and_prompts_pass_from_the_servers_that_allow_them(node, mode):
    seen: dict[str, object] = {}

    async def main() -> None:
        async with client(node, mode) as session:
            seen["prompts"] = {p.name for p in (await session.list_prompts()).prompts}
            prompt = await session.get_prompt("remote.greet", {"name": "Ada"})
            seen["prompt"] = prompt.messages[0].content.text
            seen["resources"] = [str(r.uri) for r in (await session.list_resources()).resources]
            read = await session.read_resource(RESOURCE_URI)
            seen["text"] = read.contents[0].text
        async with client(node, mode, STRANDED_TOKEN) as session:
            with pytest.raises(MCPError) as caught:
                await session.list_prompts()
            seen["stranded"] = caught.value

    local = Node.calls(node.local_log, "prompt"), Node.calls(node.local_log, "resource")
    remote = Node.calls(node.remote_log, "prompt"), Node.calls(node.remote_log, "resource")
    anyio.run(main)
    # Both servers list greet: each is prefixed. Only remote allows resources.
    assert seen["prompts"] == {"local.greet", "remote.greet"}
    assert seen["prompt"] == "Say hello to Ada."
    assert seen["resources"] == [RESOURCE_URI]
    assert seen["text"] == RESOURCE_TEXT
    assert Node.calls(node.remote_log, "prompt")[len(remote[0]) :] == ["greet"]
    assert Node.calls(node.remote_log, "resource")[len(remote[1]) :] == [RESOURCE_URI]
    assert (Node.calls(node.local_log, "prompt"), Node.calls(node.local_log, "resource")) == local
    stranded = seen["stranded"]
    assert isinstance(stranded, MCPError)
    assert "no active release" in stranded.message
    fetched = [r for r in node.records() if r.get("kind") == PROMPT_GET_EVENT]
    assert (fetched[-1]["caller"], fetched[-1]["server"], fetched[-1]["prompt"]) == (
        "desktop",
        "remote",
        "remote.greet",
    )
    read_events = [r for r in node.records() if r.get("kind") == RESOURCE_READ_EVENT]
    assert (read_events[-1]["server"], read_events[-1]["uri"]) == ("remote", RESOURCE_URI)


@pytest.mark.parametrize("mode", ["legacy", MODERN])
def test_an_allowed_servers_sampling_reaches_the_client_in_both_eras(node, mode):
    model = TheClient("from the model")
    got: list[str] = []

    async def main() -> None:
        async with client(node, mode, sampling_callback=model.sample) as session:
            got.extend(texts(await session.call_tool("sample", {"text": f"over {mode}"})))

    before = [r for r in node.records() if r.get("kind") == CLIENT_REQUEST_EVENT]
    anyio.run(main)
    records = [r for r in node.records() if r.get("kind") == CLIENT_REQUEST_EVENT][len(before) :]
    # A handshake-era client is asked on the call's stream; a 2026-07-28 one
    # gets the question as the call's input-required result, and answers it
    # by trying the call again.
    assert model.asked == [f"sample: over {mode}"]
    (answer,) = got
    assert json.loads(answer) == {"sampled": "from the model"}
    assert [r["stage"] for r in records] == ["asked", "answered"]
    assert all(
        (r["server"], r["caller"], r["tool"]) == ("local", "desktop", "sample") for r in records
    )
    with operator_client(node.operator) as operator:
        metrics = operator.get("/metrics").text
    line = 'vedette_mcp_client_requests_total{method="sampling/createMessage",outcome="answered"} '
    assert line in metrics, metrics
    assert float(metrics.split(line, 1)[1].split()[0]) >= 1


def test_a_2026_07_28_call_is_decided_once_and_resumed_only_by_its_caller(node):
    got: dict[str, Any] = {}
    model = TheClient("resumed")

    async def main() -> None:
        async with (
            client(node, MODERN, sampling_callback=model.sample) as desktop,
            client(node, MODERN, OTHER_TOKEN, sampling_callback=model.sample) as laptop,
        ):
            first = await desktop.session.call_tool(
                "sample", {"text": "hold on"}, allow_input_required=True, allow_claimed=False
            )
            assert isinstance(first, types.InputRequiredResult)
            (key,) = first.input_requests
            got["asked"] = first.input_requests[key]
            answer = await model.sample(None, got["asked"].params)
            for name, session, state in (
                ("other caller", laptop, first.request_state),
                ("forged", desktop, "not-a-state-vedette-gave"),
            ):
                with pytest.raises(MCPError) as caught:
                    await session.session.call_tool(
                        "sample",
                        {"text": "hold on"},
                        input_responses={key: answer},
                        request_state=state,
                        allow_input_required=True,
                        allow_claimed=False,
                    )
                got[name] = caught.value.code
            final = await desktop.session.call_tool(
                "sample",
                {"text": "hold on"},
                input_responses={key: answer},
                request_state=first.request_state,
                allow_input_required=True,
                allow_claimed=False,
            )
            got["final"] = texts(final)  # type: ignore[arg-type]

    decisions = [r for r in node.records() if r.get("kind") == "decision"]
    anyio.run(main)
    assert isinstance(got["asked"], types.CreateMessageRequest)
    assert got["other caller"] == types.INVALID_PARAMS
    assert got["forged"] == types.INVALID_PARAMS
    assert [json.loads(text) for text in got["final"]] == [{"sampled": "resumed"}]
    new = [r for r in node.records() if r.get("kind") == "decision"][len(decisions) :]
    assert [(r["tool"], r["caller"], r["outcome"]) for r in new] == [("sample", "desktop", "allow")]


def test_a_servers_request_is_refused_while_two_callers_have_calls_there(node):
    model = TheClient("should not be asked")
    got: list[str] = []

    async def main() -> None:
        async with (
            client(node, "legacy", OTHER_TOKEN) as laptop,
            client(node, "legacy", sampling_callback=model.sample) as desktop,
            anyio.create_task_group() as tasks,
        ):
            hangs_before = Node.calls(node.local_log).count("hang")
            tasks.start_soon(laptop.call_tool, "hang", {})
            with anyio.fail_after(10):
                while Node.calls(node.local_log).count("hang") == hangs_before:
                    await anyio.sleep(0.02)
            # The local server now has calls of two callers in flight: whose
            # question its request is cannot be told, so nobody is asked.
            got.extend(texts(await desktop.call_tool("sample", {"text": "whose?"})))
            tasks.cancel_scope.cancel()

    before = [r for r in node.records() if r.get("kind") == CLIENT_REQUEST_EVENT]
    anyio.run(main)
    assert model.asked == []
    (answer,) = got
    reason = "calls of more than one caller are in flight on this server"
    assert json.loads(answer) == {"ask_refused": f"refused: {reason}"}
    records = [r for r in node.records() if r.get("kind") == CLIENT_REQUEST_EVENT][len(before) :]
    assert [(r["stage"], r["reason"], r["server"]) for r in records] == [
        ("refused", reason, "local")
    ]


@pytest.mark.parametrize("mode", ["legacy", MODERN])
@pytest.mark.parametrize("server", ["local", "remote"])
def test_the_upstreams_progress_reaches_a_client_over_http_in_both_eras(node, mode, server):
    """From a stdio server (local) and a Streamable HTTP one (remote)."""
    report = ProgressLog()
    got: list[str] = []

    async def main() -> None:
        async with client(node, mode) as session:
            result = await session.call_tool(f"{server}.progress", {}, progress_callback=report)
            got.extend(texts(result))
            await report.wait_for(2)

    log = node.local_log if server == "local" else node.remote_log
    before = Node.calls(log, "progress_token")
    anyio.run(main)
    assert got == ["done"]
    assert report.reports == [(1.0, 2.0, "step 1"), (2.0, 2.0, "step 2")]
    assert Node.calls(log, "progress_token")[len(before) :] == [True]


def write_lone_config(
    tmp_path: Path, agent: Any, port: int, upstream_port: int, server_entry: str
) -> Path:
    """The configuration of a node of its own (:func:`lone_node`)."""
    config = tmp_path / "vedette.toml"
    config.write_text(
        f"""
node_id = "mcp-lone-node"
state_dir = "{tmp_path / "state"}"

[listen]
host = "127.0.0.1"
port = {port}

[[callers]]
id = "desktop"
agent = "{AGENT}"
token_sha256 = "{token_digest(TOKEN)}"

[[agents]]
name = "{AGENT}"
manifest = "{agent.manifest}"
bundle = "{agent.bundle}"
unsigned = true

[[mcp.servers]]
name = "modern"
url = "http://127.0.0.1:{upstream_port}/mcp"
{server_entry}
"""
    )
    return config


@contextmanager
def lone_node(
    tmp_path: Path,
    declared: list[tuple[str, Any, str]],
    allowed: list[str],
    upstream_options: list[str],
    server_entry: str,
    env: dict[str, str] | None = None,
) -> Iterator[Node]:
    """A node of its own in front of one HTTP upstream (``upstream_options``:
    more arguments of ``tests/mcp_upstream.py``; ``server_entry``: more lines
    of its ``[[mcp.servers]]`` entry, named ``modern``), whose agent declares
    ``declared`` and whose policy allows the tools ``allowed``; ``env``: more
    variables of the node's environment."""
    policy = f"""
package vedette

import rego.v1

default decision := {{"allow": false, "reason": "no rule allows this call"}}

decision := {{"allow": true, "reason": "allowed"}} if input.tool in {json.dumps(allowed)}
"""
    agent = write_release(tmp_path / "releases", AGENT, declared, policy)
    log, upstream_port, port = tmp_path / "upstream-calls.jsonl", free_port(), free_port()
    upstream = subprocess.Popen(
        [sys.executable, str(UPSTREAM), str(log), "--http", str(upstream_port), *upstream_options],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    config = write_lone_config(tmp_path, agent, port, upstream_port, server_entry)
    wait_for_port(upstream_port, upstream)
    server = subprocess.Popen(
        [str(VEDETTE), "serve", "--config", str(config)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, **(env or {})},
    )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until_healthy(url, server)
        yield Node(url, config, log, log, tmp_path / "unused.sock")
    finally:
        stop(server, upstream)


async def served_tools(session: Client) -> set[str]:
    """The tools listed once the node has reached its upstream."""
    with anyio.fail_after(30):
        while not (tools := await listed(session)):
            await anyio.sleep(0.1)
    return tools


def test_an_http_server_of_2026_07_28_alone_is_served_on_that_revision(tmp_path):
    """Discovered after it refuses the handshake: its calls and its input
    requests go on 2026-07-28, through the same gate and records."""
    # echo is also a tool of the node itself: the server's is modern.echo.
    declared = [
        ("modern.echo", TEXT_SCHEMA, TOOLS["echo"][0]),
        ("sample", TEXT_SCHEMA, TOOLS["sample"][0]),
    ]
    got: dict[str, Any] = {}
    model = TheClient("from the model")

    async def main(node: Node) -> None:
        async with client(node, "legacy", sampling_callback=model.sample) as session:
            got["tools"] = await served_tools(session)  # once discovery followed the refusal
            got["echo"] = texts(await session.call_tool("modern.echo", {"text": "hello"}))
            got["sample"] = texts(await session.call_tool("sample", {"text": "news"}))

    options = ["--tools", "echo,sample", "--modern-only"]
    with lone_node(
        tmp_path, declared, ["modern.echo", "sample"], options, "sampling = true"
    ) as node:
        anyio.run(main, node)
    assert got["tools"] == {"modern.echo", "sample"}
    assert got["echo"] == ["hello"]
    assert [json.loads(text) for text in got["sample"]] == [{"sampled": "from the model"}]
    log = node.local_log
    assert set(Node.calls(log, "era")) == {"2026-07-28"}
    assert Node.calls(log) == ["echo", "sample", "sample"]
    records = [r for r in node.records() if r.get("kind") == CLIENT_REQUEST_EVENT]
    assert [(r["stage"], r["server"]) for r in records] == [
        ("asked", "modern"),
        ("answered", "modern"),
    ]


@pytest.mark.parametrize("upstream_era", ["handshake", MODERN])
def test_an_http_client_watching_a_resource_is_told_of_its_change(tmp_path, upstream_era):
    """On its session's own stream: the watched resource updated, and the
    resource and prompt lists changed; the HTTP server was subscribed while
    the client watched."""
    declared = [("touch", EMPTY_SCHEMA, TOOLS["touch"][0])]
    heard = Heard()
    got: dict[str, Any] = {}

    async def main(node: Node) -> None:
        async with client(node, "legacy", message_handler=heard) as session:
            await served_tools(session)
            await send_subscription(session.session, RESOURCE_URI, subscribe=True)
            await session.call_tool("touch", {})
            await heard.wait_for(
                types.ResourceUpdatedNotification,
                types.ResourceListChangedNotification,
                types.PromptListChangedNotification,
            )
            got["text"] = (await session.read_resource(RESOURCE_URI)).contents[0].text

    options = ["--tools", "touch"] + (["--modern-only"] if upstream_era == MODERN else [])
    with lone_node(
        tmp_path, declared, ["touch"], options, "resources = true\nprompts = true"
    ) as node:
        anyio.run(main, node)
    assert got["text"] == TOUCHED_TEXT
    if upstream_era == "handshake":
        assert Node.calls(node.local_log, "subscribed") == [RESOURCE_URI]


def test_an_http_servers_request_during_a_call_reaches_the_client(tmp_path):
    """A handshake-era HTTP server asks during the call, on the call's own
    answer stream: the request reaches the session, and the answer the server."""
    declared = [("sample", TEXT_SCHEMA, TOOLS["sample"][0])]
    model = TheClient("from the model")
    got: dict[str, Any] = {}

    async def main(node: Node) -> None:
        async with client(node, "legacy", sampling_callback=model.sample) as session:
            await served_tools(session)
            got["sample"] = texts(await session.call_tool("sample", {"text": "news"}))

    with lone_node(
        tmp_path, declared, ["sample"], ["--tools", "sample"], "sampling = true"
    ) as node:
        anyio.run(main, node)
    assert [json.loads(text) for text in got["sample"]] == [{"sampled": "from the model"}]
    assert model.asked == ["sample: news"]
    records = [r for r in node.records() if r.get("kind") == CLIENT_REQUEST_EVENT]
    assert [r["stage"] for r in records] == ["asked", "answered"]


def test_an_http_servers_call_that_never_answers_fails_in_time_and_is_cancelled(tmp_path):
    declared = [("hang", EMPTY_SCHEMA, TOOLS["hang"][0])]
    got: dict[str, Any] = {}

    async def main(node: Node) -> None:
        async with client(node, "legacy") as session:
            await served_tools(session)
            with pytest.raises(MCPError) as caught:
                await session.call_tool("hang", {})
            got["error"] = caught.value
            with anyio.fail_after(10):  # the server was told the call is over
                while Node.calls(node.local_log, "cancelled") != ["hang"]:
                    await anyio.sleep(0.05)

    with lone_node(tmp_path, declared, ["hang"], ["--tools", "hang"], "timeout_s = 1") as node:
        anyio.run(main, node)
    error = got["error"]
    assert error.code == TOOL_FAILED
    assert error.data["error"]["type"] == "timeout"


HEADER_ENTRY = 'headers = { X-Tenant = "blue" }\nheaders_env = { X-Upstream-Key = "UPSTREAM_KEY" }'


def test_an_http_server_gets_the_headers_its_entry_names(tmp_path):
    """A server that answers 401 without its key is reached with the key
    from the node's environment, on the session and on the calls."""
    declared = [("modern.echo", TEXT_SCHEMA, TOOLS["echo"][0])]
    options = ["--tools", "echo", "--require-header", "x-upstream-key=sesame"]
    got: dict[str, Any] = {}

    async def main(node: Node) -> None:
        async with client(node, "legacy") as session:
            got["tools"] = await served_tools(session)
            got["echo"] = texts(await session.call_tool("modern.echo", {"text": "hello"}))

    with lone_node(
        tmp_path, declared, ["modern.echo"], options, HEADER_ENTRY, {"UPSTREAM_KEY": "sesame"}
    ) as node:
        anyio.run(main, node)
    assert got == {"tools": {"modern.echo"}, "echo": ["hello"]}
    assert Node.calls(node.local_log, "unauthorized") == []


def test_a_header_whose_variable_is_unset_stops_the_node_at_start(tmp_path):
    agent = write_release(tmp_path / "releases", AGENT, [], "package vedette")
    config = write_lone_config(tmp_path, agent, free_port(), free_port(), HEADER_ENTRY)
    env = {key: value for key, value in os.environ.items() if key != "UPSTREAM_KEY"}
    done = subprocess.run(
        [str(VEDETTE), "serve", "--config", str(config)],
        capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "$UPSTREAM_KEY, which is not set" in done.stderr
