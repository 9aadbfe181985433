"""The ``vedette`` command line: one module per command group, named after it.

The command line is a leaf: nothing outside ``vedette.cli`` imports it. Exit
codes follow one rule (``vedette.cli.errors``; docs/operations.md, "Exit codes").
"""

from __future__ import annotations

import click

from vedette import __version__
from vedette.cli.agent import agent_group
from vedette.cli.archive import archive_group
from vedette.cli.bench import bench_group
from vedette.cli.bundle import bundle_group
from vedette.cli.hash import hash_command
from vedette.cli.keygen import keygen_command
from vedette.cli.mcp import mcp_command
from vedette.cli.peers import peers_group
from vedette.cli.pki import pki_group
from vedette.cli.policy import policy_group
from vedette.cli.release import release_group
from vedette.cli.serve import serve_command
from vedette.cli.store import store_group
from vedette.cli.token import token_group

EPILOG = (
    "Exit codes: 0 done (a check passed), 1 the check failed (faults found, a release "
    "failed verification, a policy denied), 2 usage error or cannot run (bad "
    "configuration, unreachable). See docs/operations.md, 'Exit codes'."
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]}, epilog=EPILOG)
@click.version_option(__version__, prog_name="vedette")
def main() -> None:
    """vedette: a fail-closed policy runtime for AI-agent tool calls."""


main.add_command(serve_command)
main.add_command(token_group)
main.add_command(store_group)
main.add_command(bundle_group)
main.add_command(policy_group)
main.add_command(agent_group)
main.add_command(release_group)
main.add_command(keygen_command)
main.add_command(pki_group)
main.add_command(peers_group)
main.add_command(archive_group)
main.add_command(hash_command)
main.add_command(bench_group)
main.add_command(mcp_command)
