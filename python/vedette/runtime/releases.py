"""What is active for each agent: the one seam between deciding and releasing.

Here a release is loaded from local files named in the config (an agent
manifest and a policy bundle), which nobody signed: they run only when the
agent says ``unsigned = true``, and then health, status, metrics and every
decision record say so. Signed OCI releases implement the same
:class:`Releases` interface (``releases/lifecycle.py``); deciding asks only
``active(agent)``.

Loading is all-or-nothing per agent: a manifest or bundle that fails any check
leaves that agent without an active release (deny-all), with the reason kept
for ``status`` and for every denial it causes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Gauge

from vedette._core import ArgsValidator, ReleasePlan
from vedette.config import UNSIGNED_REFUSED, AgentConfig
from vedette.hashing import Digest
from vedette.policy import AgentManifest, PolicyEngine, load_agent_manifest, load_engine
from vedette.runtime.encoding import dumps


@dataclass(frozen=True)
class ActiveRelease:
    agent: str
    version: str
    source: str
    manifest: AgentManifest
    engine: PolicyEngine
    # Compiled once per release: tool name -> validator of its arguments
    # (see compile_validators).
    validators: dict[str, ArgsValidator] = field(repr=False)
    # The same, compiled for the decision gate (see make_active_release).
    plan: ReleasePlan = field(repr=False, compare=False)
    description: dict[str, Any] = field(repr=False, compare=False)

    @property
    def policy_hash(self) -> Digest:
        return self.engine.policy_hash

    @property
    def behavioral_fingerprint(self) -> Digest:
        return self.manifest.behavioral_fingerprint

    def describe(self) -> dict[str, Any]:
        """The release as evidence records and /v1/status name it."""
        return self.description


class Releases(Protocol):
    def active(self, agent: str) -> ActiveRelease | None: ...

    def unavailable_reason(self, agent: str) -> str: ...

    def agents(self) -> list[str]: ...

    def health_state(self, agent: str) -> str:
        """``ok``, ``stale``, ``lkg``, ``clock_behind``, ``unsigned`` or ``deny_all``."""
        ...

    def describe_agent(self, agent: str) -> dict[str, Any]:
        """What /v1/status adds about this agent's releases beyond the active one."""
        ...

    def bind_metrics(self, registry: CollectorRegistry) -> None:
        """Register this source's metrics in the runtime's registry."""
        ...

    def close(self) -> None:
        """Stop any background work (pollers) before the store closes."""
        ...


class LocalReleases:
    """Releases read from the files in the config's ``[[agents]]`` tables; an
    agent without ``unsigned = true`` is refused (deny-all, with the reason)."""

    def __init__(self, agents: Iterable[AgentConfig], *, eval_time_limit_s: float) -> None:
        self._active: dict[str, ActiveRelease] = {}
        self._failures: dict[str, str] = {}
        for agent in agents:
            if agent.release is not None:  # never run here without its verification
                self._failures[agent.name] = "its signed release needs the release lifecycle"
                continue
            if not agent.unsigned:
                self._failures[agent.name] = UNSIGNED_REFUSED
                continue
            try:
                self._active[agent.name] = load_local_release(agent, eval_time_limit_s)
            except Exception as err:  # any load failure means deny-all for this agent
                self._failures[agent.name] = f"{type(err).__name__}: {err}"

    def active(self, agent: str) -> ActiveRelease | None:
        return self._active.get(agent)

    def unavailable_reason(self, agent: str) -> str:
        failure = self._failures.get(agent)
        if failure is not None:
            return f"no active release for agent {agent!r}: its release failed to load ({failure})"
        return f"no active release for agent {agent!r}"

    def agents(self) -> list[str]:
        return sorted({*self._active, *self._failures})

    def health_state(self, agent: str) -> str:
        return "unsigned" if agent in self._active else "deny_all"

    def describe_agent(self, agent: str) -> dict[str, Any]:
        return {}  # local files: the active release says it all (``signed: false``)

    def bind_metrics(self, registry: CollectorRegistry) -> None:
        unsigned = Gauge(
            "vedette_agent_unsigned",
            "1 while the agent runs unsigned local files (unsigned = true)",
            ["agent"],
            registry=registry,
        )
        for agent in self._active:
            unsigned.labels(agent=agent).set(1)

    def close(self) -> None:
        pass


def load_local_release(agent: AgentConfig, eval_time_limit_s: float) -> ActiveRelease:
    if agent.manifest is None or agent.bundle is None:
        raise ValueError(f"agent {agent.name!r} has no local manifest and bundle")
    manifest = load_agent_manifest(agent.manifest)
    if manifest.name != agent.name:
        raise ValueError(
            f"{agent.manifest}: manifest names agent {manifest.name!r}, config says {agent.name!r}"
        )
    engine = load_engine(agent.bundle, time_limit=eval_time_limit_s)
    source = f"local:{agent.manifest}+{agent.bundle}"
    return make_active_release(
        agent.name, manifest.version, source, manifest, engine, signed_by=None
    )


def make_active_release(
    agent: str,
    version: str,
    source: str,
    manifest: AgentManifest,
    engine: PolicyEngine,
    *,
    signed_by: str | None,
) -> ActiveRelease:
    """An :class:`ActiveRelease` with the argument validators of its declared tools.
    ``signed_by`` is the id of the key whose signature verified; ``None`` for
    unsigned local files. Both reach every decision record (``release``)."""
    validators = compile_validators(manifest)
    description: dict[str, Any] = {
        "agent": agent,
        "version": version,
        "source": source,
        "signed": signed_by is not None,
        "policy_hash": str(engine.policy_hash),
        "policy_revision": engine.revision,
        "behavioral_fingerprint": str(manifest.behavioral_fingerprint),
        "tools": manifest.tool_names,
    }
    if signed_by is not None:
        description["signed_by"] = signed_by
    plan = ReleasePlan(
        agent,
        engine,
        validators,
        manifest.tool_names,
        str(manifest.behavioral_fingerprint),
        dumps(description),
    )
    return ActiveRelease(
        agent=agent,
        version=version,
        source=source,
        manifest=manifest,
        engine=engine,
        validators=validators,
        plan=plan,
        description=description,
    )


def compile_validators(manifest: AgentManifest) -> dict[str, ArgsValidator]:
    """Each declared tool's argument schema, compiled; ValueError naming the tool
    if one is not a valid JSON Schema."""
    validators = {}
    for tool in manifest.tools:
        try:
            validators[tool["name"]] = ArgsValidator(dumps(tool.get("args_schema", {})))
        except ValueError as err:
            raise ValueError(f"tool {tool['name']!r}: {err}") from None
    return validators
