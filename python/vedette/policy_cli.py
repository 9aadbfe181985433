"""The ``vedette bundle``, ``vedette policy`` and ``vedette agent`` commands.

Exit codes: 0 for success (and for an allow), 1 for a deny, 2 for errors
(a refused bundle or manifest, an unreadable file, malformed input).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, NoReturn

import click

from vedette.errors import BundleError, ManifestError
from vedette.policy import Bundle, PolicyEngine, load_agent_manifest

EXIT_ALLOW = 0
EXIT_DENY = 1
EXIT_ERROR = 2


def _fail(command: str, message: str) -> NoReturn:
    click.echo(f"vedette {command}: {message}", err=True)
    sys.exit(EXIT_ERROR)


def _load_bundle(command: str, path: Path) -> Bundle:
    try:
        return Bundle.load(path)
    except BundleError as err:
        _fail(command, f"{path}: {err}")
    except OSError as err:
        _fail(command, f"{path}: {err.strerror or err}")


def _compile(command: str, path: Path, bundle: Bundle, time_limit: float) -> PolicyEngine:
    try:
        return PolicyEngine(bundle, time_limit=time_limit)
    except BundleError as err:
        _fail(command, f"{path}: {err}")


def _write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path`` and rename it into place."""
    fd, temporary = tempfile.mkstemp(dir=path.parent or Path("."), prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


@click.group("bundle")
def bundle_group() -> None:
    """Build and hash OPA policy bundles."""


@bundle_group.command("build")
@click.argument("source", type=click.Path(exists=True, path_type=Path))
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where to write the .tar.gz.",
)
def bundle_build(source: Path, output: Path) -> None:
    """Validate the bundle at SOURCE and write it as a reproducible .tar.gz.

    The bundle must pass every bundle rule and compile, with a
    data.vedette.decision rule. The same files always give the same bytes.
    Prints '<policy hash>  OUTPUT'.
    """
    bundle = _load_bundle("bundle build", source)
    _compile("bundle build", source, bundle, time_limit=0.1)
    try:
        _write_atomically(output, bundle.to_tar_gz())
    except OSError as err:
        _fail("bundle build", f"{output}: {err.strerror or err}")
    click.echo(f"{bundle.policy_hash}  {output}")


@bundle_group.command("hash")
@click.argument("path", type=click.Path(exists=True, path_type=Path))
def bundle_hash(path: Path) -> None:
    """Print the policy hash (sha256:...) of the bundle at PATH (directory or .tar.gz)."""
    click.echo(str(_load_bundle("bundle hash", path).policy_hash))


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
    engine = _compile(
        "policy eval", bundle_path, _load_bundle("policy eval", bundle_path), time_limit
    )
    try:
        text = sys.stdin.read() if str(input_path) == "-" else input_path.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as err:
        _fail("policy eval", f"{input_path}: {getattr(err, 'strerror', None) or err}")
    try:
        document: Any = json.loads(text)
    except json.JSONDecodeError as err:
        _fail("policy eval", f"{input_path}: not valid JSON: {err}")
    decision = engine.evaluate(document)
    report = decision.to_dict()
    report["policy_hash"] = str(engine.policy_hash)
    report["revision"] = engine.revision
    click.echo(json.dumps(report, indent=2, sort_keys=True, ensure_ascii=False))
    sys.exit(EXIT_ALLOW if decision.allow else EXIT_DENY)


@click.group("agent")
def agent_group() -> None:
    """Validate agent manifests."""


@agent_group.command("fingerprint")
@click.argument("manifest", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def agent_fingerprint(manifest: Path) -> None:
    """Validate the agent manifest and print its behavioral fingerprint (blake3:...)."""
    try:
        agent = load_agent_manifest(manifest)
    except ManifestError as err:
        _fail("agent fingerprint", str(err))
    except OSError as err:
        _fail("agent fingerprint", f"{manifest}: {err.strerror or err}")
    click.echo(str(agent.behavioral_fingerprint))
