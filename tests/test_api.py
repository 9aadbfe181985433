"""The HTTP API over the real runtime: statuses, bodies, the OpenAPI contract, limits."""

import json

import httpx
import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from live_server import live_server
from runtime_fixtures import TOKENS, runtime_config

from vedette.api import create_app
from vedette.api.openapi import OPENAPI
from vedette.api.operator import create_operator_app
from vedette.config import ListenConfig, token_digest
from vedette.runtime.interceptor import Runtime

A = {"Authorization": f"Bearer {TOKENS['adapter-a']}"}
B = {"Authorization": f"Bearer {TOKENS['adapter-b']}"}


@pytest.fixture
def runtime(tmp_path):
    # Many unauthenticated requests from one address: not the per-address limit's test.
    unlimited = ListenConfig(unauthenticated_rate_per_s=1e6, unauthenticated_burst=1e6)
    runtime = Runtime(runtime_config(tmp_path, listen=unlimited))
    yield runtime
    runtime.close()


@pytest.fixture
def client(runtime):
    with live_server(create_app(runtime)) as url, httpx.Client(base_url=url) as client:
        yield client


def check_contract(response) -> dict:
    """The response matches the schema the OpenAPI document gives for its status."""
    body = response.json()
    answer = OPENAPI["paths"]["/v1/tool"]["post"]["responses"][str(response.status_code)]
    schema = answer["content"]["application/json"]["schema"]
    resolver = {"$ref": schema["$ref"], "components": OPENAPI["components"]}
    jsonschema.validate(body, resolver)
    if response.status_code != 200 and response.status_code != 502:
        assert body["decision"] == "deny"
    return body


def post(client, body, headers=A):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return client.post(
        "/v1/tool", content=data, headers={**headers, "Content-Type": "application/json"}
    )


def test_allowed_call(client):
    response = post(client, {"tool": "echo", "args": {"text": "hi"}})
    assert response.status_code == 200
    body = check_contract(response)
    assert body["output"] == {"text": "hi"}
    assert body["release"] == "1.0.0"


def test_denied_call(client):
    response = post(client, {"tool": "fs.read", "args": {"path": "/etc/passwd"}})
    assert response.status_code == 403
    assert check_contract(response)["reason"] == "/etc/passwd is outside /data"


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic eDp5"}],
)
def test_bad_credentials_are_401(client, headers):
    response = post(client, {"tool": "echo", "args": {"text": "hi"}}, headers)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    check_contract(response)


def test_a_token_for_one_agent_cannot_act_for_another(client):
    # adapter-b belongs to the agent 'scribe', which does not declare fs.read.
    response = post(client, {"tool": "fs.read", "args": {"path": "/data/a.csv"}}, B)
    assert response.status_code == 403
    assert "not declared by agent 'scribe'" in response.json()["reason"]
    claims = {"tool": "fs.read", "args": {"path": "/data/a.csv"}, "claims": {"agent": "recon"}}
    assert post(client, claims, B).status_code == 403


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b"[1,2]",
        b'{"tool": 1}',
        b'{"tool": "echo", "args": "x"}',
        b'{"tool": "echo", "extra": 1}',
        b'{"tool": "echo", "tool": "fs.read"}',
        b'{"tool": "echo", "args": ' + b"[" * 5000 + b"]" * 5000 + b"}",
        b"\xff",
    ],
)
def test_malformed_bodies_are_400_deny(client, body):
    response = post(client, body)
    assert response.status_code == 400
    assert check_contract(response)["reason"].startswith("invalid intent: ")


def test_oversized_body_is_refused_unread(client, runtime):
    limit = runtime.config.listen.max_body_bytes
    response = post(client, {"tool": "echo", "args": {"text": "x" * limit}})
    assert response.status_code == 400
    assert check_contract(response)["reason"] == f"invalid intent: body over the {limit}-byte limit"


def test_unknown_tool_is_403_not_500(client):
    response = post(client, {"tool": "shell.exec", "args": {"cmd": "rm -rf /"}})
    assert response.status_code == 403
    check_contract(response)


OPERATOR_TOKEN = "operator-token-for-the-api-tests"


def test_health_status_metrics_and_openapi(client, runtime):
    # The fixture's agents run unsigned local files: served, and said so.
    assert client.get("/v1/health").json() == {
        "status": "degraded",
        "reasons": [
            "releases: agent recon runs unsigned local files (unsigned = true)",
            "releases: agent scribe runs unsigned local files (unsigned = true)",
        ],
        "checks": {"releases": "degraded", "store": "ok"},
        "agents": {"recon": "unsigned", "scribe": "unsigned"},
    }
    post(client, {"tool": "echo", "args": {"text": "hi"}})
    assert client.get("/openapi.json").json() == json.loads(json.dumps(OPENAPI))
    operator_app = create_operator_app(runtime, token_sha256=token_digest(OPERATOR_TOKEN))
    auth = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}
    with live_server(operator_app) as url, httpx.Client(base_url=url, headers=auth) as operator:
        status = operator.get("/v1/status").json()
        metrics = operator.get("/metrics").text
    assert status["node"] == "test-node"
    assert status["agents"]["recon"]["policy_hash"].startswith("sha256:")
    assert 0 < status["store"]["bytes_used"] <= status["store"]["ceiling_bytes"]
    assert 'vedette_decisions_total{agent="recon",outcome="allow",tool="echo"} 1.0' in metrics
    assert "vedette_store_ceiling_bytes" in metrics


def test_no_admin_operations_on_the_adapter_listener(client):
    paths = set(OPENAPI["paths"])
    assert paths == {"/v1/tool", "/v1/health"}
    # Status and metrics name digests, peers and errors: the operator's, not an adapter's.
    for path in ("/v1/status", "/metrics"):
        assert client.get(path, headers=A).status_code == 404
    for path in ("/v1/releases", "/v1/admin", "/v1/store", "/v1/keys", "/v1/store/drain"):
        assert client.post(path, json={}).status_code == 404
    assert client.get("/v1/tool").status_code == 405


def test_the_operator_port_admits_only_the_operator_token(runtime):
    operator_app = create_operator_app(runtime, token_sha256=token_digest(OPERATOR_TOKEN))
    with live_server(operator_app) as url:
        assert httpx.get(f"{url}/v1/status").status_code == 401
        assert httpx.get(f"{url}/metrics", headers=A).status_code == 401  # an adapter's token
        wrong = {"Authorization": f"Bearer {OPERATOR_TOKEN}x"}
        assert httpx.get(f"{url}/v1/status", headers=wrong).status_code == 401
        basic = {"Authorization": f"Basic {OPERATOR_TOKEN}"}
        assert httpx.get(f"{url}/v1/status", headers=basic).status_code == 401
        auth = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}
        answer = httpx.get(f"{url}/v1/status", headers=auth)
        assert answer.status_code == 200
        assert answer.json()["node"] == "test-node"


TRICK_HEADERS = st.dictionaries(
    st.sampled_from(
        ["X-Forwarded-For", "X-Forwarded-User", "X-Vedette-Caller", "X-Vedette-Agent", "X-Real-IP"]
    ),
    st.sampled_from(["127.0.0.1", "admin", "recon", "adapter-a", "root"]),
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    headers=TRICK_HEADERS,
    claims=st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=3),
)
def test_headers_and_claims_never_override_a_deny(client, headers, claims):
    body = {"tool": "fs.read", "args": {"path": "/etc/passwd"}, "claims": claims}
    assert post(client, body, {**A, **headers}).status_code == 403
    assert post(client, body, headers).status_code == 401


def test_unix_socket_peer_uid_identifies_the_caller(tmp_path):
    import asyncio
    import os
    import threading

    import uvicorn

    from vedette.api.peer import PeerCredentialsProtocol
    from vedette.config import CallerConfig

    callers = (CallerConfig("local", "recon", uid=os.getuid()),)
    runtime = Runtime(runtime_config(tmp_path, callers=callers))
    path = tmp_path / "adapter.sock"
    config = uvicorn.Config(
        create_app(runtime), uds=str(path), http=PeerCredentialsProtocol, log_level="warning"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    try:
        while not server.started:
            assert thread.is_alive()
        transport = httpx.HTTPTransport(uds=str(path))
        with httpx.Client(transport=transport, base_url="http://vedette") as local:
            body = {"tool": "echo", "args": {"text": "by uid"}}
            answer = local.post("/v1/tool", json=body)
            assert answer.status_code == 200, answer.text
            assert answer.json()["output"] == {"text": "by uid"}
        # Over TCP the same app never sees a uid: no token, no caller.
        with live_server(create_app(runtime)) as url:
            assert httpx.post(f"{url}/v1/tool", json=body).status_code == 401
    finally:
        server.should_exit = True
        thread.join(10)
        runtime.close()


def test_a_fault_outside_the_runtime_pipeline_is_still_a_deny(runtime):
    def broken(header):
        raise ZeroDivisionError("in the authentication path")

    runtime.authenticate = broken
    with live_server(create_app(runtime)) as url:
        answer = httpx.post(f"{url}/v1/tool", json={"tool": "echo"}, headers=A)
    assert answer.status_code == 403
    assert answer.json() == {"decision": "deny", "reason": "internal error; denied"}
