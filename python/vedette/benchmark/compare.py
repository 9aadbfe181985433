"""``vedette bench compare A.json B.json``: each metric of B against A."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from vedette.benchmark.common import BenchError
from vedette.benchmark.report import SCHEMA


def load(path: Path) -> dict[str, Any]:
    """A result file written by ``vedette bench --json``; :class:`BenchError` otherwise."""
    try:
        document = json.loads(path.read_text())
    except OSError as err:
        raise BenchError(f"{path}: {err.strerror or err}") from err
    except (ValueError, UnicodeDecodeError) as err:
        raise BenchError(f"{path}: not JSON ({err})") from err
    if not isinstance(document, dict) or document.get("schema") != SCHEMA:
        raise BenchError(f"{path}: not a vedette bench result (schema {SCHEMA!r} expected)")
    metrics = document.get("metrics")
    if not isinstance(metrics, dict):
        raise BenchError(f"{path}: no metrics")
    for key, metric in metrics.items():
        value = metric.get("value") if isinstance(metric, dict) else None
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise BenchError(f"{path}: metric {key!r} has no numeric value")
        if metric.get("better") not in ("higher", "lower"):
            raise BenchError(f"{path}: metric {key!r} does not say whether higher is better")
    return document


def _machine_line(name: str, document: dict[str, Any]) -> str:
    facts = document.get("machine")
    if not isinstance(facts, dict):
        return f"{name}: (no machine facts)"
    return (
        f"{name}: {facts.get('cpu_model', '?')}, {facts.get('cores_usable', '?')} cores, "
        f"{facts.get('python', '?')} ({facts.get('event_loop', '?')}), "
        f"vedette {facts.get('vedette', '?')}, {facts.get('date', '?')}"
    )


def _number(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def compare(a: dict[str, Any], b: dict[str, Any], a_name: str, b_name: str) -> str:
    """A table of B/A per metric; ``better`` says whether B is better for that metric
    (ratio above 1 where higher is better, below 1 where lower is)."""
    a_metrics: dict[str, Any] = a["metrics"]
    b_metrics: dict[str, Any] = b["metrics"]
    keys = list(a_metrics) + [key for key in b_metrics if key not in a_metrics]
    rows: list[tuple[str, str, str, str, str]] = []
    for key in keys:
        first, second = a_metrics.get(key), b_metrics.get(key)
        metric = first or second
        assert metric is not None
        label = f"{metric.get('label', key)} ({metric.get('unit', '')})"
        if first is None or second is None:
            missing = "A" if first is None else "B"
            rows.append((label, "-", "-", "-", f"not in {missing}"))
            continue
        va, vb = float(first["value"]), float(second["value"])
        if va <= 0 or not math.isfinite(va) or not math.isfinite(vb):
            rows.append((label, _number(va), _number(vb), "-", "no ratio"))
            continue
        ratio = vb / va
        higher = first["better"] == "higher"
        if math.isclose(ratio, 1.0, rel_tol=0.02):
            verdict = "same"
        elif (ratio > 1) == higher:
            verdict = "B better"
        else:
            verdict = "B worse"
        rows.append((label, _number(va), _number(vb), f"{ratio:.2f}×", verdict))
    headers = ("metric", "A", "B", "B/A", "")
    widths = [max(len(headers[i]), *(len(row[i]) for row in rows)) for i in range(4)]
    lines = [_machine_line(f"A {a_name}", a), _machine_line(f"B {b_name}", b), ""]
    lines.append(
        f"{headers[0]:<{widths[0]}}  {headers[1]:>{widths[1]}}  {headers[2]:>{widths[2]}}  "
        f"{headers[3]:>{widths[3]}}"
    )
    for label, va_text, vb_text, ratio_text, verdict in rows:
        lines.append(
            f"{label:<{widths[0]}}  {va_text:>{widths[1]}}  {vb_text:>{widths[2]}}  "
            f"{ratio_text:>{widths[3]}}  {verdict}"
        )
    return "\n".join(lines)
