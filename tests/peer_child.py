"""Child process for the peer tests: one node's ``PeerService`` and store,
driven by JSON lines on stdin, one answer a line on stdout.

Apart from the test process so that it can run without the capabilities that
let root read any file (``tests/test_peers_trust.py`` makes TLS files
unreadable with chmod 000, which root would read through).
"""

from __future__ import annotations

import dataclasses
import json
import sys
from typing import Any

from peer_helpers import fill, frontiers, open_store

from vedette.peers.service import PeerService


def main() -> None:
    spec = json.loads(sys.argv[1])
    store = open_store(spec["store"], spec["node"])
    svc = PeerService(store, **spec["files"], **spec["limits"])
    for line in sys.stdin:
        cmd = json.loads(line)
        op = cmd["op"]
        out: Any = None
        try:
            if op == "listen":
                out = svc.listen(cmd["addr"])
            elif op == "dial":
                svc.dial(cmd["addr"])
            elif op == "status":
                out = svc.status()
            elif op == "events":
                out = [dataclasses.asdict(e) for e in svc.events()]
            elif op == "fill":
                fill(store, cmd["segments"], cmd["record"].encode())
            elif op == "frontiers":
                out = frontiers(store)
            elif op == "readable":
                try:
                    with open(cmd["path"], "rb") as f:
                        f.read(1)
                    out = True
                except OSError:
                    out = False
            elif op == "stop":
                svc.stop()
                store.close()
            else:
                raise ValueError(f"unknown op {op!r}")
        except Exception as err:  # the test shows it
            print(json.dumps({"error": repr(err)}), flush=True)
            continue
        print(json.dumps({"ok": out}), flush=True)
        if op == "stop":
            return


if __name__ == "__main__":
    main()
