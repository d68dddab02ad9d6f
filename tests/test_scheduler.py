import asyncio

import pytest

from decompose.errors import StepTimeout
from decompose.scheduler import Hooks, run_dag


class Gate:
    """Steps wait on gates the test opens, so ordering is asserted without timing thresholds."""

    def __init__(self, ids):
        self.gates = {i: asyncio.Event() for i in ids}
        self.log = []

    async def run(self, node, values):
        self.log.append(("start", node))
        await self.gates[node].wait()
        self.log.append(("end", node))
        return f"v{node}"


async def settle():
    for _ in range(20):
        await asyncio.sleep(0)


async def test_a_step_starts_when_its_own_dependencies_finish_not_in_waves():
    # 1 -> 2, and 3 is independent and slow: 2 must start while 3 is still running.
    gate = Gate([1, 2, 3])
    task = asyncio.create_task(run_dag({1: [], 2: [1], 3: []}, gate.run))
    await settle()
    assert set(gate.log) == {("start", 1), ("start", 3)}
    gate.gates[1].set()
    await settle()
    assert ("start", 2) in gate.log and ("end", 3) not in gate.log
    gate.gates[2].set()
    gate.gates[3].set()
    outcomes = await task
    assert {n: o.value for n, o in outcomes.items()} == {1: "v1", 2: "v2", 3: "v3"}


async def test_semaphore_bounds_concurrency():
    running, peak = 0, 0

    async def node(n, values):
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.01)
        running -= 1

    await run_dag({i: [] for i in range(10)}, node, max_concurrency=3)
    assert peak == 3


async def test_dependants_of_a_failed_step_are_skipped_others_run():
    async def node(n, values):
        if n == 1:
            raise RuntimeError("boom")
        return n

    events = []
    hooks = Hooks(
        on_fail=lambda n, e: events.append(("fail", n, str(e))), on_skip=lambda n, r: events.append(("skip", n, r))
    )
    out = await run_dag({1: [], 2: [1], 3: [2], 4: []}, node, hooks=hooks)
    assert out[1].status == "failed" and "boom" in out[1].reason
    assert out[2].status == "skipped" and out[2].reason == "step 1 failed"
    assert out[3].status == "skipped" and out[3].reason.startswith("step 2 skipped")
    assert out[4].status == "done" and out[4].value == 4
    assert ("fail", 1, "boom") in events


async def test_values_of_dependencies_are_visible():
    async def node(n, values):
        return values[1] + values[2] if n == 3 else n * 10

    out = await run_dag({1: [], 2: [], 3: [1, 2]}, node)
    assert out[3].value == 30


async def test_node_timeout_fails_only_that_node():
    async def node(n, values):
        if n == 1:
            await asyncio.Event().wait()  # never finishes
        return n

    out = await run_dag({1: [], 2: []}, node, node_timeout=0.05)
    assert isinstance(out[1].error, StepTimeout) and "timed out" in str(out[1].error)
    assert out[2].status == "done"


async def test_fatal_error_stops_everything_without_orphans():
    class Stop(Exception):
        pass

    started = []

    async def node(n, values):
        started.append(n)
        if n == 1:
            raise Stop("budget")
        await asyncio.Event().wait()

    before = asyncio.all_tasks()
    with pytest.raises(Stop):
        await run_dag({1: [], 2: [], 3: [2]}, node, fatal=(Stop,))
    assert not asyncio.all_tasks() - before  # nothing of ours left running (others may finish meanwhile)


async def test_cancellation_leaves_no_orphan_tasks():
    async def node(n, values):
        await asyncio.Event().wait()

    before = asyncio.all_tasks()
    task = asyncio.create_task(run_dag({1: [], 2: [1], 3: []}, node))
    await settle()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not asyncio.all_tasks() - before  # nothing of ours left running (others may finish meanwhile)


async def test_bad_concurrency():
    with pytest.raises(ValueError):
        await run_dag({1: []}, lambda n, v: None, max_concurrency=0)
