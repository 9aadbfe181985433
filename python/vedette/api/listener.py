"""Connection discipline of the node's listeners (docs/threat-model.md,
"Connections").

Every listener `vedette serve` runs on uvicorn — the adapter listener on TCP,
the adapter Unix socket and the operator socket — speaks HTTP/1.1 through
:class:`ListenerProtocol`, uvicorn's httptools protocol with limits nobody
without a token can get around:

- a deadline for the whole request head, counted from the accept or from the
  end of the previous request (bytes dripped slowly do not extend it);
- a deadline for the whole body, from the end of the head;
- an idle keep-alive timeout between requests;
- a send deadline: a client that stops reading its answers is dropped;
- a limit on the bytes of a head and on its number of headers (431, then the
  connection is closed), checked before the bytes reach the parser;
- at most :data:`MAX_PIPELINED` requests queued on one connection;
- a cap on open connections in all and per source (the address, or on a Unix
  socket the peer's uid); a connection beyond it is reset at once.

Connections refused or dropped are counted (:class:`Listener`, exported as
Prometheus metrics and in ``/v1/status``), never recorded one by one. A
listener at its cap, or refusing connections lately, reports itself
``degraded``.

The hot path costs a few attribute writes per request: one deadline per
connection, kept in a float, and one timer handle that is re-armed only when
it fires early or a nearer deadline is set (no task per request).
"""

from __future__ import annotations

import asyncio
import os
import resource
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httptools
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from vedette.api.peer import PEER_UID, peer_uid
from vedette.config import ListenConfig
from vedette.runtime.decision import deny_body
from vedette.runtime.health import Health

# Requests queued behind the one being answered on one connection; beyond it
# the connection is dropped (HTTP pipelining is rare; unbounded, it is a queue
# an attacker fills from one socket).
MAX_PIPELINED = 32
# Descriptors kept for everything but adapter connections: the evidence store
# (segments, the folder, the lock), peers, release pollers, the operator
# socket's connections, log files and the interpreter's own.
DESCRIPTOR_RESERVE = 256
# Each adapter connection is budgeted two descriptors: its socket and one for
# what its call may open (a file fs.read reads, a connection an HTTP tool makes).
DESCRIPTORS_PER_CONNECTION = 2
# The operator socket's own cap (its connections come out of the reserve).
OPERATOR_MAX_CONNECTIONS = 16
# A listener that refused a connection within this many seconds is degraded.
REFUSAL_HEALTH_WINDOW_S = 5.0

# Why a connection was refused at accept.
REFUSED_REASONS = ("max_connections", "max_connections_per_source")
# Why an admitted connection was closed by the listener.
DROPPED_REASONS = (
    "head_timeout",
    "body_timeout",
    "idle_timeout",
    "send_timeout",
    "head_too_large",
    "too_many_headers",
    "too_many_pipelined",
    "bad_request",
)


@dataclass(frozen=True)
class Limits:
    head_timeout_s: float
    body_timeout_s: float
    keepalive_timeout_s: float
    send_timeout_s: float
    max_connections: int
    max_connections_per_source: int
    max_head_bytes: int
    max_headers: int

    @staticmethod
    def of(listen: ListenConfig, max_connections: int | None = None) -> Limits:
        cap = listen.max_connections if max_connections is None else max_connections
        return Limits(
            head_timeout_s=listen.head_timeout_s,
            body_timeout_s=listen.body_timeout_s,
            keepalive_timeout_s=listen.keepalive_timeout_s,
            send_timeout_s=listen.send_timeout_s,
            max_connections=cap,
            max_connections_per_source=min(listen.max_connections_per_source, cap),
            max_head_bytes=listen.max_head_bytes,
            max_headers=listen.max_headers,
        )


class DescriptorBudgetError(Exception):
    """The descriptor limit leaves no room for adapter connections."""


def raise_descriptor_limit() -> int:
    """Raises the soft RLIMIT_NOFILE to the hard one; returns the soft limit in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return soft


def open_descriptors() -> int:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return 0


def adapter_connection_cap(configured: int, soft_limit: int, already_open: int) -> int:
    """The most adapter connections this process may hold: ``configured``, or
    less if the descriptor limit would not leave the reserve free
    (docs/configuration.md, ``listen.max_connections``)."""
    room = (soft_limit - already_open - DESCRIPTOR_RESERVE) // DESCRIPTORS_PER_CONNECTION
    if room < 1:
        raise DescriptorBudgetError(
            f"the descriptor limit ({soft_limit}, {already_open} in use) leaves no room for "
            f"adapter connections after the reserve of {DESCRIPTOR_RESERVE}; raise it "
            "(ulimit -n, LimitNOFILE=)"
        )
    return min(configured, room)


class Listener:
    """The shared state of one listener: its limits, its open connections by
    source, and its counts of refused and dropped connections."""

    def __init__(self, name: str, limits: Limits) -> None:
        self.name = name
        self.limits = limits
        self.open = 0
        self.by_source: dict[str, int] = {}
        self.refused = dict.fromkeys(REFUSED_REASONS, 0)
        self.dropped = dict.fromkeys(DROPPED_REASONS, 0)
        self.refused_at = dict.fromkeys(REFUSED_REASONS, float("-inf"))
        self.accepted = 0

    def admit(self, source: str) -> bool:
        limits = self.limits
        if self.open >= limits.max_connections:
            self._refuse("max_connections")
            return False
        held = self.by_source.get(source, 0)
        if held >= limits.max_connections_per_source:
            self._refuse("max_connections_per_source")
            return False
        self.by_source[source] = held + 1
        self.open += 1
        self.accepted += 1
        return True

    def release(self, source: str) -> None:
        self.open -= 1
        held = self.by_source.get(source, 0) - 1
        if held > 0:
            self.by_source[source] = held
        else:
            self.by_source.pop(source, None)

    def _refuse(self, reason: str) -> None:
        self.refused[reason] += 1
        self.refused_at[reason] = time.monotonic()

    def protocol(self) -> type[ListenerProtocol]:
        """The protocol class uvicorn builds one of per connection, bound to this listener."""
        return type(f"{self.name.title()}ListenerProtocol", (ListenerProtocol,), {"listener": self})

    def health(self) -> Health:
        limits, now = self.limits, time.monotonic()
        reasons = []
        if self.open >= limits.max_connections:
            reasons.append(
                f"{self.name} connections at the cap ({self.open} of "
                f"{limits.max_connections}); new connections are refused"
            )
        elif now - self.refused_at["max_connections"] < REFUSAL_HEALTH_WINDOW_S:
            reasons.append(
                f"{self.name} connections refused at the cap of {limits.max_connections} "
                f"in the last {REFUSAL_HEALTH_WINDOW_S:.0f} s"
            )
        if now - self.refused_at["max_connections_per_source"] < REFUSAL_HEALTH_WINDOW_S:
            reasons.append(
                f"{self.name} connections refused at the cap of "
                f"{limits.max_connections_per_source} per source "
                f"in the last {REFUSAL_HEALTH_WINDOW_S:.0f} s"
            )
        return Health("degraded", tuple(reasons)) if reasons else Health.ok()

    def status(self) -> dict[str, Any]:
        return {
            "open": self.open,
            "max_connections": self.limits.max_connections,
            "max_connections_per_source": self.limits.max_connections_per_source,
            "sources": len(self.by_source),
            "accepted_total": self.accepted,
            "refused_total": dict(self.refused),
            "dropped_total": dict(self.dropped),
        }


class ListenerCollector(Collector):
    """Prometheus metrics of the listeners, read when scraped."""

    def __init__(self, listeners: list[Listener]) -> None:
        self._listeners = listeners

    def collect(self) -> Iterator[Metric]:
        open_ = GaugeMetricFamily(
            "vedette_listener_connections_open", "Open connections.", labels=["listener"]
        )
        cap = GaugeMetricFamily(
            "vedette_listener_connections_max",
            "The cap on open connections (after the descriptor budget).",
            labels=["listener"],
        )
        accepted = CounterMetricFamily(
            "vedette_listener_connections_accepted",
            "Connections admitted.",
            labels=["listener"],
        )
        refused = CounterMetricFamily(
            "vedette_listener_connections_refused",
            "Connections reset at accept, by reason.",
            labels=["listener", "reason"],
        )
        dropped = CounterMetricFamily(
            "vedette_listener_connections_dropped",
            "Connections the listener closed, by reason.",
            labels=["listener", "reason"],
        )
        for listener in self._listeners:
            name = listener.name
            open_.add_metric([name], listener.open)
            cap.add_metric([name], listener.limits.max_connections)
            accepted.add_metric([name], listener.accepted)
            for reason, count in listener.refused.items():
                refused.add_metric([name, reason], count)
            for reason, count in listener.dropped.items():
                dropped.add_metric([name, reason], count)
        yield from (open_, cap, accepted, refused, dropped)


class _Refused(Exception):
    """Raised inside a parser callback to stop parsing a request that is refused."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


_431 = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
    b"content-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n%s"
)
_408 = (
    b"HTTP/1.1 408 Request Timeout\r\n"
    b"content-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n%s"
)
_400 = (
    b"HTTP/1.1 400 Bad Request\r\n"
    b"content-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n%s"
)


def _answer(template: bytes, reason: str) -> bytes:
    body = deny_body(reason)
    return template % (len(body), body)


class ListenerProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol under the limits of :class:`Listener`."""

    listener: Listener

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._admitted = False
        self._source = ""
        self.peer_uid: int | None = None
        # One deadline per connection (loop time, or None) and why it is set.
        self._deadline: float | None = None
        self._deadline_reason = "head_timeout"
        self._timer: asyncio.TimerHandle | None = None
        self._timer_when = 0.0
        self._send_timer: asyncio.TimerHandle | None = None
        # When the current (or next) request head started to count.
        self._head_started = 0.0
        # Between the end of a request (or the accept) and the end of the next head.
        self._reading_head = True
        self._head_room = self.listener.limits.max_head_bytes
        self._heads = 0

    # -- connections ----------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        sock = transport.get_extra_info("socket")
        uid = peer_uid(sock)
        if uid is not None:
            source = f"uid {uid}"
        else:
            peer = transport.get_extra_info("peername")
            source = str(peer[0]) if isinstance(peer, tuple) and peer else "unix-socket"
        if not self.listener.admit(source):
            # Reset at once: no parser, no timer, the descriptor freed now.
            transport.abort()
            return
        self._admitted, self._source, self.peer_uid = True, source, uid
        super().connection_made(transport)
        now = self.loop.time()
        self._head_started = now
        self._set_deadline(now + self.listener.limits.head_timeout_s, "head_timeout")

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._admitted:
            return
        self._admitted = False
        self.listener.release(self._source)
        self._deadline = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._send_timer is not None:
            self._send_timer.cancel()
            self._send_timer = None
        super().connection_lost(exc)

    # -- bytes in ---------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        # A head may use at most max_head_bytes: feed the parser no more of it
        # than that, so an endless header never reaches the parser's buffers.
        while self._reading_head and len(data) > self._head_room:
            room, heads = self._head_room, self._heads
            if not self._feed(data[:room]):
                return
            if self._heads == heads:
                self._refuse_head("head_too_large", "request head over the size limit")
                return
            data = data[room:]
        if self._reading_head:
            self._head_room -= len(data)
        self._feed(data)

    def _feed(self, data: bytes) -> bool:
        """Parses ``data``; False once the connection is being closed."""
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as err:
            refused = err.__context__
            if isinstance(refused, _Refused):
                if refused.reason == "too_many_headers":
                    self._refuse_head("too_many_headers", "too many request headers")
                else:
                    self._drop(refused.reason)
                return False
            raise
        except httptools.HttpParserUpgrade:
            return False  # no upgrades are served; the request was answered as any other
        except httptools.HttpParserError:
            self._count("bad_request")
            self.transport.write(_answer(_400, "malformed HTTP request"))
            self.transport.close()
            return False
        return not self.transport.is_closing()

    # -- parser callbacks ---------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self.peer_uid is not None:
            self.scope["state"][PEER_UID] = self.peer_uid
        self._set_deadline(self._head_started + self.listener.limits.head_timeout_s, "head_timeout")

    def on_headers_complete(self) -> None:
        limits = self.listener.limits
        if len(self.headers) > limits.max_headers:
            raise _Refused("too_many_headers")
        if len(self.pipeline) >= MAX_PIPELINED:
            raise _Refused("too_many_pipelined")
        self._reading_head = False
        self._heads += 1
        self._set_deadline(self.loop.time() + limits.body_timeout_s, "body_timeout")
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        # The request is the application's now; the next head counts from here.
        self._deadline = None
        self._reading_head = True
        self._head_room = self.listener.limits.max_head_bytes
        self._head_started = self.loop.time()

    def on_response_complete(self) -> None:
        self.server_state.total_requests += 1
        if self.transport.is_closing():
            # An answer still unsent to a client that does not read is dropped.
            self._send_deadline()
            return
        self.flow.resume_reading()
        if self.pipeline:
            cycle, app = self.pipeline.pop()
            self._start_asgi_task(cycle, app)
            return
        now = self.loop.time()
        limits = self.listener.limits
        if self._reading_head and self._head_room == limits.max_head_bytes:
            self._head_started = now
            self._set_deadline(now + limits.keepalive_timeout_s, "idle_timeout")

    # -- bytes out ----------------------------------------------------------------

    def pause_writing(self) -> None:
        super().pause_writing()
        if self._send_timer is None and self._admitted:
            self._send_timer = self.loop.call_later(
                self.listener.limits.send_timeout_s, self._drop, "send_timeout"
            )

    def resume_writing(self) -> None:
        super().resume_writing()
        if self._send_timer is not None:
            self._send_timer.cancel()
            self._send_timer = None

    # -- deadlines ----------------------------------------------------------------

    def _set_deadline(self, when: float, reason: str) -> None:
        self._deadline, self._deadline_reason = when, reason
        timer = self._timer
        if timer is None or self._timer_when > when:
            if timer is not None:
                timer.cancel()
            self._timer = self.loop.call_at(when, self._on_timer)
            self._timer_when = when

    def _on_timer(self) -> None:
        self._timer = None
        deadline = self._deadline
        if deadline is None or not self._admitted:
            return
        if self.loop.time() < deadline:
            self._timer = self.loop.call_at(deadline, self._on_timer)
            self._timer_when = deadline
            return
        reason = self._deadline_reason
        if reason == "idle_timeout" and self.transport.get_write_buffer_size():
            reason = "send_timeout"  # the answer is still unread
        self._drop(reason)

    # -- closing --------------------------------------------------------------------

    def _count(self, reason: str) -> None:
        self.listener.dropped[reason] += 1

    def _refuse_head(self, reason: str, text: str) -> None:
        self._count(reason)
        self.transport.write(_answer(_431, text))
        self.transport.close()
        # If the client does not read even that, the send deadline drops it.
        self._send_deadline()

    def _send_deadline(self) -> None:
        self._set_deadline(self.loop.time() + self.listener.limits.send_timeout_s, "send_timeout")

    def _drop(self, reason: str) -> None:
        if not self._admitted:
            return
        self._count(reason)
        self._deadline = None
        transport = self.transport
        if reason == "send_timeout" or transport.get_write_buffer_size():
            transport.abort()
            return
        answering = self.cycle is not None and not self.cycle.response_complete
        if reason in ("head_timeout", "body_timeout") and not answering:
            transport.write(_answer(_408, "request not received in time"))
        transport.close()
