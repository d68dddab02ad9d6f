import typing

import pytest
from pydantic import ValidationError

from decompose import Plan
from decompose.chains.decompose import drop_echo_steps, plan_schema, tidy_dependencies


def test_tidy_dependencies_drops_what_a_model_cannot_have_meant():
    data = {"steps": [{"id": 1, "question": "a", "depends_on": [1, 2]},
                      {"id": 2, "question": "b", "depends_on": ["1", 9]},
                      {"id": 3, "question": "c {1}", "depends_on": [3]}]}
    plan = Plan.from_data(tidy_dependencies(data))
    assert [s.depends_on for s in plan.steps] == [[], [1], [1]]


def test_drop_echo_and_duplicate_steps_but_keep_what_others_use():
    plan = Plan.from_data({"steps": [{"id": 1, "question": "Who directed Titanic?"},
                                     {"id": 2, "question": "who directed titanic"},
                                     {"id": 3, "question": "Whole question?"},
                                     {"id": 4, "question": "Age of {1}?"}]})
    kept = drop_echo_steps(plan, "Whole question")
    assert [s.id for s in kept.steps] == [1, 4]


def test_plan_schema_without_tools_has_no_tool_fields():
    schema = plan_schema([], max_steps=3)
    step_fields = schema.model_fields["steps"].annotation.__args__[0].model_fields
    assert set(step_fields) == {"id", "question", "depends_on"}
    with pytest.raises(ValidationError):
        schema.model_validate({"steps": [{"id": i, "question": "q"} for i in range(4)]})


def test_plan_schema_with_tools_only_allows_their_names():
    schema = plan_schema(["add", "lookup"], max_steps=5)
    schema.model_validate({"steps": [{"id": 1, "question": "q", "tool": "add", "args": {"a": 1}}]})
    with pytest.raises(ValidationError):
        schema.model_validate({"steps": [{"id": 1, "question": "q", "tool": "json"}]})
    json_schema = schema.model_json_schema()
    assert "add" in str(json_schema) and "lookup" in str(json_schema)
    assert typing.get_origin(schema.model_fields["steps"].annotation) is list


def test_a_plan_of_nothing_but_echoes_becomes_one_step():
    plan = Plan.from_data({"steps": [{"id": 1, "question": "How many apples?"},
                                     {"id": 2, "question": "How many apples?"}]})
    assert [s.id for s in drop_echo_steps(plan, "How many apples?").steps] == [1]


def test_tools_bring_their_worked_plans_into_the_decompose_prompt():
    from decompose import Orchestrator, ScriptedChatModel
    from decompose.models.scripted import asks_for_plan
    from decompose.tools.calculator import calculator_tools

    plan = '{"steps": [{"id": 1, "question": "2+2", "tool": "calculator", "args": {"expression": "2 + 2"}}]}'
    model = ScriptedChatModel(rules=[(asks_for_plan, plan)], default="4")
    Orchestrator(model, tools=calculator_tools()).run("What is 2+2?")
    prompt = model.calls[0]["prompt"]
    assert '"expression": "20 - {1}"' in prompt  # the calculator's example, as an earlier turn
    assert prompt.index("Pens cost 3 dollars") < prompt.index("What is 2+2?")

    no_tools = ScriptedChatModel(rules=[(asks_for_plan, '{"steps": [{"id": 1, "question": "2+2"}]}')], default="4")
    Orchestrator(no_tools).run("What is 2+2?")
    assert "Pens cost" not in no_tools.calls[0]["prompt"]
