"""Crash soak: runs of the customer-service agent, each killed (SIGKILL of the real process) at a random point and
resumed from its checkpoint, some killed again while resuming.

    python benchmarks/crash_soak.py              # 200 runs
    python benchmarks/crash_soak.py --runs 50    # a quicker one

Each run answers "Please refund order A1001 for ann@example.com: the kettle arrived broken. Please open a ticket
too." on a scripted model (a small latency per call) in a fresh copy of the demo shop: find the customer, check
the refund, issue it, open a ticket, write an apology (a model step), synthesize. The payment side is slowed (a
pause before and after the refund's and the ticket's write), so kills land inside side-effecting calls too. A child
process prints `ready` just before its run starts; the parent then waits a random time within the run's length and
kills it. Checked and printed:
- duplicate side effects: a refund or a ticket written twice in a shop (0 expected);
- re-run steps: a step asked again (a model call, a tool call) by a resuming process although the checkpoint it
  resumed from had the step ended, or a plan asked again although it was saved (0 expected);
- answer mismatches: the final answer unlike an uninterrupted run's (0 expected);
- leftovers after expiry: checkpoint rows left once the store's ttl has passed for every run (0 expected).
Exit status 1 when a check fails.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a source checkout too

QUESTION = "Please refund order A1001 for ann@example.com: the kettle arrived broken. Please open a ticket too."
PLAN = {
    "steps": [
        {"id": 1, "question": "Find the customer", "tool": "find_customer", "args": {"email": "ann@example.com"}},
        {"id": 2, "question": "Is A1001 refundable?", "tool": "refund_eligibility", "args": {"order_id": "A1001"}},
        {
            "id": 3,
            "question": "Refund it",
            "tool": "issue_refund",
            "args": {"order_id": "A1001", "amount": "{2.max_refundable}", "reason": "kettle arrived broken"},
            "depends_on": [2],
        },
        {
            "id": 4,
            "question": "Open a ticket",
            "tool": "open_ticket",
            "args": {"customer": "C001", "subject": "Broken kettle", "body": "Refunded: {3}", "order_id": "A1001"},
            "depends_on": [1, 3],
        },
        {"id": 5, "question": "Write a one-line apology for the broken kettle", "depends_on": [3]},
    ]
}
APOLOGY = "We are sorry the kettle arrived broken."
LATENCY = 0.05  # seconds per model call
PAUSE = 0.04  # seconds before and after a side-effecting write


# ----- the child: one process running or resuming one run -------------------------------------------------------


def child(args: argparse.Namespace) -> None:
    from decompose.agents import build_agent
    from decompose.checkpoints import CheckpointStore
    from decompose.models.scripted import ScriptedChatModel, asks_for_plan, asks_to_combine
    from decompose.tools import cs_store

    log = sqlite3.connect(args.log, isolation_level=None, timeout=30, check_same_thread=False)

    def note(what: str) -> None:
        log.execute("INSERT INTO calls VALUES (?, ?)", (os.getpid(), what))

    def counted(name: str, pause: float) -> None:
        """The shop's `name` noted on each call, `pause` seconds before and after it (the payment side's)."""
        method = getattr(cs_store.Store, name)

        def call(self: Any, *a: Any, **k: Any) -> Any:
            note(name)
            time.sleep(pause)
            out = method(self, *a, **k)
            time.sleep(pause)
            return out

        setattr(cs_store.Store, name, call)

    for name in ("find_customer", "refund_eligibility"):
        counted(name, 0)
    for name in ("issue_refund", "open_ticket"):
        counted(name, PAUSE)

    def reply(what: str, text: Any) -> Any:
        def answer(messages: Any) -> str:
            note(what)
            return text(messages) if callable(text) else text

        return answer

    def findings(messages: Any) -> str:  # the sub-answers as the synthesis saw them
        return "Answer: " + " ".join(messages[-1].content.split("Sub-questions and answers:")[1].split())

    model = ScriptedChatModel(
        rules=[
            (asks_for_plan, reply("planning", json.dumps(PLAN))),
            (asks_to_combine, reply("synthesis", findings)),
            (r"apology", reply("step 5", APOLOGY)),
        ],
        default="?",
        latency=LATENCY,
    )
    store = CheckpointStore(args.checkpoints)
    agent = build_agent("customer-service", model, db_path=args.shop, checkpoints=store)
    print("ready", flush=True)
    if args.resume:
        result = agent.resume(args.run_id)
    else:
        result = agent.run(QUESTION, run_id=args.run_id)
    print(json.dumps({"answer": result.answer, "error": result.error}), flush=True)


# ----- the parent -------------------------------------------------------------------------------------------------

STEP_OF = {"find_customer": 1, "refund_eligibility": 2, "issue_refund": 3, "open_ticket": 4, "step 5": 5}


def launch(work: Path, run_id: str, shop: Path, resume: bool) -> subprocess.Popen:
    command = [sys.executable, __file__, "--child", "--log", str(work / "calls.sqlite3")]
    command += ["--checkpoints", str(work / "checkpoints.sqlite3"), "--shop", str(shop), "--run-id", run_id]
    return subprocess.Popen(
        command + (["--resume"] if resume else []), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def attempt(work: Path, run_id: str, shop: Path, resume: bool, kill_after: float | None) -> tuple[str, Any, int]:
    """One process: ('killed', None, pid), ('done', its printout, pid) or ('failed', stderr, pid)."""
    proc = launch(work, run_id, shop, resume)
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != "ready":
        return "failed", proc.communicate()[1], proc.pid
    if kill_after is not None:
        try:
            proc.wait(timeout=kill_after)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)  # kill -9
            proc.communicate()
            return "killed", None, proc.pid
    out, err = proc.communicate(timeout=120)
    if proc.returncode != 0:
        return "failed", err, proc.pid
    return "done", json.loads(out.strip().splitlines()[-1]), proc.pid


def calls_of(work: Path, pid: int) -> list[str]:
    with sqlite3.connect(work / "calls.sqlite3") as db:
        return [w for (w,) in db.execute("SELECT what FROM calls WHERE pid = ?", (pid,))]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--twice", type=float, default=0.3, help="share of runs killed again while resuming")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--child", action="store_true")
    parser.add_argument("--log")
    parser.add_argument("--checkpoints")
    parser.add_argument("--shop")
    parser.add_argument("--run-id")
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args()
    if args.child:
        child(args)
        return 0

    from decompose.checkpoints import CheckpointStore

    rng = random.Random(args.seed)
    work = Path(tempfile.mkdtemp(prefix="crash-soak-"))
    with sqlite3.connect(work / "calls.sqlite3") as db:
        db.execute("CREATE TABLE calls (pid INTEGER, what TEXT)")
    store = CheckpointStore(work / "checkpoints.sqlite3")

    # The reference: one run, never killed.
    started = time.monotonic()
    status, reference, _ = attempt(work, "reference", work / "shop-reference.sqlite3", False, None)
    assert status == "done", reference
    run_length = time.monotonic() - started  # start-up included: the kill window starts at `ready`, so generous
    with sqlite3.connect(work / "calls.sqlite3") as db:
        expected_calls = db.execute("SELECT COUNT(*) FROM calls").fetchone()[0]
    print(f"reference answer: {reference['answer']!r} ({expected_calls} calls, {run_length:.2f}s with start-up)")
    window = _run_window(work, store)

    totals = {"kills": 0, "processes": 0, "duplicate side effects": 0, "re-run steps": 0, "answer mismatches": 0}
    totals |= {"killed twice": 0, "ended before the kill": 0, "failed processes": 0, "repeats made safe by a key": 0}
    for i in range(args.runs):
        run_id, shop = f"soak-{i}", work / f"shop-{i}.sqlite3"
        kills = 2 if rng.random() < args.twice else 1
        outcome: tuple[str, Any, int] = ("killed", None, 0)
        resume, pids = False, []
        while True:
            ended: set[int] = set()
            planned = False
            if resume:
                saved = store.load(run_id)
                if saved is None:  # killed before the run was written: nothing of it happened, start it again
                    resume = False
                    continue
                if saved.status == "finished":  # killed after its checkpoint was marked finished
                    outcome = ("done", {"answer": saved.answer}, 0)
                    break
                planned = saved.plan is not None
                ended = set(saved.records) | {
                    s for s in STEP_OF.values() if (store.ledger_entry(run_id, s) or {}).get("status") == "done"
                }
            kill_after = rng.uniform(0, window) if kills > 0 else None
            outcome = attempt(work, run_id, shop, resume, kill_after)
            totals["processes"] += 1
            pids.append(outcome[2])
            asked = calls_of(work, outcome[2])
            totals["re-run steps"] += sum(1 for w in asked if STEP_OF.get(w) in ended) + (
                "planning" in asked and planned
            )
            if outcome[0] == "failed":
                totals["failed processes"] += 1
                print(f"{run_id}: a process failed: {outcome[1].strip().splitlines()[-1:]}")
                break
            if outcome[0] == "done":
                if kills > 0:
                    totals["ended before the kill"] += 1
                break
            totals["kills"] += 1
            kills -= 1
            if kills == 0 and resume:
                totals["killed twice"] += 1
            resume = True
        if outcome[0] == "done" and outcome[1]["answer"] != reference["answer"]:
            totals["answer mismatches"] += 1
            print(f"{run_id}: answer {outcome[1]['answer']!r}")
        dupes, repeats = _side_effects(shop, [w for pid in pids for w in calls_of(work, pid)])
        totals["duplicate side effects"] += dupes
        totals["repeats made safe by a key"] += repeats

    later = CheckpointStore(work / "checkpoints.sqlite3", clock=lambda: time.time() + store.ttl + 1)
    leftovers = later.counts()
    totals["leftovers after expiry"] = sum(leftovers.values())
    print(json.dumps(totals, indent=2))
    bad = ("duplicate side effects", "re-run steps", "answer mismatches", "leftovers after expiry", "failed processes")
    return 1 if any(totals[k] for k in bad) else 0


def _run_window(work: Path, store: Any) -> float:
    """How long a run takes once its process is ready: the reference's checkpoint, from its creation to its end."""
    saved = store.load("reference")
    return max((saved.finished_at or 0) - saved.created_at, 0.1) * 1.1


def _side_effects(shop: Path, asked: list[str]) -> tuple[int, int]:
    """(writes made twice in the shop, side-effecting calls made again with the same idempotency key: a call in
    flight when its process was killed, which the shop made a no-op)."""
    with sqlite3.connect(shop) as db:
        refunds = db.execute("SELECT COUNT(*) FROM refunds WHERE order_id = 'A1001'").fetchone()[0]
        tickets = db.execute("SELECT COUNT(*) FROM tickets WHERE subject = 'Broken kettle'").fetchone()[0]  # not seeded
    repeats = sum(max(asked.count(name) - 1, 0) for name in ("issue_refund", "open_ticket"))
    return max(refunds - 1, 0) + max(tickets - 1, 0), repeats


if __name__ == "__main__":
    sys.exit(main())
