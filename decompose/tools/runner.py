"""Calling LangChain tools from plan steps: argument validation, one re-ask, timeouts, side effects exactly once.

A tool that changes the world declares it: `@side_effects` above `@tool` (or `metadata={"side_effects": True}`). Such a
tool is called at most once per step: model retries, parse re-asks and re-execution of the same run never repeat it (the
result is kept in a ledger keyed by run and step). If it takes an injected `idempotency_key` argument, the key is
`<run_id>:<step_id>`, so the tool itself can make a repeat after a crash a no-op. A failure inside a tool is retried
only when the tool raises `RetryableToolError` — and, for a tool with side effects, only when it takes an idempotency
key.

The ledger is the run's checkpoint store when the Orchestrator has one (`decompose/durable.py`: the entry is written
`started` before the call and `done` after, so it outlives the process), else a `MemoryLedger` of this process's
last `MemoryLedger.max_entries` calls. An entry `started` and never `done` is a call whose outcome nobody knows (the
process died, or the tool timed out while it may still act): it is made again only when the tool takes an
idempotency key, otherwise the step fails with `UnknownOutcome` for a person to settle.
"""

from __future__ import annotations

import asyncio
import contextvars
import copy
import json
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol

from langchain_core.tools import BaseTool, StructuredTool, Tool, ToolException
from pydantic import BaseModel, ValidationError

from decompose.approvals import (
    ApprovalNeeded,
    ApprovalPolicy,
    ApprovalRejected,
    ApprovalRequest,
    Approver,
    Decision,
    Edit,
    Reject,
    approval_reason,
    ask,
)
from decompose.calls import ModelCaller
from decompose.chains.parsing import extract_plan_data
from decompose.chains.prompts import Prompts
from decompose.errors import ConfigError, DecomposeError, PlanError, ToolError
from decompose.events import ApprovalRequested, Emit
from decompose.plan import Solved, Step
from decompose.retry import TOOL_ARGS_REASK, RetryState, UnusableReply, retry_events, retrying, transient_tool_error
from decompose.tool_schema import call_schema
from decompose.tools.guards import Grounding

if TYPE_CHECKING:
    from decompose.tracing import RunTrace

IDEMPOTENCY_ARG = "idempotency_key"


class RetryableToolError(ToolError):
    """Raised by a tool when the failure is transient and calling again is safe."""


class ToolTimedOut(ToolError):
    """A tool ran past `ToolRunner.timeout`; a sync tool may still be running (and acting) in its thread."""


class UnknownOutcome(ToolError):
    """A side-effecting call was started and never seen to end (its process died, or it timed out): whether it
    took effect is unknown, so it is not made again."""


@dataclass
class LedgerEntry:
    status: Literal["started", "done"]
    solved: Solved | None = None  # the call's result, once done


class Ledger(Protocol):
    """Where side-effecting calls are remembered, by run and step."""

    def get(self, run_id: str, step_id: int) -> LedgerEntry | None: ...

    def start(self, run_id: str, step_id: int, tool: str, args: dict[str, Any]) -> None:
        """Remembered before the call is made."""

    def done(self, run_id: str, step_id: int, solved: Solved) -> None: ...

    def forget(self, run_id: str, step_id: int) -> None:
        """The call raised an error of its own: it did not act, and may be made again."""


class MemoryLedger:
    """This process's ledger: the last `max_entries` side-effecting calls (the oldest forgotten first), so a
    long-lived server does not grow with every call. Re-running a run id older than that may repeat its calls:
    give the Orchestrator `checkpoints=` for a ledger that outlives the process and is purged by age instead."""

    max_entries = 10_000

    def __init__(self) -> None:
        # No lock: it is used on the event loop's thread only (a sync tool's own thread never touches it), and the
        # runner travels to Ray workers by pickling.
        self._entries: OrderedDict[tuple[str, int], LedgerEntry] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, run_id: str, step_id: int) -> LedgerEntry | None:
        return self._entries.get((run_id, step_id))

    def start(self, run_id: str, step_id: int, tool: str, args: dict[str, Any]) -> None:
        self._put((run_id, step_id), LedgerEntry("started"))

    def done(self, run_id: str, step_id: int, solved: Solved) -> None:
        self._put((run_id, step_id), LedgerEntry("done", solved))

    def forget(self, run_id: str, step_id: int) -> None:
        self._entries.pop((run_id, step_id), None)

    def _put(self, key: tuple[str, int], entry: LedgerEntry) -> None:
        self._entries[key] = entry
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)


def side_effects(tool: BaseTool) -> BaseTool:
    """Mark a tool as changing the world (a refund, a ticket): it will never run twice for one step."""
    tool.metadata = {**(tool.metadata or {}), "side_effects": True}
    return tool


def has_side_effects(tool: BaseTool) -> bool:
    return bool((tool.metadata or {}).get("side_effects"))


def injected_args(tool: BaseTool) -> set[str]:
    """Arguments the tool takes that the model never sees (InjectedToolArg)."""
    schema = tool.get_input_schema()
    full = set(schema.model_fields if issubclass(schema, BaseModel) else schema.__fields__)
    visible = set(_visible_fields(tool))
    return full - visible


def _visible_fields(tool: BaseTool) -> dict[str, Any]:
    schema = call_schema(tool)
    if isinstance(schema, dict):  # a JSON-schema tool
        return schema.get("properties", {})
    return dict(schema.model_fields)


class ToolRunner:
    """Calls the plan's tool steps. Its settings are the user's: `Orchestrator(tool_runner=ToolRunner(timeout=30))`;
    the tools and prompts come from the Orchestrator that uses it, through `configured`."""

    def __init__(
        self,
        tools: Sequence[BaseTool] = (),
        *,
        timeout: float | None = 60.0,
        max_retries: int = 2,
        prompts: Prompts | None = None,
        guard: bool = True,
        approval: ApprovalPolicy | None = None,
        approver: Approver | None = None,
    ):
        if timeout is not None and timeout <= 0:
            raise ConfigError(f"tool timeout must be a positive number of seconds or None, got {timeout!r}")
        if max_retries < 0:
            raise ConfigError(f"tool max_retries must be 0 or more, got {max_retries}")
        self.timeout = timeout
        self.max_retries = max_retries  # retries of a tool that raises RetryableToolError
        # In a model-made plan: writes only when asked, identifiers only from the conversation (tools/guards.py).
        self.guard = guard
        # Calls that wait for a person (approvals.py): `approval(tool, args)` says which and why; `approver`, when
        # given, is asked at once (the CLI asks at the terminal), else the run stops awaiting the decision.
        self.approval, self.approver = approval, approver
        self._use(tools, prompts or Prompts())

    def configured(self, tools: Sequence[BaseTool], prompts: Prompts) -> ToolRunner:
        """A copy with these settings, calling `tools`, with a ledger of its own."""
        made = copy.copy(self)
        made._use(tools, prompts)
        return made

    def _use(self, tools: Sequence[BaseTool], prompts: Prompts) -> None:
        self.tools = {t.name: t for t in tools}
        self.prompts = prompts
        self.ledger = MemoryLedger()  # side-effecting calls of runs without a checkpoint store

    async def run(
        self,
        step: Step,
        args: dict[str, Any],
        *,
        run_id: str,
        caller: ModelCaller | None,
        emit: Emit,
        grounding: Grounding | None = None,
        trace: RunTrace | None = None,
        ledger: Ledger | None = None,
        decisions: Mapping[int, Decision] | None = None,
    ) -> Solved:
        """Call the step's tool with `args` (its resolved arguments); the result, and the arguments the tool was
        called with when the model had to correct them. With `grounding` (a model-made plan), identifiers must
        come from the conversation or a tool result, and a write must be on what the user named. `ledger`: the
        run's (its checkpoint store's), else this runner's `MemoryLedger`."""
        tool = self.tools.get(step.tool or "")
        if tool is None:
            known = ", ".join(self.tools) or "none"
            raise ToolError(
                f"step {step.id} uses unknown tool {step.tool!r}; tools: {known}",
                hint="register the tool with Orchestrator(tools=[...]) or fix the plan",
            )
        key = f"{run_id}:{step.id}"
        ledger = self.ledger if ledger is None else ledger
        writes = has_side_effects(tool)
        if writes and (entry := ledger.get(run_id, step.id)) is not None:
            if entry.solved is not None:
                return entry.solved  # made already: never twice
            if IDEMPOTENCY_ARG not in injected_args(tool):
                raise UnknownOutcome(
                    f"step {step.id}: {tool.name} was started in run {run_id} and never seen to end (the process "
                    "stopped, or the call timed out): whether it took effect is unknown",
                    hint=f"a person must check {tool.name}'s own records and settle it; it is not called again "
                    "(a tool that takes an idempotency_key would be)",
                )
        planned = args
        if grounding is not None:
            args = grounding.repair(tool, args)
            grounding.require(tool, step, args)
        called_with = await self._valid_args(tool, step, args, caller, emit)
        if grounding is not None:
            grounding.check(tool, step, called_with, writes=has_side_effects(tool))
        reason = approval_reason(tool, called_with, self.approval)
        if reason is not None:
            decided = (decisions or {}).get(step.id)
            called_with = await self._approved(tool, step, called_with, reason, run_id, emit, decided)
        corrected = dict(called_with) if called_with != planned else None
        if IDEMPOTENCY_ARG in injected_args(tool):
            called_with[IDEMPOTENCY_ARG] = key
        if writes:
            ledger.start(run_id, step.id, tool.name, called_with)
        try:
            call = self._call(tool, called_with, step, emit)
            answer = await (call if trace is None else trace.tool_call(call, tool, called_with, step.id))
            solved = Solved(answer, args=corrected)
        except ToolError as exc:
            if writes and not isinstance(exc, ToolTimedOut):  # the tool's own error: it did not act
                ledger.forget(run_id, step.id)
            raise
        if writes:
            ledger.done(run_id, step.id, solved)
        if grounding is not None:
            grounding.results.append(solved.answer)
        return solved

    def needs_approval(self, tool: BaseTool) -> bool:
        """Whether some call of `tool` may wait for a person (its mark, or a policy that may say so)."""
        return self.approval is not None or bool((tool.metadata or {}).get("approval"))

    async def _approved(
        self,
        tool: BaseTool,
        step: Step,
        args: dict[str, Any],
        reason: str,
        run_id: str,
        emit: Emit,
        decision: Decision | None,
    ) -> dict[str, Any]:
        """The arguments to call with once a person approved (theirs, if they edited them); `ApprovalRejected`
        when they rejected the call, `ApprovalNeeded` when nobody has decided yet."""
        request = ApprovalRequest(run_id, step.id, tool.name, json.loads(json.dumps(args, default=str)), reason)
        if decision is None and self.approver is not None:
            decision = await ask(self.approver, request)
        match decision:
            case None:
                emit(ApprovalRequested(step_id=step.id, tool=tool.name, args=request.args, reason=reason))
                raise ApprovalNeeded(request)
            case Reject(reason=why):
                raise ApprovalRejected(tool.name, why)
            case Edit(args=edited):
                problem = self.edit_problem(request, edited)
                if problem is not None:
                    raise ToolError(problem, hint="the call was not made")
                return dict(edited)
        return args

    def edit_problem(self, request: ApprovalRequest, args: dict[str, Any]) -> str | None:
        """Why a person's edited arguments for a waiting call do not fit its tool's schema, or None (also when
        the tool is not this runner's: `check_tools` refuses that run before anything runs)."""
        tool = self.tools.get(request.tool)
        problem = None if tool is None else validate_args(tool, args)
        return None if problem is None else f"the edited arguments of step {request.step_id} do not fit: {problem}"

    async def _valid_args(
        self, tool: BaseTool, step: Step, args: dict[str, Any], caller: ModelCaller | None, emit: Emit
    ) -> dict[str, Any]:
        if caller is None:  # no model to re-ask
            problem = validate_args(tool, args)
            if problem is not None:
                raise ToolError(problem, hint=f"fix the arguments of step {step.id}")
            return dict(args)

        async def attempt(state: RetryState) -> dict[str, Any]:
            fixed = args
            if state.failures:  # the plan's arguments did not fit: the model writes them again
                fixed = await self._reask_args(tool, step, args, str(state.failures[-1]), caller)
            problem = validate_args(tool, fixed)
            if problem is not None:
                raise UnusableReply(json.dumps(fixed, default=str), problem)
            return dict(fixed)

        def give_up(state: RetryState) -> dict[str, Any]:
            failure = state.failures[-1]
            if not isinstance(failure, UnusableReply):
                raise failure
            raise ToolError(str(failure), hint=f"the model could not write valid arguments for {tool.name!r}")

        return await retrying(
            TOOL_ARGS_REASK, attempt, before_sleep=retry_events(emit, caller.usage, "solve", step.id), give_up=give_up
        )

    async def _reask_args(
        self, tool: BaseTool, step: Step, args: dict[str, Any], problem: str, caller: ModelCaller
    ) -> dict[str, Any]:
        schema = json.dumps(_visible_fields_json(tool), ensure_ascii=False)
        messages = self.prompts.tool_args.format_messages(
            task=step.question,
            tool=tool.name,
            description=tool.description,
            schema=schema,
            args=json.dumps(args, default=str),
            problem=problem,
        )
        message, _ = await caller.invoke(messages, phase="solve", step_id=step.id)
        try:
            data = extract_plan_data(str(message.content))
        except PlanError:
            data = None
        if not isinstance(data, dict):
            raise ToolError(
                f"{problem}; the model's corrected arguments were not a JSON object",
                hint=f"check the plan's arguments for {tool.name!r}",
            )
        return data

    async def _call(self, tool: BaseTool, args: dict[str, Any], step: Step, emit: Emit) -> Any:
        sync = _is_sync(tool)

        async def attempt(state: RetryState) -> Any:
            try:
                async with asyncio.timeout(self.timeout):
                    return await (_in_daemon_thread(tool, args) if sync else tool.ainvoke(args))
            except TimeoutError:
                left = " (it is still running in a background thread, which will not delay exit)" if sync else ""
                raise ToolTimedOut(
                    f"tool {tool.name!r} timed out after {self.timeout:g}s{left}",
                    hint="raise ToolRunner(timeout=...); a tool with side effects is never re-run after a timeout",
                ) from None
            except RetryableToolError:
                raise  # the tool asks to be called again: `transient_tool_error` decides
            except DecomposeError as exc:  # the tool's own error, said by the tool: name the tool
                if f"{tool.name!r}" in str(exc.args[0] if exc.args else ""):
                    raise
                raise ToolError(
                    f"tool {tool.name!r} failed: {exc.args[0] if exc.args else exc}", hint=exc.hint
                ) from exc
            except (
                ToolException,
                ValidationError,
                ValueError,
                TypeError,
                ArithmeticError,
                LookupError,
                OSError,
            ) as exc:
                raise ToolError(f"tool {tool.name!r} failed: {exc}") from exc
            except Exception as exc:  # an unexpected kind: its type says more than its message alone
                raise ToolError(f"tool {tool.name!r} failed: {type(exc).__name__}: {exc}") from exc

        may_repeat = not has_side_effects(tool) or IDEMPOTENCY_ARG in args
        rule = transient_tool_error(RetryableToolError, self.max_retries, may_repeat=may_repeat)
        return await retrying(rule, attempt, before_sleep=retry_events(emit, None, "solve", step.id))


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
    schema = call_schema(tool)
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
    schema = call_schema(tool)
    if isinstance(schema, dict):
        return schema
    return schema.model_json_schema()


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
