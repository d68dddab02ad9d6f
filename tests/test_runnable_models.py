"""The Orchestrator takes a chat model wrapped the LangChain way (bind, with_retry, with_fallbacks,
configurable_fields, with_config), and refuses, with a ConfigError, a Runnable that is not a chat model."""

import json
from operator import itemgetter
from typing import Any, ClassVar

import pytest
from helpers import plan_json
from langchain_core.output_parsers import StrOutputParser
from langchain_core.runnables import ConfigurableField, RunnableLambda, RunnableMap, RunnablePassthrough

from decompose import ConfigError, Orchestrator
from decompose.chains.decompose import structured_plan_output
from decompose.models import chat_model_of, load_model
from decompose.models.scripted import ScriptedChatModel, asks_for_plan, asks_to_combine
from decompose.retry import RetryPolicy

PLAN = plan_json("What is the first part?", "What is the second part?")


def scripted(**kwargs: Any) -> ScriptedChatModel:
    return ScriptedChatModel(
        rules=[(asks_for_plan, PLAN), (asks_to_combine, "combined answer")], default="a part", **kwargs
    )


def test_a_bound_model_answers_with_its_bound_kwargs():
    model = scripted()
    result = Orchestrator(model.bind(seed=7)).run("Two parts?")
    assert result.ok and result.answer == "combined answer"
    assert [c["kwargs"] for c in model.calls] == [{"seed": 7}] * 4  # plan, two steps, synthesis
    assert {s.model for s in result.plan.steps} == {"scripted"}  # named by the model it wraps


def test_with_retry_retries_what_the_orchestrator_would_not():
    flaky = ScriptedChatModel(
        rules=[(asks_for_plan, [ValueError("flaky"), PLAN]), (asks_to_combine, "combined answer")], default="a part"
    )
    result = Orchestrator(flaky.with_retry(stop_after_attempt=2, wait_exponential_jitter=False)).run("Two parts?")
    assert result.ok and [c["reply"] for c in flaky.calls[:2]] == [None, PLAN]
    assert {s.model for s in result.plan.steps} == {"scripted"}  # named by the model it wraps


def test_with_fallbacks_answers_from_the_fallback():
    down = ScriptedChatModel(default=ConnectionRefusedError("primary is down"), model_name="primary")
    backup = scripted(model_name="backup")
    result = Orchestrator(down.with_fallbacks([backup])).run("Two parts?")
    assert result.ok and result.answer == "combined answer"
    assert len(down.calls) == len(backup.calls) == 4


def test_configurable_fields_take_their_configured_value():
    model = scripted().configurable_fields(default=ConfigurableField(id="fallback_reply"))
    result = Orchestrator(model.with_config(configurable={"fallback_reply": "configured"})).run("Two parts?")
    assert [s.answer for s in result.plan.steps] == ["configured", "configured"]
    assert [s.answer for s in Orchestrator(model).run("Two parts?").plan.steps] == ["a part", "a part"]


class InProcessModel(ScriptedChatModel):
    in_process: ClassVar[bool] = True


def test_a_wrapped_local_model_is_still_spared_the_http_deadline():
    model = InProcessModel(rules=[(asks_for_plan, PLAN)], default="done", latency=0.1)
    orch = Orchestrator(model.with_retry(), retry=RetryPolicy(max_total=0.05))
    assert orch.run("Two parts?").ok  # calls wait their turn past max_total, as the bare model's do


class StructuredScripted(ScriptedChatModel):
    """A scripted model with structured output: the reply is parsed into the schema, as a real model's is."""

    def with_structured_output(self, schema: Any, *, include_raw: bool = False, **kwargs: Any):
        bound = self.bind(response_format="json_schema")
        parse = RunnableLambda(lambda message: schema.model_validate(json.loads(message.content)))
        return RunnableMap(raw=bound) | RunnablePassthrough.assign(
            parsed=itemgetter("raw") | parse, parsing_error=lambda _: None
        )


def test_a_wrapped_model_still_plans_through_structured_output():
    model = StructuredScripted(rules=[(asks_for_plan, PLAN), (asks_to_combine, "combined answer")], default="a part")
    result = Orchestrator(model.bind(seed=7).with_retry()).run("Two parts?")
    assert result.ok
    # The plan went through structured output (bound kwargs cannot pass its parser); the other calls kept them.
    assert [c["kwargs"] for c in model.calls] == [{"response_format": "json_schema"}] + [{"seed": 7}] * 3


def test_structured_output_through_fallbacks_falls_back_too():
    primary, backup = StructuredScripted(default="x"), ScriptedChatModel(default="y")
    structured = structured_plan_output(primary.with_fallbacks([backup]), Orchestrator(primary).decomposer.schema)
    assert structured.runnable is not primary and structured.fallbacks == [backup]  # no structured output: as is
    assert structured_plan_output(ScriptedChatModel(default="x").bind(seed=1), dict) is None


def test_chat_model_of_sees_through_every_wrapper():
    model = scripted()
    wrapped = (
        model.configurable_fields(default=ConfigurableField(id="reply"))
        .bind(seed=1)
        .with_retry()
        .with_fallbacks([scripted()])
        .with_config(tags=["x"])
    )
    assert chat_model_of(wrapped) is model
    assert chat_model_of(RunnableLambda(lambda x: x)) is None


@pytest.mark.parametrize(
    "spec",
    [
        RunnableLambda(lambda messages: "hi"),
        ScriptedChatModel(default="hi") | StrOutputParser(),  # a chain: its output is text, not an AIMessage
        ScriptedChatModel(default="hi").with_fallbacks([RunnableLambda(lambda messages: "hi")]),
        42,
    ],
)
def test_anything_else_is_a_config_error(spec):
    with pytest.raises(ConfigError, match="not a chat model|must be a chat model") as err:
        Orchestrator(spec)
    assert "bind()" in err.value.hint and "with_fallbacks" in err.value.hint
    with pytest.raises(ConfigError):
        Orchestrator(scripted(), fallbacks=[spec])


def test_load_model_passes_wrapped_models_through():
    wrapped = scripted().bind(seed=1)
    assert load_model(wrapped) is wrapped
