"""``vedette store drain|import``: evidence to and from removable media.

Both ask the running node over its operator socket when it is up (the node
holds its store: only it may acknowledge or import), and open the store
themselves when it is not.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click
import httpx

from vedette.config import Config, ConfigError, load_config
from vedette.drain import DrainError, drain, import_drained
from vedette.errors import StoreError

_CONFIG = click.option(
    "--config", "config_path", type=click.Path(path_type=Path), help="vedette.toml of the node"
)
# A drain of a full store to a slow stick can take minutes.
OPERATOR_TIMEOUT_S = 3600.0


def _config(config_path: Path | None) -> Config:
    try:
        return load_config(config_path)
    except ConfigError as err:
        raise click.ClickException(str(err)) from err


def _ask_node(config: Config, path: str, body: dict[str, Any]) -> dict[str, Any] | None:
    """The running node's answer, or None when no node is listening."""
    socket_path = config.operator_socket
    if not socket_path.is_socket():
        return None
    transport = httpx.HTTPTransport(uds=str(socket_path))
    try:
        with httpx.Client(transport=transport, timeout=OPERATOR_TIMEOUT_S) as client:
            answer = client.post(f"http://node{path}", json=body)
    except httpx.TransportError:
        return None  # a socket left behind by a node that is gone
    if answer.status_code != 200:
        raise click.ClickException(f"the node refused: {answer.json().get('error', answer.text)}")
    result: dict[str, Any] = answer.json()
    return result


def _open_store_of(config: Config) -> Any:
    from vedette.runtime.interceptor import open_store

    try:
        return open_store(config)
    except StoreError as err:
        raise click.ClickException(f"evidence store: {err}") from err


@click.command("drain")
@_CONFIG
@click.option(
    "--to", "folder", required=True, type=click.Path(path_type=Path, file_okay=False),
    help="Folder on the removable media.",
)  # fmt: skip
@click.option("--label", required=True, help="Name of the media; segments become media:LABEL.")
@click.option("--all", "include_all", is_flag=True, help="Also segments acknowledged elsewhere.")
def drain_command(config_path: Path | None, folder: Path, label: str, include_all: bool) -> None:
    """Copy sealed evidence to FOLDER, check the copy, then let the node evict it."""
    config = _config(config_path)
    folder = folder.resolve()
    body = {"to": str(folder), "label": label, "all": include_all}
    report = _ask_node(config, "/v1/store/drain", body)
    if report is None:
        with _open_store_of(config) as store:
            try:
                report = drain(store, folder, label, include_acknowledged=include_all).as_dict()
            except DrainError as err:
                raise click.ClickException(str(err)) from err
    click.echo(
        f"{report['copied']} segments copied ({report['bytes']} bytes), "
        f"{report['already_there']} already there, {report['verified']} read back and checked, "
        f"{report['acknowledged']} acknowledged as media:{label}"
    )
    if report["manifest"]:
        click.echo(f"manifest: {folder / str(report['manifest'])}")


@click.command("import")
@_CONFIG
@click.option(
    "--from", "folder", required=True,
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    help="A folder a drain wrote.",
)  # fmt: skip
def import_command(config_path: Path | None, folder: Path) -> None:
    """Import drained segments into this node's store (each checked); exit 1 if any is refused."""
    config = _config(config_path)
    folder = folder.resolve()
    result = _ask_node(config, "/v1/store/import", {"from": str(folder)})
    if result is None:
        with _open_store_of(config) as store:
            result = import_drained(store, folder)
    click.echo(json.dumps(result, indent=1, sort_keys=True))
    if result["refused"]:
        sys.exit(1)
