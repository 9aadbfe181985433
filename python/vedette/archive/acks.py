"""Acknowledgements in the store, batched: one catalog sync for many segments.

The archive's acknowledgement of a segment becomes durable in the store's
catalog before the segment may be evicted (docs/contracts.md, "Archive
messages"). A sync per segment would cap the uplink at the disk's sync rate,
so acknowledgements that arrive while one is being made durable wait and are
then made durable together (group commit, like the store's own appends).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

#: Makes the acknowledgement of every id durable, or raises having recorded none.
AckAll = Callable[[Sequence[str]], None]


class AckBatcher:
    """Group commit for ``ack_all``; used from one event loop."""

    def __init__(self, ack_all: AckAll) -> None:
        self._ack_all = ack_all
        self._waiting: list[tuple[str, asyncio.Future[None]]] = []
        self._leading = False
        self.batches = 0

    async def acknowledge(self, segment_id: str) -> None:
        """Returns once ``segment_id``'s acknowledgement is durable; raises what
        recording it raised."""
        done = asyncio.get_running_loop().create_future()
        self._waiting.append((segment_id, done))
        if not self._leading:
            self._leading = True
            try:
                while self._waiting:
                    batch, self._waiting = self._waiting, []
                    await self._commit(batch)
            finally:
                self._leading = False
                # Cancelled while leading: nobody would make these durable.
                for _, waiter in self._waiting:
                    waiter.cancel()
                self._waiting = []
        await done

    async def _commit(self, batch: list[tuple[str, asyncio.Future[None]]]) -> None:
        try:
            try:
                await asyncio.to_thread(self._ack_all, [seg for seg, _ in batch])
                outcomes: list[Exception | None] = [None] * len(batch)
            except Exception:
                # One bad id (a segment quarantined meanwhile) must not fail the
                # others: each is tried alone.
                outcomes = [await self._alone(seg) for seg, _ in batch]
        except BaseException:  # cancelled while committing: so are its waiters
            for _, waiter in batch:
                waiter.cancel()
            raise
        self.batches += 1
        for (_, waiter), outcome in zip(batch, outcomes, strict=True):
            if waiter.done():
                continue
            if outcome is None:
                waiter.set_result(None)
            else:
                waiter.set_exception(outcome)

    async def _alone(self, segment_id: str) -> Exception | None:
        try:
            await asyncio.to_thread(self._ack_all, [segment_id])
        except Exception as err:
            return err
        return None
