"""``vedette archive verify|export``: the fleet's archive read back from the shell.

Both read the ``[archive]`` table of ``--config`` (servers, stream, TLS or
credentials) and only read the stream: they create, delete and acknowledge
nothing. Exit codes (docs/operations.md, "Exit codes"): 0 clean, 1 findings
(``verify``), 2 cannot run.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from vedette.cli.errors import EXIT_FAILED, cannot_run
from vedette.config import ArchiveConfig, ConfigError, load_config

_CONFIG = click.option(
    "--config", "config_path", type=click.Path(path_type=Path), help="vedette.toml with [archive]."
)


def _archive_config(config_path: Path | None) -> ArchiveConfig:
    try:
        config = load_config(config_path)
    except ConfigError as err:
        cannot_run("vedette archive", str(err))
    if config.archive is None:
        cannot_run("vedette archive", "no [archive] table in the configuration")
    try:
        import nats  # noqa: F401
    except ImportError:
        cannot_run("vedette archive", "needs the NATS client: pip install 'vedette[archive]'")
    return config.archive


def _fleet_ca(config_path: Path | None, given: Path | None) -> bytes | None:
    """The CA origin certificates must chain to: ``--ca``, else the configuration's."""
    if given is None:
        config = load_config(config_path)
        peers_ca = config.peers.ca if config.peers is not None else None
        given = peers_ca or (config.archive.ca if config.archive is not None else None)
    if given is None:
        return None
    try:
        return given.read_bytes()
    except OSError as err:
        cannot_run("vedette archive", f"{given}: {err.strerror or err}")


class _Progress:
    """A progress bar on standard error when it is a terminal; nothing otherwise."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.bar: Any = None

    def __call__(self, done: int, total: int) -> None:
        if not sys.stderr.isatty():
            return
        if self.bar is None:
            self.bar = click.progressbar(length=max(total, 1), label=self.label, file=sys.stderr)
            self.bar.__enter__()
        self.bar.update(done - self.bar.pos)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)


def _run(work: Callable[[], Any]) -> Any:
    from vedette.archive.reader import ArchiveReadError

    try:
        return asyncio.run(work())
    except ArchiveReadError as err:
        cannot_run("vedette archive", str(err))


@click.group("archive")
def archive_group() -> None:
    """The fleet archive (NATS JetStream): verify it, export from it."""


@archive_group.command("verify")
@_CONFIG
@click.option("--node", default=None, help="Check this origin node only.")
@click.option(
    "--ca",
    "fleet_ca",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="The fleet CA origin certificates chain to (default: [peers] ca, else [archive] ca).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def verify_command(
    config_path: Path | None, node: str | None, fleet_ca: Path | None, as_json: bool
) -> None:
    """Check every origin's segments in the archive; exit 1 on findings.

    Reads the whole stream back and checks ids, hash chains, sequence numbers
    and origin signatures. Exit 0 clean, 1 findings, 2 cannot run.
    """
    from vedette.archive.verify import verify_stream

    archive = _archive_config(config_path)
    ca_pem = _fleet_ca(config_path, fleet_ca)
    progress = _Progress("verifying")
    try:
        report = _run(lambda: verify_stream(archive, node=node, progress=progress, fleet_ca=ca_pem))
    finally:
        progress.close()
    if as_json:
        click.echo(json.dumps(report.summary(), indent=1, sort_keys=True))
    else:
        for finding in report.findings:
            click.echo(f"FINDING {finding.line()}")
        for note in report.notes:
            click.echo(f"note    {note.line()}")
        for name, chain in report.summary()["nodes"].items():
            click.echo(
                f"node {name}: {chain['segments']} segments, seq {chain['first_seq']}.."
                f"{chain['last_seq']}, {chain['records']} records, {chain['signed']} signed"
            )
        click.echo(
            f"{report.segments} segments, {report.messages} messages, {report.bytes} bytes "
            f"checked; {len(report.findings)} findings"
        )
    if report.findings:
        sys.exit(EXIT_FAILED)


def _time(_ctx: object, _param: object, value: str | None) -> datetime | None:
    from vedette.archive.export import parse_time

    if value is None:
        return None
    try:
        return parse_time(value)
    except ValueError:
        raise click.BadParameter(f"expected an RFC 3339 time, got {value!r}") from None


@archive_group.command("export")
@_CONFIG
@click.option("--node", default=None, help="Only this origin node.")
@click.option("--agent", default=None, help="Only this agent.")
@click.option("--since", default=None, callback=_time, help="From this time (RFC 3339).")
@click.option("--until", default=None, callback=_time, help="Before this time (RFC 3339).")
@click.option("--outcome", default=None, help="Only this outcome (allow, deny, invalid, …).")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["jsonl", "opa"]),
    default="jsonl",
    show_default=True,
    help="Decision records as stored, or OPA decision-log events.",
)
def export_command(
    config_path: Path | None,
    node: str | None,
    agent: str | None,
    since: datetime | None,
    until: datetime | None,
    outcome: str | None,
    fmt: str,
) -> None:
    """Decision records from the archive, one JSON object a line, in bounded memory."""
    from vedette.archive.export import ExportCounts, Filters, export_records
    from vedette.archive.reader import read_stream

    archive = _archive_config(config_path)
    filters = Filters(node=node, agent=agent, since=since, until=until, outcome=outcome)
    counts = ExportCounts()
    progress = _Progress("exporting")
    out = sys.stdout

    def write(line: str) -> None:
        out.write(line)
        out.write("\n")

    try:
        _run(
            lambda: export_records(
                read_stream(archive, node=node, progress=progress), filters, fmt, write, counts
            )
        )
    finally:
        progress.close()
        out.flush()
    if counts.skipped_segments:
        click.echo(
            f"vedette archive: {counts.skipped_segments} segments skipped (pieces missing, or "
            "bytes that are not the segment they name; run `vedette archive verify`)",
            err=True,
        )
