"""``vedette serve``: the adapter API on uvicorn or granian.

The node is built and run by python/vedette/serve.py; this command parses the
options and prints. A node that cannot start (a bad configuration, a store
another process holds, a bad ``[peers]`` table) is a one-line error and exit 2
(docs/operations.md, "Exit codes").
"""

from __future__ import annotations

import dataclasses
import shlex
from pathlib import Path

import click

from vedette import event_loop
from vedette.cli.errors import CannotRun
from vedette.config import ConfigError
from vedette.errors import ServeError
from vedette.example import EXAMPLE_MOUNT, example_dir
from vedette.serve import ServeSpec, parse_listen, serve_granian, serve_uvicorn


def _listen(_ctx: object, _param: object, value: str | None) -> str | None:
    if value is not None:
        try:
            parse_listen(value)
        except ServeError as err:
            raise click.BadParameter(str(err)) from None
    return value


@click.command("serve")
@click.option("--config", "config_path", type=click.Path(path_type=Path), help="vedette.toml")
@click.option("--listen", callback=_listen, help="HOST:PORT to listen on (default 127.0.0.1:8797).")
@click.option("--example", is_flag=True, help="Run the embedded example agent and policy.")
@click.option(
    "--server",
    type=click.Choice(["uvicorn", "granian"]),
    default="uvicorn",
    show_default=True,
    help="HTTP server; granian needs `pip install vedette[granian]`.",
)
def serve_command(config_path: Path | None, listen: str | None, example: bool, server: str) -> None:
    """Serve the adapter API: POST /v1/tool decides, runs and records tool calls."""
    spec = ServeSpec(str(config_path) if config_path else None, listen, example)
    try:
        config, token = spec.resolve()
        for mcp_server in config.mcp.servers:
            mcp_server.http_headers()  # the variables they name are set, before anything starts
    except (ConfigError, ServeError) as err:
        raise CannotRun(str(err)) from err
    scheme = "https" if config.listen.tls_cert is not None else "http"
    url = f"{scheme}://{config.listen.host}:{config.listen.port}"

    # uvicorn runs on uvloop only where `vedette[fast]` installed it; granian has its own loop.
    loop = f", event loop {event_loop.loop_name()}" if server == "uvicorn" else ""

    def announce() -> None:
        click.echo(f"vedette serving {url} (node {config.node_id}, store {config.store_dir}{loop})")
        if token is not None:
            _print_example_help(url, token)

    try:
        if server == "granian":
            pinned = dataclasses.replace(spec, token=token, state_dir=str(config.state_dir))
            serve_granian(config, pinned, announce)
        else:
            serve_uvicorn(config, announce)
    except ServeError as err:
        raise CannotRun(str(err)) from err


def _print_example_help(url: str, token: str) -> None:
    allowed = '{"tool": "echo", "args": {"text": "hello"}}'
    denied = '{"tool": "fs.read", "args": {"path": "/etc/passwd"}}'
    click.echo(f"example agent, policy and data: {example_dir()}")
    click.echo(f"caller token: {token}")
    click.echo(f"fs.read is allowed under {EXAMPLE_MOUNT} (the example's data folder)")
    for label, body in (("allowed", allowed), ("denied", denied)):
        command = (
            f"curl -s {url}/v1/tool -H {shlex.quote('Authorization: Bearer ' + token)} "
            f"-H 'Content-Type: application/json' -d {shlex.quote(body)}"
        )
        click.echo(f"{label}: {command}")
