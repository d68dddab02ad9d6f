"""A run in a process of its own, for the crash tests (tests/test_durable.py): it may kill itself with SIGKILL at a
chosen point, and another process resumes it from the checkpoint store.

    python tests/durable_worker.py --log LOG.sqlite3 --checkpoints CK.sqlite3 --run-id ID [--crash POINT]
                                   [--resume] [--keyed]

The plan: 1 asks the model an order's amount, 2 refunds it (a side-effecting tool; `--keyed`: one that takes an
idempotency key and makes a repeat a no-op), 3 asks the model for a confirmation of the refund; then the synthesis.
Every model call (by what it answers) and every refund the tool carries out is written to LOG, a SQLite file that
outlives the killed process. Crash points: `planning` (in the planner's reply), `before` (step 1 recorded, the
refund not started), `during` (the refund made, its call not returned), `after` (the refund's step recorded),
`synthesis` (in the synthesis's reply). Prints the Result as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sqlite3
import sys
from pathlib import Path
from typing import Annotated, Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from langchain_core.tools import InjectedToolArg, tool  # noqa: E402

from decompose import Orchestrator, ScriptedChatModel  # noqa: E402
from decompose.events import Event, StepFinished  # noqa: E402
from decompose.models.scripted import asks_for_plan, asks_to_combine  # noqa: E402
from decompose.tools.runner import side_effects  # noqa: E402

QUESTION = "Please refund order 7 and confirm it."
PLAN = {
    "steps": [
        {"id": 1, "question": "What is the amount of order 7?"},
        {
            "id": 2,
            "question": "Refund order 7",
            "tool": "refund",
            "args": {"order": "7", "amount": "{1}"},
            "depends_on": [1],
        },
        {"id": 3, "question": "Write a confirmation of {2}", "depends_on": [2]},
    ]
}


def kill() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


class Log:
    """Model calls and refunds, committed at once (the process may die the next instant)."""

    def __init__(self, path: str):
        # Autocommit, shared by the test's thread and the sync API's event-loop thread (one write at a time).
        self.db = sqlite3.connect(path, isolation_level=None, timeout=30, check_same_thread=False)
        self.db.execute("CREATE TABLE IF NOT EXISTS model_calls (what TEXT)")
        self.db.execute("CREATE TABLE IF NOT EXISTS refunds (key TEXT, order_id TEXT, amount TEXT)")
        self.db.execute("CREATE TABLE IF NOT EXISTS attempts (key TEXT)")

    def call(self, what: str) -> None:
        self.db.execute("INSERT INTO model_calls VALUES (?)", (what,))


def build(log: Log, crash: str | None, keyed: bool, checkpoints: str) -> Orchestrator:
    def reply(what: str, text: str) -> Any:
        def answer(_messages: Any) -> str:
            log.call(what)
            if crash == what:
                kill()
            return text

        return answer

    model = ScriptedChatModel(
        rules=[
            (asks_for_plan, reply("planning", json.dumps(PLAN))),
            (asks_to_combine, reply("synthesis", "Answer: Order 7 was refunded 42 dollars; confirmation sent.")),
            (r"amount of order 7", reply("amount", "42")),
            (r"confirmation of", reply("confirm", "Confirmation C-7 sent")),
        ],
        default="?",
    )

    def carry_out(order: str, amount: str, key: str | None) -> str:
        log.db.execute("INSERT INTO attempts VALUES (?)", (key,))
        done = key is not None and log.db.execute("SELECT 1 FROM refunds WHERE key = ?", (key,)).fetchone()
        if not done:
            log.db.execute("INSERT INTO refunds VALUES (?, ?, ?)", (key, order, amount))
        if crash == "during":
            kill()
        return f"refund R-{order} of {amount} dollars"

    if keyed:

        @tool
        def refund(order: str, amount: str, idempotency_key: Annotated[str, InjectedToolArg]) -> str:
            """Refund an order (a repeat with the same key is a no-op)."""
            return carry_out(order, amount, idempotency_key)

    else:

        @tool
        def refund(order: str, amount: str) -> str:
            """Refund an order."""
            return carry_out(order, amount, None)

    return Orchestrator(model, tools=[side_effects(refund)], checkpoints=checkpoints)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--log", required=True)
    parser.add_argument("--checkpoints", required=True)
    parser.add_argument("--run-id", required=True)
    parser.add_argument("--crash")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--keyed", action="store_true")
    args = parser.parse_args()
    orch = build(Log(args.log), args.crash, args.keyed, args.checkpoints)

    def on_event(event: Event) -> None:  # told after the checkpoint wrote the event
        if isinstance(event, StepFinished) and (args.crash, event.step_id) in (("before", 1), ("after", 2)):
            kill()

    if args.resume:
        result = orch.resume(args.run_id, on_event=on_event)
    else:
        result = orch.run(QUESTION, run_id=args.run_id, on_event=on_event)
    print(result.to_json())


if __name__ == "__main__":
    main()
