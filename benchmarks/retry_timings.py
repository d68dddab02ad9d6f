"""What the retry policy costs and saves, against a real misbehaving HTTP server on 127.0.0.1.

    python benchmarks/retry_timings.py

Each scenario runs one chat call through `load_openai` + `call_with_retries` against tests/fault_server.py
(real sockets, the chat-completions protocol) and prints the attempts the server saw, the gaps between them
and the wall time. The policy is the default one except where a scenario says otherwise.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from fault_server import HANG, MALFORMED, RESET, FaultServer, ok, status  # noqa: E402

from decompose import ModelError, RetryPolicy  # noqa: E402
from decompose.models.openai import load_openai  # noqa: E402
from decompose.retry import call_with_retries  # noqa: E402

QUICK = RetryPolicy(initial_wait=0.2, max_wait=2.0, jitter=0.1)

SCENARIOS = [
    # (name, queued behaviours, default behaviour, policy, client timeout)
    ("429, Retry-After: 1", [status(429, {"Retry-After": "1"})], ok(), RetryPolicy(), 5.0),
    ("429, retry-after-ms: 250", [status(429, {"retry-after-ms": "250"})], ok(), RetryPolicy(), 5.0),
    (
        "429, Retry-After: 3600 (capped at 2 s)",
        [status(429, {"Retry-After": "3600"})],
        ok(),
        RetryPolicy(max_retry_after=2.0),
        5.0,
    ),
    ("500, 502, then ok (backoff 0.2 s doubling)", [status(500), status(502)], ok(), QUICK, 5.0),
    ("connection reset, then ok", [RESET], ok(), QUICK, 5.0),
    ("malformed body, then ok", [MALFORMED], ok(), QUICK, 5.0),
    ("401 (never retried)", [], status(401), RetryPolicy(), 5.0),
    ("always 503 (attempts exhausted)", [], status(503), QUICK, 5.0),
    ("always hangs, max_total 3 s, timeout 1 s", [], HANG, RetryPolicy(max_total=3.0, initial_wait=0.2), 1.0),
]


async def main() -> None:
    # One event loop for every scenario: the HTTP clients langchain-openai caches must outlive each call.
    print(f"{'scenario':<44} {'outcome':<10} {'attempts':>8}  {'gaps between attempts (s)':<28} {'wall (s)':>8}")
    with FaultServer() as server:
        for name, queued, default, policy, timeout in SCENARIOS:
            server.reset()
            server.queue(*queued)
            server.default = default
            model = load_openai("fault", base_url=server.base_url, api_key="k", timeout=timeout)
            started = time.perf_counter()
            try:
                await call_with_retries(lambda m=model: m.ainvoke("hi"), policy, lambda *a: None)
                outcome = "answered"
            except ModelError:
                outcome = "error"
            wall = time.perf_counter() - started
            gaps = ", ".join(f"{g:.2f}" for g in server.gaps()) or "-"
            print(f"{name:<44} {outcome:<10} {len(server.hits):>8}  {gaps:<28} {wall:>8.2f}")


if __name__ == "__main__":
    asyncio.run(main())
