"""Soak: many questions through `Orchestrator.batch` against a fault-injecting OpenAI-compatible server on 127.0.0.1.

    python benchmarks/soak.py                      # 2,000 questions, 20 % faults, 16 calls in flight at most
    python benchmarks/soak.py --questions 200      # a quick one

Each question asks for a refund: the plan looks the amount up (a model step), then calls `refund`, a tool with side
effects and an idempotency key that writes to a real SQLite file. A `--fault-rate` share of the server's answers are
faults, in equal parts: 429 with Retry-After, 500, a reset connection, a hang past the client's timeout, a 200 with
an HTML login page, a truncated JSON body. Checked and printed:
- every question ends in an answer or a clear one-line error, within its run deadline;
- no question is lost or answered twice (one Result per question, in order);
- model calls in flight never exceed the bound (counted at the client's HTTP transport);
- memory stays flat (RSS after a warm-up and at the end);
- no refund is executed twice, whatever was retried.
Exit status 1 when a check fails.
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import re
import sqlite3
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a source checkout too
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from fault_server import HTML_PAGE, MALFORMED, RESET, Behaviour, FaultServer, ok, status  # noqa: E402
from langchain_core.tools import InjectedToolArg, tool  # noqa: E402

from decompose import Limits, Orchestrator, RetryPolicy  # noqa: E402
from decompose.models.openai import load_openai  # noqa: E402
from decompose.tools.runner import side_effects  # noqa: E402

HANG = Behaviour("hang", seconds=5.0)  # past the client's 1 s timeout
FAULTS = [status(429, {"Retry-After": "0.2"}), status(500), RESET, HANG, HTML_PAGE, MALFORMED]
ORDER = re.compile(r"order (\d+)")


def reply_for(body: dict[str, Any]) -> Behaviour:
    """What a well-behaved model would answer: a plan, a step's answer, or the synthesis."""
    messages = body["messages"]
    system, last = str(messages[0]["content"]), str(messages[-1]["content"])
    order = (ORDER.findall(last) or ["0"])[-1]
    if "You split a question" in system:
        plan = {
            "steps": [
                {"id": 1, "question": f"What is the amount of order {order}?", "depends_on": []},
                {
                    "id": 2,
                    "question": f"Refund order {order}",
                    "depends_on": [1],
                    "tool": "refund",
                    "args": {"order_id": int(order), "amount": "{1}"},
                },
            ]
        }
        return ok(json.dumps(plan))
    if last.startswith("Original question:"):
        return ok(f"Order {order} was refunded.\nAnswer: refunded order {order}")
    return ok(f"{int(order) % 90 + 10}.50")


class CountingTransport(httpx.AsyncBaseTransport):
    """The client's own count of requests waiting for a response: the calls in flight."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.in_flight = self.peak = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            return await self.inner.handle_async_request(request)
        finally:
            self.in_flight -= 1

    async def aclose(self) -> None:
        await self.inner.aclose()


def refund_tool(db: Path):
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS executions (order_id INTEGER, idempotency_key TEXT)")

    @side_effects
    @tool
    def refund(order_id: int, amount: float, idempotency_key: Annotated[str, InjectedToolArg]) -> str:
        """Refund an order."""
        with sqlite3.connect(db) as conn:  # every execution is recorded: a duplicate would show
            conn.execute("INSERT INTO executions VALUES (?, ?)", (order_id, idempotency_key))
        return f"refunded {amount:.2f} for order {order_id}"

    return refund


@dataclass
class Outcome:
    question: str
    answer: str | None
    error: str | None
    elapsed: float
    refunded: bool


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--questions", type=int, default=2000)
    parser.add_argument("--fault-rate", type=float, default=0.2)
    parser.add_argument("--bound", type=int, default=16, help="max_concurrency of the batch (default 16)")
    parser.add_argument("--run-timeout", type=float, default=30.0, help="each question's deadline in seconds")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    warmup = max(1, args.questions // 10)
    questions = [f"Please refund order {i} for me." for i in range(args.questions)]

    with FaultServer() as server, tempfile.TemporaryDirectory() as tmp:
        server.keep_hits = False
        server.choose = lambda body: rng.choice(FAULTS) if rng.random() < args.fault_rate else reply_for(body)
        transport = CountingTransport()
        model = load_openai(
            "soak",
            base_url=server.base_url,
            api_key="k",
            timeout=1.0,
            http_async_client=httpx.AsyncClient(transport=transport),
        )
        db = Path(tmp) / "refunds.sqlite"
        policy = RetryPolicy(max_attempts=8, initial_wait=0.05, max_wait=0.5, max_retry_after=1.0, max_total=15)
        orch = Orchestrator(model, tools=[refund_tool(db)], retry=policy, limits=Limits(run_timeout=args.run_timeout))

        started = time.monotonic()
        results: list[Outcome] = []
        rss_warm = 0.0
        # In chunks, each Result cut down to what the checks need: growth past the warm-up is then a leak, not
        # results kept on purpose.
        for chunk in range(0, len(questions), warmup):
            results += [
                Outcome(
                    r.question, r.answer, r.error, r.elapsed, r.plan is not None and r.plan.step(2).status == "done"
                )
                for r in orch.batch(questions[chunk : chunk + warmup], max_concurrency=args.bound)
            ]
            if not rss_warm:
                gc.collect()
                rss_warm = rss_mib()
        wall = time.monotonic() - started
        gc.collect()
        rss_end = rss_mib()
        with sqlite3.connect(db) as conn:
            executions = conn.execute("SELECT order_id, COUNT(*) FROM executions GROUP BY order_id").fetchall()

    answered = [r for r in results if r.answer is not None and r.error is None]
    errors = Counter(_kind(r.error) for r in results if r.error is not None)
    unclear = [r.error for r in results if r.error is not None and ("Traceback" in r.error or "\n" in r.error)]
    late = [r for r in results if r.elapsed > args.run_timeout + 1.0]
    in_order = [r.question for r in results] == questions
    duplicated = [order for order, count in executions if count > 1]
    refunded_ok = sum(1 for r in answered if r.refunded)
    checks = {
        "every question has one Result, in order": len(results) == len(questions) and in_order,
        "every question ends in an answer or a one-line error": not unclear,
        f"every question within its deadline ({args.run_timeout:g} s)": not late,
        f"calls in flight never above the bound ({args.bound})": transport.peak <= args.bound,
        "no refund executed twice": not duplicated,
    }
    print(
        f"soak: {len(questions)} questions, fault rate {args.fault_rate:.0%}, bound {args.bound}, "
        f"{server.requests} requests to the server, {wall:.1f} s"
    )
    print(
        f"  answered: {len(answered)} ({len(answered) / len(questions):.1%}), errors: {sum(errors.values())}"
        f" {dict(errors.most_common())}"
    )
    print(
        f"  refunds executed: {sum(c for _, c in executions)} for {len(executions)} orders "
        f"({refunded_ok} in answered runs); duplicated: {len(duplicated)}"
    )
    print(
        f"  peak calls in flight: {transport.peak} (bound {args.bound}); slowest question "
        f"{max(r.elapsed for r in results):.1f} s"
    )
    print(
        f"  RSS after the first {warmup} questions: {rss_warm:.0f} MiB; after all: {rss_end:.0f} MiB "
        f"({rss_end - rss_warm:+.0f} MiB)"
    )
    for kind in errors:
        print(f"    e.g. {next(r.error for r in results if r.error and _kind(r.error) == kind)[:300]}")
    for name, passed in checks.items():
        print(f"  [{'ok' if passed else 'FAILED'}] {name}")
    return 0 if all(checks.values()) else 1


def _kind(error: str) -> str:
    """An error's kind, for the tally: its first words up to a URL, number or colon."""
    return re.split(r" from | after |: |\(", error, maxsplit=1)[0].strip()


if __name__ == "__main__":
    sys.exit(main())
