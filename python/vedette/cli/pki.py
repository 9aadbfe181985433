"""``vedette pki``: the CA, node certificates and CRL of a small fleet.

A refusal (a CA already there, a node certificate without ``--force``, a
certificate this CA did not issue) exits 2: nothing was made (docs/operations.md,
"Exit codes").
"""

from __future__ import annotations

from pathlib import Path

import click

from vedette.cli.errors import CannotRun
from vedette.errors import PkiError
from vedette.peers import pki

_dir_option = click.option(
    "--dir",
    "directory",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="The PKI directory (ca.crt, ca.key, crl.pem, NODE.crt, NODE.key).",
)
_crl_days_option = click.option(
    "--crl-days",
    type=click.IntRange(min=1),
    default=pki.CRL_VALIDITY_DAYS,
    show_default=True,
    help="Days until the CRL's nextUpdate; re-sign with 'vedette pki crl' before then.",
)


@click.group("pki")
def pki_group() -> None:
    """A small-fleet PKI for peer mutual TLS (ECDSA P-256, SPIFFE node ids)."""


@pki_group.command("init")
@click.option("--trust-domain", required=True, help="Trust domain, e.g. fleet.example.")
@_dir_option
@click.option("--days", type=click.IntRange(min=1), default=pki.CA_VALIDITY_DAYS, show_default=True)
@_crl_days_option
def init_command(trust_domain: str, directory: Path, days: int, crl_days: int) -> None:
    """Make DIR/ca.crt, DIR/ca.key (0600) and an empty signed DIR/crl.pem."""
    try:
        paths = pki.init_ca(directory, trust_domain, days, crl_days=crl_days)
    except PkiError as err:
        raise CannotRun(str(err)) from None
    for path in paths:
        click.echo(f"wrote {path}")


@pki_group.command("issue")
@click.argument("node")
@_dir_option
@click.option(
    "--days", type=click.IntRange(min=1), default=pki.NODE_VALIDITY_DAYS, show_default=True
)
@click.option("--force", is_flag=True, help="Replace an existing NODE.crt / NODE.key (renewal).")
def issue_command(node: str, directory: Path, days: int, force: bool) -> None:
    """Issue DIR/NODE.crt and DIR/NODE.key (0600) for node NODE."""
    try:
        paths = pki.issue(directory, node, days, replace=force)
    except PkiError as err:
        raise CannotRun(str(err)) from None
    for path in paths:
        click.echo(f"wrote {path}")


@pki_group.command("revoke")
@click.argument("cert", type=click.Path(dir_okay=False, path_type=Path))
@_dir_option
@_crl_days_option
def revoke_command(cert: Path, directory: Path, crl_days: int) -> None:
    """Revoke CERT: add it to DIR/crl.pem and re-sign it (copy it to every node)."""
    try:
        crl = pki.revoke(directory, cert, crl_days=crl_days)
        info = pki.crl_info(directory)
    except PkiError as err:
        raise CannotRun(str(err)) from None
    click.echo(f"wrote {crl} (CRL number {info.number}, {len(info.revoked)} revoked)")


@pki_group.command("crl")
@_dir_option
@_crl_days_option
def crl_command(directory: Path, crl_days: int) -> None:
    """Re-sign DIR/crl.pem with a fresh nextUpdate (run well before it expires)."""
    try:
        crl = pki.resign_crl(directory, crl_days=crl_days)
        info = pki.crl_info(directory)
    except PkiError as err:
        raise CannotRun(str(err)) from None
    click.echo(f"wrote {crl} (CRL number {info.number}, {len(info.revoked)} revoked)")
