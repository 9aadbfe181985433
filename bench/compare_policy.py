"""Side-by-side: vedette's policy engine against regopy (rego-cpp) and a
published Python binding of regorus, on the same policies and inputs, in one run.

Run with the bench extra installed:

    python bench/compare_policy.py            # prints and updates bench/RESULTS.md
    python bench/compare_policy.py --quick    # fewer rounds, no file written
    python bench/compare_policy.py --shapes   # only the policy shapes, printed

Every anchor is timed as a caller would use it from Python: set the input
from a dict, evaluate the rule, get the result back. vedette evaluates
data.vedette.decision (an object checked for allow/reason); the anchors
evaluate the bare rule of the same module.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path

import regopy
import regorus
from policy_cases import Case, example_case, large_bundle, policy_shapes, rbac_case
from report import format_seconds, machine, write_section

from vedette.policy import Bundle, PolicyEngine

ANCHOR_VERSIONS = {name: version(name) for name in ("regopy", "gordon-to-regorus")}
OPA_RBAC_NS_PER_OP = 45032
OPA_RBAC_MEDIAN_NS = 35846


def vedette_call(case: Case, reuse: str = "pool") -> Callable[[], bool]:
    engine = PolicyEngine(Bundle.load(case.bundle), reuse=reuse)
    document = case.input
    return lambda: engine.evaluate(document).allow


def regorus_call(case: Case) -> Callable[[], bool]:
    engine = regorus.Engine()
    for name, source in case.modules.items():
        engine.add_policy(name, source)
    if case.data:
        engine.add_data(case.data)
    document, rule = case.input, case.anchor_rule

    def call() -> bool:
        engine.set_input(document)
        result = engine.eval_rule(rule)
        return bool(result["allow"] if isinstance(result, dict) else result)

    return call


def regopy_call(case: Case) -> Callable[[], bool]:
    interpreter = regopy.Interpreter()
    for name, source in case.modules.items():
        interpreter.add_module(name, source)
    if case.data:
        interpreter.add_data(case.data)
    # A query whose value is false counts as undefined in rego-cpp, so the
    # rule's value is bound to a variable and read back as JSON. The output
    # must outlive the node taken from it (regopy frees it otherwise).
    document, query = case.input, f"x := {case.anchor_rule}"

    def call() -> bool:
        interpreter.set_input(document)
        output = interpreter.query(query)
        value = json.loads(output.binding("x").json())
        return bool(value["allow"] if isinstance(value, dict) else value)

    return call


def latencies(call: Callable[[], object], count: int) -> list[int]:
    """Nanoseconds of each of ``count`` calls, timed one by one."""
    clock = time.perf_counter_ns
    samples = []
    for _ in range(count):
        start = clock()
        call()
        samples.append(clock() - start)
    return samples


def percentile(samples: list[int], fraction: float) -> float:
    ordered = sorted(samples)
    return float(ordered[min(len(ordered) - 1, int(fraction * len(ordered)))])


def throughput(
    make_call: Callable[[], Callable[[], object]], threads: int, seconds: float
) -> float:
    """Decisions per second with ``threads`` Python threads calling at once.

    Each thread gets its call from ``make_call`` on its own thread: the
    regorus binding's engines may not cross threads, so each needs its own.
    """
    counts = [0] * threads
    start_gate = threading.Barrier(threads + 1)
    stop_at = [0.0]

    def work(slot: int) -> None:
        call = make_call()
        call()
        start_gate.wait()
        done = 0
        while time.perf_counter() < stop_at[0]:
            for _ in range(50):
                call()
            done += 50
        counts[slot] = done

    workers = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    stop_at[0] = time.perf_counter() + seconds
    start_gate.wait()
    began = time.perf_counter()
    for worker in workers:
        worker.join()
    return sum(counts) / (time.perf_counter() - began)


ALL_ENGINES = ("vedette", "regorus (Python binding)", "regopy (rego-cpp)")


def compare_case(
    case: Case, rounds: int, per_round: int, engines: tuple[str, ...] = ALL_ENGINES
) -> list[dict]:
    """p50, p99 and mean of each of ``engines`` on ``case``, in interleaved rounds
    of at most ``per_round`` calls (fewer for a slow policy: about half a second
    per engine and round)."""
    makers = {
        "vedette": vedette_call,
        "regorus (Python binding)": regorus_call,
        "regopy (rego-cpp)": regopy_call,
    }
    runners = {}
    slowest = 0.0
    for name in engines:
        call = makers[name](case)
        started = time.perf_counter()
        got = call()
        slowest = max(slowest, time.perf_counter() - started)
        if got is not case.expected_allow:
            raise SystemExit(f"{name} decided {got} on {case.name}, expected {case.expected_allow}")
        runners[name] = call
    per_round = max(20, min(per_round, int(0.5 / max(slowest, 1e-6))))
    for call in runners.values():
        latencies(call, min(200, per_round))  # warm
    samples: dict[str, list[int]] = {name: [] for name in runners}
    round_medians: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(rounds):
        for name, call in runners.items():
            batch = latencies(call, per_round)
            samples[name].extend(batch)
            round_medians[name].append(statistics.median(batch))
    rows = []
    for name in runners:
        rows.append(
            {
                "engine": name,
                "p50": percentile(samples[name], 0.50),
                "p99": percentile(samples[name], 0.99),
                "mean": statistics.fmean(samples[name]),
                "round_medians": round_medians[name],
            }
        )
    return rows


def ratio_text(rows: list[dict], anchor: str, goal: float) -> tuple[str, str]:
    by_name = {row["engine"]: row for row in rows}
    vedette, other = by_name["vedette"], by_name[anchor]
    ratio = other["p50"] / vedette["p50"]
    per_round = [
        a / v for a, v in zip(other["round_medians"], vedette["round_medians"], strict=True)
    ]
    verdict = "met" if ratio >= goal else "NOT met"
    return f"{ratio:.2f}× ({min(per_round):.2f}–{max(per_round):.2f})", f"≥ {goal:g}× {verdict}"


SHAPES_HEADER = [
    "### Policy shapes",
    "",
    "Seven shapes of policy (`bench/policies/`, data generated by `bench/policy_cases.py` "
    "with fixed seeds), each decided by vedette and the regorus binding in the same "
    "interleaved rounds (fewer calls per round for a slow policy); both must allow. "
    "rego-cpp is left out here: it takes 0.2–0.3 s a call on the data-heavy shapes. "
    "vedette reads named time zones from the system's database, the binding from "
    "chrono-tz's compiled-in copy.",
    "",
    "| policy | vedette p50 | regorus binding p50 "
    "| vedette speed-up over the binding (its p50 ÷ vedette's, per-round range) | goal |",
    "|---|---|---|---|---|",
]


def shape_rows(rounds: int, per_round: int) -> list[str]:
    """One table row per policy shape, each printed as it is measured."""
    binding = "regorus (Python binding)"
    lines = []
    with tempfile.TemporaryDirectory() as scratch:
        for case in policy_shapes(Path(scratch)):
            rows = compare_case(case, rounds, per_round, ("vedette", binding))
            by_name = {row["engine"]: row for row in rows}
            ratio, goal = ratio_text(rows, binding, 1.0)
            lines.append(
                f"| {case.name} | {format_seconds(by_name['vedette']['p50'] / 1e9)} "
                f"| {format_seconds(by_name[binding]['p50'] / 1e9)} | {ratio} | {goal} |"
            )
            print(lines[-1], flush=True)
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="fewer rounds; do not write RESULTS.md"
    )
    parser.add_argument(
        "--shapes", action="store_true", help="only the policy shapes; do not write RESULTS.md"
    )
    args = parser.parse_args()
    rounds, per_round, seconds = (3, 2000, 1.0) if args.quick else (7, 5000, 3.0)
    if args.shapes:
        print(f"Machine: {machine()}.\n")
        print("\n".join(SHAPES_HEADER), flush=True)
        shape_rows(rounds, per_round)
        return

    lines = [
        "## Policy engine: Rego decisions from Python",
        "",
        f"Machine: {machine()}.",
        f"Command: `python bench/compare_policy.py` ({rounds} interleaved rounds of {per_round} "
        "calls per engine, each call timed; throughput runs of "
        f"{seconds:g} s). Anchors: `regopy` {ANCHOR_VERSIONS['regopy']} "
        "(rego-cpp) and `gordon-to-regorus` "
        f"{ANCHOR_VERSIONS['gordon-to-regorus']} (a published Python binding of regorus; "
        "the `regorus` name itself is not on PyPI). vedette pins regorus 0.14.1.",
        "",
        "| policy | engine | p50 | p99 | decisions/s (1 thread) "
        "| vedette speed-up (p50 ratio, per-round range) | goal |",
        "|---|---|---|---|---|---|---|",
    ]
    goals = {"regorus (Python binding)": 1.0, "regopy (rego-cpp)": 3.0}
    summary = {}
    for case in (example_case(), rbac_case()):
        rows = compare_case(case, rounds, per_round)
        summary[case.name] = rows
        for row in rows:
            if row["engine"] == "vedette":
                ratio, goal = "—", ""
            else:
                ratio, goal = ratio_text(rows, row["engine"], goals[row["engine"]])
            lines.append(
                f"| {case.name} | {row['engine']} | {format_seconds(row['p50'] / 1e9)} | "
                f"{format_seconds(row['p99'] / 1e9)} | {1e9 / row['mean']:,.0f} "
                f"| {ratio} | {goal} |"
            )
        print("\n".join(lines[-len(rows) :]), flush=True)

    lines += ["", *SHAPES_HEADER]
    lines += shape_rows(rounds, per_round)

    lines += [
        "",
        f"OPA's own figure for the RBAC example, from its policy-performance documentation "
        f"(`opa bench --data rbac.rego 'data.rbac.allow'`, **another machine**, Go, no Python "
        f"call): {OPA_RBAC_NS_PER_OP / 1000:.1f} µs/op mean, {OPA_RBAC_MEDIAN_NS / 1000:.1f} µs "
        "median. Not comparable run-for-run; shown for scale only.",
        "",
        "### Threads",
        "",
        "| policy | engine | 1 thread | 2 threads | scaling (goal ≥ 1.8×) |",
        "|---|---|---|---|---|",
    ]
    case = example_case()
    pooled, cloned = vedette_call(case, "pool"), vedette_call(case, "clone")
    independent = vedette_call(case, "independent")
    # vedette shares one engine between threads; each anchor thread builds its own.
    scaling_runs: dict[str, Callable[[], Callable[[], object]]] = {
        "vedette, engine pool (default)": lambda: pooled,
        "vedette, clone per call": lambda: cloned,
        "vedette, independent engines": lambda: independent,
        "regorus (Python binding), engine per thread": lambda: regorus_call(case),
        "regopy (rego-cpp), interpreter per thread": lambda: regopy_call(case),
    }
    for name, make_call in scaling_runs.items():
        one = throughput(make_call, 1, seconds)
        two = throughput(make_call, 2, seconds)
        goal = (
            ("met" if two / one >= 1.8 else "NOT met")
            if name.startswith("vedette, engine")
            else "report"
        )
        lines.append(
            f"| {case.name} | {name} | {one:,.0f}/s | {two:,.0f}/s | {two / one:.2f}× {goal} |"
        )
        print(lines[-1], flush=True)

    archive, data_bytes = large_bundle()
    load_times, compile_times = [], []
    for _ in range(5 if args.quick else 9):
        start = time.perf_counter()
        bundle = Bundle.from_bytes(archive)
        loaded = time.perf_counter()
        PolicyEngine(bundle)
        compiled = time.perf_counter()
        load_times.append(loaded - start)
        compile_times.append(compiled - loaded)
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    lines += [
        "",
        f"Load average after the thread runs: {load}. On this 2-core machine shared with "
        "other work, a second thread only scales when a core is otherwise idle.",
        "",
        "### Loading a 1 MiB bundle",
        "",
        f"A bundle with a {data_bytes / (1 << 20):.2f} MiB `data.json` (RBAC users and roles) "
        f"and one module, {len(archive) / 1024:.0f} KiB compressed; median of {len(load_times)}:",
        "",
        "| step | time |",
        "|---|---|",
        f"| `Bundle.from_bytes` (inflate, bundle rules, canonical JSON, policy hash) | "
        f"{format_seconds(statistics.median(load_times))} |",
        f"| `PolicyEngine(bundle)` (compile, load data, warm) | "
        f"{format_seconds(statistics.median(compile_times))} |",
    ]
    print("\n".join(lines[-4:]), flush=True)
    body = "\n".join(lines)
    if not args.quick:
        write_section("policy", body)
    print("\n" + body)


if __name__ == "__main__":
    main()
