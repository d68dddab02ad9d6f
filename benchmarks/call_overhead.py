"""What one model call costs in decompose, beside the LangChain call it makes.

    python benchmarks/call_overhead.py            # median of 7 samples of 2,000 calls each
    python benchmarks/call_overhead.py --quick    # 3 samples of 200

Three ways to await one reply from a `ScriptedChatModel` that answers at once, each on the same messages:
`model.ainvoke` (LangChain's public call: callback manager, run events, the model's cache and rate limiter),
`ModelCaller.invoke` (decompose's one way to call a model: that `ainvoke` under the transport retry rule, with its
deadline, fallbacks, usage and limits) and a plain `Runnable` whose `ainvoke` returns a fixed reply (what
`ModelCaller.invoke` adds on its own); with the `otel` extra, `ModelCaller.invoke` again with tracing on (each
call a span, kept by the SDK's in-memory exporter: what a traced call costs before any export). Wall time and CPU
time per call (the CPU time of this process: steadier on a machine shared with other work). The whole run's
overhead, beside the peers, is `latency.py`'s last row.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import platform
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from importlib.metadata import version
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a source checkout too

import langchain_core  # noqa: E402
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage  # noqa: E402
from langchain_core.runnables import Runnable  # noqa: E402

import decompose  # noqa: E402
from decompose import RetryPolicy, ScriptedChatModel  # noqa: E402
from decompose.calls import ModelCaller  # noqa: E402
from decompose.events import Usage  # noqa: E402

MESSAGES = [SystemMessage("Answer briefly."), HumanMessage("What is item 1?")]
REPLY = AIMessage("an item")


class FixedReply(Runnable):
    """A runnable that answers at once without LangChain's per-call work: what is left is the caller's own."""

    def invoke(self, input: Any, config: Any = None, **kwargs: Any) -> AIMessage:
        return REPLY

    async def ainvoke(self, input: Any, config: Any = None, **kwargs: Any) -> AIMessage:
        return REPLY


def caller(model: Runnable, trace: Any = None) -> ModelCaller:
    return ModelCaller([model], policy=RetryPolicy(), usage=Usage(), emit=lambda event: None, trace=trace)


def traced_caller(model: Runnable) -> ModelCaller | None:
    """A caller whose calls are spans (None without the otel extra)."""
    try:
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    except ImportError:
        return None
    from decompose.tracing import Tracing

    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(InMemorySpanExporter()))
    return caller(model, Tracing(provider, content=False).run("benchmark"))


def per_call_us(call: Callable[[], Awaitable[Any]], calls: int, samples: int) -> tuple[float, float]:
    """(wall, CPU) µs per call: the median over `samples` loops of `calls` awaited one after another."""

    async def loop() -> None:
        for _ in range(calls):
            await call()

    asyncio.run(loop())  # warm-up
    wall, cpu = [], []
    for _ in range(samples):
        gc.collect()
        started, started_cpu = time.perf_counter(), time.process_time()
        asyncio.run(loop())
        wall.append((time.perf_counter() - started) / calls * 1e6)
        cpu.append((time.process_time() - started_cpu) / calls * 1e6)
    return statistics.median(wall), statistics.median(cpu)


def main(argv: list[str] | None = None) -> dict[str, tuple[float, float]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 samples of 200 calls")
    parser.add_argument("--calls", type=int, default=None, help="calls per sample (default 2000)")
    parser.add_argument("--samples", type=int, default=None, help="samples (median; default 7)")
    args = parser.parse_args(argv)
    calls = args.calls or (200 if args.quick else 2000)
    samples = args.samples or (3 if args.quick else 7)
    print(
        f"Python {platform.python_version()} ({platform.machine()}), decompose {decompose.__version__}, "
        f"langchain-core {langchain_core.__version__}, tenacity {version('tenacity')}"
    )
    print(f"median of {samples} samples of {calls} calls; the model answers at once\n")

    model = ScriptedChatModel(default="an item")
    scripted, fixed = caller(model), caller(FixedReply())
    ways = {
        "model.ainvoke (LangChain)": lambda: model.ainvoke(MESSAGES),
        "ModelCaller.invoke": lambda: scripted.invoke(MESSAGES, phase="solve", step_id=1),
        "ModelCaller.invoke, fixed reply": lambda: fixed.invoke(MESSAGES, phase="solve", step_id=1),
    }
    traced = traced_caller(model)
    if traced is not None:
        ways["ModelCaller.invoke, traced"] = lambda: traced.invoke(MESSAGES, phase="solve", step_id=1)
    rows = {name: per_call_us(call, calls, samples) for name, call in ways.items()}
    head = f"{'call':<34} {'wall µs':>9} {'CPU µs':>9}"
    print(head + "\n" + "-" * len(head))
    for name, (wall, cpu) in rows.items():
        print(f"{name:<34} {wall:>9.1f} {cpu:>9.1f}")
    return rows


if __name__ == "__main__":
    main()
