"""Replanning: when synthesis judges the sub-answers insufficient, plan once more with what was learned."""

import json

import pytest
from helpers import cli

from decompose import ConfigError, Decomposer, Orchestrator, ScriptedChatModel
from decompose.events import PlanReady
from decompose.models.scripted import asks_for_plan, asks_to_combine

QUESTION = "Which is taller, the Eiffel Tower or Big Ben?"
FIRST = json.dumps({"steps": [{"id": 1, "question": "How tall is the Eiffel Tower?"}]})
SECOND = json.dumps(
    {"steps": [{"id": 1, "question": "How tall is the Eiffel Tower?"}, {"id": 2, "question": "How tall is Big Ben?"}]}
)


def is_replan(messages):
    return asks_for_plan(messages) and any("Still missing:" in str(m.content) for m in messages)


def model(final="The Eiffel Tower (330 m) is taller than Big Ben (96 m)."):
    return ScriptedChatModel(
        rules=[
            (is_replan, SECOND),
            (asks_for_plan, FIRST),
            (asks_to_combine, ["INSUFFICIENT: the height of Big Ben", final]),
            ("Eiffel", "330 m"),
            ("Big Ben", "96 m"),
        ]
    )


def test_an_insufficient_answer_plans_again_and_reuses_finished_steps():
    m = model()
    result = Orchestrator(m, decomposer=Decomposer(max_replans=1)).run(QUESTION)
    assert result.ok and result.answer.startswith("The Eiffel Tower (330 m)")
    # one plan holding both: the second plan's steps renumbered after the first's
    assert [(s.id, s.question, s.answer) for s in result.plan.steps] == [
        (1, "How tall is the Eiffel Tower?", "330 m"),
        (2, "How tall is the Eiffel Tower?", "330 m"),
        (3, "How tall is Big Ben?", "96 m"),
    ]
    # the Eiffel Tower was asked once: the replan's copy of that question took the known answer
    assert sum("Question: How tall is the Eiffel Tower?" in c["prompt"] for c in m.calls) == 1
    replan_prompt = next(c["prompt"] for c in m.calls if "Still missing:" in c["prompt"])
    assert "1. How tall is the Eiffel Tower? → 330 m" in replan_prompt
    assert "Still missing: the height of Big Ben" in replan_prompt
    plans = [e for e in result.events if isinstance(e, PlanReady)]
    assert [p.replan for p in plans] == [0, 1] and len(plans[1].plan["steps"]) == 3


def test_without_replans_the_synthesizer_is_not_offered_the_marker():
    m = model()
    result = Orchestrator(m).run(QUESTION)  # max_replans=0 (the default)
    combine = next(c["prompt"] for c in m.calls if "Original question:" in c["prompt"])
    assert "INSUFFICIENT" not in combine
    # a model that says it anyway gets its words turned into a plain statement, not a marker
    assert result.answer == "Could not be determined: the height of Big Ben"
    assert not any(isinstance(e, PlanReady) and e.replan for e in result.events)


def test_replans_are_bounded():
    m = ScriptedChatModel(rules=[(asks_for_plan, FIRST), (asks_to_combine, "INSUFFICIENT: more"), ("", "330 m")])
    result = Orchestrator(m, decomposer=Decomposer(max_replans=2)).run(QUESTION)
    plans = [e for e in result.events if isinstance(e, PlanReady)]
    assert [p.replan for p in plans] == [0, 1, 2]
    assert result.answer == "Could not be determined: more"  # the last synthesis had no marker left to use
    assert result.usage.phases["synthesize"].calls == 3


def test_negative_max_replans_is_a_config_error():
    with pytest.raises(ConfigError, match="max_replans"):
        Decomposer(max_replans=-1)


def test_an_unusable_replan_ends_in_an_answer_from_what_there_is():
    m = ScriptedChatModel(
        rules=[
            (is_replan, '{"steps": []}'),
            (asks_for_plan, FIRST),
            (asks_to_combine, ["INSUFFICIENT: Big Ben", "The Eiffel Tower, probably."]),
            ("", "330 m"),
        ]
    )
    result = Orchestrator(m, decomposer=Decomposer(max_replans=1, on_failure="direct")).run(QUESTION)
    assert result.ok and result.answer == "The Eiffel Tower, probably."
    assert len(result.plan.steps) == 1  # the replan prompt was never run as a question


CLI_RULES = """
import json
from decompose.models.scripted import asks_for_plan, asks_to_combine

def is_replan(messages):
    return asks_for_plan(messages) and any("Still missing:" in str(m.content) for m in messages)

rules = [
    (is_replan, json.dumps({"steps": [{"id": 1, "question": "How tall is Big Ben?"}]})),
    (asks_for_plan, json.dumps({"steps": [{"id": 1, "question": "How tall is the Eiffel Tower?"}]})),
    (asks_to_combine, ["INSUFFICIENT: the height of Big Ben", "The Eiffel Tower."]),
    ("Eiffel", "330 m"),
    ("Big Ben", "96 m"),
]
"""


@pytest.mark.slow
def test_the_command_shows_the_second_plan(tmp_path):
    (tmp_path / "rules.py").write_text(CLI_RULES)
    done = cli("run", "--model", "scripted:rules.py", "--max-replans", "1", QUESTION, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "replan 1: 1 more step" in done.stderr
    step2 = next(line for line in done.stdout.splitlines() if "2. How tall is Big Ben?" in line)
    assert step2.strip().startswith("[done]") and step2.endswith("-> 96 m")
    assert "Answer: The Eiffel Tower." in done.stdout
    bad = cli("run", "--model", "scripted:rules.py", "--max-replans", "-1", QUESTION, cwd=tmp_path)
    assert bad.returncode == 2 and "--max-replans" in bad.stderr
