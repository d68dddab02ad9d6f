"""`decompose eval --ray [ADDRESS]`: the rows answered on Ray workers (`decompose/distributed.py`).

Each worker builds the Orchestrator from the command's own flags and answers a row with the local eval's code (its
`answer`, handed in: this module imports nothing of the command), so a record is the same wherever it was made; records
come back as rows finish and are saved by the command into the same resumable report. A refused model stops the eval as
it does locally.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from typing import Any, TextIO

from decompose.cli.config import Trace, build_orchestrator
from decompose.distributed import RayExecutor, one_line, run_jobs
from decompose.errors import ModelAccessError


def run_on_ray(
    args: argparse.Namespace,
    rows: list[Any],
    mode: str,
    report: TextIO,
    progress: Any,
    trace: Trace | None,
    save: Callable[[dict[str, Any], TextIO, Any], None],
    answer: Callable,
    record_for: Callable,
) -> None:
    """`save` writes a record to the report, `answer` answers a row into a record (on a worker: it must be a
    module-level function), `record_for` makes the record of a row whose worker died."""
    executor = RayExecutor(workers=args.workers, address=args.ray or None)
    for row, record, events in eval_on_ray(
        partial(build_orchestrator, args),
        rows,
        mode,
        executor,
        args.concurrency,
        answer,
        record_for,
        traced=trace is not None,
    ):
        if trace is not None:  # events come back only when traced
            for event in events:
                trace.write(event, row=row.key)
        save(record, report, progress)


def eval_on_ray(
    factory: Callable[[], Any],
    rows: Sequence[Any],
    mode: str,
    executor: RayExecutor,
    limit: int,
    answer: Callable,
    record_for: Callable,
    traced: bool,
) -> Iterator[tuple[Any, dict[str, Any], list]]:
    """Yield (row, report record, its events when `traced`) as each row finishes. A refused model (HTTP 401/403/
    404) raises `ModelAccessError`: the rows still running are cancelled, nothing is written for them."""
    if not rows:
        return
    jobs = [(eval_row, (answer, row, mode, traced)) for row in rows]
    for index, value in run_jobs(factory, jobs, executor, limit):
        row = rows[index]
        if isinstance(value, BaseException):
            yield row, record_for(row, mode, error=RuntimeError(f"the Ray worker failed: {one_line(value)}")), []
        elif value[0] == "refused":
            raise ModelAccessError(value[1], hint=value[2])
        else:
            yield row, value[1], value[2]


async def eval_row(orch: Any, answer: Callable, row: Any, mode: str, traced: bool) -> tuple:
    """One row on a worker: ("ok", record, events) or ("refused", message, hint) — an error goes back as its
    words (an exception's own arguments need not survive pickling)."""
    events: list[Any] = []
    trace = _Collect(events) if traced else None
    try:
        return "ok", await answer(orch, row, mode, trace), events
    except ModelAccessError as exc:
        return "refused", exc.args[0] if exc.args else str(exc), exc.hint


class _Collect:
    """Stands in for the eval's `Trace` on a worker: the events go back with the row, the command writes them."""

    def __init__(self, events: list[Any]):
        self.events = events

    def write(self, event: Any, **extra: Any) -> None:
        self.events.append(event)
