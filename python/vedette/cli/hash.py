"""``vedette hash``: digests of files, printed like sha256sum."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from vedette.cli.errors import EXIT_FAILED
from vedette.hashing import ALGORITHMS, hash_file


@click.command("hash")
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
        # Like sha256sum: the other files are hashed; the answer for the set is no.
        sys.exit(EXIT_FAILED)
