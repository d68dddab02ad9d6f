"""A tiny MCP server for the tests, on the `mcp` SDK's FastMCP: `python mcp_fixture_server.py` speaks stdio,
`... --http PORT` streamable HTTP on 127.0.0.1. Each call of `record` and `crash` appends a line to the file named
by $MCP_LEDGER first, so a test counts how often a tool really ran."""

import asyncio
import os
import sys

from mcp.server.fastmcp import FastMCP
from mcp.types import ToolAnnotations

READ_ONLY = ToolAnnotations(readOnlyHint=True)
DESTRUCTIVE = ToolAnnotations(readOnlyHint=False, destructiveHint=True, idempotentHint=False)

port = int(sys.argv[sys.argv.index("--http") + 1]) if "--http" in sys.argv else 8000
server = FastMCP("fixture", host="127.0.0.1", port=port, log_level="WARNING")


def _ledger(line: str) -> None:
    with open(os.environ["MCP_LEDGER"], "a", encoding="utf-8") as f:
        f.write(line + "\n")


@server.tool(annotations=READ_ONLY)
def add(a: int, b: int) -> int:
    """Add two whole numbers."""
    return a + b


@server.tool(annotations=READ_ONLY)
def weather(city: str) -> dict:
    """Today's weather in a city."""
    return {"city": city, "sky": "sunny", "celsius": 21}


@server.tool(annotations=DESTRUCTIVE)
def record(note: str) -> str:
    """Record a note in the ledger (changes the world)."""
    _ledger(f"record {note}")
    return f"recorded {note}"


@server.tool(annotations=READ_ONLY)
def fail(reason: str) -> str:
    """Always fails, with the reason given."""
    raise ValueError(f"refused: {reason}")


@server.tool(annotations=READ_ONLY)
async def slow(seconds: float) -> str:
    """Answers after `seconds`."""
    await asyncio.sleep(seconds)
    return "done"


@server.tool(annotations=DESTRUCTIVE)
def crash(note: str) -> str:
    """Writes to the ledger, then the server process dies."""
    _ledger(f"crash {note}")
    os._exit(3)


if __name__ == "__main__":
    server.run("streamable-http" if "--http" in sys.argv else "stdio")
