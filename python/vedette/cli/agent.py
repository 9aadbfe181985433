"""``vedette agent fingerprint``: agent manifests.

A refused manifest or an unreadable file exits 2 (docs/operations.md, "Exit
codes").
"""

from __future__ import annotations

from pathlib import Path

import click

from vedette.cli.errors import cannot_run
from vedette.errors import ManifestError
from vedette.policy import load_agent_manifest


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
        cannot_run("vedette agent fingerprint", str(err))
    except OSError as err:
        cannot_run("vedette agent fingerprint", f"{manifest}: {err.strerror or err}")
    click.echo(str(agent.behavioral_fingerprint))
