"""decompose/result.py: the result's JSON form, `ok`, and the citations."""

import json
from datetime import date

from helpers import RESULT_KEYS

from decompose.events import Answered, StepFinished, Usage
from decompose.plan import Plan
from decompose.result import Result

KEYS = RESULT_KEYS


def two_step_plan() -> Plan:
    plan = Plan.from_data(
        {
            "steps": [
                {"id": 1, "question": "How tall is the Eiffel Tower?"},
                {"id": 2, "question": "Is {1} more than 300 m?", "tool": "compare", "args": {"value": "{1}"}},
            ]
        }
    )
    one, two = plan.steps
    one.status, one.answer, one.attempts, one.model, one.elapsed = "done", "330 m", 1, "m", 0.5
    one.sources = [{"id": "eiffel", "score": 2.0}]
    two.status, two.error, two.attempts = "failed", "tool 'compare' failed", 2
    return plan


def test_to_dict_holds_the_answer_every_step_usage_and_events():
    usage = Usage()
    usage.add("solve", None)
    result = Result(
        question="Is it tall?",
        answer="yes",
        plan=two_step_plan(),
        usage=usage,
        events=[Answered(answer="yes", t=2.0)],
        elapsed=1.234567,
    )
    data = result.to_dict()
    assert set(data) == KEYS
    assert (data["question"], data["answer"], data["ok"], data["error"]) == ("Is it tall?", "yes", True, None)
    assert data["elapsed"] == 1.2346  # rounded to 4 places
    assert data["steps"][0] == {
        "id": 1,
        "question": "How tall is the Eiffel Tower?",
        "depends_on": [],
        "status": "done",
        "answer": "330 m",
        "error": None,
        "attempts": 1,
        "model": "m",
        "elapsed": 0.5,
        "vote": None,
        "sources": [{"id": "eiffel", "score": 2.0}],
        "program": None,
        "program_output": None,
    }
    # A tool step carries its tool and arguments; the reference {1} makes it depend on step 1.
    assert {k: data["steps"][1][k] for k in ("tool", "args", "depends_on", "status", "error", "attempts")} == {
        "tool": "compare",
        "args": {"value": "{1}"},
        "depends_on": [1],
        "status": "failed",
        "error": "tool 'compare' failed",
        "attempts": 2,
    }
    assert data["usage"] == usage.to_dict() and data["usage"]["model_calls"] == 1
    assert data["events"] == [{"answer": "yes", "t": 2.0, "type": "Answered"}]
    assert data["citations"] == result.citations


def test_without_a_plan_there_are_no_steps():
    data = Result(question="Q?", answer=None, plan=None, usage=Usage(), error="no usable plan").to_dict()
    assert set(data) == KEYS and data["steps"] == [] and data["citations"] == [] and data["events"] == []


def test_to_json_is_the_dict_as_json_non_ascii_kept_and_any_answer_written():
    result = Result(
        question="Où est Zoë?",
        answer="à Paris",
        plan=two_step_plan(),
        usage=Usage(),
        events=[StepFinished(step_id=1, answer=date(2024, 5, 1), elapsed=0.1, t=1.0)],
    )
    text = result.to_json()
    assert "Où est Zoë?" in text and "\\u" not in text
    assert "\n  " in text and "\n" not in result.to_json(indent=None)
    data = json.loads(text)
    assert data["events"][0]["answer"] == "2024-05-01"  # a tool's date, written with str()
    assert {k: v for k, v in data.items() if k != "events"} == {
        k: v for k, v in result.to_dict().items() if k != "events"
    }


def test_ok_needs_an_answer_and_no_error():
    def result(answer, error):
        return Result(question="Q?", answer=answer, plan=None, usage=Usage(), error=error)

    assert result("43", None).ok
    assert not result("43", "run timed out after 5s").ok  # a partial answer is not a success
    assert not result(None, None).ok
    assert not result(None, "no usable plan").ok
    assert result("43", None).to_dict()["ok"] is True and result("43", "x").to_dict()["ok"] is False


def test_citations_name_each_passage_once_with_its_steps_and_its_best_score():
    plan = Plan.from_data([{"question": q} for q in ("A?", "B?", "C?", "D?")])
    a, b, c, d = plan.steps
    for step in plan.steps:
        step.status = "done"
    a.sources = [{"id": "x", "score": 1.0}, {"id": "y", "score": 3.0}]
    b.sources = [{"id": "x", "score": 2.5}, {"id": "z", "score": None}]
    c.sources = [{"id": "y", "score": 0.5}]
    d.status, d.sources = "failed", [{"id": "never-used", "score": 9.0}]  # only answered steps cite
    result = Result(
        question="Q?",
        answer="a",
        plan=plan,
        usage=Usage(),
        answer_sources=[{"id": "z", "score": 0.7}, {"id": "w", "score": 1.0}],
    )
    assert result.citations == [
        {"id": "x", "score": 2.5, "steps": [1, 2], "answer": False},
        {"id": "y", "score": 3.0, "steps": [1, 3], "answer": False},
        {"id": "z", "score": 0.7, "steps": [2], "answer": True},  # a missing score counts as 0
        {"id": "w", "score": 1.0, "steps": [], "answer": True},
    ]
    assert a.sources[0] == {"id": "x", "score": 1.0}  # the steps' own records are left as they were


def test_a_failed_run_raises_its_error_carrying_what_it_did_as_a_typed_result():
    import asyncio

    import pytest

    from decompose import Orchestrator, PlanError, ScriptedChatModel
    from decompose.models.scripted import asks_for_plan

    model = ScriptedChatModel(rules=[(asks_for_plan, "no plan here")], default="x")
    with pytest.raises(PlanError) as err:
        Orchestrator(model).run("What is the capital of France?")
    partial = err.value.result
    assert isinstance(partial, Result) and partial.answer is None and "usable plan" in partial.error
    assert partial.usage.model_calls == 2 and partial.events  # the re-ask got the same reply: no third ask
    assert Result.partial(err.value) is partial
    assert Result.partial(PlanError("never part of a run")) is None

    cancelled = asyncio.CancelledError()  # a cancelled run's CancelledError stays exactly that type
    Result.failed("q", cancelled).attach_to(cancelled)
    assert Result.partial(cancelled).error == "interrupted"
