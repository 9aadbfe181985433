"""Child process for the SIGKILL test: appends forever, printing each
acknowledged position and what it wrote, until it is killed."""

from __future__ import annotations

import sys

from vedette.store import SegmentStore


def main() -> None:
    path, run, ceiling = sys.argv[1], sys.argv[2], int(sys.argv[3])
    store = SegmentStore.open(path, ceiling_bytes=ceiling, node_id="node-a", segment_max_bytes=8192)
    out = sys.stdout
    i = 0
    while True:
        repeat = 1 + i % 7
        pos = store.append(f"{run}-{i};".encode() * repeat)
        out.write(f"{pos} {run}-{i}; {repeat}\n")
        out.flush()
        i += 1
        if i % 23 == 0:
            store.seal()


if __name__ == "__main__":
    main()
