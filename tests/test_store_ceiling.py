"""INV-04: bytes on disk never exceed the ceiling."""

import os
import shutil
import subprocess
import uuid

import pytest
from store_helpers import du_bytes

from vedette.store import SegmentStore, StoreFullError

CEILING = 256 << 10


def fill_until_full(store, make_record, store_dir):
    """Append until StoreFullError, checking the ceiling after every append."""
    for appended in range(100_000):
        try:
            store.append(make_record())
        except StoreFullError as err:
            return appended, err
        assert du_bytes(store_dir) <= store.usage().ceiling_bytes
        assert store.usage().bytes_used <= store.usage().ceiling_bytes
    raise AssertionError("the store never filled up")


def test_fill_until_full_then_evict_acked_oldest_first(tmp_path):
    store_dir = tmp_path / "s"
    with SegmentStore.open(
        store_dir, ceiling_bytes=CEILING, node_id="node-a", segment_max_bytes=16 << 10
    ) as store:
        record = b"e" * 1000
        appended, err = fill_until_full(store, lambda: record, store_dir)
        assert err.ceiling == CEILING
        assert err.used <= CEILING
        assert err.evictable == 0
        assert str(CEILING) in str(err)
        assert appended > 150

        sealed = [s for s in store.segments() if s.sealed]
        oldest, second = sealed[0].id, sealed[1].id
        store.ack(second, by="peer-b")
        store.ack(oldest, by="peer-b")
        assert du_bytes(store_dir) <= CEILING
        store.append(record)
        held = {s.id for s in store.segments()}
        assert oldest not in held, "the oldest acknowledged segment goes first"
        for _ in range(30):
            try:
                store.append(record)
            except StoreFullError:
                break
            assert du_bytes(store_dir) <= CEILING
        assert du_bytes(store_dir) <= CEILING
        # Records keep their positions across the evicted gap.
        positions = [pos for pos, _ in store.iter_records()]
        assert positions == list(range(positions[0], positions[0] + len(positions)))
        assert positions[0] > 0


def test_ceiling_holds_after_reopen_and_counts_everything(tmp_path):
    store_dir = tmp_path / "s"
    with SegmentStore.open(store_dir, ceiling_bytes=CEILING, node_id="node-a") as store:
        for _ in range(50):
            store.append(b"x" * 2000)
        usage = store.usage()
    assert du_bytes(store_dir) <= usage.bytes_used + 4096
    with SegmentStore.open(store_dir, ceiling_bytes=CEILING, node_id="node-a") as store:
        assert store.usage().bytes_used == usage.bytes_used


@pytest.fixture
def small_tmpfs(tmp_path):
    mount_point = tmp_path / f"tmpfs-{uuid.uuid4().hex[:8]}"
    mount_point.mkdir()
    if shutil.which("mount") is None:
        pytest.skip("no mount command: cannot make a small full file system")
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=512k,mode=0700", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        pytest.skip(f"cannot mount a size-limited tmpfs here: {result.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def test_real_full_filesystem_gives_store_full_error(small_tmpfs):
    filler = small_tmpfs / "filler"
    filler.write_bytes(b"\0" * (200 << 10))
    store_dir = small_tmpfs / "s"
    # The ceiling is larger than the file system: the OS runs out first.
    with SegmentStore.open(store_dir, ceiling_bytes=64 << 20, node_id="node-a") as store:
        _, err = fill_until_full(store, lambda: os.urandom(3000), store_dir)
        assert "out of space" in str(err)
        count = len(list(store.iter_records()))
        filler.unlink()
        pos = store.append(b"after space freed")
        assert pos == count, "no gap and no lost record after ENOSPC"
        assert not store.verify()["faults"]
