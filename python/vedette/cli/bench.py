"""``vedette bench`` and ``vedette bench compare``."""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import NoReturn

import click

from vedette.benchmark.common import BenchError, Settings
from vedette.cli.errors import cannot_run

DEFAULT_SECONDS = 5.0
QUICK_SECONDS = 1.0


def _fail(message: str) -> NoReturn:
    cannot_run("vedette bench", message)


def _stop_on_sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


@click.group("bench", invoke_without_command=True)
@click.option("--quick", is_flag=True, help="Short runs (about 10 s in all).")
@click.option(
    "--seconds",
    type=click.FloatRange(min=0.05),
    default=None,
    help=f"Seconds each timed loop runs (default {DEFAULT_SECONDS:g}, "
    f"{QUICK_SECONDS:g} with --quick).",
)
@click.option(
    "--connections",
    type=click.IntRange(min=1, max=1024),
    default=16,
    show_default=True,
    help="Keep-alive connections of the HTTP load generator.",
)
@click.option(
    "--json",
    "json_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write the results and the machine's facts to this file.",
)
@click.pass_context
def bench_group(
    ctx: click.Context,
    quick: bool,
    seconds: float | None,
    connections: int,
    json_path: Path | None,
) -> None:
    """Measure vedette on this device.

    In-process decisions, POST /v1/tool over loopback, durable appends, BLAKE3
    and SHA-256, release verification, and the start-to-ready time and idle
    memory of `vedette serve --example`.

    Runs under a minute (about 10 s with --quick). Scratch data lives in a new
    temporary directory, removed at the end. Exits 2 if a measurement cannot run.
    """
    if ctx.invoked_subcommand is not None:
        return
    from vedette.benchmark import report, suite

    if json_path is not None and not json_path.parent.resolve().is_dir():
        _fail(f"--json: no folder {json_path.parent}")
    settings = Settings(
        seconds=seconds if seconds is not None else QUICK_SECONDS if quick else DEFAULT_SECONDS,
        starts=1 if quick else 3,
        connections=connections,
    )
    previous = signal.signal(signal.SIGTERM, _stop_on_sigterm)
    try:
        facts = report.machine_facts()
        metrics = suite.run(settings, lambda line: click.echo(line, err=True))
    except BenchError as err:
        _fail(str(err))
    except KeyboardInterrupt:
        click.echo("vedette bench: interrupted; scratch data removed", err=True)
        sys.exit(130)
    finally:
        signal.signal(signal.SIGTERM, previous)
    click.echo(report.table(metrics, facts, settings))
    if json_path is not None:
        try:
            report.write_json(json_path, report.to_json(metrics, facts, settings))
        except BenchError as err:
            _fail(str(err))
        click.echo(f"results written to {json_path}", err=True)


@bench_group.command("compare")
@click.argument("a", type=click.Path(path_type=Path))
@click.argument("b", type=click.Path(path_type=Path))
def compare_command(a: Path, b: Path) -> None:
    """Print each metric of B against A (B/A), from two `vedette bench --json` files."""
    from vedette.benchmark.compare import compare, load

    try:
        first, second = load(a), load(b)
    except BenchError as err:
        _fail(str(err))
    click.echo(compare(first, second, str(a), str(b)))
