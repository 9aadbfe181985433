"""The JSON-RPC errors the MCP gateway answers with (docs/mcp.md, "Errors").

Both codes are in JSON-RPC's implementation-defined server range
(-32000 to -32099), so no client mistakes them for "method not found" or
"invalid params": a denied tool exists, the policy refused the call.
"""

from __future__ import annotations

from vedette.errors import VedetteError

DENIED = -32001
"""The call was denied (policy, arguments, quota, pinning, any fault) and did not
reach the upstream server. ``data``: ``{"decision": "deny", "reason", "decision_id"}``."""

TOOL_FAILED = -32002
"""The call was allowed and sent upstream, and failed without a result: the
upstream's JSON-RPC error, a timeout, an output over the limit.
``data``: ``{"decision": "allow", "error": {"type", "message"}, "decision_id"}``."""

INSTALL_HINT = "the MCP gateway needs the MCP SDK: pip install 'vedette[mcp]'"


class GatewayError(VedetteError):
    """The gateway cannot start: an unknown caller, an upstream that does not start."""
