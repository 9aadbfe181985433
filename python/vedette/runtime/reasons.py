"""What an adapter may read in a reason: no host paths, no masked values.

Agents see the paths the tools show them (``/data/a.csv`` under a mount),
never where things live on the host (docs/threat-model.md, "What agents
see"). The places that build reasons say what went wrong without a path; this
module is the last guard for what they cannot control (an exception's text
from a plugin tool, the operating system, a library): every configured host
path (state and store folders, mounted folders, agent files and the folders
they are in, the Unix socket, PKI files) is replaced by ``<host path>``
before a reason or an error message leaves the runtime.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path

from vedette.config import Config
from vedette.errors import StoreError, StoreFullError

HIDDEN_PATH = "<host path>"


class HostPaths:
    def __init__(self, paths: Iterable[Path | str]) -> None:
        spelled: set[str] = set()
        for path in paths:
            text = os.fspath(path)
            for form in (text, os.path.realpath(text)):
                form = form.rstrip("/")
                if form.startswith("/"):  # the root itself ("" once stripped) is not hidden
                    spelled.add(form)
        self._pattern = (
            re.compile(
                "|".join(
                    re.escape(form) + r"(?=$|[/'\"\s),:;\]}])"
                    for form in sorted(spelled, key=len, reverse=True)
                )
            )
            if spelled
            else None
        )

    @classmethod
    def of(cls, config: Config) -> HostPaths:
        paths: list[Path | str] = [config.state_dir, config.store_dir]
        paths += [mount.dir for mount in config.tools.fs_mounts]
        for agent in config.agents:
            for file in (agent.manifest, agent.bundle, agent.ca, *agent.keys):
                if file is not None:
                    paths += [file, Path(file).parent]
        if config.listen.unix_socket is not None:
            paths.append(config.listen.unix_socket)
        if config.peers is not None:
            peers = config.peers
            paths += [peers.ca, peers.cert, peers.key, peers.crl]
            paths += [Path(peers.ca).parent, Path(peers.cert).parent]
        return cls(path for path in paths if Path(path) != Path("/"))

    def scrub(self, text: str) -> str:
        if self._pattern is None or "/" not in text:
            return text
        return self._pattern.sub(HIDDEN_PATH, text)


def evidence_failure(err: BaseException) -> str:
    """Why a record could not be made durable, in words fit for an adapter: the
    kind of failure, never the store's own message (it names files)."""
    if isinstance(err, StoreFullError):
        what = "the evidence store is full"
    elif isinstance(err, StoreError):
        what = "the evidence store is unavailable"
    else:
        what = "the evidence store failed"
    return f"{type(err).__name__}: {what}"
