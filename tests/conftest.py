import pytest
from helpers import plan_json

from decompose.models.scripted import ScriptedChatModel, asks_for_plan, asks_to_combine


@pytest.fixture
def titanic_model():
    return ScriptedChatModel(rules=[
        (asks_for_plan, plan_json("Who directed Titanic?", "When was {1} born?", "When was Titanic released?",
                                  "How old was someone born in {2} in {3}?")),
        (asks_to_combine, lambda msgs: "Final: " + msgs[-1].content.split("Sub-questions and answers:")[1].strip()),
        (r"Question: Who directed Titanic", "James Cameron"),
        (r"Question: When was James Cameron born", "1954"),
        (r"Question: When was Titanic released", "1997"),
        (r"Question: How old was someone born in 1954 in 1997", "43"),
    ])
