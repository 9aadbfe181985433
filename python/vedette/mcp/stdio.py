"""``vedette mcp``: the gateway for one client on standard input and output,
in front of one upstream server it runs as a subprocess (docs/mcp.md)."""

from __future__ import annotations

import contextlib
import signal
from typing import Any

import anyio
from mcp.server.stdio import stdio_server

from vedette import event_loop
from vedette.config import Config
from vedette.mcp.errors import GatewayError
from vedette.mcp.gateway import Gateway, caller_for
from vedette.mcp.upstream import Upstream
from vedette.mcp.wire import Wire, claimed_stdio
from vedette.runtime.identity import Caller
from vedette.runtime.tools import ToolRegistry


async def serve_stdio(gateway: Gateway, caller: Caller) -> None:
    """Connect the upstream, pin its tools, then serve ``caller``'s client on
    stdio (:mod:`vedette.mcp.wire`) until it closes its side (or SIGTERM /
    SIGINT: then the upstream is stopped and the store closed as on any exit).
    An upstream that exits is started again (docs/mcp.md, "When an upstream
    stops")."""
    async with anyio.create_task_group() as outer:
        outer.start_soon(_stop_on_signal, outer.cancel_scope)
        await outer.start(gateway.run_upstreams)
        upstream = gateway.upstreams[0]
        if not upstream.connected:
            raise GatewayError(f"the upstream server did not start: {upstream.last_error}")
        server = gateway.server()
        options = server.create_initialization_options()
        async with contextlib.AsyncExitStack() as stack:
            try:
                reader, writer = await stack.enter_async_context(claimed_stdio())
            except ValueError:  # not pipes (a file, say): the SDK's transport alone
                read, write = await stack.enter_async_context(stdio_server())
                await server.run(read, write, options)
            else:
                wire = Wire(gateway, caller, reader, writer)
                stack.push_async_callback(wire.aclose)
                sdk_wire: Any = wire
                read, write = await stack.enter_async_context(
                    stdio_server(stdin=sdk_wire, stdout=sdk_wire)
                )
                await server.run(read, write, options)
        outer.cancel_scope.cancel()


async def _stop_on_signal(scope: anyio.CancelScope) -> None:
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for _ in signals:
            scope.cancel()
            return


def run_gateway(
    config: Config,
    caller_id: str,
    command: list[str],
    *,
    resources: bool = False,
    prompts: bool = False,
    sampling: bool = False,
    elicitation: bool = False,
) -> None:
    """``vedette mcp``: the runtime for ``config``, the gateway for ``caller_id``
    in front of ``command`` (its resources and prompts passed when
    ``resources`` / ``prompts``, its sampling and elicitation requests relayed
    when ``sampling`` / ``elicitation``); returns when the client closes its
    side."""
    from vedette.serve import start_runtime

    if not command:
        raise GatewayError("name the upstream server's command after --")
    caller = caller_for(config, caller_id)
    # The node's tools are exactly the upstream's: no built-ins, no plugins.
    tools = ToolRegistry(config.tools, load_plugins=False, local=False)
    runtime = start_runtime(config, tools)
    # The upstream gets the environment the client gave vedette (its keys, its
    # settings), as it would have had without vedette in front of it; its own
    # time limit is the node's tool timeout.
    upstream = Upstream(
        "upstream",
        command=command,
        timeout_s=config.tools.timeout_s,
        resources=resources,
        prompts=prompts,
        sampling=sampling,
        elicitation=elicitation,
    )
    gateway = Gateway(runtime, [upstream], lambda ctx: caller, [caller.agent], config.mcp.page_size)
    try:
        event_loop.run(serve_stdio(gateway, caller))
    except BaseException as err:
        cause = _startup_failure(err)
        if cause is None:
            raise
        raise cause from err
    finally:
        runtime.close()


def _startup_failure(err: BaseException) -> GatewayError | None:
    """A gateway error found in ``err`` (task groups wrap them in exception groups)."""
    if isinstance(err, GatewayError):
        return err
    inner_errors: Any = getattr(err, "exceptions", None)  # an exception group
    if isinstance(inner_errors, (list, tuple)):
        for inner in inner_errors:
            found = _startup_failure(inner)
            if found is not None:
                return found
    return None
