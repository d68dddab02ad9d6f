"""A run's side of its checkpoint: `RunCheckpoint` writes the run as it goes (it sees every event of the run, and
is the run's side-effect ledger), and `Resumption` reads a stopped run back into what `Orchestrator.aresume` needs
to go on: the question, the plan, and each ended step's outcome, which the run takes instead of running the step
again. The store itself is `decompose/checkpoints.py`.

A step that was running when the process died has no record: a model step or a read-only tool simply runs again; a
side-effecting tool is settled by its ledger entry (`tools/runner.py`): done (its result is taken), started (run
again only with an idempotency key, else `UnknownOutcome`), or none (it was never called).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from langchain_core.messages import BaseMessage, messages_from_dict, messages_to_dict

from decompose.approvals import ApprovalRequest
from decompose.checkpoints import CANCELLED, EXPIRED, FINISHED, STOPPED, CheckpointStore, SavedRun
from decompose.errors import DecomposeError, InputError
from decompose.events import Event, PlanReady, StepFailed, StepFinished
from decompose.plan import Plan, Solved
from decompose.tools.runner import LedgerEntry

if TYPE_CHECKING:
    from decompose.tools.guards import Grounding


class RestoredFailure(DecomposeError):
    """A step that failed before the run stopped, failing again with the same message on resume (not re-run)."""


class RunCheckpoint:
    """One run's writer. Called with each of the run's events (after `begin`): a `PlanReady` saves the plan, a
    step's `StepFinished` / `StepFailed` its record; then `tell_when_written` passes the event on to `tell` (the
    run's listeners). It is also the run's ledger of side-effecting calls.

    Group commit: a step's record is queued, and the records of the steps that end in the same turn of the event
    loop are written in one transaction just after it; the step's event (and every event after it) is told only
    once its record is committed, and `caught_up` (awaited before a step starts and before the synthesis) waits
    for that commit: a step never runs on an answer whose record a killed process could lose."""

    def __init__(self, store: CheckpointStore, run_id: str, tell: Callable[[Event], None] = lambda _event: None):
        self.store, self.run_id, self.tell = store, run_id, tell
        self.grounding: Grounding | None = None  # whose refused identifiers are saved when they change
        self._begun = False
        self._recorded: set[int] = set()  # steps whose record is written (a resumed run's ended steps)
        self._missing: list[str] = []
        self._queued: list[tuple[int, dict[str, Any], list[str] | None]] = []  # step records for the next commit
        self._untold: list[Event] = []  # events held until the queued records are committed, in order
        self._commit: asyncio.Future[None] | None = None  # the next commit, when one is due
        self._failure: Exception | None = None  # why a commit failed: the run stops with it

    def begin(
        self, question: str, history: Sequence[BaseMessage], *, given_plan: bool, resumed: SavedRun | None = None
    ) -> None:
        """Write the new run; or, `resumed`, go on with that saved run (its ended steps are recorded already)."""
        if resumed is None:
            self.store.begin(self.run_id, question, history=messages_to_dict(list(history)), given_plan=given_plan)
        else:
            self._recorded, self._missing = set(resumed.records), list(resumed.missing)
        self._begun = True

    def __call__(self, event: Event) -> None:
        if not self._begun:
            return
        match event:
            case PlanReady(plan=plan, replan=replan):
                self.store.save_plan(self.run_id, plan, replan)
            case StepFinished() | StepFailed() if event.step_id not in self._recorded:
                self._recorded.add(event.step_id)
                missing = list(self.grounding.missing) if self.grounding is not None else []
                changed = missing != self._missing
                self._missing = missing
                self._save_step((event.step_id, event.to_dict(), missing if changed else None))

    def tell_when_written(self, event: Event) -> None:
        """Pass `event` on to `tell` now, or, while step records are queued, once they are committed (in order)."""
        if self._commit is not None:
            self._untold.append(event)
        else:
            self.tell(event)

    def _save_step(self, row: tuple[int, dict[str, Any], list[str] | None]) -> None:
        """Queued for the commit just after this turn of the event loop; written at once without a loop."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.store.save_steps(self.run_id, [row])
            return
        self._queued.append(row)
        if self._commit is None:
            self._commit = loop.create_future()
            loop.call_soon(self._write_queued)  # after the steps ending in this turn of the loop

    def _write_queued(self) -> None:
        """The queued records in one transaction, then the events held for them told."""
        if self._commit is None:  # written already (`_drain`)
            return
        commit, rows, self._queued = self._commit, self._queued, []
        try:
            self.store.save_steps(self.run_id, rows)
            self._commit, untold, self._untold = None, self._untold, []
            for event in untold:
                self.tell(event)
        except Exception as exc:  # the run stops with it at its next `caught_up` (events after it stay untold)
            self._failure = exc
        commit.set_result(None)

    async def caught_up(self) -> None:
        """Wait until every step record queued so far is committed and told; raises why it could not be."""
        if self._commit is not None and not self._commit.done():
            await asyncio.shield(self._commit)
        if self._failure is not None:
            raise self._failure

    def _drain(self) -> None:
        """`caught_up` now: the run is ending (a commit queued and not yet made is made here)."""
        if self._commit is not None and not self._commit.done():
            self._write_queued()
        if self._failure is not None:
            raise self._failure

    def finished(self, answer: str | None, error: str | None) -> None:
        self._drain()
        self.store.end(self.run_id, FINISHED, answer=answer, error=error)

    def stopped(self, error: str) -> None:
        with contextlib.suppress(Exception):  # a record that could not be written: the run stays resumable
            self._drain()
        self.store.end(self.run_id, STOPPED, error=error)

    def awaiting(self, requests: list[ApprovalRequest]) -> list[ApprovalRequest]:
        """The run stops until a person decides these calls: the requests as saved (with their expiry)."""
        return self.store.await_approval(self.run_id, requests)

    # ----- the ledger (tools/runner.py's Ledger) ------------------------------------------------------------

    def get(self, run_id: str, step_id: int) -> LedgerEntry | None:
        entry = self.store.ledger_entry(run_id, step_id)
        if entry is None:
            return None
        result = entry["result"]
        solved = None if result is None else Solved(result["answer"], args=result["args"])
        return LedgerEntry(entry["status"], solved)

    def start(self, run_id: str, step_id: int, tool: str, args: dict[str, Any]) -> None:
        self.store.ledger_start(run_id, step_id, tool, args)

    def done(self, run_id: str, step_id: int, solved: Solved) -> None:
        self.store.ledger_done(run_id, step_id, {"answer": solved.answer, "args": solved.args})

    def forget(self, run_id: str, step_id: int) -> None:
        self.store.ledger_forget(run_id, step_id)


@dataclass(frozen=True)
class Resumption:
    """A stopped run read back: what to ask, what was planned, how each ended step ended."""

    saved: SavedRun

    @classmethod
    def load(cls, store: CheckpointStore, run_id: str) -> Resumption:
        """The run to resume, or `InputError` naming why it cannot be: unknown (or expired), finished."""
        if not isinstance(run_id, str) or not run_id.strip():
            raise InputError("a run id is needed to resume", hint=f"list the runs with `decompose runs {store.flag}`")
        saved = store.load(run_id.strip())
        if saved is None:
            raise InputError(
                f"there is no run {run_id!r} in the checkpoint store {store.where}",
                hint=f"list the runs with `decompose runs {store.flag}`; a finished run is deleted after "
                f"{store.ttl:g}s, and a run is found only in the store it was started with",
            )
        if saved.status == FINISHED:
            said = f"answer: {saved.answer!r}" if saved.answer is not None else f"error: {saved.error}"
            raise InputError(
                f"run {run_id} already finished ({said}); nothing to resume",
                hint="ask the question again for a new run",
            )
        if saved.status in (CANCELLED, EXPIRED):
            raise InputError(f"run {run_id} was {saved.status} ({saved.error}); nothing to resume")
        return cls(saved)

    @property
    def question(self) -> str:
        return self.saved.question

    @property
    def history(self) -> list[BaseMessage]:
        return messages_from_dict(self.saved.history)

    def plan(self, max_steps: int) -> Plan | None:
        """The plan as last saved (every step of every replan), or None when the run stopped while planning."""
        if self.saved.plan is None:
            return None
        return Plan.from_data(self.saved.plan, max_steps=max(max_steps, len(self.saved.plan.get("steps", []))))

    def settled(self) -> dict[int, Solved | BaseException]:
        """Each ended step's outcome, by id: its answer (and how it was reached), or the error it failed with."""
        outcomes: dict[int, Solved | BaseException] = {}
        for step_id, record in self.saved.records.items():
            event = Event.from_dict(record)
            if isinstance(event, StepFinished):
                outcomes[step_id] = Solved(
                    event.answer,
                    model=event.model,
                    vote=event.vote,
                    sources=event.sources,
                    args=event.args,
                    program=event.program,
                    program_output=event.program_output,
                )
            elif isinstance(event, StepFailed):
                outcomes[step_id] = RestoredFailure(event.error)
        return outcomes
