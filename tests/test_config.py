"""Configuration: defaults, TOML, environment, overrides, and errors naming the key."""

from pathlib import Path

import pytest

from vedette.config import ConfigError, load_config, token_digest

TOKEN_HASH = str(token_digest("secret-token"))


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "vedette.toml"
    path.write_text(text)
    return path


def test_embedded_defaults_are_safe():
    config = load_config(env={})
    assert config.listen.host == "127.0.0.1"
    assert config.store.durability == "durable"
    assert config.store.ceiling_bytes > 0
    assert config.callers == ()
    assert config.tools.fs_mounts == ()
    assert config.store_dir == config.state_dir / "store"


def test_file_env_and_overrides_layer_in_order(tmp_path):
    path = write(
        tmp_path,
        f"""
node_id = "edge-1"
state_dir = "state"
[listen]
port = 9001
[store]
ceiling_bytes = 1048576
[[tools.fs_mounts]]
at = "/data"
dir = "data"
[[tools.http]]
name = "weather"
url = "http://127.0.0.1:1/x"
[[callers]]
id = "adapter-1"
agent = "recon"
token_sha256 = "{TOKEN_HASH}"
[[agents]]
name = "recon"
manifest = "agent.json"
bundle = "/abs/bundle.tar.gz"
unsigned = true
""",
    )
    config = load_config(
        path, env={"VEDETTE_LISTEN_PORT": "9002", "VEDETTE_NODE_ID": "edge-2"}, overrides={}
    )
    assert config.node_id == "edge-2"
    assert config.listen.port == 9002
    assert config.state_dir == tmp_path / "state", "relative to the file"
    assert config.tools.fs_mounts[0].at == "/data"
    assert config.tools.fs_mounts[0].dir == tmp_path / "data"
    assert config.tools.http[0].name == "weather"
    assert config.callers[0].token_sha256 is not None
    assert str(config.callers[0].token_sha256) == TOKEN_HASH
    agent = config.agent("recon")
    assert agent is not None
    assert agent.manifest == tmp_path / "agent.json"
    assert agent.bundle == Path("/abs/bundle.tar.gz")
    config = load_config(path, env={"VEDETTE_LISTEN_PORT": "9002"}, overrides={"listen.port": 7})
    assert config.listen.port == 7


@pytest.mark.parametrize(
    ("text", "env", "message"),
    [
        ("[listen]\nport = 70000", {}, "listen.port: expected a port from 1 to 65535, got 70000"),
        ("[listen]\nport = 'abc'", {}, "listen.port: expected an integer >= 1, got 'abc'"),
        ("[listen]\nprot = 1", {}, "listen.prot: unknown key"),
        ("colour = 1", {}, "colour: unknown key"),
        ("[store]\nceiling_bytes = 0", {}, "store.ceiling_bytes: expected an integer >= 1"),
        ("[store]\ndurability = 'fast'", {}, "store.durability: expected one of 'durable'"),
        ("[quota]\nrate_per_s = -1", {}, "quota.rate_per_s: expected a finite number > 0"),
        ("[quota]\nrate_per_s = true", {}, "quota.rate_per_s: expected a number"),
        ("listen = 3", {}, "listen: expected a table, got int"),
        ("[[callers]]\nid = 'a'", {}, "callers[0].agent: required"),
        (
            "[[callers]]\nid = 'a'\nagent = 'b'\ntoken_sha256 = 'sha256:12'",
            {},
            "callers[0].token_sha256: digest 'sha256:12' has 2 hex characters",
        ),
        (
            "[[callers]]\nid = 'a'\nagent = 'b'\n"
            f"token_sha256 = '{TOKEN_HASH.replace('sha256', 'blake3')}'",
            {},
            "callers[0].token_sha256: expected a 'sha256:<64 hex>' digest",
        ),
        ("", {"VEDETTE_LISTEN_PORT": "x"}, "listen.port: expected an integer >= 1, got 'x'"),
        ("", {"VEDETTE_LISTEN_NOPE": "1"}, "listen.nope: unknown key"),
        ("this is not toml", {}, "not valid TOML"),
        (
            "[[mcp.servers]]\nname = 'a'\ncommand = 'srv'\nheaders = { X-Key = '1' }",
            {},
            "mcp.servers: 'a' headers: only for a url server",
        ),
        (
            "[[mcp.servers]]\nname = 'a'\nurl = 'http://h/mcp'\nheaders = { 'X Key' = '1' }",
            {},
            "'X Key' is not a header name",
        ),
        (
            "[[mcp.servers]]\nname = 'a'\nurl = 'http://h/mcp'\n"
            "headers_env = { Mcp-Session-Id = 'V' }",
            {},
            "headers_env: 'Mcp-Session-Id' is set by the transport",
        ),
        (
            "[[mcp.servers]]\nname = 'a'\nurl = 'http://h/mcp'\n"
            'headers = { X-Key = "1\\r\\nX-Other: 2" }',
            {},
            "the value of 'X-Key' holds a line break or NUL",
        ),
    ],
)
def test_errors_name_the_key(tmp_path, text, env, message):
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text), env=env)
    assert message in str(caught.value)
    assert isinstance(caught.value, ValueError)


def test_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "absent.toml", env={})


def test_an_mcp_servers_headers_from_the_environment_are_read_when_asked(tmp_path, monkeypatch):
    text = (
        "[[mcp.servers]]\nname = 'files'\nurl = 'http://h/mcp'\n"
        "headers = { X-Tenant = 'blue' }\nheaders_env = { Authorization = 'FILES_MCP_AUTH' }"
    )
    (server,) = load_config(write(tmp_path, text), env={}).mcp.servers
    monkeypatch.delenv("FILES_MCP_AUTH", raising=False)
    with pytest.raises(ConfigError, match=r"\$FILES_MCP_AUTH, which is not set"):
        server.http_headers()
    monkeypatch.setenv("FILES_MCP_AUTH", "Bearer abc\nX-Injected: 1")
    with pytest.raises(ConfigError, match="holds a line break"):
        server.http_headers()
    monkeypatch.setenv("FILES_MCP_AUTH", "Bearer abc")
    assert server.http_headers() == {"X-Tenant": "blue", "Authorization": "Bearer abc"}
