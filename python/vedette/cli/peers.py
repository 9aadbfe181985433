"""``vedette peers status``: what the running node's peer transport reports.

It reads the status file the node rewrites every second (``[peers]
status_file``, default ``<state_dir>/peers-status.json``): read-only, local,
protected by the state folder's permissions, and never an operation on the
adapter listener (INV-10). No configuration, no ``[peers]`` table or no status
file: exit 2 (docs/operations.md, "Exit codes").
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import click

from vedette.cli.errors import CannotRun

# A status older than this is reported as stale: the node may have stopped.
STALE_AFTER_S = 10.0


@click.group("peers")
def peers_group() -> None:
    """The peer transport of the running node."""


@peers_group.command("status")
@click.option("--config", "config_path", type=click.Path(path_type=Path), help="vedette.toml")
@click.option(
    "--status-file",
    type=click.Path(path_type=Path),
    help="Read this status file instead of the one the configuration names.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the raw status as JSON.")
def status_command(config_path: Path | None, status_file: Path | None, as_json: bool) -> None:
    """What the running node's peer transport reports.

    Connected peers, bytes in/out, quota state, last sync, frontier lag and
    handshakes rejected by reason.
    """
    if status_file is None:
        from vedette.config import ConfigError, load_config
        from vedette.peers.node import status_path

        try:
            config = load_config(config_path)
        except ConfigError as err:
            raise CannotRun(str(err)) from err
        if config.peers is None:
            raise CannotRun("no [peers] table in the configuration")
        status_file = status_path(config)
    try:
        status: dict[str, Any] = json.loads(status_file.read_text())
    except FileNotFoundError:
        raise CannotRun(
            f"{status_file}: no status yet (is `vedette serve` running with [peers]?)"
        ) from None
    except (OSError, ValueError) as err:
        raise CannotRun(f"{status_file}: {err}") from err
    if as_json:
        click.echo(json.dumps(status, indent=1, sort_keys=True))
        return
    age = time.time() - status.get("written_unix_ms", 0) / 1000
    state = "running" if status.get("running") else "stopped"
    if age > STALE_AFTER_S:
        state += f" (status is {age:.0f} s old: the node may have stopped)"
    click.echo(f"node {status.get('node')}: {state}")
    click.echo(f"listening: {', '.join(status.get('listening', [])) or '-'}")
    click.echo(
        f"bytes in/out: {status.get('bytes_in', 0)}/{status.get('bytes_out', 0)}  "
        f"segments in/out: {status.get('segments_in', 0)}/{status.get('segments_out', 0)}"
    )
    store = status.get("store")
    if store:
        click.echo(f"store: {store.get('verdict')} ({store.get('reason')})")
    rejected = status.get("handshakes_rejected", {})
    click.echo(
        "handshakes rejected: "
        + (", ".join(f"{k}={v}" for k, v in sorted(rejected.items())) or "none")
    )
    peers = status.get("peers", [])
    if not peers:
        click.echo("no peers")
    for p in peers:
        last = p.get("last_sync_unix_ms")
        since = f"{time.time() - last / 1000:.0f} s ago" if last else "never"
        click.echo(
            f"  {p['identity']} {p['address']} "
            f"{'connected' if p['connected'] else 'closed'} "
            f"in={p['bytes_in']} out={p['bytes_out']} quota={p['quota']} "
            f"last_sync={since} lag={p['frontier_lag']}"
        )
    for d in status.get("dials", []):
        click.echo(
            f"  dial {d['address']}: attempts={d['attempts']} failures={d['failures']}"
            + (f" last_error={d['last_error']}" if d.get("last_error") else "")
        )
    sys.stdout.flush()
