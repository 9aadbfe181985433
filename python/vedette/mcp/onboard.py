"""Onboarding an MCP server: an agent manifest written from its ``tools/list``
(``vedette agent from-mcp``), for the operator to review, bind to a policy and
sign (docs/mcp.md, "Onboarding").

Each listed tool becomes a manifest tool with the server's exact
``description`` and ``inputSchema`` (as ``args_schema``), so the gateway's
pinning (:mod:`vedette.mcp.pinning`) matches them until the server changes
them. A tool whose name the manifest cannot hold (the one name rule,
``vedette._core.is_name``) is left out and reported; nothing is guessed.

This module imports the MCP SDK; the command imports it only once it has
checked that the SDK is installed.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from typing import Any

import anyio
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

from vedette._core import AGENT_SCHEMA, is_name
from vedette.mcp.errors import GatewayError
from vedette.mcp.upstream import list_all

# How long the server has to start and list its tools.
LIST_TIMEOUT_S = 60.0


@dataclass
class Listing:
    """The server's tools as manifest tools, and what could not be taken."""

    server: str
    tools: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def list_server_tools(
    command: list[str] | None = None,
    url: str | None = None,
    headers: dict[str, str] | None = None,
) -> Listing:
    """Start ``command`` (stdio) or reach ``url`` (Streamable HTTP, with
    ``headers``), initialize, and read every page of its ``tools/list``;
    :class:`GatewayError` on failure."""
    if (command is None) == (url is None):
        raise GatewayError("give the server's command after --, or --url")
    try:
        return anyio.run(_list, command, url, headers)
    except GatewayError:
        raise
    except Exception as err:  # the SDK's transports raise many kinds; one clear line
        cause = getattr(err, "exceptions", None)
        detail = cause[0] if isinstance(cause, (list, tuple)) and cause else err
        raise GatewayError(f"the MCP server could not be listed: {detail}") from err


async def _list(
    command: list[str] | None, url: str | None, headers: dict[str, str] | None
) -> Listing:
    with anyio.fail_after(LIST_TIMEOUT_S):
        if command is not None:
            params = StdioServerParameters(
                command=command[0], args=command[1:], env=dict(os.environ)
            )
            async with stdio_client(params, errlog=sys.stderr) as (read, write):
                return await _listing(" ".join(command), read, write)
        assert url is not None
        async with (
            create_mcp_http_client(headers) as client,
            streamable_http_client(url, http_client=client) as (read, write),
        ):
            return await _listing(url, read, write)


async def _listing(server: str, read: Any, write: Any) -> Listing:
    listing = Listing(server)
    async with ClientSession(read, write) as session:
        await session.initialize()
        for tool in await list_all(session, "tools/list"):
            _take(listing, tool.model_dump(by_alias=True, exclude_none=True))
    return listing


def _take(listing: Listing, tool: dict[str, Any]) -> None:
    name = str(tool.get("name", ""))
    if not is_name(name) or any(t["name"] == name for t in listing.tools):
        listing.skipped.append(name)
        return
    entry: dict[str, Any] = {"name": name}
    if tool.get("description") is not None:
        entry["description"] = tool["description"]
    entry["args_schema"] = tool.get("inputSchema", {"type": "object"})
    listing.tools.append(entry)


def manifest_from(listing: Listing, *, name: str, version: str, model: str) -> dict[str, Any]:
    """An agent manifest for ``listing``; ``model`` is ``PROVIDER/NAME``."""
    provider, _, model_name = model.partition("/")
    if not provider or not model_name:
        raise GatewayError(f"--model: expected PROVIDER/NAME, got {model!r}")
    return {
        "schema": AGENT_SCHEMA,
        "name": name,
        "version": version,
        "description": f"The tools of the MCP server {listing.server}, as it listed them.",
        "model": {"provider": provider, "name": model_name},
        "tools": listing.tools,
        "metadata": {"mcp_server": listing.server},
    }
