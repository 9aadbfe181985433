"""What the runtime answers for one intent, and how it maps onto HTTP."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

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
        """The JSON body of DESIGN §2 for this outcome."""
        if self.outcome == "allow":
            return {
                "decision": "allow",
                "output": self.output,
                "decision_id": self.decision_id,
                "release": self.release,
            }
        if self.outcome == "tool_error":
            return {"decision": "allow", "error": self.error, "decision_id": self.decision_id}
        return {"decision": "deny", "reason": self.reason, "decision_id": self.decision_id}
