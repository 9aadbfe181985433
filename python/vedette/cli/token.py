"""``vedette token``: make caller tokens and the hashes the config keeps of them.

No token on standard input is a usage error: exit 2 (docs/operations.md, "Exit
codes").
"""

from __future__ import annotations

import secrets
import sys

import click

from vedette.cli.errors import CannotRun
from vedette.config import token_digest


@click.group("token")
def token_group() -> None:
    """Caller tokens: the config holds only their SHA-256."""


@token_group.command("new")
@click.option("--caller", default="my-adapter", show_default=True, help="Caller id.")
@click.option("--agent", default="my-agent", show_default=True, help="Agent it may act for.")
@click.option(
    "--operator",
    "operator_listen",
    metavar="IP:PORT",
    help="Make the operator listener's token instead, for this loopback address.",
)
def new_command(caller: str, agent: str, operator_listen: str | None) -> None:
    """Print a new random token, and the [[callers]] (or [operator]) table that admits it."""
    token = secrets.token_urlsafe(32)
    if operator_listen is not None:
        click.echo(f"operator token (keep it for the scraper; it is not stored anywhere): {token}")
        click.echo("")
        click.echo("[operator]")
        click.echo(f'listen = "{operator_listen}"')
        click.echo(f'token_sha256 = "{token_digest(token)}"')
        return
    click.echo(f"token (give it to the adapter; it is not stored anywhere): {token}")
    click.echo("")
    click.echo("[[callers]]")
    click.echo(f'id = "{caller}"')
    click.echo(f'agent = "{agent}"')
    click.echo(f'token_sha256 = "{token_digest(token)}"')


@token_group.command("hash")
def hash_command() -> None:
    """Read a token from standard input and print its sha256: hash for the config."""
    token = sys.stdin.readline().strip()
    if not token:
        raise CannotRun("no token on standard input")
    click.echo(str(token_digest(token)))
