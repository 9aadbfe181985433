"""``vedette agent fingerprint|from-mcp``: agent manifests.

A refused manifest or an unreadable file exits 2 (docs/operations.md, "Exit
codes").
"""

from __future__ import annotations

from pathlib import Path

import click

from vedette.cli.errors import CannotRun, cannot_run
from vedette.errors import ManifestError
from vedette.policy import AgentManifest, load_agent_manifest


@click.group("agent")
def agent_group() -> None:
    """Validate agent manifests, or write one from an MCP server's tools."""


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


@agent_group.command("from-mcp", context_settings={"ignore_unknown_options": True})
@click.option("--name", required=True, help="The agent's name (as callers and policies name it).")
@click.option("--model", required=True, metavar="PROVIDER/NAME", help="The model the agent runs.")
@click.option("--version", "version", default="0.1.0", show_default=True, help="Its version.")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Where to write the manifest (never over an existing file).")  # fmt: skip
@click.option("--url", help="A Streamable HTTP MCP endpoint, instead of a command after --.")
@click.option("--header-env", "header_env", multiple=True, metavar="NAME=VARIABLE",
              help="With --url: send header NAME, its value read from environment variable "
                   "VARIABLE (a token stays off the command line). Repeatable.")  # fmt: skip
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
def agent_from_mcp(
    name: str,
    model: str,
    version: str,
    out: Path,
    url: str | None,
    header_env: tuple[str, ...],
    command: tuple[str, ...],
) -> None:
    """Write an agent manifest from an MCP server's tools/list, for review.

    vedette agent from-mcp --name N --model P/M --out agent.json -- CMD ...
    """
    import json

    from vedette.durable import write_durably
    from vedette.mcp.errors import INSTALL_HINT, GatewayError

    try:
        from vedette.mcp.onboard import list_server_tools, manifest_from
    except ImportError:
        raise CannotRun(INSTALL_HINT) from None
    if out.exists():
        raise CannotRun(f"{out} exists; choose another --out")
    headers = _headers_from_environment(header_env)
    if headers and url is None:
        raise CannotRun("--header-env is for a server given with --url")
    try:
        listing = list_server_tools(list(command) if command else None, url, headers)
        document = manifest_from(listing, name=name, version=version, model=model)
    except GatewayError as err:
        raise CannotRun(str(err)) from err
    text = json.dumps(document, indent=2, ensure_ascii=False).encode() + b"\n"
    try:
        manifest = AgentManifest.from_bytes(text)
        write_durably(out, text, 0o644, exclusive=True)
    except ManifestError as err:
        raise CannotRun(f"the listing makes no valid manifest: {err}") from err
    except OSError as err:
        raise CannotRun(f"{out}: {err.strerror or err}") from err
    click.echo(f"wrote {out}: {len(listing.tools)} tools from {listing.server}")
    for skipped in listing.skipped:
        click.echo(f"left out: tool {skipped!r} (not a valid tool name, or listed twice)")
    click.echo(f"behavioral fingerprint: {manifest.behavioral_fingerprint}")
    click.echo("review it, bind it to a policy, then sign both: vedette release pack")


def _headers_from_environment(pairs: tuple[str, ...]) -> dict[str, str]:
    """``NAME=VARIABLE`` pairs as headers, their values read from the environment."""
    from vedette.config.schema import header_value_from

    headers: dict[str, str] = {}
    for pair in pairs:
        header, _, variable = pair.partition("=")
        if not header or not variable:
            raise CannotRun(f"--header-env {pair!r}: expected NAME=VARIABLE")
        try:
            headers[header] = header_value_from(variable)
        except ValueError as err:
            raise CannotRun(f"--header-env {header}: ${variable} {err}") from err
    return headers
