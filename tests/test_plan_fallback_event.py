"""A plan the model did not write as it runs says so: `PlanFallback` before its `PlanReady`, so a count of valid
plans (benchmarks/quality.py) counts only the model's own."""

from helpers import plan_json

from decompose import Decomposer, Orchestrator, PlanFallback, ScriptedChatModel
from decompose.events import PlanReady
from decompose.models.scripted import asks_for_plan, asks_to_combine


def _run(plan_reply):
    model = ScriptedChatModel(rules=[(asks_for_plan, plan_reply), (asks_to_combine, "Answer: 42")], default="42")
    result = Orchestrator(model, decomposer=Decomposer(on_failure="direct", max_retries=1)).run("What is it?")
    assert result.ok
    kinds = [type(e) for e in result.events]
    fallbacks = [e for e in result.events if isinstance(e, PlanFallback)]
    if fallbacks:
        assert kinds.index(PlanFallback) < kinds.index(PlanReady)
    return result, fallbacks


def test_a_plan_the_model_wrote_emits_no_fallback():
    result, fallbacks = _run(plan_json("First part?", "Second part using {1}?"))
    assert fallbacks == [] and len(result.plan.steps) == 2


def test_a_plan_with_unusable_steps_dropped_is_salvaged():
    # step 2 refers to itself in every try: the salvage keeps step 1 only
    result, (fallback,) = _run(plan_json("First part?", "Second part using {2}?"))
    assert fallback.kind == "salvaged" and "{2}" not in str([s.question for s in result.plan.steps])


def test_no_usable_plan_falls_back_to_the_question_as_one_step():
    result, (fallback,) = _run("not a plan at all")
    assert fallback.kind == "direct" and "usable plan" in fallback.reason
    assert [s.question for s in result.plan.steps] == ["What is it?"]
