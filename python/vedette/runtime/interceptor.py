"""The runtime: authenticate → validate → quota → declared tools → policy →
durable evidence → execute → record the outcome. Every fault on the way denies.

``Runtime.handle`` serves HTTP bodies; ``Runtime.decide_async`` and the
blocking ``Runtime.decide`` serve in-process callers that already hold a
:class:`Caller`. Policy evaluation of a small input runs on the event loop: it
takes tens of microseconds, less than a hop to a worker thread and back, and
the engine bounds it by its own time limit; large inputs, whose evaluation can
take longer, go to worker threads (the engine releases the GIL). Evidence is made
durable by a Rust writer thread that never takes the GIL, so the loop never
waits on the disk, and the records of all concurrent calls share one write.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import math
import threading
import time
from typing import TYPE_CHECKING, Any

from vedette.config import Config
from vedette.errors import is_rust_panic
from vedette.quota import QuotaTable
from vedette.runtime.decision import Decision
from vedette.runtime.encoding import dumps
from vedette.runtime.evidence import DecisionIds, EvidenceQueue, EvidenceWriter, timestamp
from vedette.runtime.identity import Caller, CallerRegistry, Unauthenticated
from vedette.runtime.intent import Intent, InvalidIntent, intent_from_value, parse_intent
from vedette.runtime.metrics import RuntimeMetrics
from vedette.runtime.releases import ActiveRelease, LocalReleases, Releases
from vedette.runtime.tools import ToolFailed, ToolRegistry
from vedette.store import SegmentStore

if TYPE_CHECKING:
    from vedette.peers.node import PeerNode

log = logging.getLogger("vedette.runtime")

# Policy inputs whose arguments and claims encode to at most this many bytes
# are evaluated on the event loop: that takes tens of microseconds,
# less than a hop to a thread and back. Larger inputs go to worker threads.
INLINE_EVALUATION_BYTES = 4096
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
        self._evidence = EvidenceWriter(config.node_id, config.evidence.mask_args)
        self._records = EvidenceQueue(self.store)
        self._ids = DecisionIds()
        self._evaluators = concurrent.futures.ThreadPoolExecutor(
            max_workers=EVALUATOR_THREADS, thread_name_prefix="vedette-evaluator"
        )
        self.metrics = RuntimeMetrics(self._store_usage)
        # Signed releases count their lifecycle events in the same registry.
        self.releases.bind_metrics(self.metrics.registry)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: threading.Thread | None = None
        self._loop_lock = threading.Lock()
        self.peers: PeerNode | None = None
        try:
            self.peers = _start_peers(config, self.store, self.metrics)
        except BaseException:
            self.close()  # a bad [peers] table must not leave the store locked
            raise

    # -- entry points -------------------------------------------------------

    def authenticate(self, authorization: str | None) -> Caller:
        """The caller for an Authorization header; raises :class:`Unauthenticated`."""
        return self.callers.from_authorization(authorization)

    async def unauthenticated(self, reason: str) -> Decision:
        """Answer (and record) a request without valid credentials."""
        decision = Decision("unauthenticated", self._ids.next(), reason=reason)
        await self._record_denial(decision, None, None)
        return self._finish(decision, None, None, time.perf_counter())

    async def invalid(self, caller: Caller, reason: str) -> Decision:
        """Answer (and record) a request refused before its body could be parsed."""
        decision = Decision("invalid", self._ids.next(), reason=f"invalid intent: {reason}")
        await self._record_denial(decision, caller, None)
        return self._finish(decision, caller, None, time.perf_counter())

    async def handle_body(self, caller: Caller, body: bytes) -> Decision:
        """An authenticated caller's request body."""
        started = time.perf_counter()
        decision_id = self._ids.next()
        try:
            intent = parse_intent(body, self.config.intent)
        except InvalidIntent as err:
            return await self._refuse_invalid(err, caller, decision_id, started)
        except Exception as err:  # a parser fault is a deny like any other
            log.exception("unexpected failure parsing %s", decision_id)
            decision = Decision(
                "deny", decision_id, reason=f"internal error ({type(err).__name__}); denied"
            )
            await self._record_denial(decision, caller, None)
            return self._finish(decision, caller, None, started)
        return await self._decide_guarded(intent, caller, decision_id, started)

    async def handle(self, body: bytes, authorization: str | None) -> Decision:
        """A whole HTTP request: credentials first, then the body."""
        try:
            caller = self.authenticate(authorization)
        except Unauthenticated as err:
            return await self.unauthenticated(str(err))
        return await self.handle_body(caller, body)

    async def decide_async(self, intent: Intent | dict[str, Any], caller: Caller) -> Decision:
        """An in-process intent (an :class:`Intent` or a dict of its fields)."""
        started = time.perf_counter()
        decision_id = self._ids.next()
        if not isinstance(intent, Intent):
            try:
                intent = intent_from_value(intent, self.config.intent)
            except InvalidIntent as err:
                return await self._refuse_invalid(err, caller, decision_id, started)
        return await self._decide_guarded(intent, caller, decision_id, started)

    def decide(self, intent: Intent | dict[str, Any], caller: Caller) -> Decision:
        """Blocking form of :meth:`decide_async`, safe to call from many threads."""
        future = asyncio.run_coroutine_threadsafe(self.decide_async(intent, caller), self._loop_())
        return future.result()

    # -- the pipeline -------------------------------------------------------

    async def _refuse_invalid(
        self, err: InvalidIntent, caller: Caller, decision_id: str, started: float
    ) -> Decision:
        decision = Decision("invalid", decision_id, reason=f"invalid intent: {err}")
        await self._record_denial(decision, caller, None)
        return self._finish(decision, caller, None, started)

    async def _decide_guarded(
        self, intent: Intent, caller: Caller, decision_id: str, started: float
    ) -> Decision:
        try:
            decision = await self._decide(intent, caller, decision_id)
        except BaseException as err:  # anything unexpected denies (and is recorded)
            if not isinstance(err, Exception) and not is_rust_panic(err):
                raise  # cancellation, interpreter exit: not ours to turn into an answer
            log.exception("unexpected failure deciding %s", decision_id)
            decision = Decision(
                "deny", decision_id, reason=f"internal error ({type(err).__name__}); denied"
            )
            await self._record_denial(decision, caller, intent)
        return self._finish(decision, caller, intent, started)

    async def _decide(self, intent: Intent, caller: Caller, decision_id: str) -> Decision:
        release = self.releases.active(caller.agent)
        if release is None:
            reason = self.releases.unavailable_reason(caller.agent)
            return await self._deny("deny", decision_id, reason, caller, intent, None)
        declared = release.manifest.declares_tool(intent.tool)
        args_json = dumps(intent.args)
        if declared:
            problem = _schema_problem(release, intent.tool, args_json)
            if problem is not None:
                reason = f"invalid intent: args do not fit the schema of {intent.tool!r}: {problem}"
                return await self._deny("invalid", decision_id, reason, caller, intent, release)
        if not self._quotas.try_take(caller.id):
            wait = self._quotas.wait_time(caller.id)
            reason = f"caller {caller.id!r} is over its rate quota; retry in {wait:.3f} s"
            decision = Decision("over_quota", decision_id, reason=reason, retry_after_s=wait)
            await self._record_denial(decision, caller, intent, release)
            return decision
        if not declared:
            reason = f"tool {intent.tool!r} is not declared by agent {caller.agent!r}"
            return await self._deny("deny", decision_id, reason, caller, intent, release)
        if intent.tool not in self.tools:
            reason = f"tool {intent.tool!r} is declared but not available on this node"
            return await self._deny("deny", decision_id, reason, caller, intent, release)

        policy_input = self._policy_input(intent, caller, release)
        input_bytes = len(args_json) + (len(dumps(intent.claims)) if intent.claims else 0)
        if input_bytes <= INLINE_EVALUATION_BYTES:
            verdict = release.engine.evaluate(policy_input)
        else:
            # Evaluation time grows with the input; a large one must not stall
            # every other call on the loop while it runs.
            verdict = await asyncio.get_running_loop().run_in_executor(
                self._evaluators, release.engine.evaluate, policy_input
            )
        if not verdict.allow:
            reason = verdict.reason or "denied by policy"
            if verdict.fault is not None:
                reason = f"policy {verdict.fault}: {reason}"
            return await self._deny(
                "deny", decision_id, reason, caller, intent, release, verdict.to_dict()
            )

        record = self._decision_record(
            Decision("allow", decision_id, reason=verdict.reason), caller, intent, release,
            verdict.to_dict(),
        )  # fmt: skip
        try:
            await self._records.append(record)
        except Exception as err:  # the tool must not run without durable evidence
            self.metrics.evidence_failures.inc()
            reason = f"evidence could not be recorded ({type(err).__name__}: {err}); denied"
            return Decision("deny", decision_id, reason=reason)
        return await self._execute(intent, release, decision_id)

    async def _execute(self, intent: Intent, release: ActiveRelease, decision_id: str) -> Decision:
        started = time.perf_counter()
        try:
            outcome = await self.tools.execute(intent.tool, intent.args)
        except ToolFailed as err:
            error = {"type": err.kind, "message": str(err)}
            self._record_later(
                self._evidence.tool_outcome(
                    decision_id=decision_id, tool=intent.tool, status="error",
                    output_digest=None, output_bytes=None, error=error,
                    duration_ms=(time.perf_counter() - started) * 1000,
                )
            )  # fmt: skip
            return Decision("tool_error", decision_id, error=error, release=release.version)
        self._record_later(
            self._evidence.tool_outcome(
                decision_id=decision_id, tool=intent.tool, status="ok",
                output_digest=str(outcome.output_digest), output_bytes=len(outcome.output_json),
                error=None, duration_ms=(time.perf_counter() - started) * 1000,
            )
        )  # fmt: skip
        return Decision(
            "allow",
            decision_id,
            output=outcome.output,
            release=release.version,
            output_json=outcome.output_json,
        )

    def _policy_input(
        self, intent: Intent, caller: Caller, release: ActiveRelease
    ) -> dict[str, Any]:
        now = time.time_ns()
        return {
            "tool": intent.tool,
            "args": intent.args,
            "caller": {"id": caller.id},
            "claims": intent.claims,
            "agent": {
                "name": release.agent,
                "behavioral_fingerprint": str(release.behavioral_fingerprint),
                "tools": release.manifest.tool_names,
            },
            "node": {"id": self.config.node_id},
            "time": timestamp(now),
        }

    # -- evidence -----------------------------------------------------------

    async def _deny(
        self,
        outcome: Any,
        decision_id: str,
        reason: str,
        caller: Caller,
        intent: Intent,
        release: ActiveRelease | None,
        result: Any = None,
    ) -> Decision:
        decision = Decision(outcome, decision_id, reason=reason)
        await self._record_denial(decision, caller, intent, release, result)
        return decision

    async def _record_denial(
        self,
        decision: Decision,
        caller: Caller | None,
        intent: Intent | None,
        release: ActiveRelease | None = None,
        result: Any = None,
    ) -> None:
        await self._append_quietly(self._decision_record(decision, caller, intent, release, result))

    def _decision_record(
        self,
        decision: Decision,
        caller: Caller | None,
        intent: Intent | None,
        release: ActiveRelease | None,
        result: Any,
    ) -> bytes:
        return self._evidence.decision(
            decision_id=decision.decision_id,
            outcome=decision.outcome,
            reason=decision.reason,
            caller=caller.id if caller else None,
            agent=caller.agent if caller else None,
            tool=intent.tool if intent else None,
            args=intent.args if intent else None,
            claims=intent.claims if intent else None,
            release=release.describe() if release else None,
            result=result,
            request_id=intent.request_id if intent else None,
        )

    async def _append_quietly(self, record: bytes) -> None:
        """Evidence of a denial or an outcome: a failure is counted and logged; the
        answer (already a deny, or a tool that already ran) stands."""
        try:
            await self._records.append(record)
        except Exception:
            self.metrics.evidence_failures.inc()
            log.exception("evidence record could not be made durable")

    def _record_later(self, record: bytes) -> None:
        """A tool outcome: queued for the next group commit, not waited for.

        The decision record that let the tool run is already durable; the
        answer does not wait a second fdatasync for the outcome. A crash in
        that window (one commit, a few ms) can lose an outcome record, never
        the allow that preceded it. Failures are counted and logged.
        """
        self._records.append(record).add_done_callback(self._outcome_written)

    def _outcome_written(self, future: asyncio.Future[None]) -> None:
        if not future.cancelled() and future.exception() is not None:
            self.metrics.evidence_failures.inc()
            log.error("tool outcome record could not be made durable: %s", future.exception())

    def flush_evidence(self) -> None:
        """Block until every evidence record queued so far is durable (or failed)."""
        self._records.flush()

    # -- bookkeeping --------------------------------------------------------

    def _finish(
        self, decision: Decision, caller: Caller | None, intent: Intent | None, started: float
    ) -> Decision:
        tool = "none"
        if intent is not None:
            tool = intent.tool if intent.tool in self.tools else "other"
        agent = caller.agent if caller else "none"
        self.metrics.count_decision(decision.outcome, tool, agent)
        self.metrics.latency.observe(time.perf_counter() - started)
        return decision

    def _store_usage(self) -> tuple[int, int]:
        usage = self.store.usage()
        return usage.bytes_used, usage.ceiling_bytes

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

    def health(self) -> dict[str, Any]:
        # Signed releases tell ok, stale, lkg or deny_all; local ones ok or deny_all.
        agents = {agent: self.releases.health_state(agent) for agent in self.releases.agents()}
        state = "ok" if agents and all(v == "ok" for v in agents.values()) else "deny_all"
        if agents and any(v != "deny_all" for v in agents.values()) and state != "ok":
            state = "degraded"
        return {"status": state, "agents": agents}

    def status(self) -> dict[str, Any]:
        usage = self.store.usage()
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
            "store": {"bytes_used": usage.bytes_used, "ceiling_bytes": usage.ceiling_bytes},
            "tools": self.tools.names(),
            **({"peers": self.peers.status()} if self.peers is not None else {}),
        }

    def close(self) -> None:
        self.releases.close()  # pollers stop before the store
        if self._loop is not None and self._loop_thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._loop_thread.join()
            self._loop.close()
            self._loop = None
        if self.peers is not None:
            self.peers.stop()
        self._evaluators.shutdown(wait=True)
        self.tools.close()
        self._records.close()
        self.store.close()


def open_store(config: Config) -> SegmentStore:
    """The evidence store ``config`` names."""
    # The store makes its own folder (0700); the state folder above it is ours.
    config.store_dir.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    return SegmentStore.open(
        config.store_dir,
        ceiling_bytes=config.store.ceiling_bytes,
        node_id=config.node_id,
        durability=config.store.durability,
    )


def _start_peers(config: Config, store: SegmentStore, metrics: RuntimeMetrics) -> PeerNode | None:
    """The peer transport, when the configuration has a ``[peers]`` table."""
    if config.peers is None:
        return None
    from vedette.peers.node import PeerNode

    node = PeerNode(config, store)
    node.register_metrics(metrics.registry)
    return node


def _schema_problem(release: ActiveRelease, tool: str, args_json: bytes) -> str | None:
    validator = release.validators.get(tool)
    if validator is None:
        return None
    return validator.problem(args_json)


def retry_after_header(seconds: float | None) -> str:
    return str(max(1, math.ceil(seconds or 0)))
