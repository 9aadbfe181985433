"""The results: a table on screen, a JSON file with the machine's facts."""

from __future__ import annotations

import datetime
import json
import os
import platform
from pathlib import Path
from typing import Any

from vedette import __version__, event_loop
from vedette.benchmark.common import BenchError, Metric, Settings, cpu_count

SCHEMA = "vedette.bench/v1"


def machine_facts() -> dict[str, Any]:
    """What the numbers depend on: CPU, cores, memory, kernel, Python, vedette and
    its event loop, date."""
    return {
        "cpu_model": _cpu_model(),
        "architecture": platform.machine(),
        "cores": os.cpu_count() or 1,
        "cores_usable": cpu_count(),
        "memory_mib": _memory_mib(),
        "kernel": f"{platform.system()} {platform.release()}",
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "vedette": __version__,
        "event_loop": event_loop.loop_name(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "load_average": [round(value, 2) for value in _load_average()],
    }


def _cpu_model() -> str:
    try:
        lines = Path("/proc/cpuinfo").read_text(errors="replace").splitlines()
    except OSError:
        lines = []
    fields: dict[str, str] = {}
    for line in lines:
        name, sep, value = line.partition(":")
        if sep and value.strip():
            fields.setdefault(name.strip().lower(), value.strip())
    # x86: "model name"; many ARM boards: "Model" (the board) or only "CPU part".
    for name in ("model name", "model", "hardware", "cpu model", "processor"):
        if name in fields and not fields[name].isdigit():
            return fields[name]
    return platform.processor() or platform.machine() or "unknown"


def _memory_mib() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) // 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _load_average() -> tuple[float, ...]:
    try:
        return os.getloadavg()
    except OSError:
        return ()


def format_value(metric: Metric) -> str:
    value = metric.value
    if value >= 100:
        text = f"{value:,.0f}"
    elif value >= 10:
        text = f"{value:.1f}"
    else:
        text = f"{value:.2f}"
    return f"{text} {metric.unit}"


def table(metrics: list[Metric], facts: dict[str, Any], settings: Settings) -> str:
    """The results as an aligned text table, with the machine in its header."""
    memory = facts["memory_mib"]
    header = (
        f"vedette {facts['vedette']} on {facts['cpu_model']}, {facts['cores_usable']} cores"
        + (f", {memory:,} MiB" if memory is not None else "")
        + f", {facts['python']} ({facts['event_loop']}), {facts['date']}"
    )
    labels = [metric.label for metric in metrics]
    values = [format_value(metric) for metric in metrics]
    label_width = max(len("measurement"), *map(len, labels))
    value_width = max(len("result"), *map(len, values))
    lines = [
        header,
        "",
        f"{'measurement':<{label_width}}  {'result':>{value_width}}  detail",
        f"{'-' * label_width}  {'-' * value_width}  {'-' * 6}",
    ]
    for metric, label, value in zip(metrics, labels, values, strict=True):
        lines.append(f"{label:<{label_width}}  {value:>{value_width}}  {metric.detail}")
    lines += [
        "",
        f"Each timed loop ran about {settings.seconds:g} s. The HTTP load generator runs "
        "on this device beside the server",
        "and takes CPU from it: with few cores, requests/s is a lower bound of what the "
        "server does alone.",
    ]
    return "\n".join(lines)


def to_json(metrics: list[Metric], facts: dict[str, Any], settings: Settings) -> dict[str, Any]:
    return {
        "schema": SCHEMA,
        "machine": facts,
        "settings": {
            "seconds": settings.seconds,
            "starts": settings.starts,
            "connections": settings.connections,
        },
        "metrics": {
            metric.key: {
                "label": metric.label,
                "value": metric.value,
                "unit": metric.unit,
                "better": metric.better,
                "detail": metric.detail,
            }
            for metric in metrics
        },
    }


def write_json(path: Path, document: dict[str, Any]) -> None:
    try:
        path.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n")
    except OSError as err:
        raise BenchError(f"cannot write {path}: {err.strerror or err}") from err
