"""A client's side for the MCP gateway's tests: its model and user (they answer
sampling and elicitation, and remember what they were asked), a record of the
progress reports and the notifications it gets, watching a resource, and the
text of a tool result."""

from __future__ import annotations

from typing import Any

import anyio
from mcp import types


class TheClient:
    """A client's model and user: each answers, and remembers what it was asked.
    The model says ``model_says``, or by default what it was asked about."""

    def __init__(self, model_says: str | None = None) -> None:
        self.asked: list[str] = []
        self._model_says = model_says

    async def sample(
        self, context: Any, params: types.CreateMessageRequestParams
    ) -> types.CreateMessageResult:
        (message,) = params.messages
        self.asked.append(f"sample: {message.content.text}")
        text = self._model_says or f"the model on {message.content.text!r}"
        return types.CreateMessageResult(
            role="assistant", content=types.TextContent(type="text", text=text), model="test"
        )

    async def elicit(self, context: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
        self.asked.append(f"elicit: {params.message}")
        return types.ElicitResult(action="accept", content={"answer": "yes"})

    def callbacks(self) -> dict[str, Any]:
        return {"sampling_callback": self.sample, "elicitation_callback": self.elicit}


class ProgressLog:
    """A call's progress callback: the reports it got, as (progress, total, message)."""

    def __init__(self) -> None:
        self.reports: list[tuple[float, float | None, str | None]] = []

    async def __call__(self, progress: float, total: float | None, message: str | None) -> None:
        self.reports.append((progress, total, message))

    async def wait_for(self, count: int) -> None:
        """Until ``count`` reports have come (they may trail the call's answer)."""
        with anyio.fail_after(10):
            while len(self.reports) < count:
                await anyio.sleep(0.01)


def texts(result: types.CallToolResult) -> list[str]:
    return [c.text for c in result.content if isinstance(c, types.TextContent)]


class Heard:
    """A handshake-era client's message handler: the notifications it got."""

    def __init__(self) -> None:
        self.notifications: list[Any] = []

    async def __call__(self, message: Any) -> None:
        if not isinstance(message, Exception):
            self.notifications.append(message)

    async def wait_for(self, *kinds: type) -> list[Any]:
        """Until one notification of each kind has come; those, in that order."""
        with anyio.fail_after(10):
            while not all(self.of(kind) for kind in kinds):
                await anyio.sleep(0.02)
        return [self.of(kind)[0] for kind in kinds]

    def of(self, kind: type) -> list[Any]:
        return [message for message in self.notifications if isinstance(message, kind)]
