"""ModelCaller: every call goes through the model's public `ainvoke`, so callback handlers see each one; the
per-call deadline applies to models behind a server only."""

from typing import ClassVar

import pytest
from helpers import plan_json
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.runnables import RunnableLambda

from decompose import ModelError, Orchestrator, ScriptedChatModel
from decompose.calls import ModelCaller
from decompose.events import Usage
from decompose.models.scripted import asks_for_plan
from decompose.retry import RetryPolicy

RULES = [(asks_for_plan, plan_json("First?", "Second?"))]


class Counter(BaseCallbackHandler):
    def __init__(self):
        self.starts = 0

    def on_chat_model_start(self, *args, **kwargs):
        self.starts += 1


def test_handlers_on_the_model_see_every_call():
    counter = Counter()
    result = Orchestrator(ScriptedChatModel(rules=RULES, default="x", callbacks=[counter])).run("q?")
    assert result.ok and counter.starts == result.usage.model_calls == 4


def test_handlers_inherited_from_an_enclosing_runnable_see_every_call():
    counter = Counter()
    orch = Orchestrator(ScriptedChatModel(rules=RULES, default="x"))
    results = RunnableLambda(lambda q: orch.batch([q])).invoke("q?", config={"callbacks": [counter]})
    assert counter.starts == results[0].usage.model_calls == 4


class InProcessModel(ScriptedChatModel):
    in_process: ClassVar[bool] = True


async def test_the_per_call_deadline_applies_to_servers_not_to_models_in_this_process():
    from langchain_core.messages import HumanMessage

    slow = RetryPolicy(max_total=0.05)
    queued = ModelCaller([InProcessModel(default="done", latency=0.2)], policy=slow, usage=Usage(), emit=lambda e: None)
    message, _ = await queued.invoke([HumanMessage("hi")], phase="solve")
    assert message.content == "done"  # waited its turn past max_total

    remote = ModelCaller(
        [ScriptedChatModel(default="done", latency=0.2)], policy=slow, usage=Usage(), emit=lambda e: None
    )
    with pytest.raises(ModelError, match="timeout"):
        await remote.invoke([HumanMessage("hi")], phase="solve")
