"""``vedette bundle build|hash``: OPA policy bundles.

A refused bundle or an unreadable file exits 2 (docs/operations.md, "Exit
codes"); ``vedette policy eval`` loads and compiles bundles with the same
helpers.
"""

from __future__ import annotations

from pathlib import Path

import click

from vedette.cli.errors import cannot_run
from vedette.durable import write_durably
from vedette.errors import BundleError
from vedette.policy import Bundle, PolicyEngine


def load_bundle(command: str, path: Path) -> Bundle:
    """The bundle at ``path``, or exit 2 naming ``vedette <command>``."""
    try:
        return Bundle.load(path)
    except BundleError as err:
        cannot_run(f"vedette {command}", f"{path}: {err}")
    except OSError as err:
        cannot_run(f"vedette {command}", f"{path}: {err.strerror or err}")


def compile_bundle(command: str, path: Path, bundle: Bundle, time_limit: float) -> PolicyEngine:
    """The bundle's compiled policy, or exit 2 naming ``vedette <command>``."""
    try:
        return PolicyEngine(bundle, time_limit=time_limit)
    except BundleError as err:
        cannot_run(f"vedette {command}", f"{path}: {err}")


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
    bundle = load_bundle("bundle build", source)
    compile_bundle("bundle build", source, bundle, time_limit=0.1)
    try:
        write_durably(output, bundle.to_tar_gz())
    except OSError as err:
        cannot_run("vedette bundle build", f"{output}: {err.strerror or err}")
    click.echo(f"{bundle.policy_hash}  {output}")


@bundle_group.command("hash")
@click.argument("path", type=click.Path(exists=True, path_type=Path))
def bundle_hash(path: Path) -> None:
    """Print the policy hash (sha256:...) of the bundle at PATH (directory or .tar.gz)."""
    click.echo(str(load_bundle("bundle hash", path).policy_hash))
