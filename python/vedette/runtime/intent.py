"""An intent: one tool call an agent asks for, as in-process callers give it.

Strict means: one JSON object; only the fields ``tool``, ``args``, ``claims``
and ``request_id``; no duplicate member names (two parsers must never see two
different intents in one body); no NaN or Infinity; no lone surrogates; no
integer outside the 64-bit range; bounded nesting and size. Anything else is
refused with a reason that says what was wrong, and the runtime answers 400
with ``"decision": "deny"``.

There is one parser, in the Rust core (``rust/gate/intent.rs``, reached through
``vedette._core.Gate.decide``); intents given in-process as Python values are
encoded to JSON here and read by it like any request body.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from vedette.errors import InvalidIntent
from vedette.runtime.encoding import strict_dumps

__all__ = ["Intent", "InvalidIntent", "encode_intent"]


@dataclass(frozen=True)
class Intent:
    tool: str
    args: dict[str, Any] = field(default_factory=dict)
    # Untrusted: handed to the policy as input.claims and never used for identity.
    claims: dict[str, Any] = field(default_factory=dict)
    request_id: str | None = None


def encode_intent(value: object) -> bytes:
    """An in-process intent (an :class:`Intent` or a dict of its fields) as the
    JSON body the parser reads; :class:`InvalidIntent` if it has no JSON form."""
    if isinstance(value, Intent):
        fields = {"tool": value.tool, "args": value.args, "claims": value.claims}
        if value.request_id is not None:
            fields["request_id"] = value.request_id
        value = fields
    try:
        return strict_dumps(value)
    except (TypeError, ValueError) as err:
        raise InvalidIntent(f"intent has no JSON form: {err}") from None
