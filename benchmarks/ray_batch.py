"""Scale-out benchmark: one batch of questions on 1 vs 2 Ray worker processes, one simulated-latency model.

    python benchmarks/ray_batch.py                       # 1500 questions, 1024 model calls in flight
    python benchmarks/ray_batch.py --questions 100 --in-flight 32

Every question gets a four-step plan (six model calls: plan, four steps, combine); each call sleeps 50-200 ms
(fixed per prompt) and uses no CPU, as a remote model would. What a worker spends is the orchestrator's own CPU
work per call (prompts, parsing, events, usage), so once enough calls are in flight one process is CPU-bound and a
second one helps; with few calls in flight the latency bounds both alike. The in-process batch (`executor=
"local"`, same bound) is the reference. The workers are started once per setting (a `RayPool`), apart from the
times; so is the cluster.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a source checkout too

from decompose import Orchestrator, ScriptedChatModel  # noqa: E402
from decompose.distributed import RayPool  # noqa: E402
from decompose.models.scripted import _text, asks_for_plan, asks_to_combine  # noqa: E402

PLAN = json.dumps({"steps": [{"id": i, "question": f"What is part {i} of it?"} for i in range(1, 5)]})


class LatencyModel(ScriptedChatModel):
    """Sleeps 50-200 ms per call (from a hash of the prompt: the same in every process), uses no CPU."""

    async def _agenerate(self, messages, stop=None, run_manager=None, **kwargs):
        digest = hashlib.blake2b(_text(messages[-1]).encode(), digest_size=2).digest()
        await asyncio.sleep(0.05 + 0.15 * int.from_bytes(digest, "big") / 0xFFFF)
        return self._result(*self._reply(messages, kwargs))


def make_orchestrator() -> Orchestrator:
    model = LatencyModel(rules=[(asks_for_plan, PLAN), (asks_to_combine, "All parts are known.")], default="a part")
    return Orchestrator(model)


def timed(orch: Orchestrator, questions: list[str], in_flight: int | None, executor) -> float:
    started = time.perf_counter()
    results = orch.batch(questions, max_concurrency=in_flight, executor=executor)
    elapsed = time.perf_counter() - started
    failed = [r.error for r in results if not r.ok]
    assert not failed, failed[:3]
    return elapsed


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--questions", type=int, default=1500)
    parser.add_argument("--in-flight", type=int, default=1024, help="model calls in flight across the cluster")
    parser.add_argument("--repeat", type=int, default=2, help="runs per setting; the best is reported")
    args = parser.parse_args(argv)

    import ray

    started_here = not ray.is_initialized()
    if started_here:
        ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    orch = make_orchestrator()
    questions = [f"What do the parts of thing {i} have in common?" for i in range(args.questions)]
    calls = 6 * len(questions)
    floor = calls * 0.125 / args.in_flight  # mean latency x calls / in flight: no CPU cost at all
    print(
        f"{len(questions)} questions, {calls} model calls of 50-200 ms, {args.in_flight} in flight; "
        f"latency floor {floor:.1f} s; {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"ray {ray.__version__}, load {os.getloadavg()[0]:.1f}"
    )
    times = {"in-process batch": min(timed(orch, questions, args.in_flight, "local") for _ in range(args.repeat))}
    startup: dict[int, float] = {}
    for workers in (1, 2):  # a pool: its workers start once (a process each, importing decompose), timed apart
        started = time.perf_counter()
        with RayPool(orch, workers=workers, max_concurrency=args.in_flight) as pool:
            startup[workers] = time.perf_counter() - started
            times[f"Ray, {workers} worker{'s' * (workers > 1)}"] = min(
                timed(orch, questions, None, pool) for _ in range(args.repeat)
            )
    one = times["Ray, 1 worker"]
    print(f"{'setting':<18} {'wall s':>7} {'calls/s':>8} {'vs 1 worker':>11}")
    for name, elapsed in times.items():
        print(f"{name:<18} {elapsed:7.2f} {calls / elapsed:8.0f} {one / elapsed:10.2f}x")
    print(f"starting the workers (not in the times above): 1 worker {startup[1]:.1f} s, 2 workers {startup[2]:.1f} s")
    if started_here:
        ray.shutdown()
    return times


if __name__ == "__main__":
    main()
