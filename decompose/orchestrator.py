"""`Orchestrator`: decompose → schedule → synthesize, with the policy knobs in one place.

Errors before anything runs (bad question, no usable plan, unreachable model) raise. Once a plan runs, failures
are recorded on the steps and in `Result.error` (run timeout, token budget, failed synthesis), so a partial
result is never lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import os
import time
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from typing import TYPE_CHECKING, Any, Unpack

from langchain_core.caches import BaseCache
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage
from langchain_core.retrievers import BaseRetriever
from langchain_core.tools import BaseTool

from decompose.approvals import (
    ApprovalNeeded,
    ApprovalRejected,
    ApprovalRequest,
    Decision,
    Edit,
    decision_dict,
    decision_from,
)
from decompose.auto import AutoStrategy, Route
from decompose.cache import as_cache
from decompose.calls import ModelCaller
from decompose.chains.answer_stream import AnswerStream
from decompose.chains.decompose import Decomposer
from decompose.chains.prompts import Prompts
from decompose.chains.synthesis import Synthesizer, findings_text
from decompose.errors import (
    BudgetExceeded,
    CheckpointError,
    ConfigError,
    DecomposeError,
    InputError,
    ModelAccessError,
    PlanError,
)
from decompose.events import Answered, Event, PlanFallback, RouteChosen, Usage
from decompose.executors import Executor, as_executor
from decompose.limits import Limits
from decompose.models import load_model
from decompose.models.fallback import FallbackModel
from decompose.plan import (
    Plan,
    Step,
    append_steps,
    escape_references,
    known_answers,
    question_key,
    resolve_args,
    resolve_text,
)
from decompose.pricing import Prices, as_prices
from decompose.result import Result
from decompose.retrieval import search, sources_of
from decompose.retry import RetryPolicy
from decompose.scheduler import Hooks, run_dag
from decompose.settings import MovedSettings, checked, make_strategy, moved_settings
from decompose.solvers import ProgramSolver, Solved, Solver, StepContext
from decompose.step_state import RunRecord, close_unfinished, drop, state_hooks
from decompose.sync import run_sync
from decompose.telemetry import tracing
from decompose.tools.guards import Grounding, UserWords
from decompose.tools.runner import ToolRunner, has_side_effects

if TYPE_CHECKING:
    from opentelemetry.trace import TracerProvider

    from decompose.checkpoints import CheckpointStore
    from decompose.durable import RunCheckpoint
    from decompose.tracing import RunTrace

MAX_QUESTION_CHARS = 20_000
log = logging.getLogger("decompose.checkpoints")


@dataclass
class _Run:
    """State of one run: shared by its steps, never by two runs."""

    caller: ModelCaller
    events: list[Event]
    record: RunRecord  # every event of the run goes through it: it changes the run state, then is kept
    run_id: str
    limits: Limits
    history: Sequence[BaseMessage] = ()
    answer_sources: list[dict[str, Any]] = field(default_factory=list)  # passages the final answer was shown
    grounding: Grounding | None = None  # a model-made plan's tool guard (tools/guards.py); None for a given plan
    route: Route | None = None  # strategy="auto": the route the question took
    answer_stream: AnswerStream | None = None  # on_answer: the answer's text as the synthesis writes it
    trace: RunTrace | None = None  # its spans (tracing.py); None when tracing is off
    checkpoint: RunCheckpoint | None = None  # with Orchestrator(checkpoints=...): writes the run as it goes
    decisions: Mapping[int, Decision] = field(default_factory=dict)  # a resumed run's decisions on its approvals
    pending: list[ApprovalRequest] = field(default_factory=list)  # calls that wait for a person
    rejected: list[str] = field(default_factory=list)  # the answer's sentences on calls a person rejected

    @property
    def emit(self) -> Callable[[Event], None]:
        return self.record

    async def traced(self, question: str, answering: Coroutine[Any, Any, Result]) -> Result:
        """`answering` in the run's span, when traced."""
        if self.trace is None:
            return await answering
        with self.trace.run(question):
            result = await answering
            self.trace.finish(result)
            return result

    def phase(self, name: str) -> contextlib.AbstractContextManager[Any]:
        return contextlib.nullcontext() if self.trace is None else self.trace.phase(name)


class Orchestrator:
    """Answers a question in steps. The common case is one line, `Orchestrator("openai:gpt-4o-mini", tools=[...])`;
    settings live on the part they set: `strategy=SelfConsistencySolver(samples=5)`, `decomposer=Decomposer(
    max_steps=5)`, `tool_runner=ToolRunner(timeout=30)`, `limits=Limits(run_timeout=60, max_tokens=20_000)`.
    `tracer_provider=` sends each run's OpenTelemetry spans there (`trace_content=True` adds questions, answers and
    tool arguments); without it, the `OTEL_*` variables decide (docs/observability.md).
    `cache="replies.sqlite"` (or any LangChain `BaseCache`) answers a repeated call that does not sample from the
    stored reply (`decompose.call_cache`). `prices={"model": (input_per_1m, output_per_1m)}` (or a JSON file of
    them) adds to the shipped USD price table that `result.usage.cost` and `Limits(max_cost=...)` use
    (`decompose.pricing`)."""

    def __init__(
        self,
        model: BaseChatModel | FallbackModel | str | None = None,
        *,
        tools: Sequence[BaseTool] = (),
        strategy: str | Solver | AutoStrategy = "direct",
        retriever: BaseRetriever | None = None,
        fallbacks: Sequence[BaseChatModel | str] = (),
        decomposer: Decomposer | None = None,
        tool_runner: ToolRunner | None = None,
        limits: Limits | None = None,
        retry: RetryPolicy | None = None,
        prompts: Prompts | None = None,
        max_concurrency: int = 8,
        tracer_provider: TracerProvider | None = None,
        trace_content: bool | None = None,
        cache: BaseCache | str | os.PathLike[str] | None = None,
        checkpoints: CheckpointStore | str | os.PathLike[str] | None = None,
        prices: Prices | Mapping[str, Any] | str | os.PathLike[str] | None = None,
        **moved: Unpack[MovedSettings],
    ):
        if moved:  # the flat keyword arguments of earlier versions, each now set on its part
            strategy, decomposer, tool_runner, limits = moved_settings(
                moved, strategy, decomposer, tool_runner, limits, valid=_KEYWORDS
            )
        # What `replace` copies: every argument as given (the flat ones of earlier versions as the parts they made).
        self._arguments = {name: value for name, value in locals().items() if name not in ("self", "moved")}
        if max_concurrency < 1:
            raise ConfigError(f"max_concurrency must be at least 1, got {max_concurrency}")
        if retriever is not None and not isinstance(retriever, BaseRetriever):
            raise ConfigError(
                f"retriever must be a LangChain BaseRetriever, got {type(retriever).__name__}",
                hint="wrap your search in a BaseRetriever, or use LocalDocsRetriever.from_path",
            )
        if isinstance(model, FallbackModel):  # its own fallbacks and fallback_on
            if fallbacks:
                raise ConfigError(
                    "fallbacks are given twice: in the FallbackModel and as fallbacks=",
                    hint="put every fallback in the FallbackModel",
                )
            self.models = model
        else:
            self.models = FallbackModel(load_model(model), *(load_model(m) for m in fallbacks))
        # A copy shares the models instead of loading them again.
        self._arguments.update(model=self.models, fallbacks=())
        self.model, self.fallbacks = self.models.models[0], self.models.models[1:]
        self.tools = list(tools)
        # "auto" chooses per question how to answer it (auto.py); a decomposition's steps are then answered directly.
        self.solver, self.auto = make_strategy(strategy)
        # Plan steps with "kind": "program" are answered by a program whatever the strategy (its limits, when
        # the strategy is a ProgramSolver).
        self.program_solver = self.solver if isinstance(self.solver, ProgramSolver) else ProgramSolver()
        self.retriever = retriever
        self.limits = checked(limits or Limits(), Limits, "limits")
        self.retry = retry or RetryPolicy()
        self.prompts = prompts or Prompts()
        self.max_concurrency = max_concurrency
        # OpenTelemetry spans (telemetry.py): with tracer_provider, else as the OTEL_* variables say; None is off.
        self.tracing = tracing(tracer_provider, trace_content)
        self.cache = as_cache(cache)  # a path: a SQLiteCache on that file (decompose/cache.py)
        self._arguments.update(cache=self.cache)  # a copy shares the cache rather than opening the file again
        # Runs written as they go, to be resumed after a crash (checkpoints.py); a copy shares the store.
        self.checkpoints = _open_checkpoints(checkpoints)
        self._arguments["checkpoints"] = self.checkpoints
        self.prices = as_prices(prices)  # a bad entry fails here, not at the first call
        self._arguments.update(prices=self.prices)
        self.decomposer = checked(decomposer or Decomposer(), Decomposer, "decomposer").configured(
            self.prompts, self.tools, documents=retriever is not None
        )
        self.tool_runner = checked(tool_runner or ToolRunner(), ToolRunner, "tool_runner").configured(
            self.tools, self.prompts
        )
        waits = [t.name for t in self.tools if self.tool_runner.needs_approval(t)]
        if waits and self.checkpoints is None and self.tool_runner.approver is None:
            raise ConfigError(
                f"{', '.join(waits)} may wait for a person's approval, and this Orchestrator has nowhere to wait",
                hint='give it checkpoints="runs.sqlite3" (a run then stops awaiting the decision, resumed with '
                "orch.resume(run_id, decisions=...)), or ToolRunner(approver=...) to decide at once",
            )
        self.synthesizer = Synthesizer(
            self.prompts,
            retriever=retriever,
            tools=self.tools,
            direct_when_nothing=self.decomposer.on_failure == "direct",
        )

    def replace(self, **parts: Any) -> Orchestrator:
        """A new Orchestrator made with this one's arguments, `parts` changed: `orch.replace(tools=[...])`. It shares
        this one's models (fallbacks and `fallback_on` included; a new `model=` replaces them all, `fallbacks=`
        alone keeps the primary) and its settings objects."""
        unknown = sorted(set(parts) - set(self._arguments))
        if unknown:
            raise ConfigError(
                f"Orchestrator.replace() got an unexpected argument {unknown[0]!r}",
                hint=f"use one of: {', '.join(self._arguments)}",
            )
        if "fallbacks" in parts and "model" not in parts:
            parts["model"] = self.model
        return type(self)(**{**self._arguments, **parts})

    @property
    def _writes(self) -> dict[str, BaseTool]:
        return {t.name: t for t in self.tools if has_side_effects(t)}

    @property
    def max_steps(self) -> int:
        return self.decomposer.max_steps

    # ----- public API -------------------------------------------------------------------------------------

    def run(
        self,
        question: str,
        *,
        on_event: Callable[[Event], None] | None = None,
        history: Sequence[BaseMessage] = (),
        limits: Limits | None = None,
        run_id: str | None = None,
    ) -> Result:
        return run_sync(self.arun(question, on_event=on_event, history=history, limits=limits, run_id=run_id))

    def plan(self, question: str) -> Plan:
        return run_sync(self.aplan(question))

    def check_plan(self, plan: Plan | str | dict) -> Plan:
        """Raise `PlanError` unless `plan` can run here (valid, within max_steps, only this Orchestrator's tools),
        as `execute` would before anything runs: a plan a person wrote or edited is checked up front. A plan given
        as JSON text or data is parsed first."""
        if not isinstance(plan, Plan):
            plan = _as_plan(plan, self.max_steps)
        plan.validate_plan(max_steps=self.max_steps)
        self.decomposer.check_tools(plan)
        return plan

    def execute(
        self,
        plan: Plan | str | dict,
        *,
        question: str | None = None,
        run_id: str | None = None,
        on_event: Callable[[Event], None] | None = None,
        limits: Limits | None = None,
    ) -> Result:
        return run_sync(self.aexecute(plan, question=question, run_id=run_id, on_event=on_event, limits=limits))

    def batch(
        self,
        questions: Iterable[str],
        *,
        max_concurrency: int | None = None,
        limits: Limits | None = None,
        executor: Executor | str = "local",
    ) -> list[Result]:
        return run_sync(self.abatch(questions, max_concurrency=max_concurrency, limits=limits, executor=executor))

    async def arun(
        self,
        question: str,
        *,
        on_event: Callable[[Event], None] | None = None,
        history: Sequence[BaseMessage] = (),
        limits: Limits | None = None,
        call_slots: asyncio.Semaphore | None = None,
        on_answer: Callable[[str], None] | None = None,
        run_id: str | None = None,
    ) -> Result:
        """Answer `question`. `history` (earlier turns as messages) is shown to the planner and synthesizer,
        so a follow-up like "and when will it arrive?" can be understood; see `Conversation`. `limits` replaces
        the Orchestrator's for this run (`orch.limits.replace(max_tokens=2000)` changes one of them).
        `call_slots`, shared by several runs (a batch), bounds their model calls in flight together.
        `on_answer` receives the answer's text as the synthesis writes it, piece by piece, each continuing the last
        (`chains/answer_stream.py` says what is held back); the pieces end up as `result.answer` unless the checks
        changed text already passed on. `run_id` names the run (default: a new random id, in `Result.run_id`):
        with `checkpoints=`, `resume(run_id)`.

        A run that fails raises a `DecomposeError` whose `result` holds what it did before (calls, usage, events,
        the plan so far)."""
        question = check_question(question)
        run = self._new_run(on_event, run_id, history=history, call_slots=call_slots, limits=limits)
        run.answer_stream = AnswerStream(on_answer) if on_answer is not None else None
        if run.checkpoint is not None:
            run.checkpoint.begin(question, run.history, given_plan=False)
        return await run.traced(question, self._answer(question, run))

    async def _answer(
        self,
        question: str,
        run: _Run,
        *,
        plan: Plan | None = None,
        settled: dict[int, Solved | BaseException] | None = None,
        missing: Sequence[str] = (),
        replans: int = 0,
    ) -> Result:
        """Plan (unless `plan` is given: a resumed run's), run and synthesize; `settled` are the steps a resumed
        run had ended, `missing` the identifiers its guard had refused, `replans` the replans it had made."""
        if self.tool_runner.guard and self.tools:
            run.grounding = Grounding(UserWords.of(question, run.history), missing=list(missing))
            if run.checkpoint is not None:
                run.checkpoint.grounding = run.grounding
        started, deadline = time.monotonic(), _deadline(run.limits)
        with _stopping(run):
            if plan is None:
                with _partial_result_on_failure(question, None, run, started):
                    try:
                        async with asyncio.timeout_at(deadline):  # the run's deadline covers planning too
                            if self.auto is not None:
                                with run.phase("route"):
                                    run.route = await self._route(self.auto, question, run)
                            if run.route and run.route.solved:
                                plan = _question_plan(question)
                            else:
                                with run.phase("decompose"):
                                    plan = await self._plan(question, run)
                    except (BudgetExceeded, TimeoutError) as exc:  # nothing planned in time or budget: still a Result
                        error = (
                            _timed_out(run.limits, "while planning")
                            if isinstance(exc, TimeoutError)
                            else str(run.caller.budget_exceeded())
                        )
                        result = Result(
                            question=question,
                            answer=None,
                            plan=None,
                            usage=run.caller.usage,
                            events=run.events,
                            elapsed=time.monotonic() - started,
                            error=error,
                            route=_route_dict(run),
                        )
                        return _finished(run, result)
            with _partial_result_on_failure(question, plan, run, started):
                # An accepted cheap route already answered the one step that asks the question.
                answered = settled or ({1: run.route.solved} if run.route and run.route.solved else None)
                result = await self._execute(plan, question, run, started, deadline, answered=answered, replans=replans)
                return _finished(run, result)

    async def aplan(self, question: str, *, history: Sequence[BaseMessage] = (), usage: Usage | None = None) -> Plan:
        """The plan alone, nothing run (to review it, then `aexecute` it). `history`: the conversation's earlier
        turns, as for `arun`. `usage`, when given, counts the planning's model calls and tokens (a server adds them
        to the run that executes the plan)."""
        run = self._new_run(None, history=history)
        if usage is not None:
            run.caller.usage = usage
        return await self._plan(check_question(question), run)

    async def aexecute(
        self,
        plan: Plan | str | dict,
        *,
        question: str | None = None,
        run_id: str | None = None,
        on_event: Callable[[Event], None] | None = None,
        limits: Limits | None = None,
        history: Sequence[BaseMessage] = (),
    ) -> Result:
        """Run exactly this plan (e.g. one a person reviewed or edited). Re-running with the same `run_id`
        never repeats a side-effecting tool call that already succeeded. `history`: the conversation's earlier
        turns, which the synthesis sees (as for `arun`)."""
        plan = _as_plan(plan, self.max_steps)
        self.decomposer.check_tools(plan)
        question = check_question(question or plan.question or _plan_as_question(plan))
        run = self._new_run(on_event, run_id, history=history, limits=limits)
        if run.checkpoint is not None:
            run.checkpoint.begin(question, run.history, given_plan=True)

        async def execute() -> Result:
            started = time.monotonic()
            with _stopping(run), _partial_result_on_failure(question, plan, run, started):
                return _finished(run, await self._execute(plan, question, run, started, _deadline(run.limits)))

        return await run.traced(question, execute())

    def resume(
        self,
        run_id: str,
        *,
        decisions: Mapping[int, Decision | dict[str, Any]] | None = None,
        on_event: Callable[[Event], None] | None = None,
        limits: Limits | None = None,
    ) -> Result:
        return run_sync(self.aresume(run_id, decisions=decisions, on_event=on_event, limits=limits))

    async def aresume(
        self,
        run_id: str,
        *,
        decisions: Mapping[int, Decision | dict[str, Any]] | None = None,
        on_event: Callable[[Event], None] | None = None,
        limits: Limits | None = None,
    ) -> Result:
        """Go on with a run of this Orchestrator's checkpoint store that stopped (its process died, it raised or
        was cancelled): the steps that ended keep their outcome (never asked again), a side-effecting call is
        never made twice, and a step that was running runs again only when that is safe (see `durable.py`).
        A run awaiting approval goes on with `decisions` (step id -> `Approve()`, `Edit(args)`, `Reject(reason)`,
        or their JSON forms), which are saved before anything runs. Resume with the same tools (agent) the run was
        started with. `InputError` for an unknown, finished or cancelled run, and for a bad decision."""
        from decompose.durable import Resumption

        store = self._store("resume")
        resumption = Resumption.load(store, run_id)
        saved = resumption.saved
        plan = resumption.plan(self.max_steps)
        if plan is not None:
            self.decomposer.check_tools(plan)  # resumed with other tools: say so before anything runs
        elif saved.given_plan:
            raise InputError(
                f"run {saved.id} stopped before its plan was saved; nothing of it ran",
                hint="execute the plan again",
            )
        self._decide(saved.id, saved.status, decisions or {})
        store.claim(saved)
        run = self._new_run(on_event, saved.id, history=resumption.history, limits=limits)
        run.decisions = {
            a.step_id: decision_from(a.decision)
            for a in store.approvals(saved.id, pending_only=False)
            if a.decision is not None
        }
        assert run.checkpoint is not None
        run.checkpoint.begin(saved.question, run.history, given_plan=saved.given_plan, resumed=saved)
        if not saved.given_plan:
            answering = self._answer(
                saved.question,
                run,
                plan=plan,
                settled=resumption.settled(),
                missing=saved.missing,
                replans=saved.replans,
            )
            return await run.traced(saved.question, answering)
        assert plan is not None

        async def execute() -> Result:
            started = time.monotonic()
            with _stopping(run), _partial_result_on_failure(saved.question, plan, run, started):
                result = await self._execute(
                    plan, saved.question, run, started, _deadline(run.limits), answered=resumption.settled()
                )
                return _finished(run, result)

        return await run.traced(saved.question, execute())

    def approvals(self, run_id: str | None = None) -> list[ApprovalRequest]:
        """The calls waiting for a person's decision: of one run, or of every run in the checkpoint store."""
        return self._store("list approvals").approvals(run_id)

    def cancel(self, run_id: str, reason: str = "cancelled by a person") -> None:
        """End a run that waits (for approval, or to be resumed) without an answer: it will not be resumed."""
        self._store("cancel a run").cancel(run_id, reason)

    def _store(self, doing: str) -> CheckpointStore:
        if self.checkpoints is None:
            raise ConfigError(
                f"to {doing}, the Orchestrator needs a checkpoint store",
                hint='Orchestrator(..., checkpoints="runs.sqlite3"), the one the run used',
            )
        return self.checkpoints

    def _decide(self, run_id: str, status: str, decisions: Mapping[int, Decision | dict[str, Any]]) -> None:
        """Check a resumed run's decisions against what waits, and save them (all or none) before it goes on."""
        from decompose.checkpoints import AWAITING

        store = self._store("decide")
        pending = {a.step_id: a for a in store.approvals(run_id)}
        if status != AWAITING:
            if decisions:
                raise InputError(f"run {run_id} is not waiting for approval ({status}); there is nothing to decide")
            return
        if not decisions:
            if not pending:  # every call was decided already (saved by a server before it resumed): go on
                return
            waiting = "; ".join(f"step {a.step_id}: {a.tool} {a.args} ({a.reason})" for a in pending.values())
            raise InputError(
                f"run {run_id} waits for approval of {waiting}",
                hint="resume it with a decision for each: decisions={step: Approve() | Edit(args) | Reject(reason)}"
                " (CLI: --approve STEP, --edit STEP=JSON, --reject STEP=REASON)",
            )
        chosen: dict[int, dict[str, Any]] = {}
        for step_id, given in decisions.items():
            request = pending.get(step_id) if isinstance(step_id, int) else None
            if request is None:
                waiting = ", ".join(map(str, pending)) or "none"
                raise InputError(
                    f"step {step_id!r} of run {run_id} has no pending approval (steps waiting: {waiting})",
                    hint="decide only the steps that wait; a decision is made once",
                )
            decision = decision_from(given)
            if isinstance(decision, Edit) and (problem := self.tool_runner.edit_problem(request, decision.args)):
                raise InputError(problem)
            chosen[step_id] = decision_dict(decision)
        store.decide(run_id, chosen)

    async def astream(self, question: str, *, limits: Limits | None = None) -> AsyncIterator[Event]:
        """Yield events as they happen; the last one is `Answered` (errors are raised after the events)."""
        queue: asyncio.Queue[Event] = asyncio.Queue()
        task = asyncio.create_task(self.arun(question, on_event=queue.put_nowait, limits=limits))
        try:
            while not (task.done() and queue.empty()):
                getter = asyncio.ensure_future(queue.get())
                await asyncio.wait({getter, task}, return_when=asyncio.FIRST_COMPLETED)
                if getter.done():
                    yield getter.result()
                else:
                    getter.cancel()
            task.result()
        finally:
            if not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

    async def abatch(
        self,
        questions: Iterable[str],
        *,
        max_concurrency: int | None = None,
        limits: Limits | None = None,
        executor: Executor | str = "local",
    ) -> list[Result]:
        """Answer many questions; one failure does not sink the others (its Result carries `.error`).

        `max_concurrency` (default: the Orchestrator's) bounds both the questions in progress and the model
        calls in flight across the whole batch, as a rate-limited API needs; tool calls are not counted.
        `executor` says where they are answered (`executors.py`): in this process (`"local"`), or e.g. on a Ray
        cluster (`"ray"`, `RayExecutor(...)`, a `RayPool`: `distributed.py`)."""
        return await as_executor(executor).answer_all(
            self, list(questions), max_concurrency=max_concurrency, limits=limits
        )

    # ----- internals --------------------------------------------------------------------------------------

    def _new_run(
        self,
        on_event: Callable[[Event], None] | None,
        run_id: str | None = None,
        history: Sequence[BaseMessage] = (),
        call_slots: asyncio.Semaphore | None = None,
        limits: Limits | None = None,
    ) -> _Run:
        limits = self.limits if limits is None else checked(limits, Limits, "limits")
        events: list[Event] = []
        run_id = run_id or uuid.uuid4().hex
        trace = None if self.tracing is None else self.tracing.run(run_id)

        def tell(event: Event) -> None:
            events.append(event)
            if trace is not None:
                trace.on_event(event)
            if on_event is not None:
                on_event(event)

        checkpoint = None
        if self.checkpoints is not None:
            from decompose.durable import RunCheckpoint

            checkpoint = RunCheckpoint(self.checkpoints, run_id, tell)

        def keep(event: Event) -> None:
            if checkpoint is None:
                tell(event)
            else:  # written before anyone is told
                checkpoint(event)
                checkpoint.tell_when_written(event)

        record = RunRecord(keep)
        caller = ModelCaller(
            self.models,
            policy=self.retry,
            usage=Usage(),
            emit=record,
            limits=limits,
            slots=call_slots,
            trace=trace,
            cache=self.cache,
            prices=self.prices,
        )
        return _Run(
            caller=caller,
            events=events,
            record=record,
            run_id=run_id,
            limits=limits,
            history=list(history),
            trace=trace,
            checkpoint=checkpoint,
        )

    async def _route(self, auto: AutoStrategy, question: str, run: _Run) -> Route:
        route = await auto.choose(
            question,
            caller=run.caller,
            prompts=self.prompts,
            retriever=self.retriever,
            program=self.program_solver,
            tools=self.tools,
            history=bool(run.history),
        )
        run.emit(RouteChosen(**route.to_dict()))
        return route

    async def _plan(self, question: str, run: _Run) -> Plan:
        try:
            grounding = run.grounding  # what the plan leaves out of the user's words is asked again, once
            critique = None if grounding is None else partial(grounding.misses, tools=self.tools, writes=self._writes)
            return await self.decomposer.aplan(question, run.caller, run.emit, run.history, critique=critique)
        except PlanError as exc:
            if self.decomposer.on_failure != "direct":
                raise
            run.emit(PlanFallback(kind="direct", reason=str(exc)))
            return _question_plan(question)

    async def _execute(
        self,
        plan: Plan,
        question: str,
        run: _Run,
        started: float,
        deadline: float | None,
        answered: Mapping[int, Solved | BaseException] | None = None,
        replans: int = 0,
    ) -> Result:
        run.record.start(plan)
        error: str | None = None
        answer: str | None = None
        try:
            async with asyncio.timeout_at(deadline):
                hooks = state_hooks(run.record, run.caller.step_usage)
                with run.phase("solve"):
                    await self._run_steps(plan, question, run, depth=0, hooks=hooks, answered=answered)
                max_replans = self.decomposer.max_replans
                for replan in range(replans + 1, max_replans + 2):
                    if run.pending:  # no answer until a person decides: the run stops here, to be resumed
                        break
                    with run.phase("synthesize"):
                        answer, missing = await self._synthesize(plan, question, run, may_replan=replan <= max_replans)
                    if missing is None or not await self._replan(plan, question, missing, run, replan):
                        break
                if answer is None and not run.pending:  # the last replan brought nothing new: answer from what there is
                    with run.phase("synthesize"):
                        answer, _ = await self._synthesize(plan, question, run)
        except TimeoutError:
            finished = sum(step.status == "done" for step in plan.steps)
            error = _timed_out(run.limits, f"{finished} of {len(plan.steps)} steps done, no answer yet")
            close_unfinished(run.record, error)
        except (ModelAccessError, CheckpointError):  # a bad key or model name, a store that cannot be written
            raise
        except DecomposeError as exc:  # budget exceeded, failed synthesis, ...
            error = str(run.caller.budget_exceeded() if isinstance(exc, BudgetExceeded) else exc)
            close_unfinished(run.record, error)
        if answer is not None and run.grounding is not None:
            answer = run.grounding.follow_ups(answer, plan)  # the offers made instead of writes, the ids to ask for
        if answer is not None and run.rejected:  # what a person refused is said, whatever the synthesis wrote
            answer = " ".join(
                [answer.rstrip(), *(f"{why[0].upper()}{why[1:]}." for why in run.rejected if why not in answer)]
            )
        if answer is not None:
            if run.answer_stream is not None:
                run.answer_stream.offer(answer)  # the rest: a follow-up, a last word, an answer never streamed
            run.emit(Answered(answer=answer))
        return Result(
            question=question,
            answer=answer,
            plan=plan,
            usage=run.caller.usage,
            events=run.events,
            elapsed=time.monotonic() - started,
            error=error,
            answer_sources=run.answer_sources,
            route=_route_dict(run),
            approvals=list(run.pending),
        )

    async def _run_steps(
        self,
        plan: Plan,
        question: str,
        run: _Run,
        *,
        depth: int,
        hooks: Hooks,
        known: dict[str, Any] | None = None,
        answered: Mapping[int, Solved | BaseException] | None = None,
    ) -> None:
        """Run the plan's steps; a model step whose question is in `known` (by question_key: answered by an
        earlier plan of this run) takes that answer without a call, a step in `answered` (by id) what is given
        there (a resumed run's ended steps: an answer, or the error it failed with). Each step returns `Solved`;
        the hooks (step_state.py) make it the step's events, which change the run state."""
        steps = plan.by_id
        known, answered = known or {}, answered or {}

        async def run_step(step_id: int, solved: Mapping[int, Solved]) -> Solved:
            step = steps[step_id]
            if run.checkpoint is not None:  # the records of the steps it may use are committed first
                await run.checkpoint.caught_up()
            if step_id in answered:
                outcome = answered[step_id]
                if isinstance(outcome, BaseException):
                    raise outcome
                if step.tool and run.grounding is not None:  # a later step may use an id this tool found
                    run.grounding.results.append(outcome.answer)
                return outcome
            answers = {i: s.answer for i, s in solved.items()}
            if step.tool:
                try:
                    return await self.tool_runner.run(
                        step,
                        resolve_args(step.args, answers),
                        run_id=run.run_id,
                        caller=run.caller,
                        emit=run.emit,
                        grounding=run.grounding,
                        trace=run.trace,
                        ledger=run.checkpoint,
                        decisions=run.decisions,
                    )
                except ApprovalNeeded as exc:
                    run.pending.append(exc.request)
                    raise
                except ApprovalRejected as exc:
                    run.rejected.append(exc.told)
                    raise
            resolved = resolve_text(step.question, answers)
            key = question_key(resolved)
            if key in known:  # a replan asked again what an earlier step answered
                return Solved(known[key])
            facts = [
                (resolve_text(steps[d].question, answers), resolve_text(f"{{{d}}}", answers)) for d in step.depends_on
            ]
            passages = await search(self.retriever, resolved, f"step {step.id}")
            context = StepContext(
                step=step,
                question=resolved,
                facts=facts,
                passages=passages,
                caller=run.caller,
                prompts=self.prompts,
                depth=depth,
                recurse=lambda q, d: self._recurse(q, d, run),
            )
            solver = self.program_solver if step.kind == "program" else self.solver
            outcome = await solver.solve(context)
            if not isinstance(outcome, Solved):  # a custom solver may return the bare answer
                outcome = Solved(outcome)
            if self.retriever is not None:
                outcome = replace(outcome, sources=sources_of(passages))
            return outcome

        withheld = {} if run.grounding is None else run.grounding.withhold(plan.steps, self._writes)
        await run_dag(
            {s.id: s.depends_on for s in plan.steps},
            run_step,
            max_concurrency=self.max_concurrency,
            node_timeout=run.limits.step_timeout,
            hooks=hooks,
            fatal=(BudgetExceeded, ModelAccessError, CheckpointError),
            skipped=withheld,
        )
        if run.checkpoint is not None:  # every step's record committed before an answer is made of them
            await run.checkpoint.caught_up()

    async def _recurse(self, question: str, depth: int, run: _Run) -> str:
        """Answer a sub-question with its own plan, one level deeper; its step events stay out of the
        parent's stream (their ids would clash), retries and usage still count."""
        plan = await self._plan(question, run)
        nested = RunRecord(drop)
        nested.start(plan)
        await self._run_steps(plan, question, run, depth=depth, hooks=state_hooks(nested, {}))
        answer, _ = await self._synthesize(plan, question, run, nested=True)
        assert answer is not None  # without may_replan the synthesizer always answers
        return answer

    async def _synthesize(
        self, plan: Plan, question: str, run: _Run, *, may_replan: bool = False, nested: bool = False
    ) -> tuple[str | None, str | None]:
        """(answer, None), or (None, what is missing) when `may_replan` and the synthesizer judged the
        sub-answers insufficient. A `nested` plan's answer (a recursive sub-question's) is not the run's."""
        if run.grounding is not None and run.grounding.asks_user() and not any(s.status == "done" for s in plan.steps):
            return "", None  # nothing found, but something to ask the user: the guard's questions are the answer
        synthesis = await self.synthesizer.combine(
            plan,
            question,
            run.caller,
            run.history,
            may_replan=may_replan,
            stream=None if nested else run.answer_stream,
        )
        run.answer_sources = synthesis.sources
        return synthesis.answer, synthesis.missing

    async def _replan(self, plan: Plan, question: str, missing: str, run: _Run, replan: int) -> bool:
        """Plan again with what was learned and run the new steps after the old ones (a question the first plan
        already answered is not asked again). False when the new plan brings nothing to run."""
        known = known_answers(plan)
        prompt = self.prompts.replan.format(question=question, findings=findings_text(plan), missing=missing)
        try:  # no direct-answer fallback here: the prompt is not a question to answer
            with run.phase("decompose"):
                extra = await self.decomposer.aplan(prompt, run.caller, run.emit, run.history)
        except PlanError:
            return False
        new_steps = append_steps(plan, extra)
        if not new_steps:
            return False
        run.record.start(plan, replan)
        with run.phase("solve"):
            await self._run_steps(
                Plan(steps=new_steps, question=question),
                question,
                run,
                depth=0,
                hooks=state_hooks(run.record, run.caller.step_usage),
                known=known,
            )
        return True


@contextlib.contextmanager
def _partial_result_on_failure(question: str, plan: Plan | None, run: _Run, started: float) -> Iterator[None]:
    """A run that raises (a refused key, a plan that cannot be made, Ctrl-C) still tells what happened: the
    exception carries a Result with the calls, usage and events so far (`DecomposeError.result`, `Result.partial`)."""
    try:
        yield
    except (DecomposeError, asyncio.CancelledError) as exc:
        Result.failed(
            question,
            exc,
            run_id=run.run_id,
            plan=plan,
            usage=run.caller.usage,
            events=run.events,
            elapsed=time.monotonic() - started,
            route=_route_dict(run),
        ).attach_to(exc)
        raise


@contextlib.contextmanager
def _stopping(run: _Run) -> Iterator[None]:
    """A run that raises or is cancelled is saved `stopped`, to be resumed (a store that cannot be written then
    leaves it `running`: resumable too)."""
    try:
        yield
    except BaseException as exc:
        if run.checkpoint is not None:
            with contextlib.suppress(DecomposeError):
                run.checkpoint.stopped(str(exc) or type(exc).__name__)
        raise


def _finished(run: _Run, result: Result) -> Result:
    """The run's Result with its id; its checkpoint saved `finished` (expiring after the store's ttl)."""
    result.run_id = run.run_id
    if result.approvals:
        if run.checkpoint is None:
            result.error = (
                f"{len(result.approvals)} call(s) wait for approval, but this run cannot wait: it has no checkpoint "
                "store (Orchestrator(checkpoints=...)) to be resumed from"
            )
        else:  # a store that cannot be written raises: the decision would have nowhere to go
            result.approvals = run.checkpoint.awaiting(result.approvals)
        return result
    if run.checkpoint is not None:
        try:
            run.checkpoint.finished(result.answer, result.error)
        except CheckpointError as exc:  # the answer is the caller's all the same; the run reads as unfinished
            log.warning("run %s answered, but its checkpoint could not be marked finished: %s", run.run_id, exc)
    return result


def _open_checkpoints(checkpoints: Any) -> CheckpointStore | None:
    if checkpoints is None:
        return None
    from decompose.checkpoints import open_store  # SQLAlchemy is imported only by a run that checkpoints

    return open_store(checkpoints)


def _question_plan(question: str) -> Plan:
    """One step that asks the question itself (its answer is the answer, without a synthesis call)."""
    return Plan(steps=[Step(id=1, question=escape_references(question))], question=question)


def _route_dict(run: _Run) -> dict[str, Any] | None:
    return run.route.to_dict() if run.route is not None else None


# The constructor's keyword arguments, for the error that a misspelt one gets.
_KEYWORDS = [name for name in inspect.signature(Orchestrator.__init__).parameters if name not in ("self", "moved")]


def _deadline(limits: Limits) -> float | None:
    """When a run started now must end, on the event loop's clock (None: no run_timeout)."""
    return None if limits.run_timeout is None else asyncio.get_running_loop().time() + limits.run_timeout


def _timed_out(limits: Limits, where: str) -> str:
    return f"run timed out after {limits.run_timeout:g}s ({where})"


def check_question(question: Any) -> str:
    """The question stripped, or `InputError` naming why it cannot be asked (not a string, empty, too long)."""
    if not isinstance(question, str):
        raise InputError(f"a question must be a string, got {type(question).__name__}")
    if not question.strip():
        raise InputError("the question is empty", hint="ask a question in words")
    if len(question) > MAX_QUESTION_CHARS:
        raise InputError(
            f"the question is {len(question)} characters long, over {MAX_QUESTION_CHARS}",
            hint="shorten it or pass long material through a tool",
        )
    return question.strip()


def _as_plan(plan: Plan | str | dict, max_steps: int) -> Plan:
    if isinstance(plan, Plan):  # a copy: the caller's plan is never changed, and two runs never share steps
        return Plan.from_data(plan.spec(), max_steps=max_steps)
    if isinstance(plan, str):
        return Plan.from_json(plan, max_steps=max_steps)
    return Plan.from_data(plan, max_steps=max_steps)


def _plan_as_question(plan: Plan) -> str:
    return " / ".join(s.question for s in plan.final_steps())
