import pytest

from decompose import Plan, PlanError
from decompose.chains.parsing import extract_plan_data


def plan_from(text):
    return Plan.from_data(extract_plan_data(text))


def test_bare_json():
    plan = plan_from('{"steps": [{"id": 1, "question": "a"}, {"id": 2, "question": "b {1}"}]}')
    assert [s.question for s in plan.steps] == ["a", "b {1}"]


def test_fenced_json_with_prose_and_trailing_comma():
    text = 'Sure! Here is the plan:\n```json\n{"steps": [{"id": 1, "question": "a",},]}\n```\nHope it helps.'
    assert plan_from(text).step(1).question == "a"


def test_json_inside_prose_with_braces_in_strings():
    text = 'Plan: {"steps": [{"id": 1, "question": "what is {x} in \\"a}\\"?"}]} done'
    assert plan_from(text).step(1).question == 'what is {x} in "a}"?'


def test_a_bare_list_of_steps():
    assert len(plan_from('[{"question": "a"}, {"question": "b"}]').steps) == 2


def test_numbered_list_from_a_weak_model():
    text = "Steps:\n1. Who directed Titanic?\n2) When was #1 born?\nStep 3: How old was #1 in 1997?"
    plan = plan_from(text)
    assert [s.question for s in plan.steps] == [
        "Who directed Titanic?",
        "When was {1} born?",
        "How old was {1} in 1997?",
    ]
    assert plan.step(3).depends_on == [1]


@pytest.mark.parametrize("text", ["", "   ", "I cannot help with that.", "{not json"])
def test_garbage_is_a_plan_error(text):
    with pytest.raises(PlanError):
        plan_from(text)
