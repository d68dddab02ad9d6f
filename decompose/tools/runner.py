"""Calling LangChain tools from plan steps: argument validation, one re-ask, timeouts, side effects exactly once.

A tool that changes the world declares it: `@side_effects` above `@tool` (or `metadata={"side_effects": True}`). Such a tool is called at most once
per step: model retries, parse re-asks and re-execution of the same run never repeat it (the result is kept in a
ledger keyed by run and step). If it takes an injected `idempotency_key` argument, the key is `<run_id>:<step_id>`,
so the tool itself can make a repeat after a crash a no-op. A failure inside a tool is retried only when the tool
raises `RetryableToolError` — and, for a tool with side effects, only when it takes an idempotency key.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import threading
from typing import Any, Sequence

from langchain_core.tools import BaseTool, StructuredTool, Tool, ToolException
from pydantic import ValidationError

from decompose.calls import ModelCaller
from decompose.chains.parsing import extract_plan_data
from decompose.chains.prompts import Prompts
from decompose.errors import DecomposeError, PlanError, ToolError
from decompose.events import Emit, Retried
from decompose.plan import Step

IDEMPOTENCY_ARG = "idempotency_key"


class RetryableToolError(ToolError):
    """Raised by a tool when the failure is transient and calling again is safe."""


def side_effects(tool: BaseTool) -> BaseTool:
    """Mark a tool as changing the world (a refund, a ticket): it will never run twice for one step."""
    tool.metadata = {**(tool.metadata or {}), "side_effects": True}
    return tool


def has_side_effects(tool: BaseTool) -> bool:
    return bool((tool.metadata or {}).get("side_effects"))


def injected_args(tool: BaseTool) -> set[str]:
    """Arguments the tool takes that the model never sees (InjectedToolArg)."""
    full = set(tool.get_input_schema().model_fields)
    visible = set(_visible_fields(tool))
    return full - visible


def _visible_fields(tool: BaseTool) -> dict[str, Any]:
    schema = tool.tool_call_schema
    if isinstance(schema, dict):  # a JSON-schema tool
        return schema.get("properties", {})
    return dict(schema.model_fields)


class ToolRunner:
    def __init__(self, tools: Sequence[BaseTool], *, timeout: float | None = None, max_retries: int = 2,
                 prompts: Prompts | None = None):
        self.tools = {t.name: t for t in tools}
        self.prompts = prompts or Prompts()
        self.timeout = timeout
        self.max_retries = max_retries
        self._ledger: dict[str, Any] = {}  # idempotency key -> result of a side-effecting call

    async def run(self, step: Step, args: dict[str, Any], *, run_id: str, caller: ModelCaller | None,
                  emit: Emit) -> Any:
        tool = self.tools.get(step.tool or "")
        if tool is None:
            known = ", ".join(self.tools) or "none"
            raise ToolError(f"step {step.id} uses unknown tool {step.tool!r}; tools: {known}",
                            hint="register the tool with Orchestrator(tools=[...]) or fix the plan")
        key = f"{run_id}:{step.id}"
        if has_side_effects(tool) and key in self._ledger:
            return self._ledger[key]
        args = await self._valid_args(tool, step, args, caller, emit)
        if IDEMPOTENCY_ARG in injected_args(tool):
            args[IDEMPOTENCY_ARG] = key
        result = await self._call(tool, args, step, emit)
        if has_side_effects(tool):
            self._ledger[key] = result
        return result

    async def _valid_args(self, tool: BaseTool, step: Step, args: dict[str, Any], caller: ModelCaller | None,
                          emit: Emit) -> dict[str, Any]:
        problem = validate_args(tool, args)
        if problem is None:
            return dict(args)
        if caller is None:
            raise ToolError(problem, hint=f"fix the arguments of step {step.id}")
        emit(Retried(phase="solve", attempt=1, reason=problem, wait=0.0, step_id=step.id, kind="parse"))
        caller.usage.parse_retries += 1
        fixed = await self._reask_args(tool, step, args, problem, caller)
        second = validate_args(tool, fixed)
        if second is not None:
            raise ToolError(second, hint=f"the model could not write valid arguments for {tool.name!r}")
        step.args = dict(fixed)  # the step records the arguments the tool was actually called with
        return fixed

    async def _reask_args(self, tool: BaseTool, step: Step, args: dict[str, Any], problem: str,
                          caller: ModelCaller) -> dict[str, Any]:
        schema = json.dumps(_visible_fields_json(tool), ensure_ascii=False)
        messages = self.prompts.tool_args.format_messages(
            task=step.question, tool=tool.name, description=tool.description, schema=schema,
            args=json.dumps(args, default=str), problem=problem)
        message, _ = await caller.invoke(messages, phase="solve", step_id=step.id)
        try:
            data = extract_plan_data(str(message.content))
        except PlanError:
            data = None
        if not isinstance(data, dict):
            raise ToolError(f"{problem}; the model's corrected arguments were not a JSON object",
                            hint=f"check the plan's arguments for {tool.name!r}")
        return data

    async def _call(self, tool: BaseTool, args: dict[str, Any], step: Step, emit: Emit) -> Any:
        retry_allowed = not has_side_effects(tool) or IDEMPOTENCY_ARG in args
        sync = _is_sync(tool)
        attempt = 1
        while True:
            try:
                async with asyncio.timeout(self.timeout):
                    return await (_in_daemon_thread(tool, args) if sync else tool.ainvoke(args))
            except TimeoutError:
                left = " (it is still running in a background thread, which will not delay exit)" if sync else ""
                raise ToolError(f"tool {tool.name!r} timed out after {self.timeout:g}s{left}",
                                hint="raise tool_timeout; a tool with side effects is never re-run after a timeout")
            except RetryableToolError as exc:
                if not retry_allowed or attempt > self.max_retries:
                    raise
                wait = 0.1 * 2 ** (attempt - 1)
                emit(Retried(phase="solve", attempt=attempt, reason=str(exc), wait=wait, step_id=step.id,
                             kind="tool"))
                await asyncio.sleep(wait)
                attempt += 1
            except DecomposeError as exc:  # the tool's own error, said by the tool: name the tool
                if f"{tool.name!r}" in str(exc.args[0] if exc.args else ""):
                    raise
                raise ToolError(f"tool {tool.name!r} failed: {exc.args[0] if exc.args else exc}",
                                hint=exc.hint) from exc
            except (ToolException, ValidationError, ValueError, TypeError, ArithmeticError, LookupError,
                    OSError) as exc:
                raise ToolError(f"tool {tool.name!r} failed: {exc}") from exc
            except Exception as exc:  # an unexpected kind: its type says more than its message alone
                raise ToolError(f"tool {tool.name!r} failed: {type(exc).__name__}: {exc}") from exc


def _is_sync(tool: BaseTool) -> bool:
    """A tool with no async implementation: LangChain would run it in the default thread pool."""
    if isinstance(tool, (StructuredTool, Tool)):
        return tool.coroutine is None
    return type(tool)._arun is BaseTool._arun


def _in_daemon_thread(tool: BaseTool, args: dict[str, Any]) -> asyncio.Future:
    """Run a sync tool in a daemon thread of its own. LangChain's default (the loop's thread pool) is joined
    when the interpreter exits, so a tool that hangs past its timeout would keep the process alive forever."""
    loop = asyncio.get_running_loop()
    future = loop.create_future()
    context = contextvars.copy_context()  # callbacks and config travel as context variables

    def settle(outcome: Any, failed: bool) -> None:
        if not future.done():  # a timed-out wait has cancelled it
            (future.set_exception if failed else future.set_result)(outcome)

    def work() -> None:
        try:
            outcome, failed = context.run(tool.invoke, args), False
        except BaseException as exc:  # handed to the awaiting step, never lost in the thread
            outcome, failed = exc, True
        try:
            loop.call_soon_threadsafe(settle, outcome, failed)
        except RuntimeError:  # the loop closed while the tool ran: nobody is waiting any more
            pass

    threading.Thread(target=work, name=f"tool-{tool.name}", daemon=True).start()
    return future


def validate_args(tool: BaseTool, args: Any) -> str | None:
    """None when `args` fit the tool's schema, else one line naming the tool and the field."""
    if not isinstance(args, dict):
        return f"tool {tool.name!r} needs an object of arguments, got {type(args).__name__}"
    fields = _visible_fields(tool)
    unknown = sorted(set(args) - set(fields) - injected_args(tool))
    if unknown:
        return f"tool {tool.name!r} has no argument {unknown[0]!r}; arguments: {', '.join(fields) or 'none'}"
    schema = tool.tool_call_schema
    if isinstance(schema, dict):
        missing = [f for f in schema.get("required", []) if f not in args]
        return f"tool {tool.name!r} is missing argument {missing[0]!r}" if missing else None
    try:
        schema.model_validate(args)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "arguments"
        return f"tool {tool.name!r}, argument {field!r}: {first['msg']} (got {_short(args.get(field))})"
    return None


def _visible_fields_json(tool: BaseTool) -> dict[str, Any]:
    schema = tool.tool_call_schema
    if isinstance(schema, dict):
        return schema
    return schema.model_json_schema()


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
