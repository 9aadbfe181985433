"""``vedette policy eval``: evaluate a bundle's policy on one input document.

Exit codes (docs/operations.md, "Exit codes"): 0 for an allow, 1 for a deny,
2 for errors (a refused bundle, unreadable or malformed input).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from vedette.cli.bundle import compile_bundle, load_bundle
from vedette.cli.errors import EXIT_FAILED, EXIT_OK, cannot_run


@click.group("policy")
def policy_group() -> None:
    """Evaluate policies."""


@policy_group.command("eval")
@click.option(
    "--bundle",
    "bundle_path",
    required=True,
    type=click.Path(exists=True, path_type=Path),
    help="Bundle directory or .tar.gz.",
)
@click.option(
    "--input",
    "input_path",
    required=True,
    type=click.Path(dir_okay=False, allow_dash=True, path_type=Path),
    help="JSON input document ('-' for standard input).",
)
@click.option(
    "--time-limit",
    type=click.FloatRange(min=0.001, max=3600),
    default=0.1,
    show_default=True,
    help="Seconds one evaluation may take before it is denied.",
)
def policy_eval(bundle_path: Path, input_path: Path, time_limit: float) -> None:
    """Evaluate data.vedette.decision and print the decision as JSON.

    Exits 0 for allow, 1 for deny, 2 for errors (refused bundle, unreadable or
    malformed input).
    """
    engine = compile_bundle(
        "policy eval", bundle_path, load_bundle("policy eval", bundle_path), time_limit
    )
    try:
        text = sys.stdin.read() if str(input_path) == "-" else input_path.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as err:
        cannot_run("vedette policy eval", f"{input_path}: {getattr(err, 'strerror', None) or err}")
    try:
        document: Any = json.loads(text)
    except json.JSONDecodeError as err:
        cannot_run("vedette policy eval", f"{input_path}: not valid JSON: {err}")
    decision = engine.evaluate(document)
    report = decision.to_dict()
    report["policy_hash"] = str(engine.policy_hash)
    report["revision"] = engine.revision
    click.echo(json.dumps(report, indent=2, sort_keys=True, ensure_ascii=False))
    sys.exit(EXIT_OK if decision.allow else EXIT_FAILED)
