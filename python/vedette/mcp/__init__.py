"""The MCP gateway: vedette in front of MCP servers (docs/mcp.md).

Two shapes share one :class:`~vedette.mcp.gateway.Gateway`:
``vedette mcp --config vedette.toml --caller ID -- <server command …>``
(:mod:`vedette.mcp.stdio`) speaks MCP on its own standard input and output
toward one client and runs one server as a subprocess; ``/mcp`` on the
adapter listener (:mod:`vedette.mcp.http`) serves many clients over
Streamable HTTP in front of every ``[[mcp.servers]]`` entry. Each server is
kept connected by an :class:`~vedette.mcp.upstream.Upstream`. Every
``tools/call`` is an intent through the runtime's gate; the servers' tools are
pinned to the agent's manifest (:mod:`vedette.mcp.pinning`).

The base package does not need the MCP SDK: :mod:`vedette.mcp.pinning` and
:mod:`vedette.mcp.errors` never import it, and the modules that do are
imported only by the commands, once they have checked that the SDK is
installed (``pip install 'vedette[mcp]'``).
"""
