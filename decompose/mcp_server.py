"""The agents as MCP tools (`decompose mcp`), on the official SDK's FastMCP: one tool per agent, a question in,
the answer and the steps that reached it out, with a progress notification as the plan is made and each step
ends (to clients that ask for progress).

    from decompose.mcp_server import create_mcp_server, ready_agents
    create_mcp_server(ready_agents("openai:gpt-4o-mini", ["finance"])).run("stdio")
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

import anyio
from mcp.server.fastmcp import Context, FastMCP
from mcp.types import ToolAnnotations
from pydantic import BaseModel, Field

from decompose.errors import ConfigError, ToolError
from decompose.events import Answered, Event, PlanReady, StepFailed, StepFinished, StepSkipped
from decompose.orchestrator import Orchestrator
from decompose.tools.runner import has_side_effects

PLAIN = "decompose"  # the model alone with the command's --tools and --mcp servers


class PlanStep(BaseModel):
    id: int
    question: str
    tool: str | None = None
    args: dict[str, Any] | None = None
    status: str
    answer: Any = None
    error: str | None = None


class Reply(BaseModel):
    """What an agent's tool returns."""

    answer: str = Field(description="the agent's answer")
    steps: list[PlanStep] = Field(description="the plan's steps, each with its answer: what the answer rests on")
    citations: list[dict[str, Any]] = Field(
        default_factory=list, description="passages the steps and the answer were shown"
    )
    error: str | None = Field(None, description="set when the run stopped early and the answer is partial")


def ready_agents(
    model: Any,
    names: Sequence[str] | None = None,
    *,
    tools: Sequence[Any] = (),
    options: Mapping[str, Any] | None = None,
) -> dict[str, Orchestrator]:
    """The ready agents named (default: every one; `decompose` is the model with `tools`), each built on `model`."""
    from decompose.agents import build_agent, get_agent, list_agents

    names = list(names or [a.name for a in list_agents()] + ([PLAIN] if tools else []))
    for name in names:
        if name != PLAIN:
            get_agent(name)  # an unknown name fails before anything is built
    if len(set(names)) != len(names):
        raise ConfigError("an agent is named twice", hint="name each agent once")
    return {
        name: Orchestrator(model, tools=list(tools), **dict(options or {}))
        if name == PLAIN
        else build_agent(name, model=model, **dict(options or {}))
        for name in names
    }


def create_mcp_server(agents: Mapping[str, Orchestrator], *, host: str = "127.0.0.1", port: int = 8000) -> FastMCP:
    """A FastMCP server with one tool per agent (its name with `_` for `-`). `host` and `port` matter only for
    streamable HTTP; a loopback host turns on the SDK's DNS-rebinding protection."""
    from decompose.agents import get_agent

    if not agents:
        raise ConfigError("no agents to serve", hint="name at least one with --agent")
    server = FastMCP(
        "decompose",
        host=host,
        port=port,
        log_level="WARNING",
        instructions="Agents that answer in steps: each tool plans, calls its tools and answers.",
    )
    for name, orch in agents.items():
        description = (
            get_agent(name).description
            if name != PLAIN
            else "Answers with a model" + (" and these tools" if orch.tools else "") + "."
        )
        tools = ", ".join(t.name for t in orch.tools)
        read_only = not any(has_side_effects(t) for t in orch.tools)
        server.add_tool(
            _ask(orch),
            name=name.replace("-", "_"),
            title=name,
            description=f"{description} Ask it a question in plain words; it answers in steps"
            + (f" with its tools ({tools})." if tools else "."),
            annotations=ToolAnnotations(
                title=name, readOnlyHint=read_only, destructiveHint=not read_only, idempotentHint=False
            ),
            structured_output=True,
        )
    return server


def _ask(orch: Orchestrator) -> Any:
    async def ask(question: str, ctx: Context) -> Reply:
        events: asyncio.Queue[Event | None] = asyncio.Queue()
        pumping = asyncio.create_task(_progress(events, ctx))
        try:
            result = await orch.arun(question, on_event=events.put_nowait)
        finally:
            events.put_nowait(None)
            await pumping
        if result.answer is None:  # the client sees a tool error (isError) with the run's reason
            raise ToolError(f"the agent gave no answer: {result.error or 'no answer'}")
        steps = [
            PlanStep(
                id=s.id,
                question=s.question,
                tool=s.tool,
                args=s.args or None,
                status=s.status,
                answer=s.answer,
                error=s.error,
            )
            for s in (result.plan.steps if result.plan else [])
        ]
        return Reply(answer=result.answer, steps=steps, citations=result.citations, error=result.error)

    return ask


async def _progress(events: asyncio.Queue[Event | None], ctx: Context) -> None:
    """The run's events as progress notifications: one for the plan, one as each step ends, one for the answer."""
    done, total = 0, None
    while (event := await events.get()) is not None:
        if isinstance(event, PlanReady):
            total = len(event.plan.get("steps", [])) + 2  # the plan, its steps, the answer
            message = f"planned {total - 2} step{'s' * (total != 3)}"
        elif isinstance(event, StepFinished):
            message = f"step {event.step_id} done"
        elif isinstance(event, StepFailed):
            message = f"step {event.step_id} failed: {event.error}"
        elif isinstance(event, StepSkipped):
            message = f"step {event.step_id} skipped: {event.reason}"
        elif isinstance(event, Answered):
            message = "answered"
        else:
            continue
        done += 1
        try:
            await ctx.report_progress(done, total and max(total, done), message)
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):  # a client gone away must not end the run
            pass
