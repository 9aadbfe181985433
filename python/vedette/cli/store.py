"""``vedette store``: read a segment store from the shell, and move evidence to
and from removable media.

``inspect``, ``verify``, ``quarantine`` and ``export`` open the store read-only:
they take no lock, so they work beside a running node, and they change nothing
on disk. Damage that the next real open would repair (cut a torn tail,
quarantine a segment) is reported instead.

``drain`` and ``import`` ask the running node over its operator socket when it
is up (the node holds its store: only it may acknowledge or import), and open
the store themselves when it is not.

Exit codes (docs/operations.md, "Exit codes"): 1 when a check finds faults or
an import refuses a segment, 2 when the store, the configuration or the node
cannot be used.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click
import httpx

from vedette.cli.errors import EXIT_FAILED, CannotRun, cannot_run
from vedette.config import Config, ConfigError, load_config
from vedette.drain import DrainError, drain, import_drained
from vedette.store import SegmentStore, StoreError, acknowledge_quarantine, record_fields

_DIR = click.argument("directory", type=click.Path(path_type=Path, file_okay=False, exists=True))
_CONFIG = click.option(
    "--config", "config_path", type=click.Path(path_type=Path), help="vedette.toml of the node"
)
# A drain of a full store to a slow stick can take minutes.
OPERATOR_TIMEOUT_S = 3600.0


def _open(directory: Path) -> SegmentStore:
    try:
        return SegmentStore.open_read_only(directory)
    except StoreError as err:
        cannot_run("vedette store", str(err))


@click.group("store")
def store_group() -> None:
    """Inspect, verify and export a segment store; drain it to media and import."""


@store_group.command("inspect")
@_DIR
def inspect_command(directory: Path) -> None:
    """Segments, usage against the ceiling, and chain heads per origin."""
    with _open(directory) as store:
        usage = store.usage()
        pct = 100 * usage.bytes_used / usage.ceiling_bytes
        click.echo(f"store      {store.path} (node {store.node_id})")
        click.echo(f"usage      {usage.bytes_used} of {usage.ceiling_bytes} bytes ({pct:.1f}%)")
        click.echo(
            f"           sealed {usage.sealed_bytes}, open {usage.open_bytes}, "
            f"evictable {usage.evictable_bytes}, quarantined {usage.quarantine_bytes}"
        )
        for origin, (seq, seg_id) in sorted(store.chain_heads().items()):
            click.echo(f"head       {origin} seq {seq} {seg_id}")
        recovery = store.recovery
        if not recovery["clean"]:
            click.echo(f"recovery   {json.dumps(recovery, sort_keys=True)}")
        click.echo("segments")
        for seg in store.segments():
            state = "sealed" if seg.sealed else "open  "
            acked = f" acked by {','.join(seg.acked_by)}" if seg.acked_by else ""
            click.echo(
                f"  {state} {seg.origin} seq {seg.seq} records {seg.first_record}.."
                f"{seg.first_record + seg.records - 1} ({seg.records}) {seg.size} bytes "
                f"{seg.id or '-'}{acked}"
            )


@store_group.command("verify")
@_DIR
def verify_command(directory: Path) -> None:
    """Re-check every segment, record and chain link; exit 1 on any fault."""
    with _open(directory) as store:
        total = sum(seg.size for seg in store.segments())
        with click.progressbar(length=max(total, 1), label="verifying", file=sys.stderr) as bar:
            seen = [0]

            def progress(done: int, _total: int) -> None:
                bar.update(done - seen[0])
                seen[0] = done

            report: dict[str, Any] = store.verify(progress)
        recovery: dict[str, Any] = store.recovery
        reports = store.quarantine()
    unacked = [r for r in reports if r.acknowledged_by is None]
    for r in unacked:
        click.echo(f"QUARANTINE: {r.id}: {r.kind}: {r.reason} (not acknowledged)")
    damaged = list(recovery["quarantined"])
    for name, reason in damaged:
        click.echo(f"FAULT: {name}: {reason} (the next open moves it to quarantine/)")
    if recovery["truncated_bytes"]:
        click.echo(
            f"open segment: {recovery['truncated_bytes']} bytes after the last intact record "
            f"({recovery['truncated_records']} record-like frames among them); "
            "the next open cuts them"
        )
    for gap in report["gaps"]:
        click.echo(f"gap: {gap}")
    for fault in report["faults"]:
        click.echo(f"FAULT: {fault}")
    click.echo(
        f"{report['segments_checked']} segments, {report['records_checked']} records, "
        f"{report['bytes_checked']} bytes checked; {len(report['faults'])} faults"
    )
    if report["faults"] or damaged or recovery["truncated_records"] or unacked:
        sys.exit(EXIT_FAILED)


@store_group.group("quarantine")
def quarantine_group() -> None:
    """Evidence set aside by recovery, and its acknowledgement by an operator."""


@quarantine_group.command("list")
@_DIR
def quarantine_list(directory: Path) -> None:
    """Every quarantine report; exit 1 while any is not acknowledged."""
    with _open(directory) as store:
        reports = store.quarantine()
    for r in reports:
        ack = f"acknowledged by {r.acknowledged_by}" if r.acknowledged_by else "NOT acknowledged"
        lost = "" if r.records_lost is None else f", {r.records_lost} records lost"
        click.echo(f"{r.id}  {r.kind}  {r.source}  {r.bytes} bytes{lost}  {ack}")
        click.echo(f"    {r.reason}")
    if any(r.acknowledged_by is None for r in reports):
        sys.exit(EXIT_FAILED)


@quarantine_group.command("ack")
@_DIR
@click.argument("report_id")
@click.option("--by", default="operator", show_default=True, help="Who acknowledges.")
def quarantine_ack(directory: Path, report_id: str, by: str) -> None:
    """Acknowledge a report (a durable .ack file; the evidence stays in quarantine/)."""
    with _open(directory) as store:
        known = {r.id for r in store.quarantine()}
    if report_id not in known:
        cannot_run("vedette store", f"no quarantine report {report_id!r}")
    try:
        acknowledge_quarantine(directory, report_id, by)
    except StoreError as err:
        cannot_run("vedette store", str(err))
    click.echo(f"acknowledged {report_id}")


@store_group.command("export")
@_DIR
@click.option("--since", type=click.IntRange(min=0), default=None, help="Only records after POS.")
@click.option("--origin", default=None, help="Origin node (default: the store's own).")
def export_command(directory: Path, since: int | None, origin: str | None) -> None:
    """Records as JSON lines: position, origin, and the record as UTF-8 text or base64."""
    with _open(directory) as store:
        source = origin or store.node_id
        for pos, record in store.iter_records(since=since, origin=origin):
            line: dict[str, object] = {"pos": pos, "origin": source, **record_fields(record)}
            click.echo(json.dumps(line, ensure_ascii=False))


def _config(config_path: Path | None) -> Config:
    try:
        return load_config(config_path)
    except ConfigError as err:
        raise CannotRun(str(err)) from err


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
        raise CannotRun(f"the node refused: {answer.json().get('error', answer.text)}")
    result: dict[str, Any] = answer.json()
    return result


def _open_store_of(config: Config) -> Any:
    from vedette.runtime.evidence import open_store

    try:
        return open_store(config)
    except StoreError as err:
        raise CannotRun(f"evidence store: {err}") from err


@store_group.command("drain")
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
                raise CannotRun(str(err)) from err
    click.echo(
        f"{report['copied']} segments copied ({report['bytes']} bytes), "
        f"{report['already_there']} already there, {report['verified']} read back and checked, "
        f"{report['acknowledged']} acknowledged as media:{label}"
    )
    if report["manifest"]:
        click.echo(f"manifest: {folder / str(report['manifest'])}")


@store_group.command("import")
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
        sys.exit(EXIT_FAILED)
