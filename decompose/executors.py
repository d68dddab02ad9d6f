"""Where a batch's questions are answered: an `Executor` is what `Orchestrator.batch(executor=...)` takes.

    orch.batch(questions)                                    # InProcess(): this process's event loop
    orch.batch(questions, executor=RayExecutor(workers=8))   # decompose.distributed: a Ray cluster

An executor is anything with `async answer_all(orch, questions, *, max_concurrency, limits)` returning one
`Result` per question in input order, a failure in its `error`. The Orchestrator only calls it: it imports no
executor but the in-process one, so Ray stays optional and `distributed.py` depends on the Orchestrator, never
the other way round. The names `"local"` and `"ray"` stand for `InProcess()` and `RayExecutor()`; `"ray"` is
looked up by its module path when asked for (Ray and its module are loaded only then).
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from decompose.errors import ConfigError, DecomposeError
from decompose.events import Usage
from decompose.limits import Limits
from decompose.result import Result

if TYPE_CHECKING:
    from decompose.orchestrator import Orchestrator


@runtime_checkable
class Executor(Protocol):
    async def answer_all(
        self, orch: Orchestrator, questions: Sequence[str], *, max_concurrency: int | None, limits: Limits | None
    ) -> list[Result]:
        """One Result per question, in input order; one question's failure is its Result's `error`."""
        ...


class InProcess:
    """The questions as tasks on this process's event loop. `max_concurrency` (default: the Orchestrator's) bounds
    both the questions in progress and the model calls in flight across the whole batch."""

    async def answer_all(
        self, orch: Orchestrator, questions: Sequence[str], *, max_concurrency: int | None, limits: Limits | None
    ) -> list[Result]:
        limit = max_concurrency or orch.max_concurrency
        if limit < 1:
            raise ConfigError(f"max_concurrency must be at least 1, got {limit}")
        question_slots, call_slots = asyncio.Semaphore(limit), asyncio.Semaphore(limit)

        async def one(question: str) -> Result:
            async with question_slots:
                return await answer_settled(orch, question, limits=limits, call_slots=call_slots)

        return list(await asyncio.gather(*(one(q) for q in questions)))


async def answer_settled(
    orch: Orchestrator, question: str, *, limits: Limits | None = None, call_slots: asyncio.Semaphore | None = None
) -> Result:
    """`orch.arun(question)` as a batch needs it: a failure is the Result's `error` (with what the run did before
    it failed), never an exception. `call_slots`, shared by the batch, bounds its model calls in flight."""
    try:
        return await orch.arun(question, limits=limits, call_slots=call_slots)
    except DecomposeError as exc:  # what the run did before failing, or (a bad question) nothing
        return exc.result or Result(question=str(question), answer=None, plan=None, usage=Usage(), error=str(exc))


# The executors known by name; the module of one is imported only when it is asked for.
_NAMED = {"local": ("decompose.executors", "InProcess"), "ray": ("decompose.distributed", "RayExecutor")}


def as_executor(executor: Executor | str) -> Executor:
    if isinstance(executor, str) and executor in _NAMED:
        module, name = _NAMED[executor]
        return getattr(importlib.import_module(module), name)()
    if isinstance(executor, Executor):
        return executor
    raise ConfigError(
        f"unknown executor {executor!r}",
        hint="use 'local', 'ray', or an object with `async answer_all(...)` such as RayExecutor(...)",
    )
