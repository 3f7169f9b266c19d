"""The official Python MCP SDK 1.x against sqlmcp over Streamable HTTP. It
speaks the 2025 revisions only, so it always negotiates with `initialize`.

    python_sdk1.py URL USER_ID legacy CALLS

CALLS is a JSON array of {"name": ..., "arguments": {...}}. The client sends
`x-rls-user-id: USER_ID` with every request, lists the tools, makes the
calls, and prints one JSON object on stdout (the same shape as the other
clients').
"""

import json
import sys
from importlib.metadata import version

import anyio
from mcp import ClientSession
from mcp.client.streamable_http import streamablehttp_client


def hints(result):
    extra = result.model_extra or {}
    return {"ttlMs": extra.get("ttlMs"), "cacheScope": extra.get("cacheScope")}


def outcome(result):
    return {
        "isError": bool(result.isError),
        "structured": result.structuredContent,
        "text": [block.text for block in result.content if block.type == "text"],
    }


async def main(url, user_id, mode, calls):
    if mode != "legacy":
        raise SystemExit(f"the 1.x SDK has no negotiation mode {mode}: it only speaks the 2025 revisions")
    async with streamablehttp_client(url, headers={"x-rls-user-id": user_id}) as (read, write, session_id):
        async with ClientSession(read, write) as session:
            initialized = await session.initialize()
            in_session = session_id() is not None
            listed = await session.list_tools()
            results = [outcome(await session.call_tool(call["name"], call["arguments"])) for call in calls]
    print(
        json.dumps(
            {
                "sdk": f"python mcp {version('mcp')}",
                "mode": mode,
                "protocolVersion": initialized.protocolVersion,
                "serverInfo": initialized.serverInfo.model_dump(mode="json", exclude_none=True),
                "discover": None,
                "session": in_session,
                "tools": [tool.name for tool in listed.tools],
                "toolsListHints": hints(listed),
                "calls": results,
            }
        )
    )


if __name__ == "__main__":
    url, user_id, mode, calls = sys.argv[1:5]
    anyio.run(main, url, user_id, mode, json.loads(calls))
