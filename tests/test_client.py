"""The adapter client against a live runtime: only a real allow returns output."""

import asyncio

import httpx
import pytest
from live_server import live_server
from runtime_fixtures import TOKENS, runtime_config

from vedette.api import create_app
from vedette.client import AsyncClient, Client, Denied, ToolError
from vedette.runtime.interceptor import Runtime


class Boom:
    name = "boom"

    def run(self, args):
        raise RuntimeError("tool exploded")


@pytest.fixture
def url(tmp_path):
    runtime = Runtime(runtime_config(tmp_path))
    runtime.tools.register(Boom())
    with live_server(create_app(runtime)) as url:
        yield url
    runtime.close()


def test_call_returns_output_or_raises(url):
    with Client(url, TOKENS["adapter-a"]) as client:
        assert client.call("echo", text="hi") == {"text": "hi"}
        with pytest.raises(Denied) as denied:
            client.call("fs.read", path="/etc/passwd")
        assert denied.value.reason == "/etc/passwd is outside /data"
        assert denied.value.status == 403
        assert denied.value.decision_id
        with pytest.raises(Denied, match="is not declared"):
            client.call("shell.exec", cmd="id", claims={"role": "admin"})
        with pytest.raises(ToolError) as failed:
            client.call("boom")
        assert failed.value.kind == "error"
        assert "tool exploded" in str(failed.value)
        with pytest.raises(Denied) as invalid:
            client.call("echo")  # no text: against the tool's schema
        assert invalid.value.status == 400


def test_bad_token_and_unreachable_runtime_never_allow(url):
    with Client(url, "not-a-token") as client, pytest.raises(Denied) as denied:
        client.call("echo", text="hi")
    assert denied.value.status == 401
    gone = Client("http://127.0.0.1:9", TOKENS["adapter-a"], timeout=2)
    with gone, pytest.raises(httpx.TransportError):
        gone.call("echo", text="hi")


def test_async_client(url):
    async def scenario():
        async with AsyncClient(url, TOKENS["adapter-a"]) as client:
            assert await client.call("echo", text="async") == {"text": "async"}
            with pytest.raises(Denied):
                await client.call("fs.read", path="/etc/passwd")

    asyncio.run(scenario())
