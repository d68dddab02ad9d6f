"""decompose/events.py: the events' plain-data forms, their way back from JSON, and the token usage arithmetic."""

import dataclasses
import json
import typing

import pytest
from langchain_core.messages import AIMessage

from decompose.events import (
    EVENT_TYPES,
    Answered,
    ApprovalRequested,
    Event,
    IntentDetected,
    PlanFallback,
    PlanReady,
    Retried,
    RouteChosen,
    RunEvent,
    StepFailed,
    StepFinished,
    StepSkipped,
    StepStarted,
    TokenCount,
    Usage,
)


def reply(input_tokens: int, output_tokens: int) -> AIMessage:
    return AIMessage(
        content="x",
        usage_metadata={
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "total_tokens": input_tokens + output_tokens,
        },
    )


@pytest.mark.parametrize(
    "event, fields",
    [
        (
            PlanReady(plan={"steps": [{"id": 1, "question": "A?"}]}, t=1.5),
            {"plan": {"steps": [{"id": 1, "question": "A?"}]}, "replan": 0},
        ),
        (StepStarted(step_id=2, question="B?", t=1.5), {"step_id": 2, "question": "B?", "tool": None}),
        (
            StepFinished(
                step_id=2,
                answer=42,
                elapsed=0.25,
                model="m",
                usage={"input": 3, "output": 1, "calls": 1},
                sources=[{"id": "doc", "score": 1.0}],
                program="answer = 6 * 7",
                program_output="",
                t=1.5,
            ),
            {
                "step_id": 2,
                "answer": 42,
                "elapsed": 0.25,
                "model": "m",
                "usage": {"input": 3, "output": 1, "calls": 1},
                "sources": [{"id": "doc", "score": 1.0}],
                "program": "answer = 6 * 7",
                "program_output": "",
                "vote": None,
                "args": None,
            },
        ),
        (
            StepFailed(step_id=3, error="boom", t=1.5),
            {"step_id": 3, "error": "boom", "program": None, "program_output": None, "elapsed": None},
        ),
        (StepSkipped(step_id=4, reason="step 3 failed", t=1.5), {"step_id": 4, "reason": "step 3 failed"}),
        (
            Retried(phase="solve", attempt=2, reason="HTTP 503", wait=0.5, step_id=1, t=1.5),
            {"phase": "solve", "attempt": 2, "reason": "HTTP 503", "wait": 0.5, "step_id": 1, "kind": "transport"},
        ),
        (Answered(answer="43", t=1.5), {"answer": "43"}),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, Event) else "",
)
def test_to_dict_is_every_field_plus_the_type_and_time(event, fields):
    data = event.to_dict()
    assert data == {**fields, "t": 1.5, "type": type(event).__name__}
    assert event.type == type(event).__name__
    assert json.loads(json.dumps(data)) == data  # plain data: a trace line as it is


# One of each event type, every field set to a value other than its default, as JSON can carry it.
EVERY_EVENT = [
    PlanReady(plan={"question": "Q?", "steps": [{"id": 1, "question": "A?", "depends_on": []}]}, replan=2, t=1.0),
    PlanFallback(kind="salvaged", reason="step 2 echoes the question", t=2.0),
    StepStarted(step_id=1, question="A?", tool="calculator", t=3.0),
    StepFinished(
        step_id=1,
        answer={"total": 42},
        elapsed=0.5,
        model="m",
        usage={"input": 3, "output": 1, "calls": 1},
        sources=[{"id": "doc#1", "score": 1.25}],
        program="answer = 42",
        program_output="42\n",
        vote={"42": 3.0, "41": 1.0},
        args={"expression": "6*7"},
        t=4.0,
    ),
    StepFailed(step_id=2, error="boom", program="answer = 1/0", program_output="", elapsed=0.25, t=5.0),
    StepSkipped(step_id=3, reason="step 2 failed", t=6.0),
    ApprovalRequested(step_id=4, tool="refund", args={"amount": "142"}, reason="amount 142 is above 100", t=6.5),
    Retried(phase="solve", attempt=2, reason="HTTP 503", wait=0.5, step_id=1, kind="tool", t=7.0),
    IntentDetected(intent="card_arrival", confidence=0.93, router="trained:smollm2", route="cards", error="x", t=8.0),
    RouteChosen(name="program", why="numbers", tried={"direct": "18"}, t=9.0),
    Answered(answer="42", t=10.0),
]


def test_every_event_type_is_in_the_union_and_in_the_round_trip_test():
    assert set(typing.get_args(RunEvent)) == set(EVENT_TYPES.values()) == {type(e) for e in EVERY_EVENT}
    for event in EVERY_EVENT:  # every field differs from its default: a field the JSON form dropped would show
        defaults = type(event)(
            **{
                f.name: getattr(event, f.name)
                for f in dataclasses.fields(event)
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
            }
        )
        assert all(
            getattr(event, f.name) != getattr(defaults, f.name)
            for f in dataclasses.fields(event)
            if f.name != "t" and (f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING)
        )


@pytest.mark.parametrize("event", EVERY_EVENT, ids=lambda e: e.type)
def test_every_event_round_trips_through_json(event):
    assert Event.from_dict(event.to_dict()) == event
    line = json.dumps(event.to_dict())  # a --trace line, a server-sent event's data
    back = Event.from_dict(json.loads(line))
    assert back == event and type(back) is type(event)
    assert type(event).from_dict(event.to_dict()) == event  # also through its own class


def test_events_are_frozen_plain_data():
    with pytest.raises(dataclasses.FrozenInstanceError):
        Answered(answer="a").answer = "b"  # type: ignore[misc]


@pytest.mark.parametrize(
    "data, message",
    [
        ({"type": "Guessed", "answer": "1"}, "unknown event type 'Guessed'; the types are PlanReady, "),
        ({"answer": "1"}, 'an event is a JSON object with a "type"'),
        (
            {"type": "Answered", "answer": "1", "colour": "red"},
            "Answered has no field 'colour'; its fields are answer, t",
        ),
        ({"type": "StepSkipped", "step_id": 1}, "StepSkipped: "),
    ],
)
def test_from_dict_names_what_is_wrong(data, message):
    with pytest.raises(ValueError) as err:
        Event.from_dict(data)
    assert str(err.value).startswith(message)
    assert "reason" in str(err.value) or data.get("type") != "StepSkipped"


def test_from_dict_on_a_subclass_refuses_another_type():
    with pytest.raises(ValueError, match="Answered is not a StepStarted"):
        StepStarted.from_dict(Answered(answer="a").to_dict())


def test_the_time_defaults_to_the_monotonic_clock_at_creation():
    first, second = Answered(answer="a"), Answered(answer="b")
    assert 0 < first.t <= second.t


def test_to_dict_is_a_copy_the_event_does_not_share():
    event = PlanReady(plan={"steps": [{"id": 1, "question": "A?"}]})
    event.to_dict()["plan"]["steps"].append({"id": 2})
    assert event.plan == {"steps": [{"id": 1, "question": "A?"}]}


def test_a_token_count_counts_each_call_and_the_tokens_reported():
    count = TokenCount()
    count.add(reply(10, 2))
    count.add(None)  # a call whose reply carried no usage still counts as a call
    count.add(AIMessage(content="no usage"))
    count.add(reply(5, 1))
    assert (count.input, count.output, count.calls, count.total) == (15, 3, 4, 18)
    assert count.to_dict() == {"input": 15, "output": 3, "calls": 4}


def test_usage_adds_up_its_phases():
    usage = Usage()
    usage.add("decompose", reply(100, 20))
    usage.add("solve", reply(30, 5))
    usage.add("solve", reply(31, 6))
    usage.add("synthesize", None)
    usage.transport_retries, usage.parse_retries = 2, 1
    assert usage.phases["solve"].to_dict() == {"input": 61, "output": 11, "calls": 2}
    assert (usage.input_tokens, usage.output_tokens, usage.total_tokens, usage.model_calls) == (161, 31, 192, 4)
    assert usage.to_dict() == {
        "input_tokens": 161,
        "output_tokens": 31,
        "total_tokens": 192,
        "model_calls": 4,
        "transport_retries": 2,
        "parse_retries": 1,
        "cache_hits": 0,
        "cached_tokens": 0,
        "cost": 0.0,
        "phases": {
            "decompose": {"input": 100, "output": 20, "calls": 1},
            "solve": {"input": 61, "output": 11, "calls": 2},
            "synthesize": {"input": 0, "output": 0, "calls": 1},
        },
    }


def test_empty_usage_is_all_zeros():
    assert Usage().to_dict() == {
        "input_tokens": 0,
        "output_tokens": 0,
        "total_tokens": 0,
        "model_calls": 0,
        "transport_retries": 0,
        "parse_retries": 0,
        "cache_hits": 0,
        "cached_tokens": 0,
        "cost": 0.0,
        "phases": {},
    }
