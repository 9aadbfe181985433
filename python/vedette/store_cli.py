"""``vedette store inspect|verify|export``: read a segment store from the shell.

The commands open the store read-only: they take no lock, so they work beside
a running node, and they change nothing on disk. Damage that the next real
open would repair (cut a torn tail, quarantine a segment) is reported instead.
"""

from __future__ import annotations

import base64
import json
import sys
from pathlib import Path
from typing import Any

import click

from vedette.store import SegmentStore, StoreError, acknowledge_quarantine

_DIR = click.argument("directory", type=click.Path(path_type=Path, file_okay=False, exists=True))


def _open(directory: Path) -> SegmentStore:
    try:
        return SegmentStore.open_read_only(directory)
    except StoreError as err:
        click.echo(f"vedette store: {err}", err=True)
        sys.exit(2)


@click.group("store")
def store_group() -> None:
    """Inspect, verify and export a segment store."""


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
        sys.exit(1)


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
        sys.exit(1)


@quarantine_group.command("ack")
@_DIR
@click.argument("report_id")
@click.option("--by", default="operator", show_default=True, help="Who acknowledges.")
def quarantine_ack(directory: Path, report_id: str, by: str) -> None:
    """Acknowledge a report (a durable .ack file; the evidence stays in quarantine/)."""
    with _open(directory) as store:
        known = {r.id for r in store.quarantine()}
    if report_id not in known:
        click.echo(f"vedette store: no quarantine report {report_id!r}", err=True)
        sys.exit(2)
    try:
        acknowledge_quarantine(directory, report_id, by)
    except StoreError as err:
        click.echo(f"vedette store: {err}", err=True)
        sys.exit(2)
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


def record_fields(record: bytes) -> dict[str, object]:
    """A record as ``{"text": …}`` (UTF-8) or ``{"base64": …}`` (anything else)."""
    try:
        return {"text": record.decode("utf-8")}
    except UnicodeDecodeError:
        return {"base64": base64.b64encode(record).decode("ascii")}
