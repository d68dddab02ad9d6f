"""Checkpoints: a run's question, plan, finished steps and side-effect ledger in a SQLAlchemy database (a SQLite
file by default), written as the run goes, so `Orchestrator.resume(run_id)` can finish a run whose process died.

What is written, and when (each write a committed transaction, so a `kill -9` loses at most what was in flight):
- `begin`: the run (`running`), its question and history, before anything is asked;
- each `PlanReady`: the plan as it stands (a replan's `PlanReady` holds every step);
- each `StepFinished` / `StepFailed`: the step's event, its record (the records of steps that end together in one
  transaction: `save_steps`);
- a side-effecting tool call: its ledger entry `started` BEFORE the call and `done` (with the result) after, so a
  crash between the two is seen on resume as an outcome nobody knows;
- the end: `finished` with the answer or error (or `stopped` when the run raised or was cancelled).

Finished runs, with their steps and ledger, are deleted `ttl` seconds after they finished, whenever the store is
opened or a run ends (the clock is injected, so tests need no sleeps). A run that never finished (`running`,
`stopped`) is kept until it is resumed or deleted: it may hold a side effect a person must settle.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import time
import uuid
import weakref
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from decompose.approvals import ApprovalRequest
from decompose.errors import CheckpointError, ConfigError, InputError
from decompose.events import Event
from decompose.paths import cache_dir
from decompose.retry import RetryState, retry_events, retrying_blocking, store_schema_race, store_write

try:
    from sqlalchemy import (
        Column,
        Float,
        Integer,
        MetaData,
        String,
        Table,
        Text,
        delete,
        func,
        insert,
        select,
        update,
    )
    from sqlalchemy.engine import Connection, Engine
    from sqlalchemy.exc import (
        DatabaseError,
        IntegrityError,
        OperationalError,
        ProgrammingError,
    )

    from decompose.sql_engine import open_engine
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ConfigError(f"checkpoints need SQLAlchemy ({exc})", hint='pip install "decompose-agents[durable]"') from None

log = logging.getLogger("decompose.checkpoints")

RUNNING, STOPPED, FINISHED = "running", "stopped", "finished"
AWAITING = "awaiting"  # a tool call waits for a person's decision (decompose/approvals.py)
CANCELLED, EXPIRED = "cancelled", "expired"  # ended without an answer: cancelled by a person, or never decided
STATUSES = (RUNNING, STOPPED, AWAITING, FINISHED, CANCELLED, EXPIRED)
ENDED = (FINISHED, CANCELLED, EXPIRED)  # kept `ttl` seconds after they ended, then deleted
DEFAULT_TTL = 7 * 24 * 3600.0  # a finished run's checkpoint is kept a week
DEFAULT_APPROVAL_TTL = 24 * 3600.0  # a pending approval waits a day, then its run expires

metadata = MetaData()
runs = Table(
    "decompose_runs",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("question", Text, nullable=False),
    Column("status", String(16), nullable=False),  # one of STATUSES
    Column("given_plan", Integer, nullable=False),  # 1: a plan given to execute (no planning, no tool guard)
    Column("history", Text),  # JSON: the conversation's earlier messages (LangChain's messages_to_dict)
    Column("plan", Text),  # JSON: the plan's spec, every step (replans included); None until planned
    Column("replans", Integer, nullable=False, default=0),
    Column("missing", Text),  # JSON: identifiers the tool guard refused and will ask the user for
    Column("answer", Text),
    Column("error", Text),
    Column("owner", String(300)),  # host:pid:uuid of the process running it
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("finished_at", Float),
)
steps = Table(
    "decompose_run_steps",
    metadata,
    Column("run_id", String(64), primary_key=True),
    Column("step_id", Integer, primary_key=True),
    Column("record", Text, nullable=False),  # JSON: the step's StepFinished or StepFailed event
)
ledger = Table(
    "decompose_ledger",
    metadata,
    Column("run_id", String(64), primary_key=True),
    Column("step_id", Integer, primary_key=True),
    Column("tool", String(200), nullable=False),
    Column("args", Text, nullable=False),
    Column("status", String(16), nullable=False),  # started (the call may have happened), done
    Column("result", Text),  # JSON: {"answer", "args"} once done
    Column("started_at", Float, nullable=False),
    Column("done_at", Float),
)
approvals = Table(
    "decompose_approvals",
    metadata,
    Column("run_id", String(64), primary_key=True),
    Column("step_id", Integer, primary_key=True),
    Column("tool", String(200), nullable=False),
    Column("args", Text, nullable=False),  # JSON: the arguments the call would be made with
    Column("reason", Text, nullable=False),  # why it needs approval
    Column("status", String(16), nullable=False),  # pending, decided, cancelled, expired
    Column("decision", Text),  # JSON: approvals.decision_dict's form, once decided
    Column("requested_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False),
    Column("decided_at", Float),
)


class CheckpointBusy(CheckpointError):
    """The store is locked by another process or unreachable for now: a write is tried again."""


def default_path() -> Path:
    """The checkpoint file `decompose run --checkpoints` (no value), `--resume` and `decompose runs` use."""
    return cache_dir() / "checkpoints.sqlite3"


def as_url(location: str | os.PathLike[str]) -> str:
    """A SQLAlchemy URL as given, or a file path as a SQLite URL."""
    text = os.fspath(location)
    return text if "://" in text else f"sqlite:///{Path(text).expanduser()}"


@dataclass(frozen=True)
class SavedRun:
    """What a checkpoint holds of one run: enough to go on from where it stopped."""

    id: str
    question: str
    status: str
    given_plan: bool
    history: list[dict[str, Any]]
    plan: dict[str, Any] | None
    replans: int
    missing: list[str]
    records: dict[int, dict[str, Any]]  # step id -> its StepFinished / StepFailed event (to_dict form)
    answer: str | None
    error: str | None
    owner: str | None
    created_at: float
    finished_at: float | None


def _loaded(value: str | None, empty: Any) -> Any:
    return empty if value is None else json.loads(value)


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


SCHEMA_RACE = store_schema_race(
    (OperationalError, ProgrammingError, IntegrityError),
    lambda exc: any(s in str(getattr(exc, "orig", exc)).lower() for s in ("already exists", "is locked")),
)


class CheckpointStore:
    """Runs' checkpoints in the database at `location` (a file path or any SQLAlchemy URL). `ttl`: seconds a
    finished (or cancelled, or expired) run is kept; `approval_ttl`: seconds a pending approval waits before its
    run expires; `busy_timeout`: seconds a SQLite writer waits for another's lock; `create=False` opens
    only a store that exists (reading runs, resuming)."""

    retry_wait = 0.1  # seconds before a failed write is tried again, doubling (three tries in all)
    purge_every = 60.0  # seconds between purges when runs end (a store is always purged when opened)

    def __init__(
        self,
        location: str | os.PathLike[str] | None = None,
        *,
        ttl: float = DEFAULT_TTL,
        approval_ttl: float = DEFAULT_APPROVAL_TTL,
        busy_timeout: float = 10.0,
        clock: Callable[[], float] = time.time,
        create: bool = True,
        on_event: Callable[[Event], None] | None = None,
    ):
        for name, value in (("ttl", ttl), ("approval_ttl", approval_ttl)):
            if value <= 0:
                raise ConfigError(f"checkpoint {name} must be a positive number of seconds, got {value!r}")
        self.url = as_url(location if location is not None else default_path())
        self.ttl, self.approval_ttl = ttl, approval_ttl
        self.clock = clock  # wall-clock seconds: a checkpoint outlives the process
        self.on_event = on_event or (lambda e: log.warning("%s", e.to_dict()))
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.engine, self.where = _engine(self.url, busy_timeout, create=create)
        # A store dropped without close() still closes its connections (a server's would otherwise be cut off).
        self._dispose = weakref.finalize(self, self.engine.dispose)
        self._purged_at = float("-inf")
        self._open()

    def __repr__(self) -> str:
        return f"CheckpointStore({self.where!r})"

    @property
    def flag(self) -> str:
        """The command-line option naming this store, for hints."""
        return f"--checkpoints {self.where}"

    # ----- opening ------------------------------------------------------------------------------------------

    def _open(self) -> None:
        def create(_state: RetryState) -> None:
            metadata.create_all(self.engine)

        def give_up(state: RetryState) -> None:
            raise self._failure(state.failures[-1]) from None

        retrying_blocking(SCHEMA_RACE, create, before_sleep=retry_events(self.on_event, None, "store"), give_up=give_up)
        self.purge()

    def _failure(self, exc: BaseException) -> BaseException:
        """The error a user sees: the store named, the cause, the fix."""
        if not isinstance(exc, DatabaseError):
            return exc
        cause = str(getattr(exc, "orig", exc))
        if "not a database" in cause or "malformed" in cause:
            return CheckpointError(
                f"checkpoint store {self.where} is not a usable database ({cause})",
                hint="move the file aside (it is left as it is) or give another --checkpoints path",
            )
        if "locked" in cause:
            return CheckpointBusy(
                f"checkpoint store {self.where} is locked by another process ({cause})",
                hint="try again when the other run is done, or give another --checkpoints path; nothing was lost",
            )
        return CheckpointError(
            f"checkpoint store {self.where} cannot be used ({cause})",
            hint="check the path or URL, that the database is up and the file writable; nothing was lost",
        )

    @contextlib.contextmanager
    def _reading(self) -> Iterator[Connection]:
        try:
            with self.engine.connect() as db:
                yield db
        except DatabaseError as exc:
            raise self._failure(exc) from None

    def _write(self, work: Callable[[Connection], Any]) -> Any:
        """One committed transaction, tried three times while the database is locked or unreachable."""

        def attempt(_state: RetryState) -> Any:
            try:
                with self.engine.begin() as db:
                    return work(db)
            except OperationalError as exc:
                raise self._failure(exc) from None

        def give_up(state: RetryState) -> Any:
            raise state.failures[-1]

        return retrying_blocking(
            store_write(CheckpointBusy, 3, self.retry_wait),
            attempt,
            before_sleep=retry_events(self.on_event, None, "store"),
            give_up=give_up,
        )

    # ----- runs ---------------------------------------------------------------------------------------------

    def begin(self, run_id: str, question: str, *, history: list[dict[str, Any]], given_plan: bool) -> None:
        """A new run, `running`. The same id run again (an `execute` with a run id already used) starts over,
        keeping its ledger: a side effect it made is not made again."""
        now = self.clock()
        row = {
            "question": question,
            "status": RUNNING,
            "given_plan": int(given_plan),
            "history": _dumps(history),
            "plan": None,
            "replans": 0,
            "missing": None,
            "answer": None,
            "error": None,
            "owner": self.owner,
            "updated_at": now,
            "finished_at": None,
        }

        def write_again(db: Connection) -> None:
            db.execute(delete(steps).where(steps.c.run_id == run_id))
            if db.execute(update(runs).where(runs.c.id == run_id).values(**row)).rowcount == 0:
                db.execute(insert(runs).values(id=run_id, created_at=now, **row))

        try:  # a new id (the common case) in one statement
            self._write(lambda db: db.execute(insert(runs).values(id=run_id, created_at=now, **row)))
        except IntegrityError:  # the id was run before: it starts over
            self._write(write_again)

    def claim(self, saved: SavedRun) -> None:
        """Take over a run to resume it; `InputError` when another process took it since it was read, or when
        the process that ran it is still alive on this machine."""
        if saved.status == RUNNING and _alive(saved.owner):
            raise InputError(
                f"run {saved.id} is still running (process {saved.owner})",
                hint="wait for it to finish or stop it; resume only a run whose process is gone",
            )

        def write(db: Connection) -> int:
            return db.execute(
                update(runs)
                .where(runs.c.id == saved.id, runs.c.owner == saved.owner, runs.c.status == saved.status)
                .values(status=RUNNING, owner=self.owner, updated_at=self.clock(), error=None)
            ).rowcount

        if self._write(write) != 1:
            raise InputError(
                f"run {saved.id} was taken over by another process while resuming",
                hint=f"list the runs with `decompose runs --checkpoints {self.where}`",
            )

    def save_plan(self, run_id: str, plan: dict[str, Any], replans: int) -> None:
        self._update(run_id, plan=_dumps(plan), replans=replans)

    def save_step(self, run_id: str, step_id: int, record: dict[str, Any], missing: list[str] | None) -> None:
        """A step's end (its StepFinished / StepFailed event; once per step and execution: one INSERT, the
        checkpoint's cost on the run's path), with the identifiers the guard will ask for when they changed."""

        def write(db: Connection) -> None:
            db.execute(insert(steps).values(run_id=run_id, step_id=step_id, record=_dumps(record)))
            if missing is not None:
                db.execute(update(runs).where(runs.c.id == run_id).values(missing=_dumps(missing)))

        self._write(write)

    def save_steps(self, run_id: str, ended: Sequence[tuple[int, dict[str, Any], list[str] | None]]) -> None:
        """`save_step` for several steps (step id, record, missing) in one transaction: the steps that ended
        together (group commit)."""

        def write(db: Connection) -> None:
            db.execute(insert(steps), [{"run_id": run_id, "step_id": i, "record": _dumps(r)} for i, r, _ in ended])
            missing = [m for _, _, m in ended if m is not None]
            if missing:
                db.execute(update(runs).where(runs.c.id == run_id).values(missing=_dumps(missing[-1])))

        self._write(write)

    def end(self, run_id: str, status: str, *, answer: str | None = None, error: str | None = None) -> None:
        """The run ended: `finished` (a Result was returned) or `stopped` (it raised or was cancelled). Expired
        runs are purged at the same time."""
        now = self.clock()
        self._update(
            run_id,
            status=status,
            answer=answer,
            error=error,
            finished_at=now if status == FINISHED else None,
        )
        if now - self._purged_at >= self.purge_every:
            self.purge()

    def _update(self, run_id: str, **values: Any) -> None:
        self._write(
            lambda db: db.execute(update(runs).where(runs.c.id == run_id).values(updated_at=self.clock(), **values))
        )

    def load(self, run_id: str) -> SavedRun | None:
        with self._reading() as db:
            row = db.execute(select(runs).where(runs.c.id == run_id)).mappings().first()
            if row is None:
                return None
            records = {
                r.step_id: json.loads(r.record) for r in db.execute(select(steps).where(steps.c.run_id == run_id))
            }
        return SavedRun(
            id=row["id"],
            question=row["question"],
            status=row["status"],
            given_plan=bool(row["given_plan"]),
            history=_loaded(row["history"], []),
            plan=_loaded(row["plan"], None),
            replans=row["replans"] or 0,
            missing=_loaded(row["missing"], []),
            records=records,
            answer=row["answer"],
            error=row["error"],
            owner=row["owner"],
            created_at=row["created_at"],
            finished_at=row["finished_at"],
        )

    def list_runs(self, status: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        """The newest runs first: id, status, question, steps done of planned, times, answer, error."""
        done = (
            select(steps.c.run_id, func.count().label("records")).group_by(steps.c.run_id).subquery("records_per_run")
        )
        query = (
            select(runs, done.c.records)
            .outerjoin(done, done.c.run_id == runs.c.id)
            .order_by(runs.c.created_at.desc())
            .limit(limit)
        )
        if status is not None:
            query = query.where(runs.c.status == status)
        with self._reading() as db:
            rows = list(db.execute(query).mappings())
        return [
            {
                "id": r["id"],
                "status": r["status"],
                "question": r["question"],
                "steps": len(_loaded(r["plan"], {}).get("steps", [])),
                "steps_ended": r["records"] or 0,
                "created_at": r["created_at"],
                "finished_at": r["finished_at"],
                "answer": r["answer"],
                "error": r["error"],
            }
            for r in rows
        ]

    def resumable(self, limit: int = 50) -> list[dict[str, Any]]:
        """The runs a process could go on with, newest first (`list_runs`' fields): those `stopped`, and those
        `running` in a process that is gone (see `can_resume`)."""
        with self._reading() as db:
            unfinished = select(runs.c.id, runs.c.owner).where(runs.c.status.in_((RUNNING, STOPPED)))
            owners = {row.id: row.owner for row in db.execute(unfinished)}
        found = [r for status in (STOPPED, RUNNING) for r in self.list_runs(status, limit)]
        found = [r for r in found if r["id"] in owners and self.can_resume(r["status"], owners[r["id"]])]
        return sorted(found, key=lambda r: r["created_at"], reverse=True)[:limit]

    def can_resume(self, status: str, owner: str | None) -> bool:
        """Whether a run in `status`, written by `owner`, may be resumed here: `stopped`, or `running` in a process
        that is gone (neither this store's own runs, which are in flight here, nor a live process's on this
        machine; a run of a live process on another machine looks gone: resume those only when it is)."""
        if status == STOPPED:
            return True
        return status == RUNNING and owner != self.owner and not _alive(owner)

    def purge(self) -> int:
        """Expire the runs whose approval waited past `approval_ttl`, and delete the runs that ended more than
        `ttl` seconds ago, with their steps, ledger and approvals: how many were deleted."""
        now = self._purged_at = self.clock()
        cutoff = now - self.ttl

        def write(db: Connection) -> int:
            overdue = select(approvals.c.run_id).where(approvals.c.status == "pending", approvals.c.expires_at < now)
            for run_id in set(db.execute(overdue).scalars()):
                waited = f"{self.approval_ttl:g}s" if self.approval_ttl % 3600 else f"{self.approval_ttl / 3600:g} h"
                _end_waiting(db, run_id, EXPIRED, f"expired: no decision on its approval within {waited}", now)
            ended = select(runs.c.id).where(runs.c.status.in_(ENDED), runs.c.finished_at < cutoff)
            ids = list(db.execute(ended).scalars())
            if ids:
                for table in (steps, ledger, approvals):
                    db.execute(delete(table).where(table.c.run_id.in_(ids)))
                db.execute(delete(runs).where(runs.c.id.in_(ids)))
            return len(ids)

        return int(self._write(write))

    # ----- approvals ----------------------------------------------------------------------------------------

    def await_approval(self, run_id: str, requests: list[ApprovalRequest]) -> list[ApprovalRequest]:
        """The run stops `awaiting` these calls' decisions (each expiring after `approval_ttl`): the requests
        as saved, with their times."""
        now = self.clock()
        saved = [replace(r, requested_at=now, expires_at=now + self.approval_ttl) for r in requests]

        def write(db: Connection) -> None:
            for r in saved:
                db.execute(delete(approvals).where(approvals.c.run_id == run_id, approvals.c.step_id == r.step_id))
                db.execute(
                    insert(approvals).values(
                        run_id=run_id,
                        step_id=r.step_id,
                        tool=r.tool,
                        args=_dumps(r.args),
                        reason=r.reason,
                        status="pending",
                        requested_at=now,
                        expires_at=now + self.approval_ttl,
                    )
                )
            db.execute(update(runs).where(runs.c.id == run_id).values(status=AWAITING, updated_at=now, error=None))

        self._write(write)
        return saved

    def approvals(self, run_id: str | None = None, *, pending_only: bool = True) -> list[ApprovalRequest]:
        """The calls waiting for a decision (of one run, or of every run, oldest first); with `pending_only=False`
        the decided ones too (their `decision` set)."""
        query = select(approvals).order_by(approvals.c.requested_at, approvals.c.step_id)
        if run_id is not None:
            query = query.where(approvals.c.run_id == run_id)
        query = query.where(approvals.c.status == "pending") if pending_only else query
        with self._reading() as db:
            rows = list(db.execute(query).mappings())
        return [
            ApprovalRequest(
                run_id=r["run_id"],
                step_id=r["step_id"],
                tool=r["tool"],
                args=json.loads(r["args"]),
                reason=r["reason"],
                requested_at=r["requested_at"],
                expires_at=r["expires_at"],
                decision=_loaded(r["decision"], None),
            )
            for r in rows
            if pending_only or r["status"] in ("pending", "decided")
        ]

    def decide(self, run_id: str, decisions: dict[int, dict[str, Any]]) -> None:
        """Record decisions (`approvals.decision_dict` forms) on pending calls of `run_id`, all or none:
        `InputError` when one is not pending (decided already, expired, cancelled, never asked)."""
        now = self.clock()

        def write(db: Connection) -> None:
            for step_id, decision in decisions.items():
                decided = db.execute(
                    update(approvals)
                    .where(
                        approvals.c.run_id == run_id,
                        approvals.c.step_id == step_id,
                        approvals.c.status == "pending",
                        approvals.c.expires_at >= now,
                    )
                    .values(status="decided", decision=_dumps(decision), decided_at=now)
                ).rowcount
                if decided != 1:
                    raise InputError(
                        f"step {step_id} of run {run_id} has no pending approval (decided already, expired or "
                        "never asked); no decision was recorded",
                        hint=f"list what waits with `decompose runs --status awaiting {self.flag}`",
                    )

        self._write(write)

    def cancel(self, run_id: str, reason: str = "cancelled by a person") -> None:
        """End a run that waits (for approval, or to be resumed) without an answer; `InputError` when there is no
        such run or it has ended already. It is deleted `ttl` seconds later, like a finished run."""

        def write(db: Connection) -> str | None:
            status = db.execute(select(runs.c.status).where(runs.c.id == run_id)).scalar()
            if status in (AWAITING, STOPPED, RUNNING):
                _end_waiting(db, run_id, CANCELLED, reason, self.clock())
            return status

        status = self._write(write)
        if status is None:
            raise InputError(
                f"there is no run {run_id!r} in the checkpoint store {self.where}",
                hint=f"list the runs with `decompose runs {self.flag}`",
            )
        if status not in (AWAITING, STOPPED, RUNNING):
            raise InputError(f"run {run_id} has ended already ({status}); nothing to cancel")

    def counts(self) -> dict[str, int]:
        """Rows per table: what a store holds (for the soak's leftovers check)."""
        tables = (runs, steps, ledger, approvals)
        with self._reading() as db:
            return {t.name: db.execute(select(func.count()).select_from(t)).scalar() or 0 for t in tables}

    # ----- the side-effect ledger -----------------------------------------------------------------------------

    def ledger_entry(self, run_id: str, step_id: int) -> dict[str, Any] | None:
        with self._reading() as db:
            row = (
                db.execute(select(ledger).where(ledger.c.run_id == run_id, ledger.c.step_id == step_id))
                .mappings()
                .first()
            )
        if row is None:
            return None
        return {**row, "args": json.loads(row["args"]), "result": _loaded(row["result"], None)}

    def ledger_start(self, run_id: str, step_id: int, tool: str, args: dict[str, Any]) -> None:
        """Committed before the side-effecting call is made."""

        def write(db: Connection) -> None:
            db.execute(delete(ledger).where(ledger.c.run_id == run_id, ledger.c.step_id == step_id))
            db.execute(
                insert(ledger).values(
                    run_id=run_id,
                    step_id=step_id,
                    tool=tool,
                    args=_dumps(args),
                    status="started",
                    started_at=self.clock(),
                )
            )

        self._write(write)

    def ledger_done(self, run_id: str, step_id: int, result: dict[str, Any]) -> None:
        self._write(
            lambda db: db.execute(
                update(ledger)
                .where(ledger.c.run_id == run_id, ledger.c.step_id == step_id)
                .values(status="done", result=_dumps(result), done_at=self.clock())
            )
        )

    def ledger_forget(self, run_id: str, step_id: int) -> None:
        """The call raised before it could act (the tool said so): nothing to remember."""
        self._write(lambda db: db.execute(delete(ledger).where(ledger.c.run_id == run_id, ledger.c.step_id == step_id)))

    def close(self) -> None:
        self._dispose()


def _end_waiting(db: Connection, run_id: str, status: str, reason: str, now: float) -> None:
    """A waiting run ends without an answer (cancelled or expired), and so do its pending approvals."""
    db.execute(
        update(runs).where(runs.c.id == run_id).values(status=status, error=reason, finished_at=now, updated_at=now)
    )
    db.execute(
        update(approvals).where(approvals.c.run_id == run_id, approvals.c.status == "pending").values(status=status)
    )


def open_store(checkpoints: Any) -> CheckpointStore | None:
    """`Orchestrator(checkpoints=...)`: None, a path, a URL, or a store made already."""
    if checkpoints is None or isinstance(checkpoints, CheckpointStore):
        return checkpoints
    if isinstance(checkpoints, (str, os.PathLike)):
        return CheckpointStore(checkpoints)
    raise ConfigError(
        f"checkpoints must be a path, a SQLAlchemy URL or a CheckpointStore, got {type(checkpoints).__name__}",
        hint='e.g. Orchestrator(..., checkpoints="runs.sqlite3")',
    )


def _alive(owner: str | None) -> bool:
    """Whether the process named by `owner` (host:pid:tag) is alive on this machine (False on another host)."""
    host, _, rest = (owner or "").partition(":")
    pid = rest.partition(":")[0]
    if host != socket.gethostname() or not pid.isdigit():
        return False
    if int(pid) == os.getpid():
        return False  # this process resuming its own run (e.g. after a cancelled task): not another's
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def _engine(url: str, busy_timeout: float, *, create: bool) -> tuple[Engine, str]:
    """The engine, and how to name the store in a message (the file path, or the URL without its password)."""

    def must_exist(path: Path) -> None:
        if not create and not path.exists():
            raise CheckpointError(
                f"there is no checkpoint store at {path}",
                hint="give the --checkpoints path the run was started with",
            )

    engine, path = open_engine(
        url,
        what="checkpoint store",
        hint="give a file path, or a SQLAlchemy URL such as sqlite:///runs.sqlite3 or "
        "postgresql+psycopg://user@host/db (with its driver installed)",
        busy_timeout_ms=int(busy_timeout * 1000),
        # NORMAL sync still survives a killed process (the WAL is in the OS's cache), not a power cut, and makes
        # each write a fraction of a millisecond.
        pragmas=["synchronous=NORMAL"],
        check_file=must_exist,
    )
    return engine, str(path) if path is not None else engine.url.render_as_string(hide_password=True)
