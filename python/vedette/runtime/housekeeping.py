"""The runtime's periodic work, about once a second, on a thread of its own.

One round: the store's check (a stopped store is reopened) and the events it
reports, sealing by age when sealed evidence leaves the node (peers or an
archive: docs/configuration.md, ``store.seal_after_s``), origin signatures for
newly sealed segments (docs/contracts.md, "Origin signatures"), and the summary
of refusals that were only counted (runtime/refusals.py). Every record a round
makes is appended in one batch; a failure is counted and logged, and the next
round tries again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from vedette._core import Gate
from vedette.origin import OriginSeals
from vedette.runtime.encoding import dumps
from vedette.runtime.metrics import RuntimeMetrics
from vedette.runtime.refusals import RefusalLedger
from vedette.store import SegmentStore, StoreError

log = logging.getLogger("vedette.runtime")

# How often a round runs.
HOUSEKEEPING_S = 1.0


class Housekeeping:
    def __init__(
        self,
        *,
        store: SegmentStore,
        gate: Gate,
        seals: OriginSeals,
        refusals: RefusalLedger,
        metrics: RuntimeMetrics,
        seal_after_s: float | None,
    ) -> None:
        self._store = store
        self._gate = gate
        self._seals = seals
        self._refusals = refusals
        self._metrics = metrics
        self._seal_after_s = seal_after_s
        self._last_seal = time.monotonic()
        self._sealed_listeners: list[Callable[[], None]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def on_sealed(self, listener: Callable[[], None]) -> None:
        """``listener`` is called after a round seals a segment by age."""
        self._sealed_listeners.append(listener)

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._run_forever, name="vedette-runtime-housekeeping", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stops the thread, then runs a final round that writes whatever is pending."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
            self.run_once(final=True)

    def _run_forever(self) -> None:
        while not self._stop.wait(HOUSEKEEPING_S):
            try:
                self.run_once()
            except Exception:  # keep serving; the next round tries again
                log.exception("runtime housekeeping failed")

    def run_once(self, *, final: bool = False) -> None:
        """One round; ``final`` writes the refusal summary even if it is not due."""
        records: list[bytes] = []
        try:
            self._store.check()
        except StoreError as err:
            log.warning("evidence store check failed: %s", err)
        for event in self._store.take_events():
            log.warning("evidence store %s: %s", event.kind, event.detail)
            detail = {"event": event.kind, "detail": event.detail, "unix_ms": event.unix_ms}
            records.append(self._gate.event_record("store_event", dumps(detail)))
        self._seal_by_age()
        try:
            self._seals.sign_pending()
        except Exception as err:  # unsigned segments wait; the next round retries
            log.warning("origin signatures not made: %s", err)
        if final or self._refusals.due():
            summary = self._refusals.drain()
            if summary is not None:
                records.append(self._gate.event_record("refusal_summary", dumps(summary)))
        if records:
            try:
                self._store.append_many(records)
            except StoreError as err:
                self._metrics.evidence_failures.inc(len(records))
                log.error("housekeeping records could not be made durable: %s", err)

    def _seal_by_age(self) -> None:
        if self._seal_after_s is None or time.monotonic() - self._last_seal < self._seal_after_s:
            return
        self._last_seal = time.monotonic()
        try:
            sealed = self._store.seal()
        except StoreError as err:
            log.warning("sealing by age failed: %s", err)
            return
        if sealed is not None:
            for listener in self._sealed_listeners:
                listener()
