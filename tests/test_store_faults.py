"""Faults that used to lose evidence silently or stop the store for good:
a flipped byte in open.seg, deleted segments, a deleted store folder,
descriptor exhaustion, a store stopped and reopened in-process."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from vedette.cli import main
from vedette.store import SegmentStore, StoreError, StoreLockedError

CEILING = 8 << 20


def _verify(path: Path) -> int:
    return CliRunner().invoke(main, ["store", "verify", str(path)]).exit_code


def _sealed_store(path: Path, segments: int = 4) -> list[str]:
    """A store with ``segments`` sealed segments of 50 records each and an open one."""
    ids = []
    with SegmentStore.open(path, ceiling_bytes=CEILING, node_id="node-a") as store:
        for s in range(segments):
            store.append_many([f"seg-{s}-record-{i}".encode() for i in range(50)])
            seg_id = store.seal()
            assert seg_id is not None
            ids.append(seg_id)
        store.append(b"open-record")
    return ids


def test_flipped_byte_mid_open_segment_is_quarantined_reported_and_verify_fails(tmp_path):
    path = tmp_path / "store"
    total = 400
    with SegmentStore.open(path, ceiling_bytes=CEILING, node_id="node-a") as store:
        for i in range(total):
            store.append(f"record-{i:04d}".encode())
        end = store.segments()[-1].size
    seg = path / "open.seg"
    data = bytearray(seg.read_bytes())
    data[end // 2] ^= 0x40
    seg.write_bytes(bytes(data))
    assert _verify(path) == 1
    with SegmentStore.open(path, ceiling_bytes=CEILING, node_id="node-a") as store:
        readable = len(list(store.iter_records()))
        reports = store.quarantine()
        events = store.take_events()
        health = store.health()
    assert readable < total
    cut = [r for r in reports if r.kind == "cut-tail"]
    assert len(cut) == 1, reports
    report = cut[0]
    assert report.records_lost is not None
    assert report.records_lost > 0
    # Every record is either readable or counted in the report (the damaged one may be torn).
    assert readable + report.records_lost >= total - 1
    assert report.file
    assert (path / "quarantine" / report.file).stat().st_size == report.bytes
    assert (path / "quarantine" / f"{report.id}.json").exists()
    assert any(e.kind == "quarantined" for e in events)
    assert health.state == "damaged"
    assert health.verdict == "degraded"
    # Verify keeps failing after the open cut it, until an operator acknowledges.
    assert _verify(path) == 1
    listed = CliRunner().invoke(main, ["store", "quarantine", "list", str(path)])
    assert listed.exit_code == 1
    assert report.id in listed.output
    acked = CliRunner().invoke(main, ["store", "quarantine", "ack", str(path), report.id])
    assert acked.exit_code == 0, acked.output
    assert (path / "quarantine" / report.file).exists(), "acknowledging keeps the evidence"
    assert _verify(path) == 0
    with SegmentStore.open(path, ceiling_bytes=CEILING, node_id="node-a") as store:
        assert store.health().state == "ok"


@pytest.mark.parametrize("which", ["middle", "oldest", "open"])
def test_deleted_segment_fails_verify(tmp_path, which):
    path = tmp_path / "store"
    ids = _sealed_store(path)
    assert _verify(path) == 0
    if which == "middle":
        (path / f"{ids[1].split(':')[1]}.seg").unlink()
    elif which == "oldest":
        (path / f"{ids[0].split(':')[1]}.seg").unlink()
    else:
        (path / "open.seg").unlink()
    assert _verify(path) == 1
    with SegmentStore.open(path, ceiling_bytes=CEILING, node_id="node-a") as store:
        kinds = {r.kind for r in store.quarantine() if r.acknowledged_by is None}
        assert kinds == {"missing-open-segment" if which == "open" else "missing-segment"}
        assert store.health().verdict == "degraded"
        store.append(b"still works")
    assert _verify(path) == 1


def test_deleted_store_folder_stops_appends_and_keeps_the_path_locked(tmp_path):
    path = tmp_path / "store"
    store = SegmentStore.open(path, ceiling_bytes=CEILING, node_id="node-a")
    try:
        store.append(b"before")
        shutil.rmtree(path)
        health = store.check()
        assert health.state == "directory_gone"
        assert health.verdict == "failing"
        with pytest.raises(StoreError):
            store.append(b"after")
        with pytest.raises(StoreError):
            store.seal()
        assert any(e.kind == "directory_gone" for e in store.take_events())
        with pytest.raises(StoreLockedError):
            SegmentStore.open(path, ceiling_bytes=CEILING, node_id="node-a")
    finally:
        # Closing a stopped store reports the stop, and still lets the path go.
        with contextlib.suppress(StoreError):
            store.close()


def test_moved_folder_is_detected_at_seal_and_reopen_works_once_back(tmp_path):
    path = tmp_path / "store"
    moved = tmp_path / "elsewhere"
    with SegmentStore.open(path, ceiling_bytes=CEILING, node_id="node-a") as store:
        store.append(b"one")
        path.rename(moved)
        with pytest.raises(StoreError):
            store.seal()
        assert store.health().state == "directory_gone"
        moved.rename(path)
        store.reopen()
        assert store.health().state == "ok"
        store.append(b"two")
        assert [r for _, r in store.iter_records()] == [b"one", b"two"]
        assert any(e.kind == "reopened" for e in store.take_events())


_EXHAUST = textwrap.dedent(
    """
    import os, sys
    from vedette.store import SegmentStore, StoreError
    store = SegmentStore.open(sys.argv[1], ceiling_bytes=8 << 20, node_id="node-a",
                              segment_max_bytes=16 << 10)
    hog = []
    try:
        while True:
            hog.append(os.open("/dev/null", os.O_RDONLY))
    except OSError:
        pass
    ok = failed = 0
    for i in range(2000):
        try:
            store.append(b"x" * 200)
            ok += 1
        except StoreError:
            failed += 1
    for fd in hog[:8]:
        os.close(fd)
    store.check()
    store.append(b"after")
    health = store.health()
    sealed = sum(1 for s in store.segments() if s.sealed)
    print(ok, failed, health.state, sealed)
    """
)


def test_descriptor_exhaustion_does_not_stop_the_store(tmp_path):
    if shutil.which("prlimit") is None:
        pytest.skip("prlimit is not installed")
    result = subprocess.run(
        ["prlimit", "--nofile=64", sys.executable, "-c", _EXHAUST, str(tmp_path / "store")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    ok, _failed, state, sealed = result.stdout.split()
    assert state == "ok"
    assert int(sealed) >= 10, "segments rolled over while descriptors were exhausted"
    assert int(ok) > 0


def _fill(filler: Path) -> None:
    """Writes zeros to ``filler`` until the file system is full."""
    with filler.open("wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 65536)
        except OSError:
            return


def test_full_file_system_is_not_a_permanent_stop(tmp_path):
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(mount)],
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        filler = mount / "filler"
        path = mount / "store"
        with SegmentStore.open(path, ceiling_bytes=4 << 20, node_id="node-a") as store:
            _fill(filler)
            refused = False
            for _ in range(200):
                try:
                    store.append(b"y" * 1000)
                except StoreError:
                    refused = True
                    break
            assert refused
            assert store.health().verdict == "failing"
            filler.unlink()
            store.append(b"after space came back")
            assert store.health().state in {"ok", "damaged"}
    finally:
        subprocess.run(["umount", "--lazy", str(mount)], check=False)  # even if still busy


def test_origin_signature_sidecar_is_durable_counted_and_evicted(tmp_path):
    path = tmp_path / "store"
    with SegmentStore.open(path, ceiling_bytes=256 << 10, node_id="node-a") as store:
        store.append(b"signed")
        seg_id = store.seal()
        assert seg_id is not None
        assert store.origin_signature(seg_id) is None
        before = store.usage().bytes_used
        store.put_origin_signature(seg_id, b"\x01" * 100)
        assert store.usage().bytes_used > before
        with pytest.raises(ValueError, match="4096"):
            store.put_origin_signature(seg_id, b"x" * 4097)
    sidecar = path / f"{seg_id.split(':')[1]}.seg.sig"
    assert sidecar.read_bytes() == b"\x01" * 100
    with SegmentStore.open(path, ceiling_bytes=256 << 10, node_id="node-a") as store:
        assert store.origin_signature(seg_id) == b"\x01" * 100
        assert store.recovery["unknown_files"] == []
        store.ack(seg_id, "peer-b")
        # Fill until the acknowledged segment is evicted, sidecar with it.
        while any(s.id == seg_id for s in store.segments()):
            store.append(b"z" * 4000)
    assert not sidecar.exists()
