"""decompose/chains/prompts.py: `Prompts.with_instructions` and the worked plans tools bring."""

import json

import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
from langchain_core.tools import tool

from decompose.chains.prompts import Prompts, tool_example_messages

TEMPLATES = ["decompose", "answer", "cot", "synthesize", "synthesize_yes_no"]
VALUES = {
    "question": "Who directed Titanic?",
    "max_steps": 4,
    "tool_rules": "- No tools.",
    "context": "",
    "form": "A name.",
    "findings": "1. Who directed it? -> James Cameron",
    "insufficient": "",
}


def messages(prompts: Prompts, name: str) -> list:
    return getattr(prompts, name).format_messages(**VALUES)


@pytest.mark.parametrize("name", TEMPLATES)
def test_with_instructions_puts_them_before_each_system_prompt_and_changes_nothing_else(name):
    default = messages(Prompts(), name)
    custom = messages(Prompts.with_instructions("  You are the support agent of Acme Books.\n"), name)
    assert isinstance(custom[0], SystemMessage)
    assert custom[0].content == "You are the support agent of Acme Books.\n\n" + default[0].content
    assert custom[1:] == default[1:]  # worked examples and the question itself as before
    template = getattr(Prompts.with_instructions("x"), name)
    assert template.input_variables == getattr(Prompts(), name).input_variables


def test_with_instructions_keeps_the_other_fields_at_their_defaults():
    custom, default = Prompts.with_instructions("Be brief."), Prompts()
    for field in ("tool_rules", "no_tool_rules", "document_rules", "repair", "insufficient", "replan"):
        assert getattr(custom, field) == getattr(default, field)


@pytest.mark.parametrize("name", TEMPLATES)
def test_braces_in_instructions_are_text_not_template_variables(name):
    instructions = 'Reply as {"status": "ok"} and never write {question} or {{n}} yourself.'
    system = messages(Prompts.with_instructions(instructions), name)[0].content
    assert system.startswith(instructions + "\n\n")


def test_tool_example_messages_are_the_tools_worked_plans_as_chat_turns():
    @tool
    def stock_level(title: str) -> int:
        """Copies in stock."""
        return 3

    @tool
    def price(title: str) -> float:
        """Price of a book."""
        return 9.5

    @tool
    def plain(x: str) -> str:
        """No examples."""
        return x

    steps = [{"id": 1, "question": "Dune", "tool": "stock_level", "args": {"title": "Dune"}}]
    doc_steps = [
        {"id": 1, "question": "Which title does the memo name?"},
        {"id": 2, "question": "stock", "tool": "stock_level", "args": {"title": "{1}"}},
    ]
    stock_level.metadata = {
        "plan_examples": [{"question": "How many Dune?", "steps": steps}],
        "document_plan_examples": [{"question": "Stock of the memo's title?", "steps": doc_steps}],
    }
    price.metadata = {"plan_examples": [{"question": "Price of Dune?", "steps": []}]}

    assert tool_example_messages([plain]) == [] and tool_example_messages([]) == []
    turns = tool_example_messages([stock_level, plain, price])
    assert turns == [
        HumanMessage(content="How many Dune?"),
        AIMessage(content=json.dumps({"steps": steps})),
        HumanMessage(content="Price of Dune?"),
        AIMessage(content='{"steps": []}'),
    ]
    with_documents = tool_example_messages([stock_level], documents=True)
    assert [m.content for m in with_documents] == [
        "How many Dune?",
        json.dumps({"steps": steps}),
        "Stock of the memo's title?",
        json.dumps({"steps": doc_steps}),
    ]


def test_the_decompose_prompt_shows_tool_examples_after_its_own_and_before_the_question():
    extra = [HumanMessage(content="Tool question?"), AIMessage(content='{"steps": []}')]
    shown = Prompts().decompose.format_messages(**VALUES, tool_examples=extra)
    without = Prompts().decompose.format_messages(**VALUES)
    assert shown[:-1] == without[:-1] + extra and shown[-1] == without[-1]
    assert shown[-1].content == VALUES["question"]
