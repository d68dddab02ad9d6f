import json

import pytest
from pydantic import ValidationError

from decompose import Plan, PlanError, Step
from decompose.plan import resolve_args, resolve_text


def plan_of(*steps):
    return Plan.from_data({"steps": list(steps)})


def test_references_imply_dependencies():
    plan = plan_of(
        {"id": 1, "question": "Who directed Titanic?"},
        {"id": 2, "question": "When was {1} born?"},
        {"id": 3, "question": "x", "tool": "calc", "args": {"a": "{2}", "b": ["{1.name}"]}},
    )
    assert plan.step(2).depends_on == [1]
    assert plan.step(3).depends_on == [1, 2]


def test_user_braces_are_not_references():
    plan = plan_of({"id": 1, "question": "What does {name} mean in f'{x}' and set {}?"})
    assert plan.step(1).depends_on == []


@pytest.mark.parametrize(
    "steps, message",
    [
        ([], "no steps"),
        ([{"id": 1, "question": "a {2}"}], "refers to {2}, which does not exist; steps are 1"),
        ([{"id": 1, "question": "a", "depends_on": [1]}], "step 1 depends on itself"),
        ([{"id": 1, "question": "a"}, {"id": 1, "question": "b"}], "step id 1 is used twice"),
        (
            [{"id": 1, "question": "a {2}"}, {"id": 2, "question": "b {3}"}, {"id": 3, "question": "c {1}"}],
            "cycle: 1 → 2 → 3 → 1",
        ),
        ([{"id": 1, "question": "   "}], "step 1 has an empty question"),
        ([{"id": "x", "question": "a"}], "plan step 1, field 'id'"),
        ([{"id": 1}], "plan step 1, field 'question'"),
    ],
)
def test_invalid_plans_name_the_step(steps, message):
    with pytest.raises(PlanError) as err:
        plan_of(*steps)
    assert message in str(err.value)


def test_too_many_steps():
    with pytest.raises(PlanError, match="more than max_steps=2"):
        Plan.from_data({"steps": [{"id": i, "question": "q"} for i in range(1, 4)]}, max_steps=2)


def test_json_round_trip_keeps_only_plan_fields():
    plan = plan_of({"id": 1, "question": "a"}, {"id": 2, "question": "b", "tool": "t", "args": {"x": "{1}"}})
    plan.step(1).answer = "secret runtime state"
    again = Plan.from_json(plan.to_json())
    assert [s.spec() for s in again.steps] == [s.spec() for s in plan.steps]
    assert again.step(1).answer is None


def test_from_json_rejects_bad_json_and_runtime_fields_are_ignored():
    with pytest.raises(PlanError, match="not valid JSON"):
        Plan.from_json("{steps: [")
    plan = Plan.from_data({"steps": [{"id": 1, "question": "a", "status": "done", "answer": "x", "note": 1}]})
    assert plan.step(1).status == "pending" and plan.step(1).answer is None


def test_missing_ids_are_numbered_and_list_form_accepted():
    plan = Plan.from_data([{"question": "a"}, {"question": "b {1}"}])
    assert [s.id for s in plan.steps] == [1, 2]
    assert plan.step(2).depends_on == [1]


def test_resolution_of_text_fields_and_raw_values():
    answers = {1: {"order_id": "A7", "total": 12.5, "items": [{"sku": "K"}]}, 2: "Paris"}
    assert resolve_text("Order {1.order_id} to {2}", answers) == "Order A7 to Paris"
    assert resolve_args({"amount": "{1.total}", "sku": "{1.items.0.sku}", "note": "for {2}"}, answers) == {
        "amount": 12.5,
        "sku": "K",
        "note": "for Paris",
    }
    assert json.loads(resolve_text("{1}", answers))["order_id"] == "A7"


def test_missing_field_is_a_clear_error():
    with pytest.raises(PlanError, match=r"step 1's answer has no field 'price'.*order_id"):
        resolve_text("{1.price}", {1: {"order_id": "A7"}})


def test_final_steps():
    plan = plan_of({"id": 1, "question": "a"}, {"id": 2, "question": "b {1}"}, {"id": 3, "question": "c"})
    assert [s.id for s in plan.final_steps()] == [2, 3]


def test_step_model_rejects_unknown_fields():
    with pytest.raises(ValidationError, match="bogus"):
        Step(id=1, question="a", bogus=1)


@pytest.mark.parametrize(
    "bad_id, message", [(True, "not true/false"), (-1, "greater than or equal to 1"), (0, "greater than or equal to 1")]
)
def test_plan_ids_are_positive_step_numbers(bad_id, message):
    with pytest.raises(PlanError, match=message) as err:
        Plan.from_data({"steps": [{"id": bad_id, "question": "a?"}]})
    assert "plan step 1, field 'id'" in str(err.value)
    with pytest.raises(PlanError, match="not true/false"):
        Plan.from_data({"steps": [{"id": 1, "question": "a?"}, {"id": 2, "question": "b?", "depends_on": [True]}]})
