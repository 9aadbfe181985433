"""A client for adapters: ``Client(url, token).call("echo", text="hi")``.

``call`` returns the tool's output only when the runtime answered allow and the
tool ran. Every other answer raises: :class:`Denied` (with the reason and
decision id) for any deny, :class:`ToolError` when the tool ran and failed, and
httpx's own errors for timeouts and broken connections. Nothing here can turn a
failure into an allow.
"""

from __future__ import annotations

from typing import Any

import httpx

from vedette.errors import VedetteError


class Denied(VedetteError):
    """The runtime said no (or could not be understood, which is the same)."""

    def __init__(self, reason: str, decision_id: str | None = None, status: int = 0) -> None:
        super().__init__(reason)
        self.reason = reason
        self.decision_id = decision_id
        self.status = status


class ToolError(VedetteError):
    """The call was allowed, and the tool failed."""

    def __init__(self, kind: str, message: str, decision_id: str | None) -> None:
        super().__init__(f"{kind}: {message}")
        self.kind = kind
        self.decision_id = decision_id


def _result(response: httpx.Response) -> Any:
    try:
        body = response.json()
    except ValueError:
        raise Denied(
            f"unreadable answer (HTTP {response.status_code})", None, response.status_code
        ) from None
    if not isinstance(body, dict):
        raise Denied(f"unreadable answer (HTTP {response.status_code})", None, response.status_code)
    decision_id = body.get("decision_id")
    if response.status_code == 200 and body.get("decision") == "allow" and "output" in body:
        return body["output"]
    if response.status_code == 502 and body.get("decision") == "allow":
        error = body.get("error") or {}
        raise ToolError(str(error.get("type", "error")), str(error.get("message", "")), decision_id)
    reason = body.get("reason") or f"denied (HTTP {response.status_code})"
    raise Denied(str(reason), decision_id, response.status_code)


class Client:
    def __init__(self, url: str, token: str, *, timeout: float = 30.0) -> None:
        self._http = httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=timeout
        )

    def call(self, tool: str, /, claims: dict[str, Any] | None = None, **args: Any) -> Any:
        body: dict[str, Any] = {"tool": tool, "args": args}
        if claims is not None:
            body["claims"] = claims
        return _result(self._http.post("/v1/tool", json=body))

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncClient:
    def __init__(self, url: str, token: str, *, timeout: float = 30.0) -> None:
        self._http = httpx.AsyncClient(
            base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=timeout
        )

    async def call(self, tool: str, /, claims: dict[str, Any] | None = None, **args: Any) -> Any:
        body: dict[str, Any] = {"tool": tool, "args": args}
        if claims is not None:
            body["claims"] = claims
        return _result(await self._http.post("/v1/tool", json=body))

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
