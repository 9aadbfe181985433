"""The OpenAPI description of the adapter listener, kept true by tests/test_api.py."""

from __future__ import annotations

from typing import Any

_DENY = {
    "type": "object",
    "required": ["decision", "reason"],
    "properties": {
        "decision": {"const": "deny"},
        "reason": {"type": "string"},
        "decision_id": {"type": "string"},
    },
    "additionalProperties": False,
}


def _answer(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "vedette adapter API",
        "version": "1",
        "description": "Agents ask for tool calls; the runtime decides, runs and records.",
    },
    "components": {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        "schemas": {
            "Intent": {
                "type": "object",
                "required": ["tool"],
                "properties": {
                    "tool": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_.\\-]{0,127}$"},
                    "args": {"type": "object"},
                    "claims": {"type": "object", "description": "Untrusted; reaches the policy."},
                    "request_id": {"type": "string", "minLength": 1, "maxLength": 128},
                },
                "additionalProperties": False,
            },
            "Allowed": {
                "type": "object",
                "required": ["decision", "output", "decision_id", "release"],
                "properties": {
                    "decision": {"const": "allow"},
                    "output": {},
                    "decision_id": {"type": "string"},
                    "release": {"type": ["string", "null"]},
                },
                "additionalProperties": False,
            },
            "ToolFailed": {
                "type": "object",
                "required": ["decision", "error", "decision_id"],
                "properties": {
                    "decision": {"const": "allow"},
                    "error": {
                        "type": "object",
                        "required": ["type", "message"],
                        "properties": {"type": {"type": "string"}, "message": {"type": "string"}},
                    },
                    "decision_id": {"type": "string"},
                },
                "additionalProperties": False,
            },
            "Denied": _DENY,
        },
    },
    "paths": {
        "/v1/tool": {
            "post": {
                "summary": "Ask for one tool call",
                "security": [{"bearer": []}],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref("Intent")}},
                },
                "responses": {
                    "200": _answer(
                        "Allowed; the tool ran.", {"$ref": "#/components/schemas/Allowed"}
                    ),
                    "400": _answer("Malformed intent.", {"$ref": "#/components/schemas/Denied"}),
                    "401": _answer(
                        "No or bad credentials.", {"$ref": "#/components/schemas/Denied"}
                    ),
                    "403": _answer("Denied.", {"$ref": "#/components/schemas/Denied"}),
                    "429": _answer("Over the rate quota.", {"$ref": "#/components/schemas/Denied"}),
                    "502": _answer(
                        "Allowed; the tool failed.", {"$ref": "#/components/schemas/ToolFailed"}
                    ),
                },
            }
        },
        "/v1/health": {
            "get": {
                "summary": "Health: ok, degraded or failing, with the reasons",
                "responses": {
                    "200": _answer(
                        "ok, or degraded: calls are served but something needs an "
                        "operator (the reasons say what).",
                        {"type": "object"},
                    ),
                    "503": _answer(
                        "failing: calls are being denied (every agent deny-all, the "
                        "evidence store full or stopped, …).",
                        {"type": "object"},
                    ),
                },
            }
        },
    },
}
