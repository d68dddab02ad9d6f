"""The tools of Model Context Protocol servers as plan tools, through `langchain-mcp-adapters` and the `mcp` SDK.

    from decompose.tools.mcp import mcp_tools
    tools = mcp_tools("python weather_server.py", "http://127.0.0.1:9000/mcp")
    orch = Orchestrator(model, tools=tools)

A server is a command (run over stdio) or a streamable-HTTP URL. Its tools are listed once, here, so a server
that is not there fails before anything runs; each call then opens a session of its own (the adapters' stateless
mode): nothing binds a tool to one event loop, and a server that died is started again by the next call.

A tool's annotations decide how the run treats it (the MCP defaults: not read-only): a tool that is not
`readOnlyHint` changes the world, so it is a side-effecting tool here (runs at most once per step, never retried,
and in a model-made plan only when the user's words ask for it; see tools/guards.py). A read-only tool whose
server failed in transit is retried like any `RetryableToolError`.
"""

from __future__ import annotations

import asyncio
import json
import os
import shlex
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from langchain_core.tools import BaseTool, StructuredTool, ToolException

from decompose.errors import ConfigError, ToolError
from decompose.tools.runner import RetryableToolError

if TYPE_CHECKING:  # the mcp extra is imported only when a server is listed
    from langchain_mcp_adapters.sessions import StdioConnection, StreamableHttpConnection

DEFAULT_TIMEOUT = 30.0  # seconds for start-up and for each tool call; under ToolRunner's 60 s, so ours names the server
SERVER = "mcp_server"  # metadata key: the server a tool came from


@dataclass(frozen=True)
class MCPServer:
    """One MCP server: `command` (run as a subprocess, spoken to over stdio) or `url` (streamable HTTP).

    `env`: the subprocess's environment (default: this process's). `headers`: sent with every HTTP request, e.g.
    {"Authorization": "Bearer KEY"}. `timeout`: seconds the start-up and each tool call may take."""

    command: tuple[str, ...] = ()
    url: str | None = None
    name: str | None = None
    env: Mapping[str, str] | None = None
    cwd: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    timeout: float = DEFAULT_TIMEOUT

    def __post_init__(self) -> None:
        if bool(self.command) == bool(self.url):
            raise ConfigError(
                "an MCP server is a command or a URL, exactly one",
                hint='give MCPServer(command=("python", "server.py")) or MCPServer(url="http://…/mcp")',
            )
        if not self.timeout or self.timeout <= 0:
            raise ConfigError(f"MCP server timeout must be a positive number of seconds, got {self.timeout!r}")

    @classmethod
    def of(cls, spec: str | Sequence[str] | MCPServer, **settings: Any) -> MCPServer:
        """A server from a URL ("http://…"), a command line (split like a shell would) or a command's words."""
        if isinstance(spec, MCPServer):
            return spec
        if isinstance(spec, str):
            if spec.startswith(("http://", "https://")):
                return cls(url=spec, **settings)
            try:
                spec = shlex.split(spec)
            except ValueError as exc:
                raise ConfigError(
                    f"MCP server command {spec!r} cannot be read: {exc}", hint="check its quotes"
                ) from None
        words = tuple(str(w) for w in spec)
        if not words:
            raise ConfigError("an MCP server command is empty", hint="give the command that starts the server")
        return cls(command=words, **settings)

    @property
    def label(self) -> str:
        """How messages name the server: its name, else its URL or command line."""
        return self.name or self.url or shlex.join(self.command)

    def connection(self) -> StdioConnection | StreamableHttpConnection:
        """The adapters' connection settings."""
        if self.url:
            return {
                "transport": "streamable_http",
                "url": self.url,
                "headers": dict(self.headers),
                "timeout": self.timeout,
            }
        return {
            "transport": "stdio",
            "command": self.command[0],
            "args": list(self.command[1:]),
            "env": dict(os.environ if self.env is None else self.env),
            "cwd": self.cwd,
        }

    def fix(self) -> str:
        if self.url:
            return "check that the server is running and the URL (its MCP endpoint, often ending in /mcp)"
        return "check the command: run it in a shell, it should wait for MCP messages on stdin"


def mcp_tools(
    *servers: str | Sequence[str] | MCPServer, timeout: float = DEFAULT_TIMEOUT, prefix: bool = False
) -> list[BaseTool]:
    """The tools of every server (a URL, a command line, a command's words, or an `MCPServer`), as LangChain
    tools for `Orchestrator(tools=...)`. `prefix`: name each tool `<server name>_<tool>` (for servers whose tool
    names collide; give them `MCPServer(name=...)`). A server that cannot be reached raises a ConfigError."""
    from decompose.sync import run_sync

    return run_sync(amcp_tools(*servers, timeout=timeout, prefix=prefix))


async def amcp_tools(
    *servers: str | Sequence[str] | MCPServer, timeout: float = DEFAULT_TIMEOUT, prefix: bool = False
) -> list[BaseTool]:
    """`mcp_tools`, awaited (inside a running event loop)."""
    resolved = [MCPServer.of(s, timeout=timeout) if not isinstance(s, MCPServer) else s for s in servers]
    listed = await asyncio.gather(*(_list(server) for server in resolved))
    tools = [_plan_tool(server, tool, prefix) for server, found in zip(resolved, listed) for tool in found]
    _no_duplicates(tools)
    return tools


async def _list(server: MCPServer) -> list[BaseTool]:
    from langchain_mcp_adapters.tools import load_mcp_tools

    try:
        async with asyncio.timeout(server.timeout):
            return await load_mcp_tools(
                None, connection=server.connection(), server_name=server.name, handle_tool_errors=False
            )
    except TimeoutError:
        raise ConfigError(
            f"MCP server {server.label} did not start within {server.timeout:g}s",
            hint=f"raise the timeout (--mcp-timeout, MCPServer(timeout=...)); {server.fix()}",
        ) from None
    except Exception as exc:  # whatever the transport raised: one line naming the server
        raise ConfigError(
            f"MCP server {server.label} could not be started: {_reason(exc)}", hint=server.fix()
        ) from None


def _plan_tool(server: MCPServer, tool: BaseTool, prefix: bool) -> BaseTool:
    """The adapter's tool, called under the server's timeout, its result as plain data and every failure a
    ToolError naming the server; its annotations as our metadata."""
    hints = dict(tool.metadata or {})
    writes = not hints.get("readOnlyHint")
    name = f"{_slug(server.name)}_{tool.name}" if prefix and server.name else tool.name
    # The adapters make each tool a StructuredTool that calls the server in its coroutine.
    assert isinstance(tool, StructuredTool) and tool.coroutine is not None, type(tool)
    remote = tool.coroutine

    async def call(**args: Any) -> Any:
        try:
            async with asyncio.timeout(server.timeout):
                content, artifact = await remote(**args)
        except TimeoutError:
            raise ToolError(
                f"MCP server {server.label} did not answer tool {name!r} within {server.timeout:g}s",
                hint="raise the timeout (--mcp-timeout, MCPServer(timeout=...)), or make the tool "
                "faster; a tool that is not read-only is never called again",
            ) from None
        except ToolException as exc:  # the tool answered with isError: its own message
            raise ToolError(
                f"tool {name!r} of MCP server {server.label} returned an error: {exc}",
                hint="read the tool's message; fix its arguments or the server",
            ) from None
        except Exception as exc:  # the transport: the server died, refused, or answered nonsense
            kind = RetryableToolError if not writes else ToolError
            raise kind(
                f"MCP server {server.label} failed during tool {name!r}: {_reason(exc)}",
                hint=server.fix()
                + ("" if kind is RetryableToolError else "; the tool is not read-only, so it is not called again"),
            ) from None
        return _value(content, artifact)

    def call_sync(**args: Any) -> Any:  # `tool.invoke` outside a loop
        from decompose.sync import run_sync

        return run_sync(call(**args))

    return StructuredTool(
        name=name,
        description=tool.description,
        args_schema=tool.args_schema,
        func=call_sync,
        coroutine=call,
        metadata={**hints, "side_effects": writes, SERVER: server.label},
    )


def _value(content: Any, artifact: Any) -> Any:
    """A tool result as the plan's steps use it: the structured result when the server gave one (FastMCP wraps
    a plain value as {"result": value}), else the text (a JSON object or list in it read as data)."""
    structured = (artifact or {}).get("structured_content")
    if isinstance(structured, dict):
        return structured["result"] if set(structured) == {"result"} else structured
    if isinstance(content, str):
        return content
    texts = [
        block.get("text", "") for block in content or [] if isinstance(block, dict) and block.get("type") == "text"
    ]
    if len(texts) == 1 and texts[0].lstrip()[:1] in ("{", "["):
        try:
            return json.loads(texts[0])
        except ValueError:
            pass
    return "\n".join(texts) if texts else content


def _reason(exc: BaseException) -> str:
    """The innermost cause's message: transports raise from task groups, whose own message says nothing."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name).strip("_")


def _no_duplicates(tools: Iterable[BaseTool]) -> None:
    seen: dict[str, str] = {}
    for tool in tools:
        server = (tool.metadata or {})[SERVER]  # every tool here is made by _plan_tool
        if tool.name in seen:
            raise ConfigError(
                f"tool {tool.name!r} is offered by MCP server {seen[tool.name]} and by {server}",
                hint="name the servers (MCPServer(name=...)) and use mcp_tools(..., prefix=True)",
            )
        seen[tool.name] = server
