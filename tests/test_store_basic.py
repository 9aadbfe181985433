import json
import os

import pytest
from click.testing import CliRunner

from vedette.cli import main
from vedette.hashing import blake3
from vedette.store import (
    SegmentNotFoundError,
    SegmentStore,
    StoreCorruptError,
    StoreError,
)

CEILING = 8 << 20


@pytest.fixture
def store_dir(tmp_path):
    return tmp_path / "store"


def test_append_iter_and_reopen_keep_records(store_dir):
    with SegmentStore.open(store_dir, ceiling_bytes=CEILING, node_id="node-a") as store:
        assert store.append(b"first") == 0
        assert store.append_many([b"a", bytearray(b"b"), memoryview(b"c")]) == range(1, 4)
        assert list(store.iter_records()) == [(0, b"first"), (1, b"a"), (2, b"b"), (3, b"c")]
        assert list(store.iter_records(since=2)) == [(3, b"c")]
    with SegmentStore.open(store_dir, ceiling_bytes=CEILING, node_id="node-a") as store:
        assert store.recovery["clean"]
        assert [r for _, r in store.iter_records()] == [b"first", b"a", b"b", b"c"]
        assert store.append(b"next") == 4


def test_sealed_segment_is_named_by_blake3_and_chained(store_dir):
    with SegmentStore.open(store_dir, ceiling_bytes=CEILING, node_id="node-a") as store:
        store.append(b"one")
        first = store.seal()
        store.append(b"two")
        second = store.seal()
        assert str(blake3(store.get_segment(first))) == first
        assert (store_dir / f"{first.split(':')[1]}.seg").exists()
        infos = {s.id: s for s in store.segments()}
        assert infos[second].prev == first
        assert infos[first].prev is None
        assert store.chain_heads() == {"node-a": (1, second)}


def test_ack_is_durable_and_listed(store_dir):
    with SegmentStore.open(store_dir, ceiling_bytes=CEILING, node_id="node-a") as store:
        store.append(b"x")
        seg = store.seal()
        store.ack(seg, by="peer-b")
        store.ack(seg, by="peer-b")
    with SegmentStore.open(store_dir, ceiling_bytes=CEILING, node_id="node-a") as store:
        assert store.segments()[0].acked_by == ("peer-b",)
        with pytest.raises(SegmentNotFoundError):
            store.ack("blake3:" + "0" * 64, by="peer-b")


def test_import_verifies_and_is_idempotent(tmp_path):
    with SegmentStore.open(tmp_path / "b", ceiling_bytes=CEILING, node_id="node-b") as peer:
        peer.append(b"from b")
        seg = peer.seal()
        data = peer.get_segment(seg)
    with SegmentStore.open(tmp_path / "a", ceiling_bytes=CEILING, node_id="node-a") as store:
        before = store.usage()
        bad = bytearray(data)
        bad[-30] ^= 1
        with pytest.raises(StoreCorruptError):
            store.import_segment(bytes(bad))
        with pytest.raises(StoreCorruptError):
            store.import_segment(data, expected_id="blake3:" + "1" * 64)
        assert store.usage() == before
        assert store.import_segment(data, expected_id=seg) == seg
        assert store.import_segment(data) == seg
        assert list(store.iter_records(origin="node-b")) == [(0, b"from b")]


@pytest.mark.parametrize("damage", ["flip", "truncate", "zeros", "garbage", "duplicate"])
def test_damaged_sealed_segment_is_quarantined_not_served(store_dir, damage):
    with SegmentStore.open(store_dir, ceiling_bytes=CEILING, node_id="node-a") as store:
        for i in range(20):
            store.append(f"evidence-{i}".encode())
        seg = store.seal()
        store.append(b"later")
    path = store_dir / f"{seg.split(':')[1]}.seg"
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    if damage == "flip":
        data[middle] ^= 0x01
    elif damage == "truncate":
        del data[middle:]
    elif damage == "zeros":
        data[middle : middle + 64] = bytes(64)
    elif damage == "garbage":
        data += os.urandom(50)
    else:
        data += data[-60:-24]
    path.write_bytes(bytes(data))
    with SegmentStore.open(store_dir, ceiling_bytes=CEILING, node_id="node-a") as store:
        assert [q[0] for q in store.recovery["quarantined"]] == [path.name]
        assert (store_dir / "quarantine" / path.name).exists()
        with pytest.raises(SegmentNotFoundError):
            store.get_segment(seg)
        assert list(store.iter_records()) == [(20, b"later")]
        assert not store.verify()["faults"]
    with SegmentStore.open(store_dir, ceiling_bytes=CEILING, node_id="node-a") as store:
        assert store.recovery["clean"]


def test_sealed_segment_changed_while_open_is_not_served(store_dir):
    with SegmentStore.open(store_dir, ceiling_bytes=CEILING, node_id="node-a") as store:
        store.append(b"evidence")
        seg = store.seal()
        path = store_dir / f"{seg.split(':')[1]}.seg"
        data = bytearray(path.read_bytes())
        data[-30] ^= 0x80
        path.write_bytes(bytes(data))
        with pytest.raises(StoreCorruptError, match="changed on disk"):
            store.get_segment(seg)
        with pytest.raises(StoreCorruptError):
            list(store.iter_records())
        assert store.verify()["faults"]


@pytest.mark.parametrize("damage", ["truncate", "garbage", "zeros", "duplicate"])
def test_damaged_open_tail_is_cut_and_reported(store_dir, damage):
    with SegmentStore.open(store_dir, ceiling_bytes=CEILING, node_id="node-a") as store:
        for i in range(10):
            store.append(f"record-{i}".encode())
        end = store.segments()[-1].size
    path = store_dir / "open.seg"
    # The file may hold zero-filled reserved space after the records: damage the data's end.
    data = path.read_bytes()[:end]
    if damage == "truncate":
        data = data[:-3]
    elif damage == "garbage":
        data += os.urandom(100)
    elif damage == "zeros":
        data = data[:-40] + b"\0" * 40
    else:
        data += data[-17:]
    path.write_bytes(data)
    with SegmentStore.open(store_dir, ceiling_bytes=CEILING, node_id="node-a") as store:
        assert store.recovery["truncated_bytes"] > 0
        records = list(store.iter_records())
        assert records == [(i, f"record-{i}".encode()) for i in range(len(records))]
        assert len(records) >= 7  # at most the three records under the damage are lost
        assert not store.verify()["faults"]


def test_orphan_temp_files_are_removed(store_dir):
    SegmentStore.open(store_dir, ceiling_bytes=CEILING, node_id="node-a").close()
    (store_dir / "abc.seg.tmp").write_bytes(b"half a segment")
    with SegmentStore.open(store_dir, ceiling_bytes=CEILING, node_id="node-a") as store:
        assert store.recovery["temp_files_removed"] == ["abc.seg.tmp"]
    assert not (store_dir / "abc.seg.tmp").exists()


def test_closed_store_refuses(store_dir):
    store = SegmentStore.open(store_dir, ceiling_bytes=CEILING, node_id="node-a")
    store.close()
    with pytest.raises(StoreError, match="closed"):
        store.append(b"x")


def test_bad_arguments_are_value_errors(store_dir):
    with pytest.raises(ValueError, match="node id"):
        SegmentStore.open(store_dir, ceiling_bytes=CEILING, node_id="has space")
    with pytest.raises(ValueError, match="ceiling_bytes"):
        SegmentStore.open(store_dir, ceiling_bytes=1000, node_id="node-a")
    with (
        SegmentStore.open(store_dir, ceiling_bytes=CEILING, node_id="node-a") as store,
        pytest.raises(TypeError),
    ):
        store.append("text")


def test_interval_mode_flushes(store_dir):
    with SegmentStore.open(
        store_dir, ceiling_bytes=CEILING, node_id="node-a", durability="interval"
    ) as store:
        positions = store.append_many([b"r"] * 1000)
        store.flush()
        assert positions == range(1000)
    with SegmentStore.open(store_dir, ceiling_bytes=CEILING, node_id="node-a") as store:
        assert len(list(store.iter_records())) == 1000


def test_cli_inspect_verify_export(store_dir):
    with SegmentStore.open(store_dir, ceiling_bytes=CEILING, node_id="node-a") as store:
        store.append(b"hello")
        store.seal()
        store.append(b"\xff\xfe")
    runner = CliRunner()
    result = runner.invoke(main, ["store", "inspect", str(store_dir)])
    assert result.exit_code == 0, result.output
    assert "node-a seq 0" in result.output
    result = runner.invoke(main, ["store", "verify", str(store_dir)])
    assert result.exit_code == 0, result.output
    result = runner.invoke(main, ["store", "export", str(store_dir)])
    lines = [json.loads(line) for line in result.output.splitlines()]
    assert lines == [
        {"pos": 0, "origin": "node-a", "text": "hello"},
        {"pos": 1, "origin": "node-a", "base64": "//4="},
    ]
    result = runner.invoke(main, ["store", "export", str(store_dir), "--since", "0"])
    assert len(result.output.splitlines()) == 1


def test_cli_verify_fails_on_damage(store_dir):
    with SegmentStore.open(store_dir, ceiling_bytes=CEILING, node_id="node-a") as store:
        store.append(b"hello")
        seg = store.seal()
    path = store_dir / f"{seg.split(':')[1]}.seg"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    result = CliRunner().invoke(main, ["store", "verify", str(store_dir)])
    assert result.exit_code == 1
    assert "FAULT" in result.output
    assert path.exists(), "verify changes nothing on disk"


def test_cli_reads_a_store_another_process_holds(store_dir):
    with SegmentStore.open(store_dir, ceiling_bytes=CEILING, node_id="node-a") as store:
        store.append(b"while running")
        result = CliRunner().invoke(main, ["store", "export", str(store_dir)])
        assert result.exit_code == 0, result.output
        assert json.loads(result.output) == {"pos": 0, "origin": "node-a", "text": "while running"}
        result = CliRunner().invoke(main, ["store", "verify", str(store_dir)])
        assert result.exit_code == 0, result.output
        store.append(b"still writable")


def test_read_only_store_refuses_changes(store_dir):
    SegmentStore.open(store_dir, ceiling_bytes=CEILING, node_id="node-a").close()
    with SegmentStore.open_read_only(store_dir) as view:
        with pytest.raises(ValueError, match="read-only"):
            view.append(b"x")
        assert view.usage().ceiling_bytes == CEILING
