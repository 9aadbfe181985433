"""The MCP gateway: vedette in front of an MCP server (docs/mcp.md).

``vedette mcp --config vedette.toml --caller ID -- <server command …>`` speaks
MCP on its own standard input and output toward the client and runs the
server as a subprocess. Every ``tools/call`` is an intent through the runtime's
gate; the server's tools are pinned to the agent's manifest.

The base package does not need the MCP SDK: :mod:`vedette.mcp.pinning` and
:mod:`vedette.mcp.errors` never import it, and :mod:`vedette.mcp.gateway`
(which does) is imported only by the command, once it has checked that the SDK
is installed (``pip install 'vedette[mcp]'``).
"""
