"""The one place a step's state is written during a run: the scheduler's hooks set it and announce each change
as an event, and a run that stops early closes what is unfinished."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from decompose.errors import ProgramError
from decompose.events import Event, StepFailed, StepFinished, StepSkipped, StepStarted, TokenCount
from decompose.plan import Plan
from decompose.scheduler import Hooks


def state_hooks(plan: Plan, emit: Callable[[Event], None], step_usage: dict[int, TokenCount]) -> Hooks:
    """Keep each step's state in step with the scheduler, and announce every change. A step's work returns a
    `Solved` (its answer and how it was reached: model, vote, sources, a program and its output); this records it."""
    steps = plan.by_id
    started: dict[int, float] = {}

    def start(step_id: int) -> None:
        step = steps[step_id]
        step.status = "running"
        step.attempts += 1
        started[step_id] = time.monotonic()
        emit(StepStarted(step_id=step_id, question=step.question, tool=step.tool))

    def done(step_id: int, solved: Any) -> None:
        step = steps[step_id]
        step.status, step.answer, step.elapsed = "done", solved.answer, time.monotonic() - started[step_id]
        step.model, step.vote = solved.model, solved.vote
        if solved.sources is not None:
            step.sources = solved.sources
        if solved.args is not None:  # the arguments the tool was called with, after the model corrected them
            step.args = solved.args
        if solved.program is not None:
            step.program, step.program_output = solved.program, solved.program_output
        usage = step_usage.get(step_id)
        emit(StepFinished(step_id=step_id, answer=step.answer, elapsed=step.elapsed, model=step.model,
                          usage=usage.to_dict() if usage else None, sources=step.sources, program=step.program,
                          program_output=step.program_output))

    def fail(step_id: int, error: BaseException) -> None:
        step = steps[step_id]
        step.status, step.error, step.elapsed = "failed", str(error), time.monotonic() - started[step_id]
        if isinstance(error, ProgramError):  # the program that failed, to read beside its error
            step.program, step.program_output = error.program, error.output
        emit(StepFailed(step_id=step_id, error=str(error), program=step.program, program_output=step.program_output))

    def skip(step_id: int, reason: str) -> None:
        step = steps[step_id]
        step.status, step.error = "skipped", reason
        emit(StepSkipped(step_id=step_id, reason=reason))

    return Hooks(on_start=start, on_done=done, on_fail=fail, on_skip=skip)


def drop(event: Event) -> None:
    """Emit target for nested plans, whose step ids would clash with the parent's."""


def close_unfinished(plan: Plan, reason: str, emit: Callable[[Event], None]) -> None:
    """A run that stops early (timeout, budget): running steps fail and waiting ones are skipped, with why."""
    for step in plan.steps:
        if step.status == "running":
            step.status, step.error = "failed", reason
            emit(StepFailed(step_id=step.id, error=reason))
        elif step.status == "pending":
            step.status, step.error = "skipped", reason
            emit(StepSkipped(step_id=step.id, reason=reason))
