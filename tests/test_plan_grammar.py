"""The typed plan grammar of local models: each tool step's arguments are the tool's own (names, types, required
ones, the calculator's arithmetic), `{n}` references allowed wherever a value is. Checked with xgrammar itself."""

from __future__ import annotations

import json
from typing import Any, ClassVar

import pytest
from langchain_core.messages import AIMessage
from langchain_core.runnables import RunnableLambda

from decompose import Orchestrator
from decompose.agents import get_agent
from decompose.chains.decompose import plan_schema_for
from decompose.chains.plan_grammar import decodes_under_grammar, typed_plan_schema
from decompose.models.scripted import ScriptedChatModel
from decompose.models.structured import bound_schema
from decompose.tools.calculator import calculator_tools

CALCULATOR = calculator_tools()
FINANCE = get_agent("finance").make_tools()
SHOP = get_agent("customer-service").make_tools(dry_run=True)


def accepts(tools, *steps: dict[str, Any]) -> bool:
    import xgrammar as xgr  # with torch and Transformers: seconds, paid by the tests that compile a grammar
    from xgrammar.testing import _is_grammar_accept_string

    schema = bound_schema(typed_plan_schema(tools, max_steps=5))  # bounded, as the local model compiles it
    grammar = xgr.Grammar.from_json_schema(json.dumps(schema))
    return _is_grammar_accept_string(grammar, json.dumps({"steps": list(steps)}))


def step(id_: int, tool: str | None = None, depends_on=(), **args) -> dict[str, Any]:
    made = {"id": id_, "question": f"step {id_}?", "depends_on": list(depends_on)}
    return {**made, "tool": tool, "args": args} if tool else made


def test_a_calculator_plan_with_references_fits_and_prose_in_an_expression_does_not():
    assert accepts(
        CALCULATOR, step(1, "calculator", expression="4 * 3"), step(2, "calculator", [1], expression="20 - {1}")
    )
    assert accepts(CALCULATOR, step(1, "calculator", expression="round(15% of 1,200 / 7, 2) + sqrt(2) * pi"))
    assert not accepts(CALCULATOR, step(1, "calculator", expression="9 candles at 26 dollars"))
    assert not accepts(CALCULATOR, step(1, "calculator", expression=""))


def test_arguments_are_the_tools_own():
    npv = step(1, "npv", rate_pct=5, cash_flows=[-14500, 6140, 3710])
    assert accepts(FINANCE, npv)
    assert not accepts(FINANCE, {**npv, "args": {**npv["args"], "GLOBX": "GLOBX"}})  # an invented argument
    assert not accepts(FINANCE, {**npv, "args": {"rate_pct": 5}})  # a required one left out
    assert not accepts(FINANCE, step(1, "open_ticket", customer="ann@example.com"))  # another pack's tool
    assert accepts(FINANCE, step(1, "stock_price", symbol="ACME"))  # an optional one left out


def test_a_number_takes_a_reference_but_not_words():
    assert accepts(
        FINANCE, step(1, "stock_price", symbol="ACME"), step(2, "percent_change", [1], old_value="{1}", new_value=3)
    )
    assert accepts(
        SHOP,
        step(1, "order_status", order_id="A1001"),
        step(2, "issue_refund", [1], order_id="A1001", amount="{1.paid}", reason="broken"),
    )
    assert not accepts(FINANCE, step(1, "percent_change", old_value="the old one", new_value=3))
    assert accepts(FINANCE, step(1, "npv", rate_pct=5, cash_flows=[-100, "{2}"]))  # a list's items too


def test_steps_without_tools_still_fit():
    assert accepts(SHOP, step(1), step(2, "search_policy", [1], query="refund window"))


class GrammarModel(ScriptedChatModel):
    """A scripted model that reports grammar decoding and records the schema it is asked to decode under."""

    grammar_decoding: ClassVar[bool] = True
    schemas: list = []

    def with_structured_output(self, schema, *, include_raw: bool = False, **kwargs):
        self.schemas.append(schema)
        plan = {"steps": [step(1, "calculator", expression="3 * 4")]}
        return RunnableLambda(lambda _: {"raw": AIMessage(json.dumps(plan)), "parsed": plan, "parsing_error": None})


def test_a_local_model_plans_under_the_typed_schema_and_an_api_model_under_the_plain_one():
    local = GrammarModel(rules=[(r"Sub-questions", "12"), (r".", "12")])
    result = Orchestrator(model=local, tools=CALCULATOR).run("What is 3 times 4?")
    assert result.plan.steps[0].tool == "calculator" and result.plan.steps[0].answer == 12
    typed = local.schemas[-1]
    assert isinstance(typed, dict)
    calculator_step = typed["properties"]["steps"]["items"]["anyOf"][1]
    assert calculator_step["properties"]["args"]["required"] == ["expression"]
    assert decodes_under_grammar(local) and decodes_under_grammar(local.bind(stop=["x"]))
    assert not decodes_under_grammar(ScriptedChatModel())


def test_the_held_out_scorer_asks_for_plans_as_the_decomposer_does():
    local = GrammarModel()
    assert isinstance(plan_schema_for(local, CALCULATOR, 5), dict)
    assert not isinstance(plan_schema_for(local, [], 5), dict)  # no tools: the plain schema has no tool fields
    assert not isinstance(plan_schema_for(ScriptedChatModel(), CALCULATOR, 5), dict)


@pytest.mark.parametrize("tools", [CALCULATOR, FINANCE, SHOP], ids=["calculator", "finance", "shop"])
def test_every_pack_compiles(tools):
    schema = typed_plan_schema(tools, max_steps=10)
    assert len(schema["properties"]["steps"]["items"]["anyOf"]) == len(tools) + 1
    import xgrammar as xgr

    xgr.Grammar.from_json_schema(json.dumps(bound_schema(schema)))


def test_a_models_plan_is_not_offered_program_steps():
    # Offered the field, the 1.5B model wrote "kind": "program" on tool steps: not in the grammar until measured.
    assert not accepts(CALCULATOR, {**step(1), "kind": "program"})
