"""Run a DAG of nodes on asyncio. Knows nothing of models or plans: nodes are ids with dependencies.

Every node starts the moment its own dependencies finish (not in waves); a semaphore bounds how many run at once.
A failed node marks its dependants skipped with the reason; the others still run. Exceptions of the `fatal`
types stop the whole run (the other nodes are cancelled, nothing is left running).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from decompose.errors import StepTimeout


@dataclass
class Outcome:
    status: Literal["done", "failed", "skipped"]
    value: Any = None
    error: BaseException | None = None
    reason: str | None = None


@dataclass
class Hooks:
    """Callbacks the scheduler calls as nodes change state (all optional)."""

    on_start: Callable[[int], None] | None = None
    on_done: Callable[[int, Any], None] | None = None
    on_fail: Callable[[int, BaseException], None] | None = None
    on_skip: Callable[[int, str], None] | None = None


async def run_dag(
    deps: Mapping[int, Sequence[int]],
    run_node: Callable[[int, Mapping[int, Any]], Awaitable[Any]],
    *,
    max_concurrency: int = 8,
    node_timeout: float | None = None,
    hooks: Hooks | None = None,
    fatal: tuple[type[BaseException], ...] = (),
    skipped: Mapping[int, str] | None = None,
) -> dict[int, Outcome]:
    """Run every node once; `run_node(id, values)` gets the values of the nodes finished so far. The nodes in
    `skipped` (id -> why) are skipped without running, and so are their dependants."""
    if max_concurrency < 1:
        raise ValueError("max_concurrency must be at least 1")
    hooks = hooks or Hooks()
    outcomes: dict[int, Outcome] = {}
    values: dict[int, Any] = {}
    finished = {node: asyncio.Event() for node in deps}
    slots = asyncio.Semaphore(max_concurrency)

    async def run_one(node: int) -> None:
        try:
            if skipped and node in skipped:
                outcomes[node] = Outcome("skipped", reason=skipped[node])
                _call(hooks.on_skip, node, skipped[node])
                return
            for dep in deps[node]:
                await finished[dep].wait()
            blocked = next((d for d in deps[node] if outcomes[d].status != "done"), None)
            if blocked is not None:
                why = outcomes[blocked].reason if outcomes[blocked].status == "skipped" else None
                # An error may word how it leaves the node ("waits for approval" rather than "failed").
                status = getattr(outcomes[blocked].error, "node_status", outcomes[blocked].status)
                reason = f"step {blocked} {status}" + (f" ({why})" if why else "")
                outcomes[node] = Outcome("skipped", reason=reason)
                _call(hooks.on_skip, node, reason)
                return
            async with slots:
                _call(hooks.on_start, node)
                try:
                    async with asyncio.timeout(node_timeout):
                        value = await run_node(node, values)
                except TimeoutError:
                    error: BaseException = StepTimeout(
                        f"step {node} timed out after {node_timeout:g}s",
                        hint="raise Limits.step_timeout or simplify the step",
                    )
                except fatal:
                    raise
                except Exception as exc:  # a failed step must not sink its siblings
                    error = exc
                else:
                    values[node] = value
                    outcomes[node] = Outcome("done", value=value)
                    _call(hooks.on_done, node, value)
                    return
                outcomes[node] = Outcome("failed", error=error, reason=str(error))
                _call(hooks.on_fail, node, error)
        finally:
            finished[node].set()

    try:
        async with asyncio.TaskGroup() as group:
            for node in deps:
                group.create_task(run_one(node))
    except BaseExceptionGroup as group_error:
        # Surface the first real error rather than the group wrapper.
        raise group_error.exceptions[0] from None
    return outcomes


def _call(fn: Callable[..., None] | None, *args: Any) -> None:
    if fn is not None:
        fn(*args)
