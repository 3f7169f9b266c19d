"""The official Python MCP SDK 2.x against sqlmcp, over Streamable HTTP or
stdio.

    python_sdk2.py URL USER_ID MODE CALLS
    python_sdk2.py stdio '["/path/to/sqlmcp", "serve", "--stdio", ...]' MODE CALLS

MODE is how the SDK negotiates: `auto` (probes `server/discover`, falls back
to `initialize`), `legacy` (the `initialize` handshake only) or a pinned
modern version (`2026-07-28`: no probe, per-request metadata only). CALLS is
a JSON array of {"name": ..., "arguments": {...}}. The client sends
`x-rls-user-id: USER_ID` with every request, lists the tools, makes the
calls, and prints one JSON object (see `report` below) on stdout. Over
stdio it launches the command instead, which names its caller itself.
"""

import contextlib
import json
import sys
from importlib.metadata import version

import anyio
import httpx2
import mcp_types
from mcp import StdioServerParameters
from mcp.client import Client
from mcp.client.streamable_http import streamable_http_client


def hints(result):
    """The SEP-2549 cache hints of a result as the server sent them (the
    SDK's models fill in defaults for absent ones: those are None here)."""
    sent = result.model_fields_set
    return {
        "ttlMs": result.ttl_ms if "ttl_ms" in sent else None,
        "cacheScope": result.cache_scope if "cache_scope" in sent else None,
    }


def outcome(result):
    return {
        "isError": bool(result.is_error),
        "structured": result.structured_content,
        "text": [block.text for block in result.content if getattr(block, "type", None) == "text"],
    }


async def main(target, who, mode, calls):
    if target == "stdio":
        command = json.loads(who)
        http = contextlib.AsyncExitStack()
        server = StdioServerParameters(command=command[0], args=command[1:])
    else:
        http = httpx2.AsyncClient(headers={"x-rls-user-id": who}, timeout=60)
        server = streamable_http_client(target, http_client=http)
    async with http, Client(server, mode=mode) as client:
        session = client.session
        # A pinned client adopts a made-up discover result without asking the
        # server; ask it for real, so the server's own answer is checked too.
        discover = session.discover_result
        if mode not in ("auto", "legacy"):
            raw = await session.send_discover(client.protocol_version)
            discover = mcp_types.DiscoverResult.model_validate(raw)
        listed = await client.list_tools()
        report = {
            "sdk": f"python mcp {version('mcp')}",
            "mode": mode,
            "protocolVersion": client.protocol_version,
            "serverInfo": client.server_info.model_dump(mode="json") if client.server_info else None,
            "discover": None
            if discover is None
            else {
                "supportedVersions": list(discover.supported_versions),
                **hints(discover),
            },
            # the 2.x transport does not tell whether the server opened a session
            "session": None,
            "tools": [tool.name for tool in listed.tools],
            "toolsListHints": hints(listed),
            "calls": [outcome(await client.call_tool(call["name"], call["arguments"])) for call in calls],
        }
    print(json.dumps(report))


if __name__ == "__main__":
    target, who, mode, calls = sys.argv[1:5]
    anyio.run(main, target, who, mode, json.loads(calls))
