#!/usr/bin/env bash
# `vedette bench` as on a small board, beside the machine's own figures: on
# every core, pinned to one core (taskset -c 0), and within 256 MiB of memory
# (a memory cgroup, v2 or v1, where the machine lets us make one; otherwise
# `ulimit -v`, which also counts address space never touched). Writes each
# run's JSON into DIR (default: a new temporary directory) and prints each
# constrained run against the unconstrained one (`vedette bench compare`).
#
#   bench/edge_runs.sh [DIR] [-- extra `vedette bench` options]
set -euo pipefail
out="${1:-$(mktemp -d)}"
shift || true
[ "${1:-}" = "--" ] && shift
mkdir -p "$out"
limit_bytes=$((256 * 1024 * 1024))

echo "== every core ($(nproc))"
vedette bench --json "$out/all-cores.json" "$@"

echo "== one core: taskset -c 0"
taskset -c 0 vedette bench --json "$out/one-core.json" "$@"

echo "== 256 MiB of memory"
cgroup=""
if [ -w /sys/fs/cgroup/cgroup.subtree_control ] && grep -qw memory /sys/fs/cgroup/cgroup.controllers; then
    cgroup="/sys/fs/cgroup/vedette-bench-$$"
    mkdir "$cgroup" && echo "$limit_bytes" >"$cgroup/memory.max"
    echo 0 >"$cgroup/memory.swap.max" 2>/dev/null || true
elif [ -w /sys/fs/cgroup/memory ]; then
    cgroup="/sys/fs/cgroup/memory/vedette-bench-$$"
    mkdir "$cgroup" && echo "$limit_bytes" >"$cgroup/memory.limit_in_bytes"
    # Swap counted too, where the kernel accounts it: 256 MiB in all.
    echo "$limit_bytes" >"$cgroup/memory.memsw.limit_in_bytes" 2>/dev/null || true
fi
if [ -n "$cgroup" ]; then
    trap 'rmdir "$cgroup" 2>/dev/null || true' EXIT
    echo "(a memory cgroup: $cgroup)"
    sh -c 'echo $$ >"$1/cgroup.procs"; shift; exec "$@"' sh "$cgroup" \
        vedette bench --json "$out/256-mib.json" "$@"
    peak="$(cat "$cgroup/memory.peak" 2>/dev/null || cat "$cgroup/memory.max_usage_in_bytes" 2>/dev/null || echo)"
    [ -n "$peak" ] && echo "peak memory in the cgroup: $((peak / 1024 / 1024)) MiB"
    failures="$(grep -h '^oom_kill ' "$cgroup/memory.events" 2>/dev/null || cat "$cgroup/memory.failcnt" 2>/dev/null || echo)"
    echo "limit hits: ${failures:-unknown}"
else
    echo "(no memory cgroup here: ulimit -v)"
    (ulimit -v $((limit_bytes / 1024)) && exec vedette bench --json "$out/256-mib.json" "$@")
fi

echo "== one core against every core"
vedette bench compare "$out/all-cores.json" "$out/one-core.json"
echo "== 256 MiB against every core"
vedette bench compare "$out/all-cores.json" "$out/256-mib.json"
echo "results: $out"
