"""The runtime: authenticate → parse → quota → argument schema → declared tools → policy →
durable evidence → execute → record the outcome. Every fault on the way denies.

``Runtime.handle_body`` serves HTTP bodies; ``Runtime.decide_async`` and the
blocking ``Runtime.decide`` serve in-process callers that already hold a
:class:`Caller` (their intents are encoded and take the same path).

Everything from the body bytes to the decision record is one call into the
Rust core (``vedette._core.Gate``, ``rust/gate/``): parse, validate, quota,
declared tools, policy, record. For a small body it runs on the event loop: it
takes tens of microseconds, less than a hop to a worker thread and back, and
the policy engine bounds it by its own time limit; a large body, whose
evaluation can take longer, goes to a worker thread (the GIL is released).
Evidence is made durable by a Rust writer thread that never takes the GIL, so
the loop never waits on the disk, and the records of all concurrent calls
share one write.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from vedette._core import DETACH_ABOVE_BYTES, Gate, Verdict
from vedette.config import Config
from vedette.errors import is_rust_panic
from vedette.hashing import blake3
from vedette.origin import NodeSigner, OriginSeals
from vedette.quota import QuotaTable
from vedette.runtime.decision import Decision
from vedette.runtime.encoding import dumps
from vedette.runtime.evidence import EvidenceQueue, open_store
from vedette.runtime.health import (
    Health,
    HealthSource,
    combine,
    probe,
    releases_health,
    store_health,
)
from vedette.runtime.housekeeping import Housekeeping
from vedette.runtime.identity import Caller, CallerRegistry, Unauthenticated
from vedette.runtime.intent import Intent, InvalidIntent, encode_intent
from vedette.runtime.metrics import RuntimeMetrics
from vedette.runtime.reasons import HostPaths, evidence_failure
from vedette.runtime.refusals import RefusalLedger
from vedette.runtime.releases import ActiveRelease, LocalReleases, Releases
from vedette.runtime.retries import Claim, RetryAbandoned, RetryTable
from vedette.runtime.tools import ToolFailed, ToolRegistry
from vedette.store import SegmentStore, StoreError

log = logging.getLogger("vedette.runtime")

# Bodies of at most this many bytes are decided on the event loop: that takes
# tens of microseconds, less than a hop to a thread and back, and the core
# would not release the interpreter lock for them anyway. Larger ones go to
# worker threads.
INLINE_EVALUATION_BYTES = DETACH_ABOVE_BYTES
EVALUATOR_THREADS = 4


class Runtime:
    def __init__(
        self,
        config: Config,
        *,
        releases: Releases | None = None,
        tools: ToolRegistry | None = None,
        store: SegmentStore | None = None,
    ) -> None:
        self.config = config
        self.callers = CallerRegistry(config.callers)
        self.releases: Releases = releases or LocalReleases(
            config.agents, eval_time_limit_s=config.policy.eval_timeout_ms / 1000
        )
        self.tools = tools or ToolRegistry(config.tools)
        self.store = store if store is not None else open_store(config)
        self._quotas = QuotaTable(
            config.quota.rate_per_s, config.quota.burst, config.quota.max_keys
        )
        self._gate = Gate(
            node_id=config.node_id,
            mask_args=list(config.evidence.mask_args),
            max_depth=config.intent.max_depth,
            max_args_bytes=config.intent.max_args_bytes,
            max_claims_bytes=config.intent.max_claims_bytes,
            quotas=self._quotas,
            tools=[],
        )
        self.tools.watch(self._gate.set_tools)  # plugins may be registered later
        self._host_paths = HostPaths.of(config)
        self.refusals = RefusalLedger()
        # Requests without valid credentials, per source address (docs/threat-model.md).
        self._unauthenticated_quota = QuotaTable(
            config.listen.unauthenticated_rate_per_s,
            config.listen.unauthenticated_burst,
            config.listen.unauthenticated_max_sources,
        )
        self.retries = RetryTable(
            window_s=config.intent.retry_window_s, max_entries=config.intent.max_retry_entries
        )
        self._records = EvidenceQueue(self.store)
        self._evaluators = concurrent.futures.ThreadPoolExecutor(
            max_workers=EVALUATOR_THREADS, thread_name_prefix="vedette-evaluator"
        )
        self.metrics = RuntimeMetrics(self.store.health)
        # Signed releases count their lifecycle events in the same registry.
        self.releases.bind_metrics(self.metrics.registry)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: threading.Thread | None = None
        self._loop_lock = threading.Lock()
        # The parts whose state /v1/health reports (runtime/health.py); the
        # composition root (serve.py) adds the listener, the peers, the archive
        # and the others it builds, through the add_* and on_* methods below.
        self._health_sources: dict[str, HealthSource] = {
            "releases": self._releases_health,
            "store": self._store_health,
        }
        self._status_sources: dict[str, Callable[[], dict[str, Any]]] = {}
        self._closers: list[Callable[[], None]] = []
        self._housekeeping: Housekeeping | None = None
        try:
            # Every segment this node seals is signed by it (docs/contracts.md,
            # "Origin signatures"); the key is recorded in its evidence.
            self.seals = OriginSeals(self.store, NodeSigner.for_config(config))
            self._record_node_key()
        except BaseException:
            self.close()  # an unreadable node key must not leave the store locked
            raise
        self._housekeeping = Housekeeping(
            store=self.store,
            gate=self._gate,
            seals=self.seals,
            refusals=self.refusals,
            metrics=self.metrics,
            # Sealed evidence can leave the node: seal by age too (docs/configuration.md).
            seal_after_s=(
                config.store.seal_after_s
                if config.peers is not None or config.archive is not None
                else None
            ),
        )
        self._housekeeping.start()

    # -- entry points -------------------------------------------------------

    def authenticate(self, authorization: str | None) -> Caller:
        """The caller for an Authorization header; raises :class:`Unauthenticated`."""
        return self.callers.from_authorization(authorization)

    async def unauthenticated(self, reason: str, source: str | None = None) -> Decision:
        """Answer (and record, or count: runtime/refusals.py) a request without valid
        credentials from the address ``source``. Beyond the per-address rate
        (``listen.unauthenticated_rate_per_s``) it is answered 429 and only counted."""
        address = f"address {source}"
        if not self._unauthenticated_quota.try_take(address):
            wait = self._unauthenticated_quota.wait_time(address)
            # Held until a retry would be admitted (at most hold_s): the
            # flood's own connections slow it down, not the node's CPU.
            await asyncio.sleep(min(wait, self.config.listen.unauthenticated_hold_s))
            decision = Decision(
                "over_quota",
                self._gate.next_id(),
                reason=f"too many requests without valid credentials; retry in {wait:.3f} s",
                retry_after_s=wait,
            )
            self.refusals.count(decision.outcome, address, decision.decision_id)
            return self._finish(decision, None, None, time.perf_counter())
        decision = Decision("unauthenticated", self._gate.next_id(), reason=reason)
        if self.refusals.admit(decision.outcome, address, decision.decision_id):
            await self._record_denial(decision, None)
        return self._finish(decision, None, None, time.perf_counter())

    async def invalid(self, caller: Caller, reason: str) -> Decision:
        """Answer (and record, or count) a request refused before its body could be
        parsed. It counts against the caller's quota like any other."""
        retry_after = self._gate.take_quota(caller.id)
        if retry_after is not None:
            decision = Decision(
                "over_quota",
                self._gate.next_id(),
                reason=f"caller {caller.id!r} is over its rate quota; retry in {retry_after:.3f} s",
                retry_after_s=retry_after,
            )
        else:
            decision = Decision("invalid", self._gate.next_id(), reason=f"invalid intent: {reason}")
        if self.refusals.admit(decision.outcome, f"caller {caller.id}", decision.decision_id):
            await self._record_denial(decision, caller)
        return self._finish(decision, caller, None, time.perf_counter())

    async def handle_body(self, caller: Caller, body: bytes) -> Decision:
        """An authenticated caller's request body."""
        started = time.perf_counter()
        tool = decision_id = request_id = None
        claim: Claim | None = None
        decision: Decision | None = None
        keep = False
        try:
            verdict, release = await self._decide(caller, body)
            tool, decision_id = verdict.tool, verdict.decision_id
            request_id = verdict.request_id
            if request_id is not None and verdict.outcome in ("allow", "deny"):
                claim = self.retries.claim(caller.id, request_id, blake3(body).raw)
                if claim.kind == "replay":
                    return await self._replay(claim, caller, body, tool, started)
                if claim.kind == "conflict":
                    reason = (
                        f"invalid intent: request_id {request_id!r} was already used "
                        "for another intent"
                    )
                    conflict = Decision("invalid", verdict.decision_id, reason=reason)
                    if self.refusals.admit("invalid", f"caller {caller.id}", conflict.decision_id):
                        await self._record_denial(conflict, caller, tool)
                    return self._finish(conflict, caller, tool, started)
            if verdict.allowed and release is not None:
                decision = await self._run_allowed(verdict, release)
                keep = decision.outcome in ("allow", "tool_error")
            else:
                who = f"caller {caller.id}"
                if self.refusals.admit(verdict.outcome, who, verdict.decision_id):
                    await self._append_quietly(verdict.record)
                decision = Decision(
                    verdict.outcome,
                    verdict.decision_id,
                    reason=verdict.reason,
                    retry_after_s=verdict.retry_after_s,
                )
                keep = verdict.outcome == "deny"
        except BaseException as err:  # anything unexpected denies (and is recorded)
            if not isinstance(err, Exception) and not is_rust_panic(err):
                raise  # cancellation, interpreter exit: not ours to turn into an answer
            # The call keeps its id if it got one (its allow may be on record already).
            decision_id = decision_id or self._gate.next_id()
            log.exception("unexpected failure deciding %s", decision_id)
            decision = Decision(
                "deny", decision_id, reason=f"internal error ({type(err).__name__}); denied"
            )
            keep = False
            await self._record_denial(decision, caller, tool)
        finally:
            if claim is not None and claim.kind == "decide" and request_id is not None:
                # Retries of this request get its answer (if a policy made it).
                self.retries.settle(caller.id, request_id, decision, keep=keep)
        return self._finish(decision, caller, tool, started)

    async def _replay(
        self, claim: Claim, caller: Caller, body: bytes, tool: str | None, started: float
    ) -> Decision:
        """A retry: the first request's answer (waited for if it is still running)."""
        assert claim.answer is not None
        try:
            earlier = await asyncio.wrap_future(claim.answer)
        except RetryAbandoned:
            return await self.handle_body(caller, body)  # the first never finished: decide
        return self._finish(earlier, caller, tool, started)

    async def handle(self, body: bytes, authorization: str | None) -> Decision:
        """A whole HTTP request: credentials first, then the body."""
        try:
            caller = self.authenticate(authorization)
        except Unauthenticated as err:
            return await self.unauthenticated(str(err))
        return await self.handle_body(caller, body)

    async def decide_async(self, intent: Intent | dict[str, Any], caller: Caller) -> Decision:
        """An in-process intent (an :class:`Intent` or a dict of its fields)."""
        try:
            body = encode_intent(intent)
        except InvalidIntent as err:
            return await self.invalid(caller, str(err))
        return await self.handle_body(caller, body)

    def decide(self, intent: Intent | dict[str, Any], caller: Caller) -> Decision:
        """Blocking form of :meth:`decide_async`, safe to call from many threads."""
        future = asyncio.run_coroutine_threadsafe(self.decide_async(intent, caller), self._loop_())
        return future.result()

    async def refuse(self, caller: Caller, tool: str | None, reason: str) -> Decision:
        """Deny, and record, a call an adapter refuses before the gate: a call to an
        MCP tool whose definition differs from its agent's manifest (vedette/mcp)."""
        started = time.perf_counter()
        decision = Decision("deny", self._gate.next_id(), reason=reason)
        await self._record_denial(decision, caller, tool)
        return self._finish(decision, caller, tool, started)

    async def record_event(self, kind: str, fields: dict[str, Any]) -> None:
        """Make an evidence record of ``kind`` with ``fields`` durable (a failure is
        counted and logged: the event happened either way)."""
        await self._append_quietly(self._gate.event_record(kind, dumps(fields)))

    async def record_before_release(self, kind: str, fields: dict[str, Any]) -> None:
        """Make an evidence record of ``kind`` durable, or raise what the store
        raised: the caller withholds what the record is about (an MCP
        resource's contents, say) when it cannot be recorded."""
        try:
            await self._records.append(self._gate.event_record(kind, dumps(fields)))
        except Exception:
            self.metrics.evidence_failures.inc()
            raise

    # -- the pipeline -------------------------------------------------------

    async def _decide(self, caller: Caller, body: bytes) -> tuple[Verdict, ActiveRelease | None]:
        """Parse, validate, quota, declared tools and policy: one call into the core,
        under the release active for the caller's agent now."""
        release = self.releases.active(caller.agent)
        plan = release.plan if release is not None else None
        unavailable = "" if release is not None else self.releases.unavailable_reason(caller.agent)
        if len(body) <= INLINE_EVALUATION_BYTES:
            verdict = self._gate.decide(plan, caller.id, caller.agent, body, unavailable)
        else:
            # Evaluation time grows with the input; a large one must not stall
            # every other call on the loop while it runs.
            verdict = await asyncio.get_running_loop().run_in_executor(
                self._evaluators, self._gate.decide, plan, caller.id, caller.agent, body,
                unavailable,
            )  # fmt: skip
        return verdict, release

    async def _run_allowed(self, verdict: Verdict, active: ActiveRelease) -> Decision:
        """The tool runs only once the record of the allow is durable."""
        try:
            await self._records.append(verdict.record)
        except Exception as err:  # the tool must not run without durable evidence
            self.metrics.evidence_failures.inc()
            log.error(
                "the allow record of %s could not be made durable: %s", verdict.decision_id, err
            )
            reason = f"evidence could not be recorded ({evidence_failure(err)}); denied"
            return Decision("deny", verdict.decision_id, reason=reason)
        tool, args, decision_id = verdict.tool or "", verdict.args() or {}, verdict.decision_id
        release = active.version
        started = time.perf_counter()
        try:
            outcome = await self.tools.execute(tool, args)
        except asyncio.CancelledError:
            # The caller gave up (an MCP client's notifications/cancelled, a
            # dropped connection): the allow is on record, so is the end.
            self._record_later(
                self._gate.outcome_record(
                    decision_id=decision_id, tool=tool, status="error",
                    duration_ms=(time.perf_counter() - started) * 1000,
                    error_type="cancelled", error_message="the caller cancelled the call",
                )
            )  # fmt: skip
            raise
        except ToolFailed as err:
            self._record_later(
                self._gate.outcome_record(
                    decision_id=decision_id, tool=tool, status="error",
                    duration_ms=(time.perf_counter() - started) * 1000,
                    error_type=err.kind, error_message=str(err),
                )
            )  # fmt: skip
            error = {"type": err.kind, "message": str(err)}
            return Decision("tool_error", decision_id, error=error, release=release)
        self._record_later(
            self._gate.outcome_record(
                decision_id=decision_id, tool=tool, status="ok",
                duration_ms=(time.perf_counter() - started) * 1000,
                output_digest=str(outcome.output_digest), output_bytes=len(outcome.output_json),
            )
        )  # fmt: skip
        return Decision(
            "allow",
            decision_id,
            output=outcome.output,
            release=release,
            output_json=outcome.output_json,
        )

    # -- evidence -----------------------------------------------------------

    async def _record_denial(
        self, decision: Decision, caller: Caller | None, tool: str | None = None
    ) -> None:
        """The record of a call decided here rather than by the gate."""
        outcome = decision.outcome
        if outcome == "tool_error":  # an allowed call: the gate and the tool record it
            raise ValueError("a tool error is not decided here")
        record = self._gate.decision_record(
            decision_id=decision.decision_id,
            outcome=outcome,
            reason=decision.reason,
            caller=caller.id if caller else None,
            agent=caller.agent if caller else None,
            tool=tool,
        )
        await self._append_quietly(record)

    async def _append_quietly(self, record: bytes) -> None:
        """Evidence of a denial or an outcome: a failure is counted and logged; the
        answer (already a deny, or a tool that already ran) stands."""
        try:
            await self._records.append(record)
        except Exception:
            self.metrics.evidence_failures.inc()
            log.exception("evidence record could not be made durable")

    def _record_later(self, record: bytes) -> None:
        """A tool outcome: written with the next group commit, not waited for.

        The decision record that let the tool run is already durable; the
        answer does not wait a second fdatasync for the outcome, and the
        outcome does not cost one of its own: it joins the next batch, or is
        written 10 ms later. A crash in that window can lose an outcome
        record, never the allow that preceded it. Failures are counted and
        logged.
        """
        self._records.append(record, lazy=True).add_done_callback(self._outcome_written)

    def _outcome_written(self, future: asyncio.Future[None]) -> None:
        if not future.cancelled() and future.exception() is not None:
            self.metrics.evidence_failures.inc()
            log.error("tool outcome record could not be made durable: %s", future.exception())

    # -- housekeeping ---------------------------------------------------------

    def _record_node_key(self) -> None:
        self.record_event_now("node_key", self.seals.signer.record())

    def record_event_now(self, kind: str, fields: dict[str, Any]) -> None:
        """Make an evidence record of ``kind`` durable before returning, outside
        any event loop (node start, its key). A failure is counted and logged:
        a full store still serves, and denies."""
        try:
            self.store.append(self._gate.event_record(kind, dumps(fields)))
        except StoreError as err:
            self.metrics.evidence_failures.inc()
            log.error("the %s record could not be made durable: %s", kind, err)

    def housekeep(self, *, final: bool = False) -> None:
        """One round of the periodic work now (runtime/housekeeping.py); ``final``
        writes whatever is pending."""
        if self._housekeeping is not None:
            self._housekeeping.run_once(final=final)

    def flush_evidence(self) -> None:
        """Block until every evidence record queued so far is durable (or failed)."""
        self._records.flush()

    # -- bookkeeping --------------------------------------------------------

    def _finish(
        self, decision: Decision, caller: Caller | None, tool: str | None, started: float
    ) -> Decision:
        decision = self._without_host_paths(decision)
        label = "none" if tool is None else tool if tool in self.tools else "other"
        agent = caller.agent if caller else "none"
        self.metrics.count_decision(decision.outcome, label, agent, time.perf_counter() - started)
        return decision

    def _without_host_paths(self, decision: Decision) -> Decision:
        """The last guard on what an adapter reads (runtime/reasons.py)."""
        changes: dict[str, Any] = {}
        if decision.reason is not None:
            reason = self._host_paths.scrub(decision.reason)
            if reason != decision.reason:
                changes["reason"] = reason
        if decision.error is not None:
            message = self._host_paths.scrub(decision.error.get("message", ""))
            if message != decision.error.get("message", ""):
                changes["error"] = {**decision.error, "message": message}
        return dataclasses.replace(decision, **changes) if changes else decision

    def _loop_(self) -> asyncio.AbstractEventLoop:
        with self._loop_lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(
                    target=loop.run_forever, name="vedette-runtime-loop", daemon=True
                )
                thread.start()
                self._loop, self._loop_thread = loop, thread
            return self._loop

    def add_health_source(self, name: str, source: HealthSource) -> None:
        """Have ``/v1/health`` include the part ``name`` (the listener, the archive, …)."""
        self._health_sources[name] = source

    def on_sealed(self, listener: Callable[[], None]) -> None:
        """``listener`` is called after housekeeping seals a segment by age (an
        uplink wakes up to send it)."""
        if self._housekeeping is not None:
            self._housekeeping.on_sealed(listener)

    def on_close(self, stop: Callable[[], None]) -> None:
        """``stop`` runs at :meth:`close`, after serving ends and before the store
        closes (last added, first stopped)."""
        self._closers.append(stop)

    def add_status_source(self, name: str, source: Callable[[], dict[str, Any]]) -> None:
        """Have ``/v1/status`` include ``source()`` under ``name``."""
        self._status_sources[name] = source

    def health(self) -> dict[str, Any]:
        """The node's verdict (``ok``, ``degraded`` or ``failing``), why, and each part's."""
        agents = {agent: self.releases.health_state(agent) for agent in self.releases.agents()}
        parts = {name: probe(source) for name, source in self._health_sources.items()}
        state, reasons = combine(parts)
        return {
            "status": state,
            "reasons": reasons,
            "checks": {name: part.state for name, part in parts.items()},
            "agents": agents,
        }

    def _releases_health(self) -> Health:
        agents = {agent: self.releases.health_state(agent) for agent in self.releases.agents()}
        return releases_health(agents)

    def _store_health(self) -> Health:
        store = self.store.health()
        return store_health(store.verdict, store.reason)

    def status(self) -> dict[str, Any]:
        agents: dict[str, Any] = {}
        for agent in self.releases.agents():
            release = self.releases.active(agent)
            agents[agent] = (
                {"state": "active", **release.describe()}
                if release
                else {"state": "deny_all", "reason": self.releases.unavailable_reason(agent)}
            )
            agents[agent].update(self.releases.describe_agent(agent))
        return {
            "node": self.config.node_id,
            "agents": agents,
            "store": dataclasses.asdict(self.store.health()),
            "tools": self.tools.names(),
            **{name: source() for name, source in self._status_sources.items()},
        }

    def close(self) -> None:
        if self._housekeeping is not None:
            self._housekeeping.stop()
            self._housekeeping = None
        self.releases.close()  # pollers stop before the store
        if self._loop is not None and self._loop_thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._loop_thread.join()
            self._loop.close()
            self._loop = None
        while self._closers:
            try:
                self._closers.pop()()
            except Exception:  # the store must still close
                log.exception("stopping a part of the node failed")
        self._evaluators.shutdown(wait=True)
        self.tools.close()
        self._records.close()
        self.store.close()
