"""The Rego builtins vedette enables, each with a policy and its expected decision.

The families listed in docs/contracts.md ("Enabled Rego builtins"): strings,
regex, glob, time, net (CIDR), JSON, encoding, semver, units, aggregates.
Each row's expression must evaluate to exactly ``true`` for the decision to
allow, so a builtin that is missing (a load error) or returns something else
fails the row.
"""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys
import zoneinfo
from pathlib import Path

import pytest
from policy_helpers import write_bundle

from vedette.errors import BundleError
from vedette.policy import Bundle, PolicyEngine

INPUT = {
    "tool": "fs.read",
    "args": {
        "path": "/srv/data/reports/q3.csv",
        "host": "10.1.2.3",
        "url": "https://a.example/x?q=1",
    },
    "time": "2026-03-04T05:06:07Z",
    "caller": {"id": "adapter-7"},
}

# (family, Rego expression that must be true for this INPUT)
TABLE = [
    ("strings", 'startswith(input.args.path, "/srv/data/")'),
    ("strings", 'endswith(input.args.path, ".csv")'),
    ("strings", 'contains(input.tool, ".")'),
    ("strings", 'lower("FS.READ") == input.tool'),
    ("strings", 'upper(input.tool) == "FS.READ"'),
    ("strings", 'split(input.tool, ".") == ["fs", "read"]'),
    ("strings", 'concat("/", ["a", "b"]) == "a/b"'),
    ("strings", 'sprintf("%s:%d", [input.tool, 3]) == "fs.read:3"'),
    ("strings", 'trim_prefix(input.args.path, "/srv/") == "data/reports/q3.csv"'),
    ("strings", 'replace(input.tool, ".", "_") == "fs_read"'),
    ("strings", 'indexof(input.tool, "r") == 3'),
    ("strings", 'substring(input.tool, 0, 2) == "fs"'),
    ("strings", 'strings.replace_n({"a": "b"}, "aa") == "bb"'),
    ("strings", 'format_int(255, 16) == "ff"'),
    ("regex", "regex.match(`^/srv/data/[a-z]+/q[0-9]\\.csv$`, input.args.path)"),
    ("regex", 'regex.find_n(`[0-9]`, "a1b2", -1) == ["1", "2"]'),
    ("regex", 'regex.split(`\\.`, input.tool) == ["fs", "read"]'),
    ("regex", 'regex.is_valid("a+")'),
    ("glob", 'glob.match("/srv/data/**/*.csv", ["/"], input.args.path)'),
    ("glob", 'not glob.match("/srv/data/*.csv", ["/"], input.args.path)'),
    ("glob", 'glob.quote_meta("a*b") == "a\\\\*b"'),
    ("time", "time.parse_rfc3339_ns(input.time) == 1772600767000000000"),
    ("time", "time.date(time.parse_rfc3339_ns(input.time)) == [2026, 3, 4]"),
    ("time", "time.clock(time.parse_rfc3339_ns(input.time)) == [5, 6, 7]"),
    ("time", 'time.weekday(time.parse_rfc3339_ns(input.time)) == "Wednesday"'),
    ("time", "time.add_date(0, 0, 0, 1) == 86400000000000"),
    ("time", "time.now_ns() > 0"),
    # Named zones come from the system's time-zone database (docs/contracts.md, "Time zones").
    ("time", 'time.clock([time.parse_rfc3339_ns(input.time), "America/New_York"]) == [0, 6, 7]'),
    (
        "time",
        # 2026-07-01T02:00:00Z
        'time.date([1782871200000000000, "America/Los_Angeles"]) == [2026, 6, 30]',
    ),
    (
        "time",
        # 2026-03-04T12:00:00Z, a Wednesday; 14 hours ahead it is Thursday
        'time.weekday([1772625600000000000, "Pacific/Kiritimati"]) == "Thursday"',
    ),
    (
        "time",
        # 2100-07-01T12:00:00Z, past the last transition a zone file lists
        'time.clock([4118126400000000000, "Europe/Berlin"]) == [14, 0, 0]',
    ),
    ("time", 'time.clock([time.parse_rfc3339_ns(input.time), "UTC"]) == [5, 6, 7]'),
    ("net", 'net.cidr_contains("10.0.0.0/8", input.args.host)'),
    ("net", 'not net.cidr_contains("192.168.0.0/16", input.args.host)'),
    ("net", 'net.cidr_is_valid("10.0.0.0/8")'),
    ("json", 'json.marshal({"a": 1}) == "{\\"a\\":1}"'),
    ("json", 'json.unmarshal("{\\"a\\": [1]}") == {"a": [1]}'),
    ("json", 'json.is_valid("[1]")'),
    ("json", 'json.filter({"a": 1, "b": 2}, ["a"]) == {"a": 1}'),
    ("json", 'object.get(input.args, "missing", "default") == "default"'),
    ("encoding", 'base64.encode("hi") == "aGk="'),
    ("encoding", 'base64url.decode("aGk") == "hi"'),
    ("encoding", 'hex.encode("hi") == "6869"'),
    ("encoding", 'urlquery.encode("a b") == "a+b"'),
    ("encoding", 'yaml.unmarshal("a: 1") == {"a": 1}'),
    ("semver", 'semver.compare("1.2.3", "1.10.0") == -1'),
    ("semver", 'semver.is_valid("1.2.3")'),
    ("units", 'units.parse_bytes("1KiB") == 1024'),
    ("aggregates", "count(input.args) == 3"),
    ("aggregates", "sum([1, 2, 3]) == 6"),
    ("aggregates", "max([1, 5, 3]) == 5"),
    ("aggregates", "sort([3, 1, 2]) == [1, 2, 3]"),
    ("sets", "{1, 2} & {2, 3} == {2}"),
    ("types", "is_string(input.tool)"),
    ("types", 'type_name(input.args) == "object"'),
    ("crypto-free", "array.concat([1], [2]) == [1, 2]"),
]


def engine_for(tmp_path, expression: str) -> PolicyEngine:
    rego = f"""package vedette
default decision := {{"allow": false, "reason": "expression was not true"}}
decision := {{"allow": true, "reason": "expression was true"}} if {{
    {expression}
}}
"""
    return PolicyEngine(Bundle.load(write_bundle(tmp_path, {"p.rego": rego})))


@pytest.mark.parametrize(("family", "expression"), TABLE, ids=[f"{f}:{e[:40]}" for f, e in TABLE])
def test_enabled_builtin(tmp_path, family, expression):
    decision = engine_for(tmp_path, expression).evaluate(INPUT)
    assert decision.fault is None, decision.reason
    assert decision.allow, f"{family}: {expression} was not true"


@pytest.mark.parametrize(
    "expression",
    [
        'http.send({"method": "get", "url": "http://127.0.0.1:9/"}).status_code == 200',
        'opa.runtime().env.HOME != ""',
        'uuid.rfc4122("x") != ""',
        'json.match_schema({}, {"type": "object"})[0]',
    ],
    ids=["http.send", "opa.runtime", "uuid", "json.match_schema"],
)
def test_disabled_builtins_are_refused_at_load(tmp_path, expression):
    """Builtins outside the enabled families are unknown: the bundle does not load."""
    with pytest.raises(BundleError) as caught:
        engine_for(tmp_path, expression)
    assert caught.value.rule == "rego"


@pytest.mark.parametrize(
    "zone", ["Europe/Atlantis", "../../../etc/passwd", "/etc/localtime", "Europe"]
)
def test_a_name_that_is_not_a_time_zone_denies(tmp_path, zone):
    decision = engine_for(tmp_path, f'time.clock([0, "{zone}"]) == [0, 0, 0]').evaluate(INPUT)
    assert not decision.allow
    assert decision.fault == "error", decision.reason


def test_without_a_time_zone_database_named_zones_deny_and_utc_still_works(tmp_path):
    """A device with no zone files (TZDIR naming an empty directory) refuses every
    named zone: the policy denies with an error and never computes a made-up time."""
    script = f"""
import json, sys
from pathlib import Path
sys.path.insert(0, {str(Path(__file__).parent)!r})
from test_policy_builtins import INPUT, engine_for
answers = {{}}
for name, expression in [("named", 'time.clock([0, "America/New_York"]) == [19, 0, 0]'),
                         ("utc", 'time.clock([0, "UTC"]) == [0, 0, 0]')]:
    bundle_dir = Path(sys.argv[1]) / name
    bundle_dir.mkdir(exist_ok=True)
    decision = engine_for(bundle_dir, expression).evaluate(INPUT)
    answers[name] = [decision.allow, decision.fault]
print(json.dumps(answers))
"""
    empty = tmp_path / "no-zones"
    empty.mkdir()
    without_tzdir = {k: v for k, v in os.environ.items() if k != "TZDIR"}

    def answers(env: dict[str, str]) -> dict[str, list[object]]:
        run = subprocess.run(
            [sys.executable, "-c", script, str(tmp_path)],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        return json.loads(run.stdout)

    assert answers({**without_tzdir, "TZDIR": str(empty)}) == {
        "named": [False, "error"],
        "utc": [True, None],
    }
    # The same policies with the system's database: both allow.
    assert answers(without_tzdir) == {"named": [True, None], "utc": [True, None]}


def test_every_zone_of_the_database_agrees_with_pythons_zoneinfo(tmp_path):
    """Every zone the system lists, at instants from 1906 to 2100, gives the
    wall-clock time CPython's zoneinfo (an independent reader of the same
    files) gives."""
    names = sorted(zoneinfo.available_timezones())
    assert len(names) > 300, "the system's time-zone database is missing"
    clock = """package vedette
import rego.v1
clocks := [time.clock([input.args.ns, zone]) | some zone in input.args.zones]
decision := {"allow": true, "reason": json.marshal(clocks)}
"""
    engine = PolicyEngine(Bundle.load(write_bundle(tmp_path / "clock", {"p.rego": clock})))
    for seconds in (-2_000_000_000, 0, 1_000_000_000, 1_772_600_767, 2_200_000_000, 4_118_126_400):
        decision = engine.evaluate({**INPUT, "args": {"ns": seconds * 10**9, "zones": names}})
        assert decision.fault is None, decision.reason
        expected = []
        for name in names:
            moment = datetime.datetime.fromtimestamp(seconds, tz=zoneinfo.ZoneInfo(name))
            expected.append([moment.hour, moment.minute, moment.second])
        assert json.loads(decision.reason) == expected, seconds
