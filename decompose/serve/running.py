"""Runs in progress: each runs in a task of its own, so it outlives the response that streams it (a client that
goes away does not cut a turn short), and a shutdown can let every run finish or end it cleanly."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from decompose.errors import DecomposeError
from decompose.events import Event
from decompose.result import Result
from decompose.serve.logs import log_run

log = logging.getLogger("decompose.serve")


@dataclass(frozen=True)
class AnswerPiece:
    """The answer's next text, as the synthesis writes it (see `chains/answer_stream.py`)."""

    text: str


@dataclass
class Ended:
    """The last item of a feed: the result (partial when the run failed) and the error it ended with."""

    result: Result
    error: BaseException | None = None


class RunFeed:
    """One run's events (and the answer's pieces, where asked for), then its end, in order, for the response
    that streams them."""

    def __init__(self) -> None:
        self._queue: asyncio.Queue[Event | AnswerPiece | Ended] = asyncio.Queue()

    def emit(self, event: Event) -> None:
        self._queue.put_nowait(event)

    def answer(self, text: str) -> None:
        self._queue.put_nowait(AnswerPiece(text))

    def end(self, ended: Ended) -> None:
        self._queue.put_nowait(ended)

    async def items(self, keepalive: float) -> AsyncIterator[Event | AnswerPiece | Ended | None]:
        """Events, then the `Ended`; None after `keepalive` seconds of quiet (for a keep-alive line)."""
        getter: asyncio.Future[Any] | None = None
        try:
            while True:
                getter = getter or asyncio.ensure_future(self._queue.get())
                done, _ = await asyncio.wait({getter}, timeout=keepalive)
                if not done:
                    yield None
                    continue
                item, getter = getter.result(), None
                yield item
                if isinstance(item, Ended):
                    return
        finally:
            if getter is not None:
                getter.cancel()


async def outcome(run: Coroutine[Any, Any, Result], question: str) -> Ended:
    """Await the run; a failure becomes its partial result and error (a cancellation passes through)."""
    try:
        return Ended(await run)
    except DecomposeError as exc:
        return Ended(partial_result(exc, question), exc)
    except Exception as exc:  # a bug: the stream still ends, the turn is still recorded, the log has the trace
        log.exception("run failed unexpectedly: %s", question)
        return Ended(Result.failed(question, f"internal error: {type(exc).__name__}: {exc}"), exc)


def partial_result(exc: BaseException, question: str) -> Result:
    """What a run that raised had done (the Orchestrator attaches it), else an empty failed Result."""
    return Result.partial(exc) or Result.failed(question, exc)


async def settle(
    feed: RunFeed,
    run: Coroutine[Any, Any, Result],
    question: str,
    *,
    run_id: str,
    agent: str,
    record: Callable[[Ended], Awaitable[None]] | None = None,
    record_interrupted: Callable[[], None] | None = None,
) -> Ended:
    """Await the run, record its end (`record`), log it (`decompose.serve.runs`, as `run_id`), then announce it
    on `feed`: a client that has the result finds it stored. A run cancelled because the server is stopping is
    recorded with `record_interrupted` (called, not awaited: a cancelled task must not wait again) and announced
    as interrupted, so its stream ends cleanly."""
    started = time.monotonic()
    try:
        ended = await outcome(run, question)
    except asyncio.CancelledError as exc:
        interrupted = Ended(partial_result(exc, question), exc)
        try:
            if record_interrupted is not None:
                record_interrupted()
        except Exception:
            log.exception("could not record the interrupted run: %s", question)
        finally:
            log_run(run_id, agent, interrupted.result, exc, time.monotonic() - started)
            feed.end(interrupted)
        raise
    if record is not None:
        try:
            await record(ended)
        except Exception as exc:  # the database failed: the stream still ends, saying the answer is not stored
            log.exception("could not record the end of the run: %s", question)
            ended = Ended(ended.result, exc)
    log_run(run_id, agent, ended.result, ended.error, time.monotonic() - started)
    feed.end(ended)
    return ended


class InFlight:
    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()

    def start(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    @property
    def count(self) -> int:
        return len(self._tasks)

    def cancel_all(self) -> None:
        for task in list(self._tasks):
            task.cancel()

    async def drain(self, timeout: float) -> None:
        """Let the runs in progress finish for up to `timeout` seconds, then cancel the rest."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout)
        self.cancel_all()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
