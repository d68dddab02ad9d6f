"""Text from the user's question is never a reference: `x^{2}`, `\\frac{1}{2}`, `'{0}'.format(5)` are asked as
written, whether the planner copies them, the question is answered directly, or eval runs it bare."""

import json

import pytest
from helpers import cli

from decompose import Decomposer, Orchestrator, PlanError, ScriptedChatModel
from decompose.models.scripted import asks_for_plan
from decompose.plan import Plan, escape_references, keep_literal, references_in, resolve_text

QUESTIONS = [
    "If x = 3, what is x^{2}?",
    "What is \\frac{1}{2} as a decimal?",
    "What does '{0}'.format(5) give?",
    "Is {1} a subset of {1, 2}?",
]


def echo(messages):
    """Answers with the question it was asked, so the test sees exactly what reached the model."""
    return "asked: " + str(messages[-1].content).split("Question: ", 1)[1].splitlines()[0]


@pytest.mark.parametrize("question", QUESTIONS)
def test_a_planner_copying_the_question_keeps_its_braces(question):
    plan = json.dumps({"steps": [{"id": 1, "question": question}]})
    model = ScriptedChatModel(rules=[(asks_for_plan, plan), ("", echo)])
    result = Orchestrator(model).run(question)
    assert result.ok, result.error
    assert result.answer == "asked: " + question


@pytest.mark.parametrize("question", QUESTIONS)
def test_a_direct_answer_keeps_the_braces(question):
    model = ScriptedChatModel(rules=[(asks_for_plan, "not a plan"), ("", echo)])
    result = Orchestrator(model, decomposer=Decomposer(on_failure="direct", max_retries=0)).run(question)
    assert result.ok, result.error
    assert result.answer == "asked: " + question


def test_a_real_reference_next_to_a_literal_one():
    question = "If x = 3, what is x^{2} plus the number of moons of Mars?"
    plan = json.dumps(
        {
            "steps": [
                {"id": 1, "question": "How many moons does Mars have?"},
                {"id": 2, "question": "What is x^{2} plus {1} when x = 3?"},
            ]
        }
    )
    model = ScriptedChatModel(rules=[(asks_for_plan, plan), ("Question: How many moons", "2"), ("", echo)])
    result = Orchestrator(model).run(question)
    assert result.plan.step(2).depends_on == [1]  # {1} is a reference, {2} is the question's text
    assert result.plan.step(2).answer == "asked: What is x^{2} plus 2 when x = 3?"


def test_escaping():
    assert escape_references("x^{2} and {1.a} and {a} and {{3}}") == "x^{{2}} and {{1.a}} and {a} and {{3}}"
    assert resolve_text("x^{{2}} and {{1.a}} and {1}", {1: "one"}) == "x^{2} and {1.a} and one"
    assert references_in("x^{{2}} {1}", {"expr": "{{4}} * {3}"}) == {1, 3}
    data = keep_literal({"steps": [{"id": 1, "question": "x^{2}?", "args": {"e": "{2}+{1}"}}]}, "x^{2}")
    assert data["steps"][0] == {"id": 1, "question": "x^{{2}}?", "args": {"e": "{{2}}+{1}"}}


def test_a_missing_reference_names_the_escape_and_never_says_a_bare_key():
    with pytest.raises(PlanError, match=r"refers to \{2\}, which does not exist.*write \{\{2\}\}"):
        Plan.from_data({"steps": [{"id": 1, "question": "What is x^{2}?"}]})
    with pytest.raises(PlanError, match=r"\{7\} refers to step 7, which has no answer here"):
        resolve_text("{7}", {})


ECHO_RULES = """
def answer(messages):
    return "asked: " + str(messages[-1].content).split("Question: ", 1)[1].splitlines()[0]

rules = [("", answer)]
"""


@pytest.mark.slow
def test_eval_direct_asks_the_question_as_written(tmp_path):
    (tmp_path / "rules.py").write_text(ECHO_RULES)
    (tmp_path / "qs.jsonl").write_text(
        "".join(json.dumps({"id": f"q{i}", "question": q}) + "\n" for i, q in enumerate(QUESTIONS))
    )
    done = cli("eval", "qs.jsonl", "--direct", "--model", "scripted:rules.py", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in (tmp_path / "qs.direct.report.jsonl").read_text().splitlines()]
    assert sorted(r["prediction"] for r in rows) == sorted("asked: " + q for q in QUESTIONS)
