"""``vedette mcp``: the MCP gateway on standard input and output (docs/mcp.md).

An MCP client launches ``vedette mcp --config vedette.toml --caller ID -- <server
command …>`` in place of the server. The gateway itself is python/vedette/mcp/;
it needs the MCP SDK (``pip install 'vedette[mcp]'``), which the base package
does not: without it the command exits 2 and says so.
"""

from __future__ import annotations

from pathlib import Path

import click

from vedette.cli.errors import CannotRun
from vedette.config import ConfigError, load_config
from vedette.errors import ServeError
from vedette.mcp.errors import INSTALL_HINT, GatewayError


@click.command("mcp", context_settings={"ignore_unknown_options": True})
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path),
    required=True,
    help="vedette.toml: the callers, agents and store.",
)
@click.option("--caller", "caller_id", required=True, help="The [[callers]] id the client acts as.")
@click.option(
    "--resources",
    is_flag=True,
    help="Pass the server's resources to the client (each read recorded; not pinned).",
)
@click.option(
    "--prompts",
    is_flag=True,
    help="Pass the server's prompts to the client (each fetch recorded; not pinned).",
)
@click.option(
    "--sampling",
    is_flag=True,
    help="Relay the server's sampling requests to the client (each one and its answer recorded).",
)
@click.option(
    "--elicitation",
    is_flag=True,
    help="Relay the server's elicitation requests to the client (each one and its answer "
    "recorded).",
)
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def mcp_command(
    config_path: Path,
    caller_id: str,
    resources: bool,
    prompts: bool,
    sampling: bool,
    elicitation: bool,
    command: tuple[str, ...],
) -> None:
    """Gate an MCP server's tool calls: vedette mcp --config F --caller ID -- CMD …"""
    try:
        import mcp  # noqa: F401
    except ImportError:
        raise CannotRun(INSTALL_HINT) from None
    try:
        config = load_config(config_path)
    except ConfigError as err:
        raise CannotRun(str(err)) from err
    from vedette.mcp.stdio import run_gateway

    try:
        run_gateway(
            config,
            caller_id,
            list(command),
            resources=resources,
            prompts=prompts,
            sampling=sampling,
            elicitation=elicitation,
        )
    except (GatewayError, ServeError) as err:
        raise CannotRun(str(err)) from err
