"""What the runtime answers for one intent, and how it maps onto HTTP."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from vedette.runtime.encoding import dumps

Outcome = Literal[
    "allow",  # allowed, and the tool ran
    "tool_error",  # allowed, and the tool failed
    "deny",  # policy, declared-tools check, deny-all, or any fault
    "invalid",  # malformed intent
    "unauthenticated",  # no or bad credentials
    "over_quota",  # the caller's rate quota is spent
]

STATUS: dict[str, int] = {
    "allow": 200,
    "tool_error": 502,
    "deny": 403,
    "invalid": 400,
    "unauthenticated": 401,
    "over_quota": 429,
}


@dataclass(frozen=True)
class Decision:
    """One intent's result. ``decision`` is ``"allow"`` only when the policy allowed
    and the tool was run; every other outcome says ``"deny"``."""

    outcome: Outcome
    decision_id: str
    reason: str | None = None
    output: Any = None
    error: dict[str, str] | None = None
    release: str | None = None
    retry_after_s: float | None = None
    # The output as the tool registry encoded it (and digested it for evidence),
    # so the answer carries exactly those bytes and they are encoded once.
    output_json: bytes | None = None

    @property
    def decision(self) -> str:
        return "allow" if self.outcome in ("allow", "tool_error") else "deny"

    @property
    def allowed(self) -> bool:
        return self.outcome == "allow"

    @property
    def status(self) -> int:
        return STATUS[self.outcome]

    def body(self) -> dict[str, Any]:
        """The JSON body for this outcome (docs/contracts.md, "The adapter API")."""
        if self.outcome == "allow":
            return {
                "decision": "allow",
                "output": self.output,
                "decision_id": self.decision_id,
                "release": self.release,
            }
        if self.outcome == "tool_error":
            return {"decision": "allow", "error": self.error, "decision_id": self.decision_id}
        return deny_fields(self.reason, self.decision_id)

    def body_bytes(self) -> bytes:
        """:meth:`body` encoded as JSON."""
        if self.outcome == "allow" and self.output_json is not None:
            rest = dumps({"decision_id": self.decision_id, "release": self.release})
            return b'{"decision":"allow","output":' + self.output_json + b"," + rest[1:]
        return dumps(self.body())


def deny_fields(reason: str | None, decision_id: str | None = None) -> dict[str, Any]:
    """The one shape of a deny (docs/contracts.md, "The adapter API"): every
    refusal an adapter reads, from a policy deny to a connection closed for
    being slow, says ``decision: deny`` and why; the id when one was assigned."""
    fields: dict[str, Any] = {"decision": "deny", "reason": reason}
    if decision_id is not None:
        fields["decision_id"] = decision_id
    return fields


def deny_body(reason: str, decision_id: str | None = None) -> bytes:
    """:func:`deny_fields` encoded as JSON."""
    return dumps(deny_fields(reason, decision_id))
