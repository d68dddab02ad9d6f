"""decompose/models/scripted.py: rules, the prompt matchers, the default reply and the recorded calls."""

import pytest
from langchain_core.messages import HumanMessage, SystemMessage

from decompose.chains.prompts import Prompts
from decompose.models.scripted import ScriptedChatModel, asks_for_plan, asks_to_combine

VALUES = {
    "question": "Who directed Titanic?",
    "max_steps": 4,
    "tool_rules": "- No tools.",
    "context": "",
    "form": "A name.",
    "findings": "1. Who directed it? -> James Cameron",
    "insufficient": "",
}


def prompt(name: str) -> list:
    return getattr(Prompts(), name).format_messages(**VALUES)


def test_a_regex_rule_is_searched_case_insensitively_in_the_last_message_only():
    model = ScriptedChatModel(rules=[(r"who DIRECTED", "James Cameron")], default="no rule")
    assert model.invoke("Question: Who directed Titanic?").content == "James Cameron"
    earlier = [HumanMessage(content="Who directed Titanic?"), HumanMessage(content="And when?")]
    assert model.invoke(earlier).content == "no rule"


def test_the_first_matching_rule_answers():
    model = ScriptedChatModel(rules=[(r"Titanic", "first"), (r"directed", "second"), (r".", "any")])
    assert model.invoke("Who directed Titanic?").content == "first"
    assert model.invoke("Who directed Alien?").content == "second"
    assert model.invoke("x").content == "any"


def test_functions_match_and_reply_from_the_messages():
    model = ScriptedChatModel(
        rules=[
            (lambda msgs: len(msgs) > 1, lambda msgs: f"{len(msgs)} messages"),
            (r"echo (\w+)", lambda msgs: msgs[-1].content.upper()),
        ]
    )
    assert model.invoke([SystemMessage(content="s"), HumanMessage(content="hi")]).content == "2 messages"
    assert model.invoke("echo this").content == "ECHO THIS"


def test_a_list_is_replied_in_turn_and_its_last_reply_repeats_each_rule_counting_its_own():
    model = ScriptedChatModel(rules=[(r"plan", ["bad", "good"]), (r"step", ["a", "b", "c"])])
    assert [model.invoke("plan").content for _ in range(3)] == ["bad", "good", "good"]
    assert [model.invoke("step").content for _ in range(4)] == ["a", "b", "c", "c"]


def test_an_exception_reply_is_raised_and_the_call_still_recorded():
    model = ScriptedChatModel(rules=[(r"flaky", [ConnectionError("down"), "up"]), (r"broken", TimeoutError)])
    with pytest.raises(ConnectionError, match="down"):
        model.invoke("flaky")
    assert model.invoke("flaky").content == "up"
    with pytest.raises(TimeoutError):
        model.invoke("broken")
    assert [c["reply"] for c in model.calls] == [None, "up", None]


def test_the_default_answers_what_no_rule_matches_and_without_one_the_prompt_is_named():
    assert ScriptedChatModel(rules=[(r"x", "y")], default="I don't know").invoke("Who?").content == "I don't know"
    listed = ScriptedChatModel(default=["one", "two"])
    assert [listed.invoke(q).content for q in ("a", "b", "c")] == ["one", "two", "two"]
    with pytest.raises(ValueError, match="no rule for this prompt: 'Who is Zoe\\?'"):
        ScriptedChatModel(rules=[(r"x", "y")]).invoke("Who is Zoe?")


def test_asks_for_plan_and_asks_to_combine_tell_the_real_prompts_apart():
    kinds = {
        name: (asks_for_plan(prompt(name)), asks_to_combine(prompt(name)))
        for name in ("decompose", "answer", "cot", "synthesize", "synthesize_yes_no")
    }
    assert kinds == {
        "decompose": (True, False),
        "answer": (False, False),
        "cot": (False, False),
        "synthesize": (False, True),
        "synthesize_yes_no": (False, True),
    }
    assert not asks_for_plan([]) and not asks_to_combine([])


def test_the_plan_and_combine_matchers_route_a_run_of_prompts():
    model = ScriptedChatModel(
        rules=[(asks_for_plan, '{"steps": []}'), (asks_to_combine, "combined")], default="answered"
    )
    assert model.invoke(prompt("decompose")).content == '{"steps": []}'
    assert model.invoke(prompt("synthesize")).content == "combined"
    assert model.invoke(prompt("answer")).content == "answered"


def test_every_call_is_recorded_with_its_whole_prompt_reply_and_arguments():
    model = ScriptedChatModel(default="ok")
    model.invoke([SystemMessage(content="Be brief."), HumanMessage(content="Who?")])
    model.bind(seed=7).invoke("Again?")
    assert model.calls == [
        {"prompt": "Be brief.\nWho?", "reply": "ok", "kwargs": {}},
        {"prompt": "Again?", "reply": "ok", "kwargs": {"seed": 7}},
    ]
    model.calls.clear()  # a copy: the record is the model's own
    assert len(model.calls) == 2


async def test_the_async_path_follows_the_same_rules_and_record():
    model = ScriptedChatModel(rules=[(r"Paris", "France")], default="?")
    assert (await model.ainvoke("Where is Paris?")).content == "France"
    assert (await model.ainvoke("Where is Lyon?")).content == "?"
    assert [c["reply"] for c in model.calls] == ["France", "?"]


def test_usage_counts_words_and_names_the_model():
    reply = ScriptedChatModel(default="James Cameron", model_name="script-1").invoke("Who directed Titanic?")
    assert reply.usage_metadata == {"input_tokens": 3, "output_tokens": 2, "total_tokens": 5}
    assert reply.response_metadata["model_name"] == "script-1"
