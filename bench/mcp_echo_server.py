"""The upstream MCP server of ``bench/compare_mcp.py``: one tool, ``say``, that
returns the text it is given. Written with the MCP SDK's low-level server.

``python bench/mcp_echo_server.py`` serves on stdio;
``python bench/mcp_echo_server.py --http PORT`` serves Streamable HTTP at
``http://127.0.0.1:PORT/mcp``.
"""

from __future__ import annotations

import argparse
from typing import Any

import anyio
from mcp import types
from mcp.server.lowlevel.server import Server
from mcp.server.stdio import stdio_server

SAY_SCHEMA = {
    "type": "object",
    "properties": {"text": {"type": "string"}},
    "required": ["text"],
}
SAY_DESCRIPTION = "Returns the text it is given."


def server() -> Server[Any]:
    async def list_tools(ctx: Any, params: Any) -> types.ListToolsResult:
        tool = types.Tool(name="say", description=SAY_DESCRIPTION, input_schema=SAY_SCHEMA)
        return types.ListToolsResult(tools=[tool])

    async def call_tool(ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
        text = str((params.arguments or {}).get("text"))
        return types.CallToolResult(content=[types.TextContent(type="text", text=text)])

    return Server("bench-upstream", on_list_tools=list_tools, on_call_tool=call_tool)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--http", type=int)
    port = parser.parse_args().http
    app = server()
    if port is not None:
        import uvicorn

        uvicorn.run(app.streamable_http_app(), host="127.0.0.1", port=port, log_level="warning")
        return

    async def serve() -> None:
        async with stdio_server() as (read, write):
            await app.run(read, write, app.create_initialization_options())

    anyio.run(serve)


if __name__ == "__main__":
    main()
