"""decompose/run_state.py: the run state and `apply`, the one function that changes it; and the engine that folds
a real run's events through it (attempts counted from the retries, the plan's steps filled from the state)."""

import json

import pytest
from langchain_core.tools import tool

from decompose import Orchestrator, RetryableToolError
from decompose.events import (
    Answered,
    ApprovalRequested,
    Event,
    IntentDetected,
    PlanFallback,
    PlanReady,
    Retried,
    RouteChosen,
    StepFailed,
    StepFinished,
    StepSkipped,
    StepStarted,
)
from decompose.models.scripted import ScriptedChatModel, asks_for_plan, asks_to_combine
from decompose.run_state import MOVES, RunState, StepState, TransitionError, apply

PLAN = {
    "steps": [
        {"id": 1, "question": "Who directed Titanic?", "depends_on": []},
        {"id": 2, "question": "When was {1} born?", "depends_on": [1]},
        {"id": 3, "question": "Compute it", "depends_on": [], "tool": "calculator", "args": {"expression": "6*7"}},
    ]
}


def planned() -> RunState:
    return apply(RunState(), PlanReady(plan=PLAN, t=1.0))


def fold(events, state=None) -> RunState:
    state = state or RunState()
    for event in events:
        state = apply(state, event)
    return state


def test_a_plan_makes_every_step_pending_with_its_plan_fields():
    state = planned()
    assert list(state.steps) == [1, 2, 3]
    assert state.steps[3] == StepState(id=3, question="Compute it", tool="calculator", args={"expression": "6*7"})
    assert state.steps[2].depends_on == (1,) and state.steps[2].status == "pending"


def test_apply_is_pure_the_state_it_was_given_is_unchanged():
    before = planned()
    snapshot = json.dumps(before.to_dict())
    after = apply(before, StepStarted(step_id=1, question="Who directed Titanic?", t=2.0))
    assert json.dumps(before.to_dict()) == snapshot and before.steps[1].status == "pending"
    assert after.steps[1].status == "running" and after.steps[2] is before.steps[2]  # unchanged steps are shared


def test_started_then_finished():
    state = fold(
        [
            StepStarted(step_id=1, question="Who directed Titanic?", t=2.0),
            StepFinished(
                step_id=1,
                answer="James Cameron",
                elapsed=0.5,
                model="m",
                vote={"James Cameron": 2.0},
                usage={"input": 3, "output": 2, "calls": 1},
                sources=[{"id": "d", "score": 1.0}],
                t=2.5,
            ),
        ],
        planned(),
    )
    step = state.steps[1]
    assert (step.status, step.answer, step.attempts, step.started, step.elapsed) == (
        "done",
        "James Cameron",
        1,
        2.0,
        0.5,
    )
    assert (step.model, step.vote, step.usage, step.sources) == (
        "m",
        {"James Cameron": 2.0},
        {"input": 3, "output": 2, "calls": 1},
        [{"id": "d", "score": 1.0}],
    )
    assert state.shown_question(2) == "When was James Cameron born?"  # its reference resolved once answered


def test_a_tool_step_finished_with_corrected_arguments_keeps_them():
    state = fold(
        [
            StepStarted(step_id=3, question="Compute it", tool="calculator"),
            StepFinished(step_id=3, answer=42, elapsed=0.1, args={"expression": "6 * 7"}),
        ],
        planned(),
    )
    assert state.steps[3].args == {"expression": "6 * 7"}
    unchanged = fold(
        [StepStarted(step_id=3, question="Compute it"), StepFinished(step_id=3, answer=42, elapsed=0.1)], planned()
    )
    assert unchanged.steps[3].args == {"expression": "6*7"}


def test_started_then_failed_with_its_program_and_the_time_since_it_started():
    state = fold(
        [
            StepStarted(step_id=1, question="q", t=2.0),
            StepFailed(step_id=1, error="ZeroDivisionError", program="answer = 1/0", program_output="", t=3.5),
        ],
        planned(),
    )
    step = state.steps[1]
    assert (step.status, step.error, step.elapsed, step.program, step.program_output) == (
        "failed",
        "ZeroDivisionError",
        1.5,
        "answer = 1/0",
        "",
    )
    timed = fold(
        [StepStarted(step_id=1, question="q", t=2.0), StepFailed(step_id=1, error="x", elapsed=0.25)], planned()
    )
    assert timed.steps[1].elapsed == 0.25  # the event's own figure when it has one


def test_pending_then_skipped_with_why():
    state = apply(planned(), StepSkipped(step_id=2, reason="step 1 failed"))
    assert (state.steps[2].status, state.steps[2].error, state.steps[2].attempts) == ("skipped", "step 1 failed", 0)


def test_each_retry_of_a_running_step_is_one_more_attempt():
    state = fold(
        [
            StepStarted(step_id=1, question="q"),
            Retried(phase="solve", attempt=1, reason="HTTP 503", wait=0.1, step_id=1),
            Retried(phase="solve", attempt=2, reason="HTTP 503", wait=0.2, step_id=1),
        ],
        planned(),
    )
    assert state.steps[1].attempts == 3 and state.steps[1].retries == 2
    state = apply(state, StepFinished(step_id=1, answer="a", elapsed=1.0))
    assert state.steps[1].attempts == 3  # finishing keeps the count


def test_a_retry_outside_a_running_step_changes_no_step():
    state = planned()
    for retry in (
        Retried(phase="solve", attempt=1, reason="x", wait=0, step_id=2),  # not running (a nested plan's)
        Retried(phase="solve", attempt=1, reason="x", wait=0, step_id=9),  # no such step
        Retried(phase="synthesize", attempt=1, reason="x", wait=0),
    ):
        assert apply(state, retry) == state
    assert apply(state, Retried(phase="decompose", attempt=1, reason="bad JSON", wait=0)).plan_retries == 1


def test_events_that_say_nothing_of_the_steps_leave_them():
    state = planned()
    for event in (
        PlanFallback(kind="direct", reason="x"),
        RouteChosen(name="direct", why="short"),
        IntentDetected(intent="i", confidence=None, router="r"),
    ):
        assert apply(state, event) == state
    assert apply(state, Answered(answer="1954")) == RunState(steps=state.steps, answer="1954")


def test_a_replan_keeps_the_steps_so_far_and_adds_the_new_ones_pending():
    state = fold(
        [StepStarted(step_id=1, question="q"), StepFinished(step_id=1, answer="James Cameron", elapsed=1)], planned()
    )
    grown = {"steps": [*PLAN["steps"], {"id": 4, "question": "Where was {1} born?", "depends_on": [1]}]}
    after = apply(state, PlanReady(plan=grown, replan=1))
    assert after.steps[1] is state.steps[1] and after.steps[4].status == "pending" and after.steps[4].replan == 1
    fresh = apply(state, PlanReady(plan=PLAN))  # a first plan starts over
    assert fresh.steps[1].status == "pending"


LEGAL = [  # (the step's status before, the event, the status after): every legal move
    ("pending", StepStarted(step_id=1, question="q"), "running"),
    ("running", StepFinished(step_id=1, answer="a", elapsed=0.1), "done"),
    ("running", StepFailed(step_id=1, error="boom"), "failed"),
    ("pending", StepSkipped(step_id=1, reason="why"), "skipped"),
    ("running", ApprovalRequested(step_id=1, tool="refund", args={"amount": 142}, reason="over 100"), "awaiting"),
]


def at(status: str) -> RunState:
    """The planned state with step 1 brought to `status` through legal events."""
    path = {
        "pending": [],
        "running": [LEGAL[0][1]],
        "done": [LEGAL[0][1], LEGAL[1][1]],
        "failed": [LEGAL[0][1], LEGAL[2][1]],
        "skipped": [LEGAL[3][1]],
        "awaiting": [LEGAL[0][1], LEGAL[4][1]],
    }[status]
    return fold(path, planned())


@pytest.mark.parametrize("before, event, after", LEGAL, ids=lambda v: v.type if isinstance(v, Event) else v)
def test_every_legal_move(before, event, after):
    assert apply(at(before), event).steps[1].status == after


def test_the_legal_moves_are_the_table_and_nothing_else():
    assert {(type(e), (b, a)) for b, e, a in LEGAL} == set(MOVES.items())
    statuses = ("pending", "running", "done", "failed", "skipped", "awaiting")
    for _, event, _ in LEGAL:
        for status in statuses:
            if MOVES[type(event)][0] == status:
                continue
            with pytest.raises(TransitionError):
                apply(at(status), event)


def test_an_illegal_move_is_refused_with_a_clear_error():
    with pytest.raises(TransitionError) as err:
        apply(at("done"), StepFinished(step_id=1, answer="again", elapsed=0.1))
    assert str(err.value) == (
        "step 1 is done: StepFinished moves a running step to done; apply each of a run's "
        "events once, in the order they were emitted"
    )
    with pytest.raises(
        TransitionError,
        match=r"StepStarted for step 7, which the plan does not have \(its steps: "
        r"1, 2, 3\); apply a run's events in order, from its PlanReady",
    ):
        apply(planned(), StepStarted(step_id=7, question="q"))
    with pytest.raises(TransitionError, match="no PlanReady yet"):
        apply(RunState(), StepSkipped(step_id=1, reason="why"))


def test_the_state_json_form_has_each_step_and_its_shown_question():
    state = fold(
        [
            StepStarted(step_id=1, question="q", t=2.0),
            StepFinished(step_id=1, answer="James Cameron", elapsed=0.5, t=2.5),
        ],
        planned(),
    )
    data = json.loads(json.dumps(state.to_dict()))
    assert [(s["id"], s["status"], s["shown_question"]) for s in data["steps"]] == [
        (1, "done", "Who directed Titanic?"),
        (2, "pending", "When was James Cameron born?"),
        (3, "pending", "Compute it"),
    ]
    assert data["steps"][2]["args"] == {"expression": "6*7"} and data["steps"][1]["depends_on"] == [1]


# ----- the engine: a real run, folded through the same function -------------------------------------------------


def test_a_run_is_its_events_folded_and_its_plan_steps_are_the_state():
    model = ScriptedChatModel(
        rules=[
            (asks_for_plan, json.dumps({"steps": PLAN["steps"][:2]})),
            (asks_to_combine, "James Cameron, born 1954."),
            (r"Question: Who directed Titanic", "James Cameron"),
            (r"Question: When was James Cameron born", "1954"),
        ],
        default="?",
    )
    result = Orchestrator(model).run("When was the director of Titanic born?")
    replayed = fold(Event.from_dict(json.loads(json.dumps(e.to_dict()))) for e in result.events)
    assert replayed.answer == result.answer
    for step in result.plan.steps:  # the Result's steps are the state the events make, field for field
        state = replayed.steps[step.id]
        assert (step.status, step.answer, step.attempts, step.elapsed, step.model) == (
            state.status,
            state.answer,
            state.attempts,
            state.elapsed,
            state.model,
        )
        assert step.status == "done" and step.attempts == 1 and step.elapsed > 0
    assert [s.answer for s in result.plan.steps] == ["James Cameron", "1954"]


def test_attempts_count_a_steps_retries():
    calls = []

    @tool
    def stock(sku: str) -> int:
        """The stock level of a product."""
        calls.append(sku)
        if len(calls) < 3:
            raise RetryableToolError("the warehouse is busy")
        return 7

    model = ScriptedChatModel(
        rules=[
            (
                asks_for_plan,
                json.dumps(
                    {"steps": [{"id": 1, "question": "How many W-1?", "tool": "stock", "args": {"sku": "W-1"}}]}
                ),
            ),
            (asks_to_combine, "7 in stock."),
        ],
        default="?",
    )
    result = Orchestrator(model, tools=[stock]).run("How many W-1 are in stock?")
    assert result.ok and calls == ["W-1"] * 3
    assert result.plan.steps[0].attempts == 3 and result.to_dict()["steps"][0]["attempts"] == 3
    assert sum(isinstance(e, Retried) for e in result.events) == 2
