"""An intent: one tool call an agent asks for, parsed strictly from untrusted bytes.

Strict means: one JSON object; only the fields ``tool``, ``args``, ``claims``
and ``request_id``; no duplicate member names (two parsers must never see two
different intents in one body); no NaN or Infinity; no lone surrogates;
bounded nesting and size. Anything else is refused with a reason that says
what was wrong, and the runtime answers 400 with ``"decision": "deny"``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from vedette.config import IntentLimits
from vedette.errors import VedetteError

TOOL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}")
MAX_REQUEST_ID_CHARS = 128
FIELDS = frozenset({"tool", "args", "claims", "request_id"})


class InvalidIntent(VedetteError, ValueError):
    """The intent is malformed; the message says how."""


@dataclass(frozen=True)
class Intent:
    tool: str
    args: dict[str, Any] = field(default_factory=dict)
    # Untrusted: handed to the policy as input.claims and never used for identity.
    claims: dict[str, Any] = field(default_factory=dict)
    request_id: str | None = None


def parse_intent(body: bytes, limits: IntentLimits) -> Intent:
    """Parse and check a request body; raises :class:`InvalidIntent`."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as err:
        raise InvalidIntent(f"body is not UTF-8 (byte {err.start})") from None
    try:
        value = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constants)
    except RecursionError:
        raise InvalidIntent("body nests too deeply") from None
    except InvalidIntent:
        raise
    except ValueError as err:
        raise InvalidIntent(f"body is not JSON: {err}") from None
    # A field's JSON cannot be longer than the body it came from.
    return intent_from_value(value, limits, body_bytes=len(body))


def intent_from_value(value: object, limits: IntentLimits, body_bytes: int | None = None) -> Intent:
    """Check an already-parsed intent (the in-process API takes dicts)."""
    if not isinstance(value, dict):
        raise InvalidIntent(f"body must be a JSON object, got {_json_type(value)}")
    unknown = sorted(set(value) - FIELDS)
    if unknown:
        raise InvalidIntent(
            f"unknown field {unknown[0]!r} (allowed: args, claims, request_id, tool)"
        )
    tool = value.get("tool")
    if not isinstance(tool, str) or not TOOL_NAME.fullmatch(tool):
        raise InvalidIntent(
            "tool must be a name of letters, digits, '_', '.' or '-' (at most 128), "
            f"got {_shown(tool)}"
        )
    args = _object_field(value, "args", limits.max_args_bytes, limits.max_depth, body_bytes)
    claims = _object_field(value, "claims", limits.max_claims_bytes, limits.max_depth, body_bytes)
    request_id = value.get("request_id")
    if request_id is not None and (
        not isinstance(request_id, str) or not 0 < len(request_id) <= MAX_REQUEST_ID_CHARS
    ):
        raise InvalidIntent(
            f"request_id must be a string of 1 to {MAX_REQUEST_ID_CHARS} characters"
        )
    return Intent(tool, args, claims, request_id)


def _object_field(
    value: dict[str, Any], name: str, max_bytes: int, max_depth: int, body_bytes: int | None
) -> dict[str, Any]:
    item = value.get(name, {})
    if not isinstance(item, dict):
        raise InvalidIntent(f"{name} must be a JSON object, got {_json_type(item)}")
    _check_tree(item, name, max_depth)
    if body_bytes is not None and body_bytes <= max_bytes:
        return item
    try:
        compact = json.dumps(item, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
        size = len(compact.encode("utf-8"))
    except (TypeError, ValueError) as err:
        raise InvalidIntent(f"{name} has no JSON form: {err}") from None
    if size > max_bytes:
        raise InvalidIntent(f"{name} is {size} bytes of JSON, over the {max_bytes}-byte limit")
    return item


def _check_tree(root: object, name: str, max_depth: int) -> None:
    """Depth, JSON types and well-formed text, without recursion."""
    stack: list[tuple[object, int]] = [(root, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > max_depth:
            raise InvalidIntent(f"{name} nests deeper than {max_depth} levels")
        if isinstance(node, dict):
            for key, item in node.items():
                if not isinstance(key, str):
                    raise InvalidIntent(f"{name} has a non-string member name")
                _check_text(key, name)
                stack.append((item, depth + 1))
        elif isinstance(node, list):
            stack.extend((item, depth + 1) for item in node)
        elif isinstance(node, str):
            _check_text(node, name)
        elif isinstance(node, float):
            if node != node or node in (float("inf"), float("-inf")):
                raise InvalidIntent(f"{name} contains a non-finite number")
        elif node is not None and not isinstance(node, bool | int):
            raise InvalidIntent(f"{name} contains a {type(node).__name__}, which is not JSON")


def _check_text(text: str, name: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidIntent(f"{name} contains a lone surrogate (\\ud800-\\udfff)") from None


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, item in pairs:
        if key in result:
            raise InvalidIntent(f"duplicate member name {key!r}")
        result[key] = item
    return result


def _no_constants(constant: str) -> Any:
    raise InvalidIntent(f"{constant} is not a JSON number")


def _json_type(value: object) -> str:
    names = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}
    return names.get(
        type(value), "number" if isinstance(value, int | float) else type(value).__name__
    )


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
