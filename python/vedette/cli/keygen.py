"""``vedette keygen``: a cosign-compatible signing key pair.

Every refusal (files already there, no password, a file that cannot be
written) exits 2 (docs/operations.md, "Exit codes").
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from vedette.cli.errors import CannotRun
from vedette.durable import write_durably
from vedette.errors import KeyFileError
from vedette.releases.signing import PublicKey, generate_key_pair

PASSWORD_ENV = "VEDETTE_PASSWORD"


def _password() -> bytes:
    from_env = os.environ.get(PASSWORD_ENV)
    if from_env is not None:
        return from_env.encode("utf-8")
    if not sys.stdin.isatty():
        raise CannotRun(f"no password: set {PASSWORD_ENV} or run on a terminal to be prompted")
    entered: str = click.prompt(
        "Password for the private key", hide_input=True, confirmation_prompt=True, default=""
    )
    return entered.encode("utf-8")


@click.command("keygen")
@click.option(
    "--out-prefix",
    default="cosign",
    show_default=True,
    help="Writes PREFIX.key (encrypted private key, mode 0600) and PREFIX.pub.",
)
@click.option("--force", is_flag=True, help="Replace existing PREFIX.key / PREFIX.pub.")
def keygen_command(out_prefix: str, force: bool) -> None:
    """Make an ECDSA P-256 signing key pair in cosign's format.

    The private key is encrypted with a password from $VEDETTE_PASSWORD or a
    prompt (asked twice); cosign reads the files and vedette reads cosign's.
    """
    key_path = Path(f"{out_prefix}.key")
    pub_path = Path(f"{out_prefix}.pub")
    if not force:
        for path in (key_path, pub_path):
            if os.path.lexists(path):
                raise CannotRun(f"{path} exists; use --force to replace it")
    password = _password()
    try:
        private_pem, public_pem = generate_key_pair(password)
    except KeyFileError as err:
        raise CannotRun(str(err)) from None
    try:
        write_durably(key_path, private_pem, 0o600, exclusive=not force)
        write_durably(pub_path, public_pem, 0o644, exclusive=not force)
    except FileExistsError as err:
        raise CannotRun(f"{err.filename} exists; use --force to replace it") from None
    except OSError as err:
        raise CannotRun(f"{err.filename or key_path}: {err.strerror or err}") from None
    key_id = PublicKey.from_pem(public_pem).key_id
    click.echo(f"Private key written to {key_path}")
    click.echo(f"Public key written to {pub_path} ({key_id})")
