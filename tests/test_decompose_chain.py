import json
import typing

import pytest
from langchain_core.messages import AIMessage, HumanMessage
from pydantic import ValidationError

from decompose import Plan
from decompose.chains.decompose import (
    ask_invented_tool_calls,
    copies_an_example,
    drop_echo_steps,
    plan_schema,
    tidy_dependencies,
    worked_example_questions,
)
from decompose.plan import question_key


def test_tidy_dependencies_drops_what_a_model_cannot_have_meant():
    data = {
        "steps": [
            {"id": 1, "question": "a", "depends_on": [1, 2]},
            {"id": 2, "question": "b", "depends_on": ["1", 9]},
            {"id": 3, "question": "c {1}", "depends_on": [3]},
        ]
    }
    plan = Plan.from_data(tidy_dependencies(data))
    assert [s.depends_on for s in plan.steps] == [[], [1], [1]]


def test_drop_echo_and_duplicate_steps_but_keep_what_others_use():
    plan = Plan.from_data(
        {
            "steps": [
                {"id": 1, "question": "Who directed Titanic?"},
                {"id": 2, "question": "who directed titanic"},
                {"id": 3, "question": "Whole question?"},
                {"id": 4, "question": "Age of {1}?"},
            ]
        }
    )
    kept = drop_echo_steps(plan, "Whole question")
    assert [s.id for s in kept.steps] == [1, 4]


def test_plan_schema_without_tools_has_no_tool_fields():
    schema = plan_schema([], max_steps=3)
    step_fields = schema.model_fields["steps"].annotation.__args__[0].model_fields
    assert set(step_fields) == {"id", "question", "depends_on"}  # no program `kind` offered (see plan_schema)
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
    plan = Plan.from_data(
        {"steps": [{"id": 1, "question": "How many apples?"}, {"id": 2, "question": "How many apples?"}]}
    )
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
    plan = Plan.from_data(
        {
            "steps": [
                {
                    "id": 1,
                    "question": "Total sales in 2019?",
                    "tool": "calculator",
                    "args": {"expression": "2019 * 1000000"},
                },
                {
                    "id": 2,
                    "question": "Total sales in 2018?",
                    "tool": "calculator",
                    "args": {"expression": "sum(sales)"},
                },
                {
                    "id": 3,
                    "question": "Change?",
                    "tool": "calculator",
                    "args": {"expression": "{1} - {2}"},
                    "depends_on": [1, 2],
                },
                {"id": 4, "question": "Years apart?", "tool": "calculator", "args": {"expression": "2019 - 2018"}},
            ]
        }
    )
    asked = ask_invented_tool_calls(plan, question)
    assert [(s.tool, s.args) for s in asked.steps] == [
        (None, {}),
        (None, {}),  # values the planner never saw: read from the documents instead
        ("calculator", {"expression": "{1} - {2}"}),  # it computes on the steps' answers
        ("calculator", {"expression": "2019 - 2018"}),  # every value is in the question
    ]


def test_a_tool_call_on_values_from_the_question_is_kept():
    plan = Plan.from_data(
        {
            "steps": [
                {"id": 1, "question": "Order?", "tool": "lookup_order", "args": {"order_id": "A123", "verbose": True}}
            ]
        }
    )
    kept = ask_invented_tool_calls(plan, "Where is my order A123?")
    assert kept.steps[0].tool == "lookup_order"


def test_each_plan_reask_is_one_parse_retry_showing_the_model_its_last_reply():
    from decompose import Decomposer, Orchestrator, PlanError, Retried, ScriptedChatModel

    model = ScriptedChatModel(default=["I am a teapot.", "I am a kettle.", "I am a pot."])
    events = []
    with pytest.raises(PlanError, match="did not write a usable plan in 3 tries"):
        Orchestrator(model, decomposer=Decomposer(max_retries=2)).run("How tall?", on_event=events.append)
    retried = [e for e in events if isinstance(e, Retried)]
    assert [(e.kind, e.phase, e.attempt, e.wait) for e in retried] == [
        ("parse", "decompose", 1, 0.0),
        ("parse", "decompose", 2, 0.0),
    ]
    assert "I am a kettle." in model.calls[2]["prompt"] and "I am a teapot." not in model.calls[2]["prompt"]


# A weak planner replays the worked examples (seen on TAT-QA with Qwen2.5-Coder-1.5B: 6 plans in 50 began
# "How tall is the Eiffel Tower?", "How tall is Big Ben?", ... for questions about a company's accounts).
REPLAYED = json.dumps(
    {
        "steps": [
            {"id": 1, "question": "How tall is the Eiffel Tower?", "depends_on": []},
            {"id": 2, "question": "How tall is Big Ben?", "depends_on": []},
            {"id": 3, "question": "Which is larger, {1} or {2}?", "depends_on": [1, 2]},
            {"id": 4, "question": "What were IMFT's total liabilities in 2018?", "depends_on": []},
        ]
    }
)
OWN_PLAN = json.dumps({"steps": [{"id": 1, "question": "What were IMFT's total liabilities in 2018?"}]})
LIABILITIES = "What were the total liabilities of IMFT in 2018?"


def example_map():
    from decompose.chains.prompts import Prompts, tool_example_messages
    from decompose.tools.calculator import calculator_tools

    return worked_example_questions([*Prompts().decompose.messages, *tool_example_messages(calculator_tools())])


@pytest.mark.parametrize(
    "step, question, copied",
    [
        ("How tall is the Eiffel Tower?", LIABILITIES, True),  # a name from the example
        ("What is 20 minus {1}?", "How much do 16 glasses at $5 cost?", True),  # the calculator example's 20
        ("In which country is the Colosseum?", LIABILITIES, True),  # a step of an example
        ("Which is larger, {1} or {2}?", LIABILITIES, False),  # generic: nothing of the example's own
        ("What is {1} minus 5?", "Sam has 5 bags of 3 apples and loses 5. How many are left?", False),  # its numbers
        ("How tall is the Eiffel Tower?", "Is the Eiffel Tower taller than the Shard?", False),  # the same subject
        ("How tall is the Shard?", LIABILITIES, False),  # no example says that
    ],
)
def test_a_step_copies_an_example_only_with_what_belongs_to_the_example(step, question, copied):
    assert copies_an_example(step, question, example_map()) is copied


def test_the_worked_examples_are_read_from_the_prompt_in_use():
    examples = example_map()
    assert examples[question_key("How tall is Big Ben?")] == "Which is taller, the Eiffel Tower or Big Ben?"
    assert question_key("What do 4 pens at 3 dollars cost?") in examples  # the calculator tool's own example
    assert worked_example_questions([HumanMessage("Hi"), AIMessage("not a plan")]) == {}


def test_a_plan_that_replays_the_examples_is_asked_again_naming_the_copy():
    from decompose import Orchestrator, ScriptedChatModel
    from decompose.models.scripted import asks_for_plan

    model = ScriptedChatModel(rules=[(asks_for_plan, [REPLAYED, OWN_PLAN])], default="$1,305")
    result = Orchestrator(model).run(LIABILITIES)
    assert [s.question for s in result.plan.steps] == ["What were IMFT's total liabilities in 2018?"]
    repair = model.calls[1]["prompt"]
    assert "steps 1, 2 copy the worked example for 'Which is taller, the Eiffel Tower or Big Ben?'" in repair
    assert result.usage.parse_retries == 1


def test_when_every_reask_replays_them_the_copies_and_what_uses_them_are_dropped():
    from decompose import Orchestrator, ScriptedChatModel
    from decompose.models.scripted import asks_for_plan

    model = ScriptedChatModel(rules=[(asks_for_plan, REPLAYED)], default="$1,305")
    result = Orchestrator(model).run(LIABILITIES)
    assert [s.question for s in result.plan.steps] == ["What were IMFT's total liabilities in 2018?"]


def test_a_plan_of_nothing_but_copies_and_their_users_asks_the_question_itself():
    """As `drop_unusable_steps` does for a plan whose references are all unusable: the model did write a plan."""
    from decompose import Decomposer, Orchestrator, ScriptedChatModel
    from decompose.models.scripted import asks_for_plan

    only_copies = json.dumps({"steps": json.loads(REPLAYED)["steps"][:3]})
    model = ScriptedChatModel(rules=[(asks_for_plan, only_copies)], default="$1,305")
    result = Orchestrator(model, decomposer=Decomposer(max_retries=1)).run(LIABILITIES)
    assert [s.question for s in result.plan.steps] == [LIABILITIES] and result.answer == "$1,305"
