"""The stdio MCP gateway with real MCP peers: the SDK's stdio client launches
``vedette mcp … -- python tests/mcp_upstream.py LOG``, an SDK server that logs
every tools/call it receives (docs/mcp.md)."""

from __future__ import annotations

import json
import os
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("mcp")

import anyio
from click.testing import CliRunner
from mcp import Client, types
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.shared.exceptions import MCPError
from mcp.shared.subscriptions import (
    PromptsListChanged,
    ResourcesListChanged,
    ResourceUpdated,
    ToolsListChanged,
)
from mcp_clients import Heard, ProgressLog, TheClient, texts
from mcp_upstream import (
    DRAFTS_TEMPLATE,
    EMPTY_SCHEMA,
    RESOURCE_TEXT,
    RESOURCE_URI,
    RUG_PULLED_ECHO,
    SECOND_URI,
    TEXT_SCHEMA,
    TOOLS,
    TOUCHED_TEXT,
)
from runtime_fixtures import write_release

from vedette.cli import main as cli
from vedette.config import load_config, token_digest
from vedette.hashing import sha256
from vedette.mcp.asks import EVENT as CLIENT_REQUEST_EVENT
from vedette.mcp.errors import DENIED, TOOL_FAILED
from vedette.mcp.passthrough import PROMPT_GET_EVENT, RESOURCE_READ_EVENT, _fits
from vedette.mcp.pinning import MISMATCH_EVENT, digest
from vedette.mcp.upstream import send_subscription
from vedette.store import SegmentStore

pytestmark = pytest.mark.timeout(120)

UPSTREAM = Path(__file__).parent / "mcp_upstream.py"
AGENT = "mcp-agent"
CALLER = "desktop"
REVIEWED_DRIFTED = "What this tool did when it was reviewed."

POLICY = """
package vedette

import rego.v1

default decision := {"allow": false, "reason": "no rule allows this call"}

decision := {"allow": true, "reason": "allowed for the gateway tests"} if {
    input.tool in {
        "echo", "fail", "hidden", "drifted", "rug_pull", "slow", "broken", "hang",
        "sample", "elicit", "progress", "touch",
    }
}

decision := {"allow": false, "reason": "secrets stay where they are"} if {
    input.tool == "secret.read"
}

# A rule that fails evaluating (to_number of a word) for one echo text.
decision := {"allow": true, "reason": x} if {
    input.tool == "echo"
    input.args.text == "explode"
    x := to_number("not a number")
}
"""


@dataclass(frozen=True)
class Setup:
    config: Path
    log: Path

    def calls(self) -> list[str]:
        """The tools/call requests the upstream received, by tool name."""
        return self.logged("tool")

    def cancelled(self) -> list[str]:
        """The calls whose cancellation the upstream received."""
        return self.logged("cancelled")

    def records(self) -> list[dict]:
        store = SegmentStore.open_read_only(load_config(self.config).store_dir)
        try:
            return [json.loads(record) for _, record in store.iter_records()]
        finally:
            store.close()

    def of_decision(self, decision_id: str) -> list[dict]:
        return [r for r in self.records() if r.get("decision_id") == decision_id]

    def mismatches(self) -> list[dict]:
        return [r for r in self.records() if r.get("kind") == MISMATCH_EVENT]

    def logged(self, key: str) -> list[str]:
        """What the upstream logged under ``key`` (``tool``, ``cancelled``,
        ``resource``, ``prompt``)."""
        if not self.log.exists():
            return []
        entries = [json.loads(line) for line in self.log.read_text().splitlines()]
        return [entry[key] for entry in entries if key in entry]


@pytest.fixture
def setup(tmp_path: Path) -> Setup:
    declared = [
        (name, schema, description)
        for name, (description, schema) in TOOLS.items()
        if name not in ("hidden", "drifted")
    ]
    # The manifest fixed drifted's description when it was reviewed; the
    # upstream says something else now. hidden is not declared at all.
    declared.append(("drifted", EMPTY_SCHEMA, REVIEWED_DRIFTED))
    agent = write_release(tmp_path / "releases", AGENT, declared, POLICY)
    config = tmp_path / "vedette.toml"
    config.write_text(
        f"""
node_id = "mcp-test-node"
state_dir = "{tmp_path / "state"}"

[tools]
timeout_s = 5

[[tools.limits]]
name = "slow"
timeout_s = 0.5

[[callers]]
id = "{CALLER}"
agent = "{AGENT}"
token_sha256 = "{token_digest("unused")}"

[[agents]]
name = "{AGENT}"
manifest = "{agent.manifest}"
bundle = "{agent.bundle}"
unsigned = true
"""
    )
    return Setup(config, tmp_path / "upstream-calls.jsonl")


def gateway_command(setup: Setup, *options: str) -> StdioServerParameters:
    """``vedette mcp [options]`` in front of the test upstream."""
    return StdioServerParameters(
        command=sys.executable,
        args=[
            "-m",
            "vedette",
            "mcp",
            "--config",
            str(setup.config),
            "--caller",
            CALLER,
            *options,
            "--",
            sys.executable,
            str(UPSTREAM),
            str(setup.log),
        ],
        env={"PYTHONPATH": os.environ.get("PYTHONPATH", "")},
    )


@asynccontextmanager
async def connected(setup: Setup, *options: str, **client: Any) -> AsyncIterator[ClientSession]:
    """An MCP client session (``client``: more arguments of the SDK's
    ``ClientSession``) with ``vedette mcp [options]`` in front of the test upstream."""
    params = gateway_command(setup, *options)
    async with (
        stdio_client(params) as (read, write),
        ClientSession(read, write, **client) as session,
    ):
        await session.initialize()
        yield session


def run(
    setup: Setup,
    body: Callable[[ClientSession], Awaitable[None]],
    *options: str,
    **client: Any,
) -> None:
    async def main() -> None:
        async with connected(setup, *options, **client) as session:
            await body(session)

    anyio.run(main)


async def listed(session: ClientSession) -> dict[str, types.Tool]:
    return {tool.name: tool for tool in (await session.list_tools()).tools}


async def denied(session: ClientSession, tool: str, args: dict | None = None) -> dict:
    with pytest.raises(MCPError) as caught:
        await session.call_tool(tool, args or {})
    assert caught.value.code == DENIED, caught.value
    data = caught.value.data
    assert data["decision"] == "deny"
    return data


def test_allowed_call_reaches_the_upstream_and_records_decision_and_outcome(setup):
    answers: list[types.CallToolResult] = []

    async def body(session: ClientSession) -> None:
        tools = await listed(session)
        assert set(tools) == {
            "echo", "secret.read", "fail", "rug_pull", "slow", "broken", "hang", "sample", "elicit",
            "progress", "touch",
        }  # fmt: skip
        assert tools["echo"].description == TOOLS["echo"][0]
        assert tools["echo"].input_schema == TEXT_SCHEMA
        answers.append(await session.call_tool("echo", {"text": "hello"}))

    run(setup, body)
    (answer,) = answers
    assert not answer.is_error
    assert [c.text for c in answer.content if isinstance(c, types.TextContent)] == ["hello"]
    assert setup.calls() == ["echo"]
    decisions = [r for r in setup.records() if r.get("kind") == "decision"]
    (decision,) = decisions
    assert (decision["outcome"], decision["tool"]) == ("allow", "echo")
    found = setup.of_decision(decision["decision_id"])
    assert [r["kind"] for r in found] == ["decision", "tool_outcome"]
    assert found[1]["status"] == "ok"
    assert found[1]["output_digest"].startswith("sha256:")


def test_a_policy_denial_answers_the_deny_error_and_never_reaches_the_upstream(setup):
    answers: list[dict] = []

    async def body(session: ClientSession) -> None:
        answers.append(await denied(session, "secret.read"))

    run(setup, body)
    (data,) = answers
    assert data["reason"] == "secrets stay where they are"
    assert setup.calls() == []
    (record,) = setup.of_decision(data["decision_id"])
    assert (record["kind"], record["outcome"], record["tool"]) == (
        "decision",
        "deny",
        "secret.read",
    )


def test_a_policy_evaluation_error_denies_and_never_reaches_the_upstream(setup):
    answers: list[dict] = []

    async def body(session: ClientSession) -> None:
        answers.append(await denied(session, "echo", {"text": "explode"}))

    run(setup, body)
    (data,) = answers
    assert data["reason"].startswith("policy error"), data
    assert setup.calls() == []
    (record,) = setup.of_decision(data["decision_id"])
    assert (record["outcome"], record["tool"]) == ("deny", "echo")


def test_a_full_store_denies_and_the_upstream_is_not_called(setup):
    # A ceiling a few hundred calls fill, and no peer or archive to free it.
    with setup.config.open("a") as config:
        config.write("\n[store]\nceiling_bytes = 65536\n")
    answers: list[dict] = []
    allowed: list[int] = []

    async def body(session: ClientSession) -> None:
        for number in range(5_000):
            try:
                result = await session.call_tool("echo", {"text": f"call {number}"})
            except MCPError as err:
                answers.append({"code": err.code, **(err.data or {})})
                return
            assert result.content[0].text == f"call {number}"
            allowed.append(number)

    run(setup, body)
    (data,) = answers
    assert data["code"] == DENIED, data
    assert data["reason"].startswith("evidence could not be recorded (StoreFullError"), data
    assert allowed, "the store was full before the first call"
    # Every allowed call reached the upstream; the refused one did not.
    assert setup.calls() == ["echo"] * len(allowed)


def test_arguments_outside_the_manifest_schema_are_denied_before_the_upstream(setup):
    answers: list[dict] = []

    async def body(session: ClientSession) -> None:
        answers.append(await denied(session, "echo", {"nottext": 1}))

    run(setup, body)
    assert "schema" in answers[0]["reason"]
    assert setup.calls() == []


def test_an_undeclared_upstream_tool_is_hidden_and_denied(setup):
    answers: list[dict] = []

    async def body(session: ClientSession) -> None:
        assert "hidden" not in await listed(session)
        answers.append(await denied(session, "hidden"))

    run(setup, body)
    (data,) = answers
    assert "not declared" in data["reason"]
    assert setup.calls() == []
    (record,) = setup.of_decision(data["decision_id"])
    assert record["outcome"] == "deny"
    events = [r for r in setup.mismatches() if r["tool"] == "hidden"]
    assert [e["field"] for e in events] == ["undeclared"]


def test_a_tool_whose_description_differs_is_hidden_denied_and_recorded_once(setup):
    answers: list[dict] = []

    async def body(session: ClientSession) -> None:
        for _ in range(3):  # listing again does not report the same change again
            assert "drifted" not in await listed(session)
        answers.append(await denied(session, "drifted"))

    run(setup, body)
    (data,) = answers
    assert "description" in data["reason"]
    assert setup.calls() == []
    (event,) = [r for r in setup.mismatches() if r["tool"] == "drifted"]
    assert event["field"] == "description"
    assert event["old_digest"] == digest(REVIEWED_DRIFTED)
    assert event["new_digest"] == digest(TOOLS["drifted"][0])


def test_a_tool_changed_at_run_time_disappears_and_its_calls_are_denied(setup):
    answers: list[dict] = []
    heard = Heard()

    async def body(session: ClientSession) -> None:
        assert "echo" in await listed(session)
        await session.call_tool("rug_pull", {})
        # The client is told at once that its list changed, and lists again.
        await heard.wait_for(types.ToolListChangedNotification)
        assert "echo" not in await listed(session)
        answers.append(await denied(session, "echo", {"text": "hello"}))

    run(setup, body, message_handler=heard)
    (data,) = answers
    assert "description" in data["reason"]
    assert setup.calls() == ["rug_pull"]  # echo never reached the upstream
    (event,) = [r for r in setup.mismatches() if r["tool"] == "echo"]
    assert event["field"] == "description"
    assert event["old_digest"] == digest(TOOLS["echo"][0])
    assert event["new_digest"] == digest(RUG_PULLED_ECHO)


def test_an_upstream_error_result_is_passed_on_and_recorded(setup):
    answers: list[types.CallToolResult] = []

    async def body(session: ClientSession) -> None:
        answers.append(await session.call_tool("fail", {}))

    run(setup, body)
    (answer,) = answers
    assert answer.is_error
    assert [c.text for c in answer.content if isinstance(c, types.TextContent)] == ["it failed"]
    assert setup.calls() == ["fail"]
    (decision,) = [r for r in setup.records() if r.get("kind") == "decision"]
    found = setup.of_decision(decision["decision_id"])
    assert [r["kind"] for r in found] == ["decision", "tool_outcome"]
    assert (found[1]["status"], found[1]["error"]["type"]) == ("error", "is_error")
    assert "sha256:" in found[1]["error"]["message"]


def test_an_upstream_error_or_timeout_answers_the_tool_failed_error_and_is_recorded(setup):
    errors: dict[str, MCPError] = {}

    async def body(session: ClientSession) -> None:
        for tool in ("broken", "slow"):
            with pytest.raises(MCPError) as caught:
                await session.call_tool(tool, {})
            errors[tool] = caught.value

    run(setup, body)
    assert setup.calls() == ["broken", "slow"]
    expected = {"broken": ("upstream_error", "-32050"), "slow": ("timeout", "did not finish")}
    for tool, (kind, words) in expected.items():
        error = errors[tool]
        assert error.code == TOOL_FAILED
        assert (error.data["decision"], error.data["error"]["type"]) == ("allow", kind)
        assert words in error.data["error"]["message"]
        found = setup.of_decision(error.data["decision_id"])
        assert [r["kind"] for r in found] == ["decision", "tool_outcome"]
        assert (found[0]["outcome"], found[1]["status"]) == ("allow", "error")
        assert found[1]["error"]["type"] == kind


def test_an_unknown_caller_cannot_run(setup):
    result = CliRunner().invoke(
        cli, ["mcp", "--config", str(setup.config), "--caller", "nobody", "--", "true"]
    )
    assert result.exit_code == 2
    assert "caller 'nobody' is not in [[callers]]" in result.output


def test_without_the_mcp_sdk_the_command_says_what_to_install(setup, monkeypatch):
    monkeypatch.setitem(sys.modules, "mcp", None)
    result = CliRunner().invoke(
        cli, ["mcp", "--config", str(setup.config), "--caller", CALLER, "--", "true"]
    )
    assert result.exit_code == 2
    assert "pip install 'vedette[mcp]'" in result.output


def test_an_upstream_killed_mid_call_answers_an_error_and_is_restarted(setup):
    pids_file = Path(f"{setup.log}.pids")
    errors: list[MCPError] = []
    answers: list[types.CallToolResult] = []

    def pids() -> list[int]:
        return [int(line) for line in pids_file.read_text().split()] if pids_file.exists() else []

    async def body(session: ClientSession) -> None:
        (first,) = pids()

        async def kill_once_called() -> None:
            while "hang" not in setup.calls():
                await anyio.sleep(0.02)
            os.kill(first, signal.SIGKILL)

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(kill_once_called)
            with pytest.raises(MCPError) as caught:
                await session.call_tool("hang", {})
            errors.append(caught.value)
        # The upstream is started again; until it has listed its tools they are
        # not callable, then the next call is served.
        with anyio.fail_after(30):
            while len(pids()) < 2 or "echo" not in await listed(session):
                await anyio.sleep(0.05)
        answers.append(await session.call_tool("echo", {"text": "after the restart"}))

    run(setup, body)
    (error,) = errors
    assert error.code == TOOL_FAILED
    assert error.data["error"]["type"] == "upstream_error", error.data  # not a timeout
    found = setup.of_decision(error.data["decision_id"])
    assert [r["kind"] for r in found] == ["decision", "tool_outcome"]
    assert found[1]["error"]["type"] == "upstream_error"
    (answer,) = answers
    assert [c.text for c in answer.content if isinstance(c, types.TextContent)] == [
        "after the restart"
    ]
    assert setup.calls() == ["hang", "echo"]
    assert len(pids()) == 2


def test_a_cancelled_call_is_cancelled_upstream_and_recorded(setup):
    answers: list[types.CallToolResult] = []

    async def body(session: ClientSession) -> None:
        async with anyio.create_task_group() as tasks:

            async def call_then_give_up() -> None:
                await session.call_tool("hang", {})

            tasks.start_soon(call_then_give_up)
            with anyio.fail_after(20):
                while "hang" not in setup.calls():
                    await anyio.sleep(0.02)
            tasks.cancel_scope.cancel()
        # The gateway serves on.
        answers.append(await session.call_tool("echo", {"text": "still here"}))

    run(setup, body)
    (answer,) = answers
    assert [c.text for c in answer.content if isinstance(c, types.TextContent)] == ["still here"]
    decisions = [r for r in setup.records() if r.get("kind") == "decision"]
    (decision,) = [r for r in decisions if r["tool"] == "hang"]
    found = setup.of_decision(decision["decision_id"])
    assert [r["kind"] for r in found] == ["decision", "tool_outcome"]
    assert (found[1]["status"], found[1]["error"]["type"]) == ("error", "cancelled")
    assert setup.cancelled() == ["hang"]  # the upstream was told


def test_resources_and_prompts_are_refused_by_default_and_the_refusals_recorded(setup):
    codes: dict[str, int] = {}

    async def body(session: ClientSession) -> None:
        initialized = session.initialize_result
        assert initialized is not None
        assert initialized.capabilities.resources is None
        assert initialized.capabilities.prompts is None
        attempts = {
            "resources/list": session.list_resources(),
            "resources/read": session.read_resource(RESOURCE_URI),
            "prompts/get": session.get_prompt("greet", {"name": "Ada"}),
            "resources/subscribe": send_subscription(session, RESOURCE_URI, subscribe=True),
        }
        for method, attempt in attempts.items():
            with pytest.raises(MCPError) as caught:
                await attempt
            codes[method] = caught.value.code

    run(setup, body)
    assert set(codes.values()) == {types.METHOD_NOT_FOUND}
    assert setup.logged("resource") == []
    assert setup.logged("prompt") == []
    refused = sorted(
        r["reason"].split()[1] for r in setup.records() if "is not served" in r.get("reason", "")
    )
    assert refused == ["prompts/get", "resources/list", "resources/read", "resources/subscribe"]
    assert setup.logged("subscribed") == []
    assert {r["outcome"] for r in setup.records() if "is not served" in r.get("reason", "")} == {
        "deny"
    }


def test_allowed_resources_and_prompts_pass_and_each_is_recorded(setup):
    got: dict[str, object] = {}

    async def body(session: ClientSession) -> None:
        got["resources"] = [str(r.uri) for r in (await session.list_resources()).resources]
        read = await session.read_resource(RESOURCE_URI)
        got["text"] = read.contents[0].text
        got["prompts"] = [p.name for p in (await session.list_prompts()).prompts]
        prompt = await session.get_prompt("greet", {"name": "Ada"})
        got["prompt"] = prompt.messages[0].content.text

    run(setup, body, "--resources", "--prompts")
    assert got == {
        "resources": [RESOURCE_URI],
        "text": RESOURCE_TEXT,
        "prompts": ["greet"],
        "prompt": "Say hello to Ada.",
    }
    assert setup.logged("resource") == [RESOURCE_URI]
    assert setup.logged("prompt") == ["greet"]
    (read,) = [r for r in setup.records() if r.get("kind") == RESOURCE_READ_EVENT]
    assert (read["caller"], read["uri"], read["server"]) == (CALLER, RESOURCE_URI, "upstream")
    assert read["result_digest"].startswith("sha256:")
    assert read["result_bytes"] > 0
    (fetched,) = [r for r in setup.records() if r.get("kind") == PROMPT_GET_EVENT]
    assert (fetched["caller"], fetched["prompt"]) == (CALLER, "greet")


async def progress(progress: float, total: float | None, message: str | None) -> None:
    pass


def test_sampling_and_elicitation_are_refused_unless_allowed(setup):
    client = TheClient()
    got: list[list[str]] = []

    async def body(session: ClientSession) -> None:
        got.append(texts(await session.call_tool("sample", {"text": "the news"})))
        got.append(texts(await session.call_tool("elicit", {"text": "Proceed?"})))

    run(setup, body, **client.callbacks())
    # Neither reached the client: vedette did not advertise either to the
    # upstream, and answered both with the SDK's refusal.
    assert client.asked == []
    refused = setup.logged("ask_refused")
    assert refused == ["Sampling not supported", "Elicitation not supported"], refused
    assert [r for r in setup.records() if r.get("kind") == CLIENT_REQUEST_EVENT] == []
    assert all("ask_refused" in text for (text,) in got)


def test_allowed_sampling_and_elicitation_reach_the_client_and_are_recorded(setup):
    client = TheClient()
    got: list[list[str]] = []

    async def body(session: ClientSession) -> None:
        # The short way, then the SDK's way (a progress token takes that).
        got.append(texts(await session.call_tool("sample", {"text": "the news"})))
        got.append(
            texts(
                await session.call_tool("elicit", {"text": "Proceed?"}, progress_callback=progress)
            )
        )

    run(setup, body, "--sampling", "--elicitation", **client.callbacks())
    assert client.asked == ["sample: the news", "elicit: Proceed?"]
    assert setup.logged("sampled") == ["the model on 'the news'"]
    assert setup.logged("elicited") == [{"action": "accept", "content": {"answer": "yes"}}]
    assert [json.loads(text) for (text,) in got] == [
        {"sampled": "the model on 'the news'"},
        {"elicited": {"action": "accept", "content": {"answer": "yes"}}},
    ]
    records = [r for r in setup.records() if r.get("kind") == CLIENT_REQUEST_EVENT]
    assert [(r["method"], r["stage"], r["tool"]) for r in records] == [
        ("sampling/createMessage", "asked", "sample"),
        ("sampling/createMessage", "answered", "sample"),
        ("elicitation/create", "asked", "elicit"),
        ("elicitation/create", "answered", "elicit"),
    ]
    for record in records:
        assert (record["caller"], record["agent"], record["server"]) == (
            CALLER,
            AGENT,
            "upstream",
        )
        assert record["request_sha256"].startswith("sha256:")
    answered = records[3]
    content = {"action": "accept", "content": {"answer": "yes"}}
    assert answered["action"] == "accept"
    assert answered["answer_sha256"] == str(
        sha256(json.dumps(content, separators=(",", ":")).encode())
    )
    # Both calls were decided and allowed, each with its outcome.
    decided = [r for r in setup.records() if r.get("kind") == "decision"]
    assert [(r["tool"], r["outcome"]) for r in decided] == [
        ("sample", "allow"),
        ("elicit", "allow"),
    ]


def test_a_relayed_request_needs_the_clients_capability_and_is_recorded_refused(setup):
    got: list[list[str]] = []

    async def body(session: ClientSession) -> None:
        got.append(texts(await session.call_tool("sample", {"text": "the news"})))

    run(setup, body, "--sampling")  # a client that declared no sampling
    (refused,) = setup.logged("ask_refused")
    assert refused == "refused: the client did not declare sampling"
    (record,) = [r for r in setup.records() if r.get("kind") == CLIENT_REQUEST_EVENT]
    assert (record["stage"], record["reason"], record["tool"], record["caller"]) == (
        "refused",
        "the client did not declare sampling",
        "sample",
        CALLER,
    )


def test_a_2026_07_28_client_is_asked_through_input_required_rounds(setup):
    client = TheClient()
    got: dict[str, Any] = {}

    async def main() -> None:
        command = gateway_command(setup, "--sampling", "--elicitation")
        async with Client(command, mode="2026-07-28", **client.callbacks()) as session:
            got["version"] = session.protocol_version
            got["sample"] = texts(await session.call_tool("sample", {"text": "the news"}))
            got["elicit"] = texts(await session.call_tool("elicit", {"text": "Proceed?"}))

    anyio.run(main)
    assert got["version"] == "2026-07-28"
    assert client.asked == ["sample: the news", "elicit: Proceed?"]
    assert [json.loads(text) for text in got["sample"] + got["elicit"]] == [
        {"sampled": "the model on 'the news'"},
        {"elicited": {"action": "accept", "content": {"answer": "yes"}}},
    ]
    records = [r for r in setup.records() if r.get("kind") == CLIENT_REQUEST_EVENT]
    assert [(r["method"], r["stage"]) for r in records] == [
        ("sampling/createMessage", "asked"),
        ("sampling/createMessage", "answered"),
        ("elicitation/create", "asked"),
        ("elicitation/create", "answered"),
    ]
    decided = [r for r in setup.records() if r.get("kind") == "decision"]
    assert [(r["tool"], r["outcome"]) for r in decided] == [
        ("sample", "allow"),
        ("elicit", "allow"),
    ]


def test_a_client_that_refuses_a_relayed_request_is_recorded_and_the_call_goes_on(setup):
    got: list[list[str]] = []

    async def decline(context: Any, params: types.CreateMessageRequestParams) -> Any:
        return types.ErrorData(code=-1, message="the user declined")

    async def body(session: ClientSession) -> None:
        got.append(texts(await session.call_tool("sample", {"text": "the news"})))

    run(setup, body, "--sampling", sampling_callback=decline)
    reason = "the client answered error -1: the user declined"
    assert setup.logged("ask_refused") == [reason]
    records = [r for r in setup.records() if r.get("kind") == CLIENT_REQUEST_EVENT]
    assert [(r["stage"], r.get("reason")) for r in records] == [
        ("asked", None),
        ("failed", reason),
    ]
    # The tool itself answered (it handles the refusal), and that was allowed.
    assert [json.loads(text) for (text,) in got] == [{"ask_refused": reason}]


def test_the_upstreams_progress_reaches_a_client_that_asked_for_it(setup):
    report = ProgressLog()
    got: list[list[str]] = []

    async def body(session: ClientSession) -> None:
        got.append(texts(await session.call_tool("progress", {}, progress_callback=report)))
        got.append(texts(await session.call_tool("progress", {})))
        await report.wait_for(2)

    run(setup, body)
    assert got == [["done"], ["done"]]
    assert report.reports == [(1.0, 2.0, "step 1"), (2.0, 2.0, "step 2")]
    # Only the call whose client asked for progress asked the upstream for it.
    assert setup.logged("progress_token") == [True, False]


def test_a_2026_07_28_client_listening_is_told_its_tool_list_changed(setup):
    got: dict[str, Any] = {}

    async def main() -> None:
        async with Client(gateway_command(setup), mode="2026-07-28") as session:
            got["before"] = {tool.name for tool in (await session.list_tools()).tools}
            async with session.listen(tools_list_changed=True) as changes:
                await session.call_tool("rug_pull", {})
                with anyio.fail_after(20):
                    got["event"] = await anext(changes)
            got["after"] = {tool.name for tool in (await session.list_tools()).tools}

    anyio.run(main)
    assert isinstance(got["event"], ToolsListChanged)
    assert "echo" in got["before"]
    assert got["after"] == got["before"] - {"echo"}


def test_a_server_of_2026_07_28_alone_is_spoken_to_on_that_revision(setup):
    """Discovered after it refuses the handshake; pinned, decided and relayed
    as any other, its changes heard on its listen stream."""
    client = TheClient()
    got: dict[str, Any] = {}
    report = ProgressLog()
    params = gateway_command(setup, "--sampling", "--elicitation")
    params.args.append("--modern-only")

    async def main() -> None:
        stdio = stdio_client(params)
        async with stdio as (read, write), ClientSession(read, write, **client.callbacks()) as s:
            await s.initialize()
            got["echo"] = texts(await s.call_tool("echo", {"text": "hello"}))
            got["denied"] = await denied(s, "secret.read")
            got["sample"] = texts(await s.call_tool("sample", {"text": "the news"}))
            progress = await s.call_tool("progress", {}, progress_callback=report)
            got["progress"] = texts(progress)
            await s.call_tool("rug_pull", {})
            with anyio.fail_after(4):  # its next listing would be in 5 s: the stream told it
                while "echo" in await listed(s):
                    await anyio.sleep(0.05)
            got["after"] = await denied(s, "echo", {"text": "hello"})

    anyio.run(main)
    assert got["echo"] == ["hello"]
    assert "secrets stay" in got["denied"]["reason"]
    assert [json.loads(text) for text in got["sample"]] == [{"sampled": "the model on 'the news'"}]
    assert client.asked == ["sample: the news"]
    assert got["progress"] == ["done"]
    assert report.reports == [(1.0, 2.0, "step 1"), (2.0, 2.0, "step 2")]
    assert "description" in got["after"]["reason"]
    # Every call the server received came on 2026-07-28; secret.read and the
    # changed echo never reached it.
    assert set(setup.logged("era")) == {"2026-07-28"}
    assert setup.calls() == ["echo", "sample", "sample", "progress", "rug_pull"]
    records = [r for r in setup.records() if r.get("kind") == CLIENT_REQUEST_EVENT]
    assert [(r["stage"], r["tool"]) for r in records] == [
        ("asked", "sample"),
        ("answered", "sample"),
    ]


async def touched(session: ClientSession) -> dict[str, Any]:
    """What the client finds once the upstream's ``touch`` has run."""
    read = await session.read_resource(RESOURCE_URI)
    return {
        "text": read.contents[0].text,
        "resources": sorted(str(r.uri) for r in (await session.list_resources()).resources),
        "prompts": sorted(p.name for p in (await session.list_prompts()).prompts),
    }


TOUCHED = {
    "text": TOUCHED_TEXT,
    "resources": sorted([RESOURCE_URI, SECOND_URI]),
    "prompts": ["farewell", "greet"],
}


@pytest.mark.parametrize("upstream_era", ["handshake", "2026-07-28"])
def test_a_watched_resource_and_the_lists_that_change_are_told_to_the_client(setup, upstream_era):
    """Subscribed at the upstream while the client watches; its update and the
    changes of the resource and prompt lists reach the client; unwatched when
    the client unsubscribes."""
    heard = Heard()
    got: dict[str, Any] = {}
    params = gateway_command(setup, "--resources", "--prompts")
    if upstream_era == "2026-07-28":
        params.args.append("--modern-only")

    async def main() -> None:
        stdio = stdio_client(params)
        async with stdio as (read, write), ClientSession(read, write, message_handler=heard) as s:
            initialized = await s.initialize()
            got["capabilities"] = initialized.capabilities
            await send_subscription(s, RESOURCE_URI, subscribe=True)
            await s.call_tool("touch", {})
            got["heard"] = await heard.wait_for(
                types.ResourceUpdatedNotification,
                types.ResourceListChangedNotification,
                types.PromptListChangedNotification,
            )
            got["after"] = await touched(s)
            await send_subscription(s, RESOURCE_URI, subscribe=False)
            if upstream_era == "handshake":
                with anyio.fail_after(10):
                    while setup.logged("unsubscribed") != [RESOURCE_URI]:
                        await anyio.sleep(0.02)

    anyio.run(main)
    capabilities = got["capabilities"]
    assert capabilities.resources.subscribe is True
    assert capabilities.resources.list_changed is True
    assert capabilities.prompts.list_changed is True
    updated = got["heard"][0]
    assert str(updated.params.uri) == RESOURCE_URI
    assert got["after"] == TOUCHED
    if upstream_era == "handshake":
        assert setup.logged("subscribed") == [RESOURCE_URI]
    # The read after the update is recorded like any read.
    reads = [r for r in setup.records() if r.get("kind") == RESOURCE_READ_EVENT]
    assert [r["uri"] for r in reads] == [RESOURCE_URI]


def test_a_2026_07_28_client_hears_of_resources_and_prompts_on_its_listen_stream(setup):
    got: dict[str, Any] = {}

    async def main() -> None:
        command = gateway_command(setup, "--resources", "--prompts")
        async with Client(command, mode="2026-07-28") as session:
            async with session.listen(
                resources_list_changed=True,
                prompts_list_changed=True,
                resource_subscriptions=[RESOURCE_URI],
            ) as changes:
                # The upstream (a handshake-era server) was subscribed for the stream.
                got["subscribed"] = setup.logged("subscribed")
                await session.call_tool("touch", {})
                events: list[Any] = []
                with anyio.fail_after(10):
                    while len(events) < 3:
                        events.append(await anext(changes))
                got["events"] = events
            with anyio.fail_after(10):  # the stream's end unwatched the resource
                while setup.logged("unsubscribed") != [RESOURCE_URI]:
                    await anyio.sleep(0.02)

    anyio.run(main)
    assert got["subscribed"] == [RESOURCE_URI]
    assert set(got["events"]) == {
        ResourceUpdated(RESOURCE_URI),
        ResourcesListChanged(),
        PromptsListChanged(),
    }


def test_a_resource_is_served_by_the_server_that_lists_it_or_whose_template_it_fits(setup):
    got: dict[str, Any] = {}

    async def body(session: ClientSession) -> None:
        templates = (await session.list_resource_templates()).resource_templates
        got["templates"] = [template.uri_template for template in templates]
        read = await session.read_resource("note://drafts/plan")
        got["draft"] = read.contents[0].text
        for attempt in (
            session.read_resource("note://nowhere"),
            send_subscription(session, "note://nowhere", subscribe=True),
        ):
            with pytest.raises(MCPError) as caught:
                await attempt
            assert caught.value.code == types.INVALID_PARAMS
            assert "no server here lists" in caught.value.message

    run(setup, body, "--resources")
    assert got == {"templates": [DRAFTS_TEMPLATE], "draft": "Draft plan."}
    # Neither request for a resource nobody serves reached the server.
    assert setup.logged("resource") == ["note://drafts/plan"]
    assert setup.logged("subscribed") == []


@pytest.mark.parametrize(
    ("template", "uri", "fits"),
    [
        ("note://drafts/{name}", "note://drafts/plan", True),
        ("note://drafts/{name}", "note://notes/plan", False),
        ("file:///{+path}{?query}", "file:///etc/hosts", True),
        ("db://{table}/rows/{id}", "db://users/rows/7", True),
        ("db://{table}/rows/{id}", "db://users/cols/7", False),
        ("note://readme", "note://readme", True),
        ("note://readme", "note://readme2", False),
        ("ab{x}ba", "aba", False),
    ],
)
def test_a_uri_fits_a_template_by_its_literal_parts_in_order(template, uri, fits):
    assert _fits(template, uri) is fits


def test_fitting_a_template_takes_no_backtracking():
    """A server's template of many expressions against a long URI that does
    not fit answers at once (a regex of as many wildcards would not)."""
    assert _fits("{a}" * 64 + "z", "a" * 200_000) is False


def test_listings_come_in_pages_the_client_follows(setup):
    with setup.config.open("a") as config:
        config.write("\n[mcp]\npage_size = 4\n")
    got: dict[str, Any] = {}

    async def body(session: ClientSession) -> None:
        first = await session.list_tools()
        got["first"] = len(first.tools)
        names, cursor = [tool.name for tool in first.tools], first.next_cursor
        while cursor is not None:
            page = await session.list_tools(params=types.PaginatedRequestParams(cursor=cursor))
            names += [tool.name for tool in page.tools]
            cursor = page.next_cursor
        got["names"] = names
        with pytest.raises(MCPError) as caught:
            await session.list_tools(params=types.PaginatedRequestParams(cursor="forged"))
        got["forged"] = caught.value.code

    run(setup, body)
    declared = set(TOOLS) - {"hidden", "drifted"}
    assert got["first"] == 4
    assert got["names"] == sorted(declared)
    assert got["forged"] == types.INVALID_PARAMS
