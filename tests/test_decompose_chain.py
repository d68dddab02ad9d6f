import typing

import pytest
from pydantic import ValidationError

from decompose import Plan
from decompose.chains.decompose import ask_invented_tool_calls, drop_echo_steps, plan_schema, tidy_dependencies


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


def test_with_documents_the_planner_is_shown_how_to_read_values_before_computing():
    from decompose import Orchestrator, ScriptedChatModel
    from decompose.models.scripted import asks_for_plan
    from decompose.retrieval import LocalDocsRetriever
    from decompose.tools.calculator import calculator_tools

    docs = LocalDocsRetriever.from_texts([("t", "Revenue was 120 in 2019 and 100 in 2018.")])
    plan = '{"steps": [{"id": 1, "question": "Revenue in 2019?"}]}'
    with_docs = ScriptedChatModel(rules=[(asks_for_plan, plan)], default="120")
    Orchestrator(with_docs, tools=calculator_tools(), retriever=docs).run("What was revenue in 2019?")
    prompt = with_docs.calls[0]["prompt"]
    assert "The documents are not shown to you" in prompt
    assert '"expression": "({1} - {2}) / {2} * 100"' in prompt  # the calculator's example for documents
    without = ScriptedChatModel(rules=[(asks_for_plan, plan)], default="120")
    Orchestrator(without, tools=calculator_tools()).run("What was revenue in 2019?")
    assert "documents are not shown" not in without.calls[0]["prompt"]
    assert "({1} - {2}) / {2}" not in without.calls[0]["prompt"]


def test_with_documents_a_tool_call_on_invented_values_is_asked_as_its_question():
    question = "What was the change in total sales from 2018 to 2019?"
    plan = Plan.from_data({"steps": [
        {"id": 1, "question": "Total sales in 2019?", "tool": "calculator", "args": {"expression": "2019 * 1000000"}},
        {"id": 2, "question": "Total sales in 2018?", "tool": "calculator", "args": {"expression": "sum(sales)"}},
        {"id": 3, "question": "Change?", "tool": "calculator", "args": {"expression": "{1} - {2}"},
         "depends_on": [1, 2]},
        {"id": 4, "question": "Years apart?", "tool": "calculator", "args": {"expression": "2019 - 2018"}},
    ]})
    asked = ask_invented_tool_calls(plan, question)
    assert [(s.tool, s.args) for s in asked.steps] == [
        (None, {}), (None, {}),  # values the planner never saw: read from the documents instead
        ("calculator", {"expression": "{1} - {2}"}),  # it computes on the steps' answers
        ("calculator", {"expression": "2019 - 2018"}),  # every value is in the question
    ]


def test_a_tool_call_on_values_from_the_question_is_kept():
    plan = Plan.from_data({"steps": [{"id": 1, "question": "Order?", "tool": "lookup_order",
                                      "args": {"order_id": "A123", "verbose": True}}]})
    kept = ask_invented_tool_calls(plan, "Where is my order A123?")
    assert kept.steps[0].tool == "lookup_order"


def test_each_plan_reask_is_one_parse_retry_showing_the_model_its_last_reply():
    from decompose import Decomposer, Orchestrator, PlanError, Retried, ScriptedChatModel

    model = ScriptedChatModel(default=["I am a teapot.", "I am a kettle.", "I am a pot."])
    events = []
    with pytest.raises(PlanError, match="did not write a usable plan in 3 tries"):
        Orchestrator(model, decomposer=Decomposer(max_retries=2)).run("How tall?", on_event=events.append)
    retried = [e for e in events if isinstance(e, Retried)]
    assert [(e.kind, e.phase, e.attempt, e.wait) for e in retried] == [("parse", "decompose", 1, 0.0),
                                                                      ("parse", "decompose", 2, 0.0)]
    assert "I am a kettle." in model.calls[2]["prompt"] and "I am a teapot." not in model.calls[2]["prompt"]
