"""The exit codes every ``vedette`` command keeps (docs/operations.md, "Exit codes").

0: done, and a check passed. 1: the command ran and its answer is no (a check
found faults, a release failed verification, a policy denied). 2: a usage error,
or the command cannot do its work (bad configuration, a file it needs, a store,
registry, node or stream it cannot open or reach). click's own usage errors
exit 2 already; a plain ``click.ClickException`` would exit 1, so the commands
raise :class:`CannotRun` or :class:`CheckFailed` instead, never it.
"""

from __future__ import annotations

import sys
from typing import NoReturn

import click

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_CANNOT_RUN = 2


class CannotRun(click.ClickException):
    """The command cannot do its work; printed as ``Error: …``, exit 2."""

    exit_code = EXIT_CANNOT_RUN


class CheckFailed(click.ClickException):
    """The command ran and what it checked failed; printed as ``Error: …``, exit 1."""

    exit_code = EXIT_FAILED


def cannot_run(prefix: str, message: str) -> NoReturn:
    """Print ``<prefix>: <message>`` on standard error and exit 2; for the commands
    that name themselves in their messages rather than print ``Error:``."""
    click.echo(f"{prefix}: {message}", err=True)
    sys.exit(EXIT_CANNOT_RUN)
