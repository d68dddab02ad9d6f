"""A run's state, and `apply`, the one function that changes it: `apply(state, event) -> state`, pure.

The plan says what to do; the run state says what happened to each step (status, answer, error, attempts,
elapsed time, model, vote, sources, the arguments a tool was called with, a program and its output). Whoever
follows a run folds its events through `apply`: the engine (`step_state.RunRecord`, which copies the state onto
the plan's `Step`s for the `Result`), the command's live tree (`cli/plan_view.py`), and the server's event stream
(`serve/sse.py`), which sends the state with each event so the web page draws it as it is rather than working it
out again. A step moves only forward:

    pending ──StepStarted──► running ──StepFinished──► done
       │                        ├──────StepFailed────► failed
       │                        └──ApprovalRequested─► awaiting (a person decides; the run is resumed)
       └──────StepSkipped────► skipped

Any other move is a `TransitionError`. A `Retried` for a running step counts one more attempt; the other events
(`PlanReady` aside, which sets the steps) leave the steps as they are.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from decompose.events import (
    Answered,
    ApprovalRequested,
    Event,
    PlanReady,
    Retried,
    StepFailed,
    StepFinished,
    StepSkipped,
    StepStarted,
)
from decompose.plan import Plan, StepKind, StepStatus, resolve_text

# The one legal move of each step event: (from, to).
MOVES: dict[type[Event], tuple[StepStatus, StepStatus]] = {
    StepStarted: ("pending", "running"),
    StepFinished: ("running", "done"),
    StepFailed: ("running", "failed"),
    StepSkipped: ("pending", "skipped"),
    ApprovalRequested: ("running", "awaiting"),
}


class TransitionError(RuntimeError):
    """An event that cannot happen to the step it names: events applied out of order, twice, or from another
    run. Not a user's mistake in a run (the engine emits events in order), so not a `DecomposeError`."""


@dataclass(frozen=True)
class StepState:
    """One step as it stands: its plan fields and what has happened to it."""

    id: int
    question: str  # as the plan writes it, `{n}` references and all (`RunState.shown_question` resolves them)
    depends_on: tuple[int, ...] = ()
    tool: str | None = None
    args: Mapping[str, Any] = field(default_factory=dict)  # the plan's, or those the tool was called with
    kind: StepKind = "model"
    replan: int = 0  # which replan added it (0: the first plan)
    status: StepStatus = "pending"
    answer: Any = None
    error: str | None = None  # why it failed or was skipped
    attempts: int = 0  # tries of its model or tool calls: 1 when it starts, one more per retry announced for it
    started: float | None = None  # its StepStarted's time (monotonic clock)
    elapsed: float | None = None
    model: str | None = None
    vote: dict[str, float] | None = None
    sources: list[dict[str, Any]] | None = None
    usage: dict[str, int] | None = None  # its model calls' tokens: {"input", "output", "calls"}
    program: str | None = None
    program_output: str | None = None

    @property
    def retries(self) -> int:
        return max(self.attempts - 1, 0)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["depends_on"], data["args"] = list(self.depends_on), dict(self.args)
        return data


@dataclass(frozen=True)
class RunState:
    """Every step's state, in plan order, and what the run as a whole has told: retries of its plan, its answer.
    Never changed in place: `apply` returns a new one (a reader on another thread sees one or the other)."""

    steps: Mapping[int, StepState] = field(default_factory=dict)
    plan_retries: int = 0
    answer: str | None = None

    @classmethod
    def of_plan(cls, plan: Plan) -> RunState:
        """The state a plan's `Step`s record (a finished run's, or a plan not run yet)."""
        return cls(
            steps={
                s.id: StepState(
                    id=s.id,
                    question=s.question,
                    depends_on=tuple(s.depends_on),
                    tool=s.tool,
                    args=s.args,
                    kind=s.kind,
                    status=s.status,
                    answer=s.answer,
                    error=s.error,
                    attempts=s.attempts,
                    elapsed=s.elapsed,
                    model=s.model,
                    vote=s.vote,
                    sources=s.sources,
                    program=s.program,
                    program_output=s.program_output,
                )
                for s in plan.steps
            }
        )

    def answers(self) -> dict[int, Any]:
        return {i: s.answer for i, s in self.steps.items() if s.status == "done"}

    def shown_question(self, step_id: int) -> str:
        """The step's question with the references to answered steps resolved: "When was {1} born?" reads "When
        was James Cameron born?" once step 1 is done."""
        return resolve_text(self.steps[step_id].question, self.answers(), known_only=True)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form the server streams: each step's state with its `shown_question`."""
        answers = self.answers()
        return {
            "steps": [
                {**s.to_dict(), "shown_question": resolve_text(s.question, answers, known_only=True)}
                for s in self.steps.values()
            ],
            "plan_retries": self.plan_retries,
            "answer": self.answer,
        }


def apply(state: RunState, event: Event) -> RunState:
    """The state after `event`. Pure: `state` is not changed. A step event that is not its step's one legal move
    (see the module's diagram) raises `TransitionError`."""
    match event:
        case PlanReady():
            return replace(state, steps=_planned(state, event))
        case StepStarted() | StepFinished() | StepFailed() | StepSkipped() | ApprovalRequested():
            step = _moving(state, event)
            return _with(state, _moved(step, event))
        case Retried(step_id=step_id) if step_id is not None and _is_running(state, step_id):
            step = state.steps[step_id]
            return _with(state, replace(step, attempts=step.attempts + 1))
        case Retried(phase="decompose"):
            return replace(state, plan_retries=state.plan_retries + 1)
        case Answered(answer=answer):
            return replace(state, answer=answer)
    # Other events (a retry of a call outside the steps, a route, an intent) say nothing about the steps.
    return state


def _planned(state: RunState, event: PlanReady) -> dict[int, StepState]:
    """A first plan's steps, all pending; a replan keeps the steps it shares with the run so far as they are."""
    steps: dict[int, StepState] = {}
    for raw in event.plan.get("steps", []):
        if event.replan and raw["id"] in state.steps:
            steps[raw["id"]] = state.steps[raw["id"]]
        else:
            steps[raw["id"]] = StepState(
                id=raw["id"],
                question=raw["question"],
                depends_on=tuple(raw.get("depends_on") or ()),
                tool=raw.get("tool"),
                args=dict(raw.get("args") or {}),
                kind=raw.get("kind", "model"),
                replan=event.replan,
            )
    return steps


def _moving(
    state: RunState, event: StepStarted | StepFinished | StepFailed | StepSkipped | ApprovalRequested
) -> StepState:
    """The step the event moves, when it may; else a `TransitionError` naming the step, its status and why."""
    step = state.steps.get(event.step_id)
    if step is None:
        known = ", ".join(map(str, state.steps)) or "none: no PlanReady yet"
        raise TransitionError(
            f"{event.type} for step {event.step_id}, which the plan does not have (its steps: "
            f"{known}); apply a run's events in order, from its PlanReady"
        )
    before, after = MOVES[type(event)]
    if step.status != before:
        raise TransitionError(
            f"step {step.id} is {step.status}: {event.type} moves a {before} step to {after}; "
            f"apply each of a run's events once, in the order they were emitted"
        )
    return step


def _moved(
    step: StepState, event: StepStarted | StepFinished | StepFailed | StepSkipped | ApprovalRequested
) -> StepState:
    match event:
        case StepStarted():
            return replace(step, status="running", attempts=step.attempts + 1, started=event.t)
        case StepFinished():
            return replace(
                step,
                status="done",
                answer=event.answer,
                elapsed=event.elapsed,
                model=event.model,
                vote=event.vote,
                usage=event.usage,
                sources=step.sources if event.sources is None else event.sources,
                args=step.args if event.args is None else event.args,
                program=step.program if event.program is None else event.program,
                program_output=step.program_output if event.program is None else event.program_output,
            )
        case StepFailed():
            elapsed = event.elapsed if event.elapsed is not None or step.started is None else event.t - step.started
            return replace(
                step,
                status="failed",
                error=event.error,
                elapsed=elapsed,
                program=step.program if event.program is None else event.program,
                program_output=step.program_output if event.program is None else event.program_output,
            )
        case StepSkipped():
            return replace(step, status="skipped", error=event.reason)
        case ApprovalRequested():
            return replace(step, status="awaiting", args=event.args, error=f"waits for approval: {event.reason}")
    raise AssertionError(event)  # unreachable: MOVES has only these five


def _is_running(state: RunState, step_id: int) -> bool:
    step = state.steps.get(step_id)
    return step is not None and step.status == "running"


def _with(state: RunState, step: StepState) -> RunState:
    return replace(state, steps={**state.steps, step.id: step})
