"""strategy="auto": the route chosen per question (cheap candidates first, decompose when none is accepted), what
is recorded of it (result, to_dict, event, CLI) and what it costs. Scripted models; programs run for real."""

import json

import pytest
from helpers import cli, plan_json
from langchain_core.tools import tool

from decompose import ConfigError, Orchestrator, ScriptedChatModel, side_effects
from decompose.auto import AutoStrategy, candidates
from decompose.cli.output import summary_line
from decompose.events import RouteChosen
from decompose.models.scripted import asks_for_plan, asks_to_combine
from decompose.retrieval import LocalDocsRetriever

EGGS = "Tom has 4 boxes of 6 eggs and eats 5 eggs. How many eggs are left?"
YES_NO = "Is the Eiffel Tower taller than Big Ben?"


def asks_for_program(messages) -> bool:
    return messages[0].content.startswith("Answer the question by writing a short Python program")


def thinks(messages) -> bool:
    return "Think step by step" in messages[-1].content


def fenced(code: str) -> str:
    return f"```python\n{code}\n```"


def planned(model: ScriptedChatModel) -> int:
    return sum('"steps"' in c["prompt"] for c in model.calls)


def eggs_model(*, program: str = "answer = 4 * 6 - 5", cot: str = "24 - 5 = 19.\nAnswer: 19") -> ScriptedChatModel:
    return ScriptedChatModel(
        rules=[
            (asks_for_plan, plan_json("How many eggs are in 4 boxes of 6 eggs?", "What is {1} minus 5?")),
            (asks_to_combine, "Answer: 19"),
            (asks_for_program, fenced(program)),
            (thinks, cot),
            (r"What is 24 minus 5", "19"),  # before the next rule: its prompt holds step 1 as a known fact
            (r"How many eggs are in 4 boxes", "24"),
        ]
    )


def test_a_computation_is_answered_by_chain_of_thought_without_decomposing():
    model = eggs_model()
    result = Orchestrator(model, strategy="auto").run(EGGS)
    assert result.ok and result.answer == "19"
    assert result.route == {
        "name": "cot",
        "tried": {"cot": "19"},
        "why": "a computation on the numbers the question states: cot answered 19",
    }
    assert planned(model) == 0 and len(model.calls) == 1
    assert result.usage.model_calls == 1 and result.usage.phases["route"].calls == 1
    (step,) = result.plan.steps  # one step asking the question: the CLI tree, the web page and serve still work
    assert step.question == EGGS and step.status == "done" and step.answer == "19"
    assert [e.type for e in result.events] == ["RouteChosen", "PlanReady", "StepStarted", "StepFinished", "Answered"]


def test_an_answer_without_a_number_falls_to_the_program():
    model = eggs_model(cot="Answer: quite a few")
    result = Orchestrator(model, strategy="auto").run(EGGS)
    assert result.answer == "19" and result.route["tried"] == {"cot": "quite a few", "program": "19"}
    assert result.route["name"] == "program" and result.plan.steps[0].program == "answer = 4 * 6 - 5"
    assert planned(model) == 0 and result.usage.model_calls == 2 == result.usage.phases["route"].calls


def test_verify_accepts_two_agreeing_candidates_and_counts_both():
    model = eggs_model()
    result = Orchestrator(model, strategy=AutoStrategy(verify=True)).run(EGGS)
    assert result.answer == "19" and result.route["name"] == "cot"
    assert result.route["why"].endswith("cot and program agreed on 19")
    assert result.route["tried"] == {"cot": "19", "program": "19"}
    assert planned(model) == 0 and result.usage.model_calls == 2 == result.usage.phases["route"].calls


def test_verify_falls_to_decompose_when_the_candidates_disagree():
    model = eggs_model(cot="Answer: 23")
    result = Orchestrator(model, strategy=AutoStrategy(verify=True)).run(EGGS)
    assert result.route["name"] == "decompose" and result.route["tried"] == {"cot": "23", "program": "19"}
    assert "no agreement (cot 23, program 19), decomposed" in result.route["why"]
    assert planned(model) == 1 and [s.answer for s in result.plan.steps] == ["24", "19"]
    assert result.answer == "19"
    # every call counted: two candidates, the plan, two steps, the synthesis
    assert result.usage.model_calls == 6 == len(model.calls)
    assert {k: v.calls for k, v in result.usage.phases.items()} == {
        "route": 2,
        "decompose": 1,
        "solve": 2,
        "synthesize": 1,
    }
    # the decomposition's steps are answered directly: only the cot candidate thought step by step
    assert sum("Think step by step" in c["prompt"] for c in model.calls) == 1


def test_no_usable_answer_decomposes_and_a_failed_program_is_recorded():
    model = eggs_model(cot="Answer: quite a few", program="answer = eggs_left")  # fails, and so does its repair
    result = Orchestrator(model, strategy="auto").run(EGGS)
    assert result.route["name"] == "decompose" and "no usable answer" in result.route["why"]
    assert result.route["tried"]["program"].startswith("failed: the repaired program failed too")
    assert planned(model) == 1 and result.answer == "19"
    assert result.usage.phases["route"].calls == 3  # cot, the program, its repair


def test_retrieval_is_a_candidate_only_with_a_retriever():
    docs = LocalDocsRetriever.from_texts(
        [("eiffel", "The Eiffel Tower is 330 metres tall."), ("ben", "Big Ben's tower is 96 metres tall.")]
    )
    model = ScriptedChatModel(
        rules=[(r"330 metres", "Yes, it is taller."), (asks_for_plan, plan_json("x?"))], default="No."
    )
    with_docs = Orchestrator(model, strategy="auto", retriever=docs).run(YES_NO)
    assert with_docs.route["name"] == "retrieval" and with_docs.answer == "Yes, it is taller."
    assert with_docs.plan.steps[0].sources and with_docs.citations  # the passages it was shown are cited
    without = Orchestrator(model, strategy="auto").run(YES_NO)
    assert without.route["name"] == "direct" and "retrieval" not in without.route["tried"]
    assert without.answer == "No." and planned(model) == 0


def test_a_multi_hop_question_over_documents_is_decomposed_without_candidates():
    docs = LocalDocsRetriever.from_texts([("t", "Titanic was directed by James Cameron.")])
    model = ScriptedChatModel(
        rules=[(asks_for_plan, plan_json("Who directed Titanic?")), (asks_to_combine, "Answer: James Cameron")],
        default="James Cameron",
    )
    result = Orchestrator(model, strategy="auto", retriever=docs).run("Who directed Titanic?")
    assert result.route == {
        "name": "decompose",
        "tried": {},
        "why": "a question over documents: each step retrieves for its own hop",
    }
    assert planned(model) == 1 and "route" not in result.usage.phases


def test_side_effecting_tools_always_decompose():
    @side_effects
    @tool
    def refund(order_id: str) -> str:
        """Refund an order."""
        return "refunded"

    model = eggs_model()
    result = Orchestrator(model, strategy="auto", tools=[refund]).run(EGGS)
    assert result.route["name"] == "decompose" and "side effects" in result.route["why"]
    assert result.route["tried"] == {}
    assert planned(model) == 1 and "route" not in result.usage.phases


def test_a_later_turn_of_a_conversation_decomposes():
    from decompose.conversation import Conversation

    model = eggs_model()
    chat = Conversation(Orchestrator(model, strategy="auto"))
    assert chat.send(EGGS).route["name"] == "cot"
    assert chat.send(EGGS).route["name"] == "decompose"  # candidates would not see the earlier turn


def test_the_route_is_recorded_in_to_dict_the_event_and_the_summary_line():
    result = Orchestrator(eggs_model(), strategy="auto").run(EGGS)
    data = json.loads(result.to_json())
    assert data["route"]["name"] == "cot" and data["route"]["tried"] == {"cot": "19"}
    chosen = next(e for e in result.events if isinstance(e, RouteChosen))
    assert chosen.to_dict()["type"] == "RouteChosen" and chosen.to_dict()["name"] == "cot"
    assert summary_line(result).startswith(
        "route cot (a computation on the numbers the question states: cot answered 19) · 1 model call · "
    )
    other = Orchestrator(eggs_model()).run(EGGS)  # other strategies record no route
    assert other.route is None and other.to_dict()["route"] is None
    assert summary_line(other).startswith("4 model calls · ")


def test_which_candidates_a_question_gets():
    assert candidates(EGGS, documents=False).names == ("cot", "program")
    assert candidates(EGGS, documents=True).names == ()  # numbers over documents: decomposed
    assert candidates(YES_NO, documents=True).names == ("retrieval",)
    assert candidates(YES_NO, documents=True, verify=True).names == ("retrieval", "direct")
    assert candidates("Who directed Titanic?", documents=False).names == ()
    assert candidates("What is the price of AAPL in euros?", documents=False).names == ()  # no stated inputs


def test_an_unknown_strategy_names_auto_among_the_choices():
    with pytest.raises(ConfigError) as raised:
        Orchestrator(eggs_model(), strategy="automatic")
    assert "auto" in raised.value.hint


@pytest.mark.slow
def test_strategy_auto_through_the_cli(tmp_path):
    (tmp_path / "rules.py").write_text("rules = [(r'Think step by step', '24 - 5 = 19.\\nAnswer: 19')]\n")
    proc = cli("run", "--model", "scripted:rules.py", "--strategy", "auto", "--json", EGGS, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["answer"] == "19" and data["route"]["name"] == "cot"
    assert [e["type"] for e in data["events"]][0] == "RouteChosen"
    plain = cli("run", "--model", "scripted:rules.py", "--strategy", "auto", EGGS, cwd=tmp_path)
    assert plain.returncode == 0, plain.stderr
    assert plain.stdout.strip().splitlines()[-1].startswith("route cot (")
    assert "route: cot (" in plain.stderr  # the progress line
