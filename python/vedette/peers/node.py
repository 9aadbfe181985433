"""The peer transport as ``vedette serve`` runs it, from the ``[peers]`` table.

:class:`PeerNode` starts the :class:`~vedette.peers.service.PeerService`
(listen, static peers), the beacon when configured (its candidates are only
dialled: :mod:`vedette.peers.beacon`), and one housekeeping thread that, every
second:

- seals the open segment every ``seal_interval_s`` (evidence replicates once sealed);
- records the service's events (peer connected, handshake rejected with its
  reason, quota exceeded, protocol error, …) as evidence records of kind
  ``peer_event`` in the node's own store, so they are kept and replicated like
  decisions (the Rust side holds them in a bounded log until then);
- writes the status (``status()``) to ``status_file`` (0600, replaced
  atomically), which ``vedette peers status`` reads: the status is read-only
  and never served on the adapter listener's admin surface (INV-10).

Segments travel with their origin signatures (docs/contracts.md, "Peer sync
protocol"). The node keeps one signer: the ``[peers]`` key and certificate,
which :class:`vedette.origin.NodeSigner` also picks for the runtime's
``OriginSeals``. The runtime signs what it seals about once a second; the
service signs, with the same key, an own segment a peer asks for before that
round reached it, so nothing waits on the round and nothing leaves unsigned.
A segment refused for its signature is counted (``origin_refused``) and
recorded as a ``peer_event``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry

from vedette.config import Config, PeersConfig
from vedette.errors import StoreError
from vedette.peers.beacon import Beacon
from vedette.peers.service import PeerService
from vedette.store import SegmentStore

log = logging.getLogger("vedette.peers")

HOUSEKEEPING_S = 1.0
STATUS_SCHEMA = "vedette.peers.status/1"


def status_path(config: Config) -> Path:
    assert config.peers is not None
    return config.peers.status_file or config.state_dir / "peers-status.json"


class PeerNode:
    def __init__(self, config: Config, store: SegmentStore) -> None:
        if config.peers is None:
            raise ValueError("no [peers] table in the configuration")
        peers: PeersConfig = config.peers
        self._config = config
        self._store = store
        self._status_file = status_path(config)
        self.service = PeerService(
            store,
            ca=peers.ca,
            cert=peers.cert,
            key=peers.key,
            crl=[peers.crl],
            trust_domain=peers.trust_domain,
            allow=peers.allow,
            rate_in=peers.rate_in_bytes_per_s,
            burst_in=peers.burst_in_bytes,
            rate_out=peers.rate_out_bytes_per_s,
            burst_out=peers.burst_out_bytes,
            quota_margin=peers.quota_margin,
            sync_interval_s=peers.sync_interval_s,
            idle_timeout_s=peers.idle_timeout_s,
            handshake_timeout_s=peers.handshake_timeout_s,
            max_connections=peers.max_connections,
            retry_base_s=peers.retry_base_s,
            retry_cap_s=peers.retry_cap_s,
            retry_budget=peers.retry_budget,
            retry_window_s=peers.retry_window_s,
        )
        self._seal_every = peers.seal_interval_s
        self._events_seen = 0
        self.events_dropped = 0
        self.beacon: Beacon | None = None
        try:
            bound = self.service.listen(peers.listen) if peers.listen else None
            for addr in peers.static:
                self.service.dial(addr)
            if peers.beacon_listen or peers.beacon_send_to:
                self.beacon = Beacon(
                    on_candidate=self.service.dial,
                    listen=peers.beacon_listen,
                    send_to=peers.beacon_send_to,
                    advertise_port=int(bound.rsplit(":", 1)[1]) if bound else None,
                    advertise_address=peers.beacon_advertise_address,
                    interval_s=peers.beacon_interval_s,
                    rate_per_s=peers.beacon_rate_per_s,
                    max_candidates=peers.beacon_max_candidates,
                )
        except BaseException:
            self.service.stop(0)
            raise
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._housekeeping, name="vedette-peers-housekeeping", daemon=True
        )
        self._thread.start()

    def status(self) -> dict[str, Any]:
        status = self.service.status()
        # Store pressure beside the peers: what sealed evidence still waits to leave.
        status["store"] = dataclasses.asdict(self._store.health())
        if self.beacon is not None:
            status["beacon"] = self.beacon.status()
        return status

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        if self.beacon is not None:
            self.beacon.stop()
        self.service.stop()
        self._record_events()
        self._write_status()

    def collector(self) -> Collector:
        return _PeerMetrics(self.service)

    def register_metrics(self, registry: CollectorRegistry) -> None:
        registry.register(self.collector())

    def _housekeeping(self) -> None:
        last_seal = time.monotonic()
        while not self._stop.wait(HOUSEKEEPING_S):
            try:
                if time.monotonic() - last_seal >= self._seal_every:
                    last_seal = time.monotonic()
                    self._store.seal()
                self._record_events()
                self._write_status()
            except Exception:  # keep the node serving; the next round retries
                log.exception("peer housekeeping failed")

    def _record_events(self) -> None:
        events = self.service.events(self._events_seen)
        if not events:
            return
        if events[0].seq > self._events_seen + 1:
            self.events_dropped += events[0].seq - self._events_seen - 1
        records = [
            json.dumps(
                {
                    "schema": "vedette.evidence/1",
                    "kind": "peer_event",
                    "node": self._config.node_id,
                    "seq": e.seq,
                    "unix_ms": e.unix_ms,
                    "event": e.kind,
                    "peer": e.peer,
                    "detail": e.detail,
                },
                separators=(",", ":"),
            ).encode()
            for e in events
        ]
        try:
            self._store.append_many(records)
        except StoreError as err:
            # Full or closed: the events stay counted in the status.
            log.warning("peer events not recorded: %s", err)
        self._events_seen = events[-1].seq

    def _write_status(self) -> None:
        body = {
            "schema": STATUS_SCHEMA,
            "node": self._config.node_id,
            "written_unix_ms": int(time.time() * 1000),
            "pid": os.getpid(),
            "events_dropped": self.events_dropped,
            **self.status(),
        }
        target = self._status_file
        target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".peers-status.", dir=target.parent)
        try:
            with os.fdopen(fd, "w") as out:
                json.dump(body, out, indent=1, sort_keys=True)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


class _PeerMetrics(Collector):
    def __init__(self, service: PeerService) -> None:
        self._service = service

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        s = self._service.status()
        moved = CounterMetricFamily(
            "vedette_peer_bytes", "Bytes exchanged with peers.", labels=["direction"]
        )
        moved.add_metric(["in"], s["bytes_in"])
        moved.add_metric(["out"], s["bytes_out"])
        yield moved
        segments = CounterMetricFamily(
            "vedette_peer_segments", "Segments replicated.", labels=["direction"]
        )
        segments.add_metric(["in"], s["segments_in"])
        segments.add_metric(["out"], s["segments_out"])
        yield segments
        rejected = CounterMetricFamily(
            "vedette_peer_handshakes_rejected",
            "Peer handshakes refused, by reason.",
            labels=["reason"],
        )
        for reason, count in sorted(s["handshakes_rejected"].items()):
            rejected.add_metric([reason], count)
        yield rejected
        quota = CounterMetricFamily(
            "vedette_peer_quota_exceeded", "Peers disconnected for exceeding their quota."
        )
        quota.add_metric([], s["quota_exceeded"])
        yield quota
        refused = CounterMetricFamily(
            "vedette_peer_origin_refused",
            "Segments refused for a missing or failing origin signature.",
        )
        refused.add_metric([], s["origin_refused"])
        yield refused
        connections = GaugeMetricFamily("vedette_peer_connections", "Peer connections open.")
        connections.add_metric([], s["connections"])
        yield connections
