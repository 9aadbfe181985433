"""Real processes killed with SIGKILL at random moments while appending."""

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from store_helpers import du_bytes

from vedette.store import SegmentStore

CHILD = Path(__file__).with_name("store_child.py")
CEILING = 16 << 20
KILLS = int(os.environ.get("VEDETTE_STORE_KILLS", "300"))


def _run_and_kill(store_dir, run, rng):
    child = subprocess.Popen(
        [sys.executable, str(CHILD), str(store_dir), str(run), str(CEILING)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    lines = []
    for _ in range(rng.randrange(0, 40)):
        line = child.stdout.readline()
        if not line:
            break
        lines.append(line)
    # Vary the moment of the kill inside an append: before, during or after its sync.
    if rng.random() < 0.5:
        time.sleep(rng.random() / 500)
    child.send_signal(signal.SIGKILL)
    rest, _ = child.communicate()
    assert child.returncode == -signal.SIGKILL, f"child exited by itself: {child.returncode}"
    lines.extend(rest.splitlines())
    acknowledged = {}
    for line in lines:
        pos, text, repeat = line.split()
        acknowledged[int(pos)] = text.encode() * int(repeat)
    return acknowledged


def test_sigkill_loop_loses_no_acknowledged_record(tmp_path):
    store_dir = tmp_path / "store"
    rng = random.Random(1234)
    acknowledged = {}
    for run in range(KILLS):
        acknowledged.update(_run_and_kill(store_dir, run, rng))
        with SegmentStore.open(store_dir, ceiling_bytes=CEILING, node_id="node-a") as store:
            records = list(store.iter_records())
            positions = [pos for pos, _ in records]
            assert positions == list(range(len(records))), f"gap after kill {run}"
            held = dict(records)
            for pos, payload in acknowledged.items():
                assert held.get(pos) == payload, f"record {pos} lost or changed after kill {run}"
            # Positions acknowledged in one run are never reused in a later one.
            acknowledged.update(held)
            assert store.usage().bytes_used <= CEILING
            assert not store.verify()["faults"]
        assert du_bytes(store_dir) <= CEILING
    assert len(acknowledged) > KILLS, "the children appended records before being killed"
