"""Requests an upstream server makes of its client during a tool call:
sampling (``sampling/createMessage``: the client's model writes a message) and
elicitation (``elicitation/create``: the client's user is asked). See
docs/mcp.md, "Sampling and elicitation".

Either puts a server's words in front of the client's model or user and sends
what comes back to the server, so both are refused unless the server's entry
allows them (``sampling = true``, ``elicitation = true``; ``vedette mcp
--sampling`` / ``--elicitation``); only then is the capability advertised to
that server. An allowed request goes to the client whose ``tools/call`` is in
flight on that server, on that call's own channel, and only when the calls in
flight there are all one caller's: a request does not say which call it
belongs to, and a guess could show one caller's question to another. It is
refused too when that client did not declare the capability. A client of a
handshake revision gets the request as a request (:class:`SessionAsker`, or
the stdio short way); a 2026-07-28 client, whose servers send no requests of
their own, gets it as the call's input-required result and sends its answer
with the call again (:class:`RoundTrips`).

Each request is recorded before it goes to the client (``mcp_client_request``,
``stage: "asked"``: server, method, caller, agent, tool, the digest and size of
the request), and its answer before it goes back to the server (``stage:
"answered"``, with the answer's digest and size); a refusal or a failure is
recorded with its reason. When the record before a step cannot be made
durable, the step is not taken and the server gets an error.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import anyio
from mcp import types
from mcp.server.session import ServerSession
from mcp.shared.exceptions import MCPError
from mcp.shared.message import ServerMessageMetadata
from prometheus_client import Counter
from pydantic import BaseModel

from vedette.hashing import sha256
from vedette.mcp.errors import DENIED
from vedette.mcp.upstream import Upstream
from vedette.runtime.encoding import strict_dumps
from vedette.runtime.identity import Caller
from vedette.runtime.interceptor import Runtime

log = logging.getLogger("vedette.mcp")

EVENT = "mcp_client_request"
SAMPLING = "sampling/createMessage"
ELICITATION = "elicitation/create"
# What the client answered could not be had: it failed, timed out or was not
# an answer to the request (JSON-RPC's internal error, as the SDK uses it).
NO_ANSWER = -32603

Result = TypeVar("Result", bound=BaseModel)
SamplingAnswer = types.CreateMessageResult | types.CreateMessageResultWithTools | types.ErrorData
ElicitationAnswer = types.ElicitResult | types.ErrorData


class Asker(Protocol):
    """The channel back to the client of one ``tools/call``."""

    def refusal(self) -> str | None:
        """Why requests cannot be sent on this channel; ``None`` when they can."""

    def capabilities(self) -> types.ClientCapabilities | None:
        """What the client declared it accepts."""

    async def ask(self, request: BaseModel, result_type: type[Result]) -> Result:
        """Send ``request`` to the client; its answer, or ``MCPError``."""


class SessionAsker:
    """The channel of a call the SDK serves: its request's stream (on
    Streamable HTTP, the call's own response stream)."""

    def __init__(self, session: ServerSession, request_id: types.RequestId | None) -> None:
        self._session = session
        self._request_id = request_id

    def refusal(self) -> str | None:
        if self._request_id is None or not self._session.can_send_request:
            return "the client's connection takes no requests from the server"
        return None

    def capabilities(self) -> types.ClientCapabilities | None:
        return self._session.client_capabilities

    async def ask(self, request: BaseModel, result_type: type[Result]) -> Result:
        metadata = ServerMessageMetadata(related_request_id=self._request_id)
        return await self._session.send_request(request, result_type, metadata=metadata)  # type: ignore[arg-type]


class RoundTrips:
    """The channel of a call from a 2026-07-28 client: the server's requests
    leave as the call's input-required result (each under a key of its own),
    and come back answered in the client's next try of the call."""

    def __init__(self, capabilities: types.ClientCapabilities | None) -> None:
        self._capabilities = capabilities
        self._keys = itertools.count(1)
        # Asked and not yet handed to the client; handed and not yet answered.
        self._asked: dict[str, tuple[BaseModel, asyncio.Future[Any]]] = {}
        self._handed: dict[str, asyncio.Future[Any]] = {}
        self.asked = asyncio.Event()

    def refusal(self) -> str | None:
        return None

    def capabilities(self) -> types.ClientCapabilities | None:
        return self._capabilities

    async def ask(self, request: BaseModel, result_type: type[Result]) -> Result:
        key = f"vedette-{next(self._keys)}"
        answer: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._asked[key] = (request, answer)
        self.asked.set()
        try:
            return result_type.model_validate(await answer, by_name=False)
        finally:
            self._asked.pop(key, None)
            self._handed.pop(key, None)

    def hand_over(self) -> dict[str, Any]:
        """The requests asked since the last hand-over, by key, for the client."""
        handed = {key: request for key, (request, _) in self._asked.items()}
        self._handed.update((key, answer) for key, (_, answer) in self._asked.items())
        self._asked.clear()
        self.asked.clear()
        return handed

    def answer(self, responses: dict[str, Any]) -> None:
        """The client's answers, by the keys it was handed (others are ignored)."""
        for key, response in responses.items():
            waiting = self._handed.pop(key, None)
            if waiting is not None and not waiting.done():
                dumped = response.model_dump(by_alias=True, mode="json", exclude_none=True)
                waiting.set_result(dumped)


@dataclass(frozen=True)
class InFlight:
    """A ``tools/call`` sent to a server and not yet answered."""

    caller: Caller
    tool: str
    asker: Asker | None


class ClientRequests:
    """The gateway's answer to its servers' sampling and elicitation requests."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self._in_flight: dict[str, list[InFlight]] = {}
        self._counted = Counter(
            "vedette_mcp_client_requests",
            "Sampling and elicitation requests of MCP servers, by method and by what became "
            "of them (answered, refused, failed).",
            ["method", "outcome"],
            registry=runtime.metrics.registry,
        )

    @contextlib.contextmanager
    def in_flight(self, upstream: Upstream, call: InFlight) -> Iterator[None]:
        """While ``call`` waits for ``upstream``'s answer."""
        calls = self._in_flight.setdefault(upstream.name, [])
        calls.append(call)
        try:
            yield
        finally:
            calls.remove(call)

    async def sampling(
        self, upstream: Upstream, params: types.CreateMessageRequestParams
    ) -> SamplingAnswer:
        request = types.CreateMessageRequest(params=params)
        tools_mode = params.tools is not None or params.tool_choice is not None
        answer_type: type[types.CreateMessageResult | types.CreateMessageResultWithTools] = (
            types.CreateMessageResultWithTools if tools_mode else types.CreateMessageResult
        )
        return await self._relay(upstream, request, answer_type, _sampling_gap(params))

    async def elicitation(
        self, upstream: Upstream, params: types.ElicitRequestParams
    ) -> ElicitationAnswer:
        request = types.ElicitRequest(params=params)
        return await self._relay(upstream, request, types.ElicitResult, _elicitation_gap(params))

    async def _relay(
        self,
        upstream: Upstream,
        request: types.CreateMessageRequest | types.ElicitRequest,
        answer_type: type[Result],
        gap: Gap,
    ) -> Result | types.ErrorData:
        method = request.method
        encoded = strict_dumps(
            request.params.model_dump(by_alias=True, mode="json", exclude_none=True)
        )
        fields: dict[str, Any] = {
            "server": upstream.name,
            "method": method,
            "request_sha256": str(sha256(encoded)),
            "request_bytes": len(encoded),
        }
        call, reason = self._call_of(upstream)
        asker = call.asker if call is not None else None
        if call is not None:
            fields.update(caller=call.caller.id, agent=call.caller.agent, tool=call.tool)
        if asker is None:
            reason = reason or "no channel to the client of the call"
        else:
            reason = asker.refusal() or gap(asker.capabilities())
        if asker is None or reason is not None:
            await self.runtime.record_event(EVENT, {**fields, "stage": "refused", "reason": reason})
            return self._refused(method, str(reason))
        try:
            await self.runtime.record_before_release(EVENT, {**fields, "stage": "asked"})
        except Exception:
            log.exception("a %s request of %r could not be recorded", method, upstream.name)
            return self._refused(method, "the request could not be recorded")
        try:
            with anyio.fail_after(upstream.timeout_s):
                answer = await asker.ask(request, answer_type)
        except Exception as err:  # MCPError, a timeout, an answer of the wrong shape
            if isinstance(err, MCPError):
                code, detail = err.code, f"the client answered error {err.code}: {err.message}"
            else:
                code, detail = NO_ANSWER, f"no answer from the client ({type(err).__name__})"
            await self.runtime.record_event(EVENT, {**fields, "stage": "failed", "reason": detail})
            self._counted.labels(method, "failed").inc()
            return types.ErrorData(code=code, message=detail)
        encoded_answer = strict_dumps(
            answer.model_dump(by_alias=True, mode="json", exclude_none=True)
        )
        answered = {
            **fields,
            "stage": "answered",
            "answer_sha256": str(sha256(encoded_answer)),
            "answer_bytes": len(encoded_answer),
        }
        if isinstance(answer, types.ElicitResult):
            answered["action"] = answer.action
        try:
            await self.runtime.record_before_release(EVENT, answered)
        except Exception:
            log.exception("the answer to a %s request could not be recorded", method)
            return self._refused(method, "the client's answer could not be recorded; not passed on")
        self._counted.labels(method, "answered").inc()
        return answer

    def _call_of(self, upstream: Upstream) -> tuple[InFlight | None, str | None]:
        """The call a request of ``upstream`` belongs to: the oldest in flight
        there, when all are one caller's."""
        calls = self._in_flight.get(upstream.name) or []
        if not calls:
            return None, "no tools/call is in flight on this server"
        if len({call.caller.id for call in calls}) > 1:
            return None, "calls of more than one caller are in flight on this server"
        return calls[0], None

    def _refused(self, method: str, reason: str) -> types.ErrorData:
        self._counted.labels(method, "refused").inc()
        return types.ErrorData(
            code=DENIED, message=f"refused: {reason}", data={"decision": "deny", "reason": reason}
        )


class Gap(Protocol):
    def __call__(self, capabilities: types.ClientCapabilities | None) -> str | None: ...


def _sampling_gap(params: types.CreateMessageRequestParams) -> Gap:
    """What the client must have declared to be asked ``params``."""

    def gap(capabilities: types.ClientCapabilities | None) -> str | None:
        sampling = capabilities.sampling if capabilities is not None else None
        if sampling is None:
            return "the client did not declare sampling"
        if (params.tools is not None or params.tool_choice is not None) and sampling.tools is None:
            return "the client did not declare sampling with tools"
        if params.include_context not in (None, "none") and sampling.context is None:
            return "the client did not declare sampling with context"
        return None

    return gap


def _elicitation_gap(params: types.ElicitRequestParams) -> Gap:
    def gap(capabilities: types.ClientCapabilities | None) -> str | None:
        elicitation = capabilities.elicitation if capabilities is not None else None
        if elicitation is None:
            return "the client did not declare elicitation"
        if params.mode == "url" and elicitation.url is None:
            return "the client did not declare URL elicitation"
        # An empty elicitation capability is the form mode (its only mode before URLs).
        if params.mode != "url" and elicitation.form is None and elicitation.url is not None:
            return "the client did not declare form elicitation"
        return None

    return gap
