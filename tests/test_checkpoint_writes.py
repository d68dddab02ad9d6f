"""How a run's step records are written (durable.RunCheckpoint): the records of steps that end together in one
transaction (group commit), yet a step never starts before the records it may use are in the store, and no one is
told of a step's end before its record is. Real SQLite files, scripted models."""

from __future__ import annotations

import asyncio
import sqlite3

import pytest
from helpers import plan_json

from decompose import Orchestrator, ScriptedChatModel
from decompose.checkpoints import CheckpointStore
from decompose.durable import RunCheckpoint
from decompose.errors import CheckpointError
from decompose.events import StepFinished, StepStarted
from decompose.models.scripted import asks_for_plan, asks_to_combine


def recorded_steps(path) -> set[int]:
    """The step records in the store, as another process would read them."""
    with sqlite3.connect(path) as db:
        return {step for (step,) in db.execute("SELECT step_id FROM decompose_run_steps")}


def test_a_step_starts_only_once_the_records_it_may_use_are_in_the_store(tmp_path):
    ck = tmp_path / "ck.sqlite3"
    seen: dict[str, set[int]] = {}

    def answer(what: str, text: str):
        def reply(_messages) -> str:
            seen[what] = recorded_steps(ck)  # what a killed process would leave at the moment the step starts
            return text

        return reply

    plan = plan_json(
        "What is alpha?",
        "What is beta?",
        "What is gamma?",
        {"id": 4, "question": "Combine {1} and {2} into delta", "depends_on": [1, 2]},
        {"id": 5, "question": "Turn {4} into epsilon", "depends_on": [4]},
    )
    model = ScriptedChatModel(
        rules=[
            (asks_for_plan, plan),
            (asks_to_combine, answer("synthesis", "Answer: epsilon")),
            ("epsilon", answer("epsilon", "epsilon")),  # first: step 5's prompt holds step 4's answer, "delta"
            ("delta", answer("delta", "delta")),
        ],
        default="a letter",
    )
    result = Orchestrator(model, checkpoints=str(ck)).run("Spell the letters", run_id="r1")
    assert result.answer == "epsilon"
    assert {1, 2} <= seen["delta"]
    assert {1, 2, 3, 4} <= seen["epsilon"]
    assert seen["synthesis"] == {1, 2, 3, 4, 5}


def test_a_step_end_is_told_only_once_its_record_is_in_the_store(tmp_path):
    ck = tmp_path / "ck.sqlite3"
    told: list[tuple[int, bool]] = []

    def on_event(event) -> None:
        if isinstance(event, StepFinished):
            told.append((event.step_id, event.step_id in recorded_steps(ck)))

    model = ScriptedChatModel(
        rules=[(asks_for_plan, plan_json("What is a?", "What is b?", "What is c?")), (asks_to_combine, "Answer: abc")],
        default="a letter",
    )
    Orchestrator(model, checkpoints=str(ck)).run("Spell a, b and c", on_event=on_event)
    assert sorted(told) == [(1, True), (2, True), (3, True)]


def test_steps_that_end_in_one_turn_of_the_loop_share_a_transaction_and_are_told_once_it_is_committed(tmp_path):
    ck = tmp_path / "ck.sqlite3"
    commits: list[list[int]] = []

    class CountingStore(CheckpointStore):
        def save_steps(self, run_id, ended):
            commits.append([step for step, _, _ in ended])
            super().save_steps(run_id, ended)

    told: list[tuple[str, set[int]]] = []
    checkpoint = RunCheckpoint(
        CountingStore(ck), "r1", lambda event: told.append((type(event).__name__, recorded_steps(ck)))
    )
    checkpoint.begin("a question", [], given_plan=False)

    def keep(event) -> None:  # as the Orchestrator's run does with each event
        checkpoint(event)
        checkpoint.tell_when_written(event)

    async def steps_end_together() -> None:
        for step in (1, 2, 3):
            keep(StepFinished(step_id=step, answer=f"answer {step}", elapsed=0.1))
        keep(StepStarted(step_id=4, question="next"))
        assert told == []  # nothing told before its record is in the store
        await checkpoint.caught_up()

    asyncio.run(steps_end_together())
    assert commits == [[1, 2, 3]]
    assert told == [("StepFinished", {1, 2, 3})] * 3 + [("StepStarted", {1, 2, 3})]
    assert set(CheckpointStore(ck, create=False).load("r1").records) == {1, 2, 3}


def test_a_run_id_begun_again_starts_over_and_keeps_its_ledger(tmp_path):
    store = CheckpointStore(tmp_path / "ck.sqlite3")
    store.begin("r1", "first question", history=[], given_plan=False)
    store.save_steps("r1", [(1, {"type": "StepFinished"}, ["A1"])])
    store.ledger_start("r1", 2, "refund", {"order": "7"})
    store.end("r1", "finished", answer="done")
    store.begin("r1", "second question", history=[], given_plan=True)
    saved = store.load("r1")
    assert (saved.question, saved.status, saved.given_plan, saved.records, saved.answer, saved.missing) == (
        "second question",
        "running",
        True,
        {},
        None,
        [],
    )
    assert store.ledger_entry("r1", 2)["status"] == "started"


def test_a_record_that_cannot_be_committed_stops_the_run_before_the_next_step_and_is_never_told(tmp_path):
    ck = tmp_path / "ck.sqlite3"
    store = CheckpointStore(ck, busy_timeout=0.05)
    store.retry_wait = 0.01
    other = sqlite3.connect(ck, isolation_level=None, check_same_thread=False)
    asked: list[str] = []
    told: list[str] = []

    def answer(what: str):
        def reply(_messages) -> str:
            asked.append(what)
            return what

        return reply

    def on_event(event) -> None:
        told.append(type(event).__name__)
        if isinstance(event, StepStarted) and event.step_id == 1:
            other.execute("BEGIN EXCLUSIVE")  # another process writing, past the busy timeout

    plan = plan_json("What is alpha?", {"id": 2, "question": "What follows {1}?", "depends_on": [1]})
    model = ScriptedChatModel(
        rules=[
            (asks_for_plan, plan),
            (asks_to_combine, "Answer: beta"),
            ("follows", answer("beta")),  # first: step 2's prompt holds step 1's answer, "alpha"
            ("alpha", answer("alpha")),
        ]
    )
    orch = Orchestrator(model, checkpoints=store)
    with pytest.raises(CheckpointError, match="is locked by another process"):
        orch.run("What comes after alpha?", run_id="r1", on_event=on_event)
    assert asked == ["alpha"] and "StepFinished" not in told  # step 2 never started; step 1's end never told
    other.execute("ROLLBACK")

    assert store.load("r1").records == {}
    assert orch.resume("r1").answer == "beta"
    assert asked == ["alpha", "alpha", "beta"]  # its record lost, step 1 was asked again
