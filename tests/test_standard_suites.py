"""LangChain's own standard test suites (`langchain-tests`) run against our chat models and pack tools, plus the
checks those suites do not make (a token limit that is obeyed, options that are refused, pack errors an agent
can read). Everything runs offline; the local model is the real embedded SmolLM2-135M, loaded once."""

import asyncio
import functools
import os
from datetime import date
from typing import Any

import pytest
from langchain_core.callbacks import get_usage_metadata_callback
from langchain_core.messages import AIMessageChunk, HumanMessage
from langchain_core.tools import BaseTool
from langchain_tests.integration_tests import ChatModelIntegrationTests, ToolsIntegrationTests
from langchain_tests.unit_tests import ChatModelUnitTests, ToolsUnitTests

from decompose.errors import ConfigError, DecomposeError, ToolError
from decompose.models.hf import ChatTransformers
from decompose.models.openai import OpenAICompatible
from decompose.models.scripted import ScriptedChatModel
from decompose.tools.calculator import calculator_tools
from decompose.tools.customer_service import customer_service_tools
from decompose.tools.finance import finance_tools
from decompose.tools.market_data import write_demo_csv

pytestmark = pytest.mark.usefixtures("hub_offline")  # everything loads from disk


@functools.cache
def embedded() -> ChatTransformers:
    """The embedded model, loaded once for the whole module (its weights are shared by every instance below)."""
    from decompose.models.embedded import load_embedded

    return load_embedded()


def weights() -> dict[str, Any]:
    model = embedded()
    return {"model_path": model.model_path, "hf_model": model.hf_model, "tokenizer": model.tokenizer}


# -- chat models: unit suites ---------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.model
class TestChatTransformersUnit(ChatModelUnitTests):
    @property
    def chat_model_class(self) -> type[ChatTransformers]:
        return ChatTransformers

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return weights()


class TestScriptedChatModelUnit(ChatModelUnitTests):
    @property
    def chat_model_class(self) -> type[ScriptedChatModel]:
        return ScriptedChatModel

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {"default": "Hello from the script."}


class TestOpenAICompatibleUnit(ChatModelUnitTests):
    @property
    def chat_model_class(self) -> type[OpenAICompatible]:
        return OpenAICompatible

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {"model": "gpt-4o-mini", "api_key": "sk-test"}  # a key is needed to build the client, not to run

    @property
    def init_from_env_params(self) -> tuple[dict, dict, dict]:
        env = {"OPENAI_API_KEY": "sk-env", "OPENAI_API_BASE": "http://127.0.0.1:9/v1"}
        return env, {"model": "gpt-4o-mini"}, {"openai_api_key": "sk-env", "openai_api_base": env["OPENAI_API_BASE"]}


# -- chat models: integration suites (real generation) --------------------------------------------------------


class TestScriptedChatModelIntegration(ChatModelIntegrationTests):
    @property
    def chat_model_class(self) -> type[ScriptedChatModel]:
        return ScriptedChatModel

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {"default": "Hello from the script, in a few words."}

    @property
    def supports_model_override(self) -> bool:
        return False  # answers by rule: there is no model to switch to


@pytest.mark.slow
@pytest.mark.model
class TestChatTransformersIntegration(ChatModelIntegrationTests):
    """The suite on the embedded 135M model. Replies are kept short (a few tokens each): the suite checks the
    plumbing (invoke, stream, batch, usage, stop, structured output), not the quality of the text."""

    @property
    def chat_model_class(self) -> type[ChatTransformers]:
        return ChatTransformers

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {**weights(), "max_tokens": 8}

    @property
    def structured_output_kwargs(self) -> dict[str, Any]:
        # A short budget: the grammar closes the JSON before it runs out (see grammar.Closers).
        return {"max_new_tokens": 24}

    @property
    def supports_json_mode(self) -> bool:
        return True  # every method decodes under the schema's grammar, json_mode included

    @property
    def has_tool_calling(self) -> bool:
        return False  # a 135M model has no tool-calling format; plans name tools through structured output

    @property
    def supports_model_override(self) -> bool:
        return False  # one set of weights per instance: a call naming another model is refused (ConfigError)


# -- pack tools -------------------------------------------------------------------------------------------------

# A real call's arguments for every pack tool: the suites check them against the schema and invoke the tool.
TOOL_EXAMPLES: dict[str, dict[str, Any]] = {
    "calculator": {"expression": "(1,200 - 15% of 200) / 3"},
    "find_customer": {"email": "ann@example.com"},
    "list_orders": {"customer": "C001"},
    "order_status": {"order_id": "A1003"},
    "refund_eligibility": {"order_id": "A1001"},
    "issue_refund": {"order_id": "A1007", "amount": "10.00", "reason": "scratched lid", "idempotency_key": "k1"},
    "open_ticket": {
        "customer": "C001",
        "subject": "Damaged kettle",
        "body": "The lid arrived cracked.",
        "order_id": "A1001",
        "idempotency_key": "k2",
    },
    "search_policy": {"query": "refund damaged item", "limit": 2},
    "loan_payment": {"principal": 200000, "annual_rate_pct": 6, "n_payments": 360},
    "amortization_schedule": {"principal": "1000", "annual_rate_pct": 5, "n_payments": 3},
    "future_value": {"present_value": 1000, "annual_rate_pct": 5, "years": 10},
    "present_value": {"future_value": 1000, "annual_rate_pct": 5, "years": 10},
    "npv": {"rate_pct": 8, "cash_flows": [-1000, 300, 400, 500]},
    "irr": {"cash_flows": [-1000, 300, 400, 500]},
    "cagr": {"start_value": 100, "end_value": 150, "years": 3},
    "percent_change": {"old_value": 80, "new_value": 100},
    "currency_convert": {"amount": 250, "from_currency": "EUR", "to_currency": "JPY"},
    "stock_price": {"symbol": "ACME", "on_date": "2024-06-03"},
    "price_history": {"symbol": "ACME", "start_date": "2024-06-03", "end_date": "2024-06-14"},
    "portfolio_return_and_volatility": {
        "symbols": ["ACME", "GLOBX"],
        "weights": [0.6, 0.4],
        "start_date": "2024-01-02",
        "end_date": "2024-06-28",
    },
}


@functools.cache
def pack_tools(folder: str) -> dict[str, BaseTool]:
    """Every pack's tools, over a real SQLite store and the demo market data written into `folder`."""
    tools = [
        *calculator_tools(),
        *customer_service_tools(os.path.join(folder, "cs.sqlite3"), today=date(2025, 3, 15)),
        *finance_tools(write_demo_csv(os.path.join(folder, "prices.csv"))),
    ]
    return {t.name: t for t in tools}


class PackTool:
    """One pack tool for a standard tools suite: subclasses name it."""

    tool_name = ""
    folder = ""  # where the packs keep their data: set once for the module by `_pack_folder`

    @property
    def tool_constructor(self) -> BaseTool:
        return pack_tools(self.folder)[self.tool_name]

    @property
    def tool_invoke_params_example(self) -> dict[str, Any]:
        return TOOL_EXAMPLES[self.tool_name]


for _name in TOOL_EXAMPLES:  # one class per tool and suite, so a failure names the tool
    _title = "".join(part.title() for part in _name.split("_"))
    for _suite in (ToolsUnitTests, ToolsIntegrationTests):
        _kind = "Unit" if _suite is ToolsUnitTests else "Integration"
        globals()[f"Test{_title}Tool{_kind}"] = type(
            f"Test{_title}Tool{_kind}", (PackTool, _suite), {"tool_name": _name}
        )


@pytest.fixture(scope="module", autouse=True)
def _pack_folder(tmp_path_factory):
    PackTool.folder = str(tmp_path_factory.mktemp("packs"))


def test_every_pack_tool_has_a_suite():
    assert set(pack_tools(PackTool.folder)) == set(TOOL_EXAMPLES)


# -- what the suites do not check ---------------------------------------------------------------------------------

COUNT = "Count from 1 to 50, separated by commas."


@pytest.mark.slow
@pytest.mark.model
def test_max_tokens_is_the_token_limit_at_init_and_per_call():
    model = ChatTransformers(**weights(), max_tokens=6)
    assert model.max_new_tokens == 6
    reply = model.invoke(COUNT)
    assert reply.usage_metadata["output_tokens"] == 6 and reply.response_metadata["finish_reason"] == "length"
    assert model.invoke(COUNT, max_tokens=3).usage_metadata["output_tokens"] == 3
    assert model.bind(max_tokens=4).invoke(COUNT).usage_metadata["output_tokens"] == 4
    assert model._get_ls_params(max_tokens=4)["ls_max_tokens"] == 4
    with pytest.raises(ConfigError, match="disagree"):
        ChatTransformers(**weights(), max_tokens=6, max_new_tokens=7)


@pytest.mark.slow
@pytest.mark.model
def test_unknown_options_are_refused_not_dropped():
    # top_k and the other decoding options are known now (`decompose.models.decoding`); an OpenAI-only one is not.
    with pytest.raises(
        ConfigError,
        match=r"unknown option\(s\) for ChatTransformers: 'frequency_penalty' "
        r"\(did you mean 'repetition_penalty'\?\)",
    ) as err:
        ChatTransformers(**weights(), frequency_penalty=0.5)
    assert "max_tokens" in err.value.hint and "timeout" in err.value.hint
    model = ChatTransformers(**weights(), max_tokens=4)
    for call in ({"frequency_penalty": 0.5}, {"model": "another-model"}, {"response_format": {"type": "json_object"}}):
        with pytest.raises(
            ConfigError, match=f"unknown option\\(s\\) for a ChatTransformers call: '{next(iter(call))}'"
        ) as err:
            model.invoke("Hello", **call)
        assert "max_tokens" in err.value.hint
    with pytest.raises(ConfigError, match="frequency_penalty"):
        model.bind(frequency_penalty=0.5).invoke("Hello")
    # LangChain's standard parameters are accepted (the standard suite builds every model with them).
    standard = ChatTransformers(**weights(), api_key="sk-unused", max_retries=2, timeout=60, max_tokens=4)
    assert standard.invoke("Hello").usage_metadata["output_tokens"] <= 4


@pytest.mark.slow
@pytest.mark.model
def test_hf_loader_takes_the_standard_limit_and_refuses_unknown_options():
    from decompose.models.hf import load_hf

    assert load_hf(embedded().model_path, max_tokens=5).max_new_tokens == 5
    with pytest.raises(ConfigError, match=r"unknown option\(s\) for hf:.*'frequency_penalty'"):
        load_hf(embedded().model_path, frequency_penalty=0.5)


@pytest.mark.slow
@pytest.mark.model
def test_a_call_past_its_timeout_raises_and_frees_its_row():
    model = ChatTransformers(**weights(), max_tokens=200, timeout=0.05)
    with pytest.raises(TimeoutError, match="timeout of 0.05 s"):
        model.invoke(COUNT)
    with pytest.raises(TimeoutError):
        list(model.stream(COUNT))

    with pytest.raises(TimeoutError):
        asyncio.run(model.ainvoke(COUNT))
    # The abandoned rows stop at their next token: a call without a limit right after is not held up by them.
    assert model.invoke("Hello", timeout=None, max_tokens=4).usage_metadata["output_tokens"] <= 4


@pytest.mark.slow
@pytest.mark.model
def test_streaming_flag_makes_invoke_stream_tokens_to_callbacks():
    from langchain_core.callbacks import BaseCallbackHandler

    class Tokens(BaseCallbackHandler):
        def __init__(self):
            self.tokens: list[str] = []

        def on_llm_new_token(self, token: str, **kwargs: Any) -> None:
            self.tokens.append(token)

    handler = Tokens()
    reply = ChatTransformers(**weights(), max_tokens=6, streaming=True).invoke(COUNT, config={"callbacks": [handler]})
    assert len(handler.tokens) >= 2 and "".join(handler.tokens) == reply.content


@pytest.mark.slow
@pytest.mark.model
def test_structured_output_refuses_what_it_does_not_know():
    model = ChatTransformers(**weights())
    schema = {"type": "object", "properties": {"city": {"type": "string"}}}
    with pytest.raises(ConfigError, match="unknown structured output method 'xml'"):
        model.with_structured_output(schema, method="xml")
    with pytest.raises(ConfigError, match=r"does not take \['max_lenght'\]"):
        model.with_structured_output(schema, max_lenght=3)


def test_scripted_usage_reaches_the_usage_callback():
    model = ScriptedChatModel(default="four words of reply")
    with get_usage_metadata_callback() as usage:
        model.invoke("hi there")
        list(model.stream("hi"))
    assert usage.usage_metadata == {"scripted": {"input_tokens": 3, "output_tokens": 8, "total_tokens": 11}}


async def test_scripted_streams_chunks_and_events():
    model = ScriptedChatModel(default="Paris is the capital.")
    chunks = [chunk async for chunk in model.astream("Capital of France?")]
    assert all(isinstance(c, AIMessageChunk) for c in chunks) and len(chunks) == 5
    assert "".join(c.content for c in chunks) == "Paris is the capital."
    streamed = [
        e["data"]["chunk"].content
        async for e in model.astream_events([HumanMessage("hi")], version="v2")
        if e["event"] == "on_chat_model_stream"
    ]
    assert "".join(streamed) == "Paris is the capital." and len(streamed) >= 4


def test_a_pack_tools_error_goes_back_to_the_model_with_handle_tool_error(tmp_path):
    tools = {t.name: t for t in customer_service_tools(tmp_path / "cs.sqlite3", today=date(2025, 3, 15))}
    status = tools["order_status"]
    with pytest.raises(ToolError) as err:  # unhandled, as before: the Orchestrator's runner reports it
        status.invoke({"order_id": "Z9"})
    assert isinstance(err.value, DecomposeError) and "hint: use list_orders" in str(err.value)

    status.handle_tool_error = True
    assert status.invoke({"order_id": "Z9"}) == "order 'Z9' not found"
    message = status.invoke({"name": "order_status", "args": {"order_id": "Z9"}, "id": "1", "type": "tool_call"})
    assert message.status == "error" and message.content == "order 'Z9' not found"
    status.handle_tool_error = str  # the message with its hint
    not_found = "order 'Z9' not found (hint: use list_orders to see a customer's orders)"
    assert status.invoke({"order_id": "Z9"}) == not_found

    calculator = calculator_tools()[0].model_copy(update={"handle_tool_error": True})
    assert "division by zero" in calculator.invoke({"expression": "1/0"})
