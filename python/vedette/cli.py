"""The ``vedette`` command line."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from vedette import __version__
from vedette.archive.cli import archive_group
from vedette.benchmark.cli import bench_group
from vedette.drain_cli import drain_command, import_command
from vedette.hashing import ALGORITHMS, hash_file
from vedette.peers.cli import peers_group
from vedette.peers.pki_cli import pki_group
from vedette.policy_cli import agent_group, bundle_group, policy_group
from vedette.releases.cli import release_group
from vedette.releases.keys_cli import keygen_command
from vedette.serve import serve
from vedette.store_cli import store_group
from vedette.token_cli import token_group


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="vedette")
def main() -> None:
    """vedette: a fail-closed policy runtime for AI-agent tool calls."""


@main.command("hash")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--alg",
    "algorithm",
    type=click.Choice(ALGORITHMS),
    default="blake3",
    show_default=True,
    help="Hash algorithm.",
)
@click.option(
    "--threads",
    type=click.IntRange(min=1),
    default=None,
    help="Threads for BLAKE3 on large files (default: all cores).",
)
def hash_command(files: tuple[Path, ...], algorithm: str, threads: int | None) -> None:
    """Print '<algorithm>:<hex>  FILE' for each FILE, like sha256sum.

    Use '-' to read standard input. Exits 1 if any file could not be hashed.
    """
    failed = False
    for path in files:
        source = Path("/dev/stdin") if str(path) == "-" else path
        try:
            digest = hash_file(source, algorithm, threads)
        except OSError as err:
            reason = err.strerror or str(err)
            click.echo(f"vedette hash: {path}: {reason}", err=True)
            failed = True
            continue
        click.echo(f"{digest}  {path}")
    if failed:
        sys.exit(1)


main.add_command(serve)
main.add_command(token_group)
store_group.add_command(drain_command)
store_group.add_command(import_command)
main.add_command(store_group)
main.add_command(bundle_group)
main.add_command(policy_group)
main.add_command(agent_group)
main.add_command(release_group)
main.add_command(keygen_command)
main.add_command(pki_group)
main.add_command(peers_group)
main.add_command(archive_group)
main.add_command(bench_group)


if __name__ == "__main__":
    main()
