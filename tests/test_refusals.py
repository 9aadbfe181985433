"""Refusals are counted, not multiplied: a flood of requests that are refused
before any policy runs (no credentials, malformed, over quota) leaves the first
of each kind per source in full and a counted summary, never a record each;
malformed requests spend the caller's quota like any other."""

import json

import httpx
import pytest
from live_server import live_server
from runtime_fixtures import TOKENS, runtime_config

from vedette.api import create_app
from vedette.config import ListenConfig, QuotaConfig
from vedette.runtime.interceptor import Runtime
from vedette.runtime.refusals import OVERFLOW, RefusalLedger

A = {"Authorization": f"Bearer {TOKENS['adapter-a']}", "Content-Type": "application/json"}


def all_records(runtime: Runtime) -> list[dict]:
    runtime.flush_evidence()
    return [json.loads(record) for _, record in runtime.store.iter_records()]


def written(runtime: Runtime) -> int:
    """Bytes of evidence written (space reserved ahead not counted)."""
    runtime.flush_evidence()
    return sum(segment.size for segment in runtime.store.segments())


@pytest.fixture
def runtime(tmp_path):
    # Refusals beyond the per-address limit are answered at once here: these
    # tests count records, the hold has its own test (tests/test_listener.py).
    listen = ListenConfig(unauthenticated_hold_s=0.0001)
    config = runtime_config(tmp_path, quota=QuotaConfig(rate_per_s=1, burst=20), listen=listen)
    runtime = Runtime(config)
    yield runtime
    runtime.close()


@pytest.fixture
def client(runtime):
    with live_server(create_app(runtime)) as url, httpx.Client(base_url=url) as client:
        yield client


def test_malformed_requests_spend_the_quota_and_are_recorded_once_each_kind(runtime, client):
    before = len(all_records(runtime))
    statuses = [
        client.post("/v1/tool", content=b"{not json", headers=A).status_code for _ in range(200)
    ]
    # The burst of 20 goes to the first malformed requests; the rest are over quota.
    assert statuses == [400] * 20 + [429] * 180
    good = client.post("/v1/tool", json={"tool": "echo", "args": {"text": "hi"}}, headers=A)
    assert good.status_code == 429
    added = all_records(runtime)[before:]
    assert [(r["kind"], r["outcome"]) for r in added] == [
        ("decision", "invalid"),
        ("decision", "over_quota"),
    ]
    runtime.housekeep(final=True)
    (summary,) = [r for r in all_records(runtime) if r["kind"] == "refusal_summary"]
    counted = {(r["outcome"], r["source"]): r["counted"] for r in summary["refusals"]}
    assert counted == {("invalid", "caller adapter-a"): 19, ("over_quota", "caller adapter-a"): 180}
    assert summary["node"] == "test-node"


def test_an_unauthenticated_flood_writes_one_record_and_a_count(runtime, client):
    before = written(runtime)
    count_before = len(all_records(runtime))
    for i in range(500):
        response = client.post(
            "/v1/tool",
            content=b'{"tool":"echo","args":{"text":"' + b"x" * 2000 + b'"}}',
            headers={"Authorization": f"Bearer wrong-{i}"},
        )
        # Beyond the per-address limit on unauthenticated requests: 429, counted only.
        assert response.status_code in (401, 429)
        assert response.json()["decision_id"]
    added = all_records(runtime)[count_before:]
    assert [(r["outcome"], r["reason"]) for r in added] == [
        ("unauthenticated", "unknown bearer token")
    ]
    runtime.housekeep(final=True)
    (summary,) = [r for r in all_records(runtime) if r["kind"] == "refusal_summary"]
    entries = {entry["outcome"]: entry for entry in summary["refusals"]}
    assert entries["unauthenticated"]["recorded"] == 1
    assert {entry["source"] for entry in entries.values()} == {"address 127.0.0.1"}
    assert sum(entry["counted"] for entry in entries.values()) == 499
    # Two records where there were 500: the store barely moved.
    assert written(runtime) - before < 8 * 1024


def test_the_ledger_bounds_sources_and_full_records():
    ledger = RefusalLedger(interval_s=60, max_sources=3, max_full_per_interval=2)
    assert ledger.admit("invalid", "caller a", "id-1")
    assert not ledger.admit("invalid", "caller a", "id-2")
    assert ledger.admit("unauthenticated", "address 10.0.0.1", "id-3")
    # The third source still fits the table but not the full-record budget.
    assert not ledger.admit("invalid", "caller b", "id-4")
    # A fourth source is counted with the others.
    assert not ledger.admit("invalid", "caller c", "id-5")
    assert not ledger.admit("invalid", "caller d", "id-6")
    # Outcomes a policy decided are never aggregated.
    assert ledger.admit("deny", "caller a", "id-7")
    summary = ledger.drain()
    assert summary is not None
    counted = {
        (r["outcome"], r["source"]): (r["recorded"], r["counted"]) for r in summary["refusals"]
    }
    assert counted == {
        ("invalid", "caller a"): (1, 1),
        ("invalid", "caller b"): (0, 1),
        ("invalid", OVERFLOW): (0, 2),
    }
    # A new interval: the first refusal of a source is recorded in full again.
    assert ledger.admit("invalid", "caller a", "id-8")
    assert ledger.drain() is None
