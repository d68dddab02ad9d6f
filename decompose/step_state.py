"""The engine's side of the run state: every event of a run passes through its `RunRecord`, which folds it into
the run state with `run_state.apply` (the only code that changes it) and copies each changed step onto the plan's
`Step`, the record a `Result` returns. The scheduler's hooks here turn its callbacks into those events, and a run
that stops early closes what is unfinished the same way."""

from __future__ import annotations

import time
from typing import Any

from decompose.approvals import ApprovalNeeded
from decompose.errors import ProgramError
from decompose.events import Emit, Event, PlanReady, StepFailed, StepFinished, StepSkipped, StepStarted, TokenCount
from decompose.plan import Plan, Step
from decompose.run_state import RunState, StepState, apply
from decompose.scheduler import Hooks


class RunRecord:
    """One run's state, changed only by `apply`. Call it with each event: it applies the event, copies the steps
    it changed onto the followed plan's `Step`s, then passes the event on to `forward`."""

    def __init__(self, forward: Emit):
        self.state = RunState()
        self.plan: Plan | None = None
        self.forward = forward

    def start(self, plan: Plan, replan: int = 0) -> None:
        """Follow `plan` (its `Step`s get the state) and announce it: its `PlanReady`."""
        self.plan = plan
        self(PlanReady(plan=plan.spec(), replan=replan))

    def __call__(self, event: Event) -> None:
        before, self.state = self.state, apply(self.state, event)
        if self.plan is not None and self.state.steps is not before.steps:
            steps = self.plan.by_id
            for step_id, step in self.state.steps.items():
                if before.steps.get(step_id) is not step and step_id in steps:
                    _copy(step, steps[step_id])
        self.forward(event)


def _copy(state: StepState, step: Step) -> None:
    """The step's run fields from its state (the plan fields are the plan's own)."""
    step.status, step.answer, step.error, step.attempts = state.status, state.answer, state.error, state.attempts
    step.elapsed, step.model, step.vote, step.sources = state.elapsed, state.model, state.vote, state.sources
    step.args, step.program, step.program_output = dict(state.args), state.program, state.program_output


def state_hooks(record: RunRecord, step_usage: dict[int, TokenCount]) -> Hooks:
    """The scheduler's callbacks as events through `record`. A step's work returns a `Solved` (its answer and how
    it was reached: model, vote, sources, corrected arguments, a program and its output); its `StepFinished`
    carries it."""

    def since_start(step_id: int) -> float | None:
        started = record.state.steps[step_id].started
        return None if started is None else time.monotonic() - started

    def start(step_id: int) -> None:
        step = record.state.steps[step_id]
        record(StepStarted(step_id=step_id, question=step.question, tool=step.tool))

    def done(step_id: int, solved: Any) -> None:
        usage = step_usage.get(step_id)
        record(
            StepFinished(
                step_id=step_id,
                answer=solved.answer,
                elapsed=since_start(step_id) or 0.0,
                model=solved.model,
                usage=usage.to_dict() if usage else None,
                sources=solved.sources,
                program=solved.program,
                program_output=solved.program_output,
                vote=solved.vote,
                args=solved.args,
            )
        )

    def fail(step_id: int, error: BaseException) -> None:
        if isinstance(error, ApprovalNeeded):  # not a failure: its ApprovalRequested made it `awaiting`
            return
        program = error if isinstance(error, ProgramError) else None  # the program that failed, beside its error
        record(
            StepFailed(
                step_id=step_id,
                error=str(error),
                elapsed=since_start(step_id),
                program=program.program if program else None,
                program_output=program.output if program else None,
            )
        )

    def skip(step_id: int, reason: str) -> None:
        record(StepSkipped(step_id=step_id, reason=reason))

    return Hooks(on_start=start, on_done=done, on_fail=fail, on_skip=skip)


def drop(event: Event) -> None:
    """Emit target for nested plans, whose step ids would clash with the parent's."""


def close_unfinished(record: RunRecord, reason: str) -> None:
    """A run that stops early (timeout, budget): running steps fail and waiting ones are skipped, with why."""
    for step in list(record.state.steps.values()):
        if step.status == "running":
            elapsed = None if step.started is None else time.monotonic() - step.started
            record(StepFailed(step_id=step.id, error=reason, elapsed=elapsed))
        elif step.status == "pending":
            record(StepSkipped(step_id=step.id, reason=reason))
