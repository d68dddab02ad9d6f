"""`Result.failed` and `Orchestrator.check_plan`: what the command needs, public for any caller."""

import asyncio
import json

import pytest
from langchain_core.tools import tool

from decompose import ConfigError, Decomposer, Orchestrator, Plan, PlanError, Result, ScriptedChatModel
from decompose.events import Usage


@tool
def refund(order: str) -> str:
    """Refund an order."""
    return "ok"


def test_a_failed_result_has_the_usual_keys_and_no_answer():
    result = Result.failed("Why?", "no usable plan")
    ordinary = Result(question="Why?", answer="Because.", plan=None, usage=Usage())
    assert result.to_dict().keys() == ordinary.to_dict().keys()
    assert not result.ok and result.answer is None and result.error == "no usable plan" and result.question == "Why?"


@pytest.mark.parametrize(
    "error, text",
    [
        (KeyboardInterrupt(), "interrupted"),
        (asyncio.CancelledError(), "interrupted"),
        (ConfigError("bad key", hint="set it"), "bad key (hint: set it)"),
    ],
)
def test_a_failed_result_from_an_exception(error, text):
    result = Result.failed(None, error)
    assert result.error == text and result.question == "" and result.events == [] and result.usage.model_calls == 0


def test_check_plan_validates_against_this_orchestrators_tools_and_max_steps():
    orch = Orchestrator(ScriptedChatModel(), tools=[refund], decomposer=Decomposer(max_steps=2))
    plan = Plan.from_data(
        {
            "steps": [
                {"id": 1, "question": "Which order?"},
                {"id": 2, "question": "refund {1}", "tool": "refund", "args": {"order": "{1}"}},
            ]
        },
        max_steps=100,
    )
    assert orch.check_plan(plan) is plan and plan.steps[1].depends_on == [1]  # implied by the reference
    with pytest.raises(PlanError, match="uses tool 'refund', which does not exist"):
        Orchestrator(ScriptedChatModel()).check_plan(plan)
    three = Plan.from_data([{"question": q} for q in "abc"], max_steps=100)
    with pytest.raises(PlanError, match="more than max_steps=2"):
        orch.check_plan(three)


def test_check_plan_parses_a_plan_given_as_json_text_or_data():
    orch = Orchestrator(ScriptedChatModel(), tools=[refund], decomposer=Decomposer(max_steps=2))
    data = {
        "steps": [
            {"id": 1, "question": "Which order?"},
            {"id": 2, "question": "refund {1}", "tool": "refund", "args": {"order": "{1}"}},
        ]
    }
    assert orch.check_plan(json.dumps(data)).spec() == orch.check_plan(data).spec()
    assert orch.check_plan(data).steps[1].depends_on == [1]
    with pytest.raises(PlanError, match="more than max_steps=2"):
        orch.check_plan(json.dumps([{"question": q} for q in "abc"]))
    with pytest.raises(PlanError):
        orch.check_plan("not a plan")
