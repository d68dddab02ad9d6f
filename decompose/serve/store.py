"""Conversations, their turns and the plans awaiting review, in any SQLAlchemy database (SQLite by default), so
several replicas share them and a restarted server has lost nothing it acknowledged.

A turn's question is committed before its run starts and its answer when the run ends. A running turn carries
its server's id and a lease the server renews while it lives; a running turn whose lease ran out belonged to a
server that died (kill -9, a lost machine) and reads as `interrupted`, on every replica. A turn whose run waits
for a person's approval (decompose/approvals.py) is `awaiting` until the run is resumed, cancelled or expires;
`decompose_server_runs` says which agent (and which turn) each such run belongs to, for the replica that resumes it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

from sqlalchemy import (
    Column,
    Float,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    insert,
    inspect,
    select,
    text,
    update,
)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError

from decompose.errors import ConfigError, DecomposeError
from decompose.events import Event
from decompose.paths import cache_dir
from decompose.retry import RetryState, retry_events, retrying_blocking, store_schema_race, store_write
from decompose.sql_engine import open_engine

log = logging.getLogger("decompose.serve")
RUNNING, ANSWERED, FAILED, INTERRUPTED = "running", "answered", "failed", "interrupted"
AWAITING, CANCELLED, EXPIRED = "awaiting", "cancelled", "expired"  # a run waiting for a person, and its two ends
DAY = 24 * 3600.0
BUSY_TIMEOUT_MS = 10_000  # how long a SQLite writer waits for another's lock before StoreUnavailable (503)

metadata = MetaData()
conversations = Table(
    "decompose_conversations",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("agent", String(200), nullable=False),
    Column("created_at", Float, nullable=False),
)
turns = Table(
    "decompose_turns",
    metadata,
    Column("conversation_id", String(32), ForeignKey(conversations.c.id), primary_key=True),
    Column("seq", Integer, primary_key=True),  # the key makes two replicas racing for one turn collide
    Column("question", Text, nullable=False),
    Column("answer", Text),
    Column("status", String(16), nullable=False),
    Column("error", Text),
    Column("owner", String(32)),  # the server running it
    Column("lease_until", Float),  # a running turn not renewed by then belongs to a dead server
    Column("created_at", Float, nullable=False),
    Column("finished_at", Float),
    Column("state", Text),  # JSON: the conversation's state after this turn (`ConversationState.to_dict`)
)
reviews = Table(
    "decompose_reviews",
    metadata,
    Column("id", String(32), primary_key=True),  # also the run id: re-running never repeats a side effect
    Column("agent", String(200), nullable=False),
    Column("question", Text, nullable=False),
    Column("plan", Text, nullable=False),
    Column("status", String(16), nullable=False),  # pending, approved, cancelled (expired: read from created_at)
    Column("created_at", Float, nullable=False),
)
server_runs = Table(
    "decompose_server_runs",
    metadata,
    Column("id", String(64), primary_key=True),  # the run id of the checkpoint store
    Column("agent", String(200), nullable=False),
    Column("question", Text, nullable=False),
    Column("conversation_id", String(32)),  # the turn it answers; None for a run of POST /v1/runs
    Column("seq", Integer),
    Column("planning", Text),  # JSON: a reviewed plan's planning usage (`Usage.to_dict`), added to its run's
    Column("created_at", Float, nullable=False),
)


def _shown(turn: Any) -> dict[str, Any]:
    shown = {k: turn[k] for k in ("seq", "question", "answer", "status", "error", "created_at", "finished_at")}
    return {**shown, "state": json.loads(turn["state"]) if turn["state"] else None}


def _dead(turn: Any, now: float) -> bool:
    return turn["status"] == RUNNING and turn["lease_until"] is not None and turn["lease_until"] < now


def default_db_url() -> str:
    return f"sqlite:///{cache_dir() / 'serve.sqlite3'}"


class TurnBusy(Exception):
    """The conversation's previous turn is still running."""


class StoreUnavailable(DecomposeError):
    """The database stayed locked (SQLite past its busy timeout) or could not be reached: the request may be
    tried again."""

    def __init__(self, exc: OperationalError):
        super().__init__(
            f"the conversation store is unavailable: {exc.orig}",
            hint="try again in a moment; if it lasts, check the --db database",
        )


def _raced(exc: BaseException) -> bool:
    """Replicas started at once on a new database race to create the tables: the loser's CREATE fails with
    "already exists" (its check came before the winner's CREATE), and checking again then finds them. On SQLite
    the switch to WAL can also find the new file locked without waiting out the busy timeout. PostgreSQL can
    show the race as a duplicate pg_type row: an IntegrityError."""
    message = str(getattr(exc, "orig", exc)).lower()
    return isinstance(exc, IntegrityError) or any(
        sign in message for sign in ("already exists", "is locked", "duplicate column")
    )


SCHEMA_RACE = store_schema_race((OperationalError, ProgrammingError, IntegrityError), _raced)


def _logged(event: Event) -> None:
    log.warning("%s", event.to_dict())


class Store:
    """`on_event` is told of every retry (a `Retried` event of kind "store"); by default they are logged."""

    retry_wait = 0.2  # seconds before end_turn tries again, doubling

    def __init__(
        self,
        url: str | None = None,
        *,
        lease: float = 15.0,
        on_event: Callable[[Event], None] = _logged,
        clock: Callable[[], float] = time.time,
        review_ttl: float = DAY,
    ):
        if review_ttl <= 0:
            raise ConfigError(f"review_ttl must be a positive number of seconds, got {review_ttl!r}")
        self.url = url or default_db_url()
        self.lease = lease
        self.review_ttl = review_ttl  # a plan not approved within it expires
        self.on_event = on_event
        self.clock = clock  # wall-clock seconds: leases are compared across replicas, so not time.monotonic
        self.owner = uuid.uuid4().hex  # this server, for the leases of its running turns
        self.engine = _engine(self.url)
        self._write_lock = threading.Lock() if self.engine.dialect.name == "sqlite" else contextlib.nullcontext()
        self._live: set[tuple[str, int]] = set()  # the turns (conversation, seq) this server still runs
        self._create_tables()

    def _create_tables(self) -> None:
        """Create the tables, under `SCHEMA_RACE` (replicas racing to create them)."""

        def create(_state: RetryState) -> None:
            metadata.create_all(self.engine)
            self._add_state_column()

        def give_up(state: RetryState) -> None:
            failure = state.failures[-1]
            if not isinstance(failure, (OperationalError, ProgrammingError, IntegrityError)):
                raise failure
            raise ConfigError(
                f"cannot open database {self.engine.url.render_as_string()}: {failure.orig}",
                hint="check the --db URL, that the server is up and the path writable",
            ) from None

        retrying_blocking(SCHEMA_RACE, create, before_sleep=self._announce(), give_up=give_up)

    def _announce(self) -> Callable[[RetryState], None]:
        return retry_events(self.on_event, None, "store")

    def _add_state_column(self) -> None:
        """A database made by an earlier version has no `state` column: add it (a replica racing to do the same
        makes this fail, and the retry above then finds the column)."""
        with self.engine.begin() as db:
            if "state" not in {c["name"] for c in inspect(db).get_columns(turns.name)}:
                db.execute(text(f"ALTER TABLE {turns.name} ADD COLUMN state TEXT"))

    @contextlib.contextmanager
    def _writing(self) -> Iterator[Connection]:
        """A write transaction. On SQLite this server's writers take turns here: contending for the file's lock
        instead would put each to sleep in SQLite's busy handler (other processes still wait on the lock).
        A database still locked past the busy timeout, or unreachable, raises StoreUnavailable."""
        try:
            with self._write_lock, self.engine.begin() as db:
                yield db
        except OperationalError as exc:
            raise StoreUnavailable(exc) from exc

    @contextlib.contextmanager
    def _reading(self) -> Iterator[Connection]:
        try:
            with self.engine.connect() as db:
                yield db
        except OperationalError as exc:
            raise StoreUnavailable(exc) from exc

    # ----- conversations ----------------------------------------------------------------------------------

    def create_conversation(self, agent: str) -> dict[str, Any]:
        row = {"id": uuid.uuid4().hex, "agent": agent, "created_at": time.time()}
        with self._writing() as db:
            db.execute(insert(conversations).values(**row))
        return {**row, "turns": []}

    def conversation(self, conversation_id: str) -> dict[str, Any] | None:
        """The conversation with its turns in order, a dead server's running turns marked interrupted."""
        with self._reading() as db:
            found = db.execute(select(conversations).where(conversations.c.id == conversation_id)).first()
            if found is None:
                return None
            rows = self._turns(db, conversation_id)
        if any(_dead(r, self.clock()) for r in rows):  # written only then: a read takes no write lock
            with self._writing() as db:
                self._interrupt_dead(db, conversation_id)
                rows = self._turns(db, conversation_id)
        return {**found._asdict(), "turns": [_shown(r) for r in rows]}

    def agent_of(self, conversation_id: str) -> str | None:
        """The conversation's agent; None when there is no such conversation."""
        with self._reading() as db:
            return db.execute(select(conversations.c.agent).where(conversations.c.id == conversation_id)).scalar()

    def begin_turn(self, conversation_id: str, question: str) -> tuple[int, list[dict[str, Any]]]:
        """Commit the question as a running turn: its number and the turns before it, each ended or marked
        interrupted. TurnBusy while the previous turn still runs."""
        now = self.clock()
        with self._writing() as db:
            self._interrupt_dead(db, conversation_id)
            earlier = self._turns(db, conversation_id)
            if earlier and earlier[-1]["status"] == RUNNING:
                raise TurnBusy
            seq = earlier[-1]["seq"] + 1 if earlier else 1
            try:
                db.execute(
                    insert(turns).values(
                        conversation_id=conversation_id,
                        seq=seq,
                        question=question,
                        status=RUNNING,
                        owner=self.owner,
                        lease_until=now + self.lease,
                        created_at=now,
                    )
                )
            except IntegrityError:  # another replica took this turn between our read and our write
                raise TurnBusy from None
        self._live.add((conversation_id, seq))
        return seq, [_shown(t) for t in earlier]

    @staticmethod
    def _turns(db: Connection, conversation_id: str) -> list[Any]:
        return list(
            db.execute(select(turns).where(turns.c.conversation_id == conversation_id).order_by(turns.c.seq)).mappings()
        )

    def _interrupt_dead(self, db: Connection, conversation_id: str) -> None:
        db.execute(
            update(turns)
            .where(
                turns.c.conversation_id == conversation_id,
                turns.c.status == RUNNING,
                turns.c.lease_until < self.clock(),
            )
            .values(
                status=INTERRUPTED, error="the server running this turn stopped before the answer", lease_until=None
            )
        )

    def end_turn(
        self,
        conversation_id: str,
        seq: int,
        *,
        status: str,
        answer: str | None = None,
        error: str | None = None,
        state: dict[str, Any] | None = None,
        attempts: int = 3,
    ) -> None:
        """Store the turn's end, trying again while the database is unavailable. Either way this server stops
        renewing the turn: one whose end could not be stored reads interrupted after the lease, instead of
        running for as long as the server lives (which would refuse every later message with 409)."""

        # An answer that comes after its turn was taken for dead (a database outage stopped the renewals) is kept.
        def write(_state: RetryState) -> None:
            with self._writing() as db:
                db.execute(
                    update(turns)
                    .where(
                        turns.c.conversation_id == conversation_id,
                        turns.c.seq == seq,
                        turns.c.status.in_((RUNNING, INTERRUPTED, AWAITING)),
                    )
                    .values(
                        status=status,
                        answer=answer,
                        error=error,
                        lease_until=None,
                        finished_at=time.time(),
                        state=json.dumps(state) if state is not None else None,
                    )
                )

        try:
            retrying_blocking(
                store_write(StoreUnavailable, attempts, self.retry_wait), write, before_sleep=self._announce()
            )
        finally:
            self._live.discard((conversation_id, seq))  # by seq: the conversation's next turn may be live

    def renew_leases(self) -> None:
        """Called every lease/3 seconds while this server lives: the turns it still runs stay running."""
        live = list({conversation_id for conversation_id, _ in list(self._live)})
        if not live:  # nothing to renew: no write at all
            return
        with self._writing() as db:
            db.execute(
                update(turns)
                .where(turns.c.owner == self.owner, turns.c.status == RUNNING, turns.c.conversation_id.in_(live))
                .values(lease_until=self.clock() + self.lease)
            )

    def interrupt_own_turns(self) -> None:
        """At shutdown: whatever this server still runs will not finish."""
        with self._writing() as db:
            db.execute(
                update(turns)
                .where(turns.c.owner == self.owner, turns.c.status == RUNNING)
                .values(
                    status=INTERRUPTED,
                    error="the server stopped before the answer",
                    lease_until=None,
                    finished_at=time.time(),
                )
            )

    # ----- plans awaiting review --------------------------------------------------------------------------

    def save_review(self, run_id: str, agent: str, question: str, plan: dict[str, Any]) -> float:
        """Keep the plan for review; when it expires."""
        now = self.clock()
        with self._writing() as db:
            db.execute(
                insert(reviews).values(
                    id=run_id,
                    agent=agent,
                    question=question,
                    plan=json.dumps(plan),
                    status="pending",
                    created_at=now,
                )
            )
        return now + self.review_ttl

    def review(self, run_id: str) -> dict[str, Any] | None:
        """The plan kept for review, its status `expired` once `review_ttl` passed unapproved."""
        with self._reading() as db:
            row = db.execute(select(reviews).where(reviews.c.id == run_id)).first()
        if row is None:
            return None
        expires_at = row.created_at + self.review_ttl
        status = EXPIRED if row.status == "pending" and expires_at < self.clock() else row.status
        return {**row._asdict(), "plan": json.loads(row.plan), "status": status, "expires_at": expires_at}

    def _end_review(self, run_id: str, status: str) -> bool:
        """pending -> `status`, unless expired; False when it was not pending (one decision, on any replica)."""
        with self._writing() as db:
            done = db.execute(
                update(reviews)
                .where(
                    reviews.c.id == run_id,
                    reviews.c.status == "pending",
                    reviews.c.created_at >= self.clock() - self.review_ttl,
                )
                .values(status=status)
            )
        return done.rowcount == 1

    def approve(self, run_id: str) -> bool:
        """Mark the plan approved; False when it was not pending (approved or cancelled already, or expired)."""
        return self._end_review(run_id, "approved")

    def cancel_review(self, run_id: str) -> bool:
        """Mark the plan cancelled: it will never run. False when it was not pending."""
        return self._end_review(run_id, CANCELLED)

    # ----- runs waiting for a person's approval -------------------------------------------------------------

    def link_run(
        self,
        run_id: str,
        agent: str,
        question: str,
        conversation_id: str | None = None,
        seq: int | None = None,
        planning: dict[str, Any] | None = None,
    ) -> None:
        """Remember the run's agent (and turn, once it has one): a decision, on any replica, resumes it with that
        agent and gives the answer to that turn. A reviewed plan is linked when it is made, with its planning."""
        with self._writing() as db:
            if db.execute(select(server_runs.c.id).where(server_runs.c.id == run_id)).first() is not None:
                if seq is not None:
                    db.execute(update(server_runs).where(server_runs.c.id == run_id).values(seq=seq))
                return
            db.execute(
                insert(server_runs).values(
                    id=run_id,
                    agent=agent,
                    question=question,
                    conversation_id=conversation_id,
                    seq=seq,
                    planning=json.dumps(planning) if planning is not None else None,
                    created_at=self.clock(),
                )
            )

    def run_link(self, run_id: str) -> dict[str, Any] | None:
        """{"id", "agent", "question", "conversation_id", "seq", "planning", ...} of a linked run, else None."""
        with self._reading() as db:
            row = db.execute(select(server_runs).where(server_runs.c.id == run_id)).first()
        if row is None:
            return None
        return {**row._asdict(), "planning": json.loads(row.planning) if row.planning else None}

    def runs_of(self, conversation_id: str) -> dict[int, str]:
        """The run ids of the conversation's linked turns (reviewed, or that waited for approval), by turn."""
        with self._reading() as db:
            rows = db.execute(
                select(server_runs.c.seq, server_runs.c.id).where(
                    server_runs.c.conversation_id == conversation_id, server_runs.c.seq.is_not(None)
                )
            )
            return {seq: run_id for seq, run_id in rows}

    def resume_turn(self, conversation_id: str, seq: int) -> dict[str, Any] | None:
        """An awaiting turn runs again (this server's, under its lease): the turn before it ran again, or None
        when it was not awaiting (decided on another replica, ended)."""
        with self._writing() as db:
            done = db.execute(
                update(turns)
                .where(turns.c.conversation_id == conversation_id, turns.c.seq == seq, turns.c.status == AWAITING)
                .values(status=RUNNING, owner=self.owner, lease_until=self.clock() + self.lease)
            )
            if done.rowcount != 1:
                return None
            row = db.execute(select(turns).where(turns.c.conversation_id == conversation_id, turns.c.seq == seq))
            turn = _shown(row.mappings().one())
        self._live.add((conversation_id, seq))
        return turn

    def close(self) -> None:
        self.engine.dispose()


def _engine(url: str) -> Engine:
    engine, _ = open_engine(
        url,
        what="database",
        hint="give a SQLAlchemy URL such as sqlite:///conversations.sqlite3 or "
        "postgresql+psycopg://user@host/db (with its driver installed)",
        busy_timeout_ms=BUSY_TIMEOUT_MS,
    )
    return engine
