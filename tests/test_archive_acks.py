"""Acknowledgements the uplink makes in the store, batched into one catalog sync."""

from __future__ import annotations

import asyncio

import pytest

from vedette.archive.acks import AckBatcher
from vedette.errors import SegmentNotFoundError
from vedette.store import SegmentStore

BY = "archive:EVIDENCE"


def sealed_segments(store: SegmentStore, count: int) -> list[str]:
    ids = []
    for i in range(count):
        store.append(f"record {i}".encode())
        seg = store.seal()
        assert seg is not None
        ids.append(seg)
    return ids


def acknowledged(store: SegmentStore) -> set[str]:
    return {s.id for s in store.segments() if s.id is not None and BY in s.acked_by}


async def acknowledge_together(batcher: AckBatcher, ids: list[str]) -> list[BaseException | None]:
    return await asyncio.gather(*(batcher.acknowledge(s) for s in ids), return_exceptions=True)


def test_acknowledgements_that_come_together_share_one_commit_and_all_last(tmp_path):
    path = tmp_path / "store"
    with SegmentStore.open(path, 8 << 20, "node-a") as store:
        ids = sealed_segments(store, 16)
        batcher = AckBatcher(lambda batch: store.ack_all(batch, BY))
        outcomes = asyncio.run(acknowledge_together(batcher, ids))
        assert outcomes == [None] * 16
        # The first leads alone; the fifteen that queued behind it go in one.
        assert batcher.batches == 2
    with SegmentStore.open(path, 8 << 20, "node-a") as store:
        assert acknowledged(store) == set(ids)


def test_a_segment_gone_fails_alone_and_the_rest_of_its_batch_is_acknowledged(tmp_path):
    with SegmentStore.open(tmp_path / "store", 8 << 20, "node-a") as store:
        ids = sealed_segments(store, 5)
        gone = "blake3:" + "0" * 64
        batcher = AckBatcher(lambda batch: store.ack_all(batch, BY))
        outcomes = asyncio.run(acknowledge_together(batcher, [ids[0], *ids[1:3], gone, *ids[3:]]))
        assert isinstance(outcomes[3], SegmentNotFoundError), outcomes
        assert [o for i, o in enumerate(outcomes) if i != 3] == [None] * 5
        assert acknowledged(store) == set(ids)


def test_a_bad_acknowledger_name_records_nothing(tmp_path):
    with SegmentStore.open(tmp_path / "store", 8 << 20, "node-a") as store:
        ids = sealed_segments(store, 2)
        with pytest.raises(ValueError, match="acknowledger"):
            store.ack_all(ids, "not a name\n")
        assert not any(s.acked_by for s in store.segments())
