"""The durable queue: appends that return a ticket at once and report completion
through an eventfd, as the runtime's event loop uses them."""

import asyncio
import select

import pytest

from vedette.errors import StoreError, StoreFullError
from vedette.runtime.evidence import EvidenceQueue
from vedette.store import SegmentStore


def wait_readable(fd: int) -> None:
    readable, _, _ = select.select([fd], [], [], 10)
    assert readable, "the eventfd never became readable"


def test_tickets_complete_in_order_and_the_records_are_durable(tmp_path):
    with SegmentStore.open(tmp_path / "s", ceiling_bytes=1 << 30, node_id="n") as store:
        queue = store.durable_queue()
        tickets = [queue.submit(f"record {i}".encode()) for i in range(500)]
        assert tickets == list(range(500))
        queue.flush()
        wait_readable(queue.fileno())
        expected_first = 0
        for first, last, error in queue.take_completed():
            assert first == expected_first  # contiguous ranges, in order
            assert error is None
            expected_first = last + 1
        assert expected_first == 500
        assert [r for _, r in store.iter_records()] == [f"record {i}".encode() for i in range(500)]
        queue.close()


def test_a_full_store_fails_the_batch_with_its_own_error(tmp_path):
    with SegmentStore.open(tmp_path / "s", node_id="n", ceiling_bytes=64 << 10) as store:
        queue = store.durable_queue()
        for _ in range(200):
            queue.submit(b"x" * 1000)
        queue.flush()
        errors = [error for _, _, error in queue.take_completed() if error is not None]
        assert errors, "200 KB never fit under a 64 KiB ceiling"
        assert all(isinstance(error, StoreFullError) for error in errors)
        assert errors[0].ceiling == 64 << 10
        queue.close()


def test_a_closed_queue_refuses_new_records(tmp_path):
    with SegmentStore.open(tmp_path / "s", ceiling_bytes=1 << 30, node_id="n") as store:
        queue = store.durable_queue()
        queue.submit(b"kept")
        queue.close()
        with pytest.raises(StoreError, match="closed"):
            queue.submit(b"late")
        assert [r for _, r in store.iter_records()] == [b"kept"]


def test_the_evidence_queue_settles_futures_on_their_loop(tmp_path):
    with SegmentStore.open(tmp_path / "s", ceiling_bytes=1 << 30, node_id="n") as store:
        evidence = EvidenceQueue(store)

        async def many() -> None:
            await asyncio.gather(*(evidence.append(b"r%d" % i) for i in range(300)))

        asyncio.run(many())
        asyncio.run(many())  # a second loop on the same thread gets its own channel
        evidence.close()
        assert len(list(store.iter_records())) == 600


def test_records_of_one_loop_turn_are_committed_together(tmp_path):
    with SegmentStore.open(tmp_path / "s", ceiling_bytes=1 << 30, node_id="n") as store:
        queue = store.durable_queue()
        tickets = [queue.submit_lazy(b"turn %d" % i) for i in range(50)]
        queue.commit()  # what the loop does once per turn
        wait_readable(queue.fileno())
        completed = queue.take_completed()
        # One wake-up, one batch: every record of the turn shares one fdatasync.
        assert [(first, last, error) for first, last, error in completed] == [(0, 49, None)]
        assert tickets == list(range(50))
        assert len(list(store.iter_records())) == 50
        queue.close()


def test_lazy_records_are_written_without_a_commit_and_waiters_are_not_delayed(tmp_path):
    with SegmentStore.open(tmp_path / "s", ceiling_bytes=1 << 30, node_id="n") as store:
        evidence = EvidenceQueue(store)

        async def outcome_then_decision() -> None:
            outcome = evidence.append(b"outcome", lazy=True)
            await evidence.append(b"decision")  # committed at the next turn
            assert outcome.done()  # rode along with the decision's batch
            later = evidence.append(b"lonely outcome", lazy=True)
            await later  # nobody commits: written after the lazy delay all the same

        asyncio.run(outcome_then_decision())
        evidence.close()
        assert [r for _, r in store.iter_records()] == [b"outcome", b"decision", b"lonely outcome"]
