"""The honest adapter benchmark's data and judge: every handwritten row's gold is what the real tools give on a
fresh shop, writes are judged by the shop's end state, and a number echoed from the question is no answer."""

import asyncio
import importlib.util
import sys
from pathlib import Path

import pytest
from helpers import plan_json

from decompose.models.scripted import ScriptedChatModel, asks_for_plan, asks_to_combine
from decompose.tools.runner import IDEMPOTENCY_ARG

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "adapter_quality.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("adapter_quality", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_the_handwritten_gold_is_what_the_tools_give_on_a_fresh_shop(bench, tmp_path):
    rows = bench.handwritten_rows()
    assert len(rows) == 40 and {r["pack"] for r in rows} == {"calculator", "finance", "customer-service"}
    writes = [r["id"] for r in rows if any(r.get("gold_writes", {}).values())]
    assert writes == ["hw-s08", "hw-s09", "hw-s10", "hw-s11", "hw-s12", "hw-s13"]
    for number, row in enumerate(rows):
        shop = tmp_path / f"{number}.sqlite3"
        tools = bench.pack_tools(row["pack"], shop)
        results = []
        for call in row["calls"]:
            args = {"query": "damaged items"} if call["tool"] == "search_policy" else dict(call["args"])
            if call["tool"] in ("issue_refund", "open_ticket"):
                args.update(reason="r", subject="s", body="b", **{IDEMPOTENCY_ARG: f"k{number}"})
                args = {k: v for k, v in args.items() if k in tools[call["tool"]].args or k == IDEMPOTENCY_ARG}
            results.append(str(tools[call["tool"]].invoke(args)))
        for fact in row["key"]:
            assert bench.fact_stated(" ".join(results), fact), (row["id"], fact)
        if row["pack"] == "customer-service":
            assert bench.compare_writes_of(shop, row["gold_writes"]) == ([], []), row["id"]


def test_a_number_echoed_from_the_question_is_not_the_answer(bench):
    gold = {"order_id": "A1016", "status": "shipped", "paid": "35.00"}
    question = "Where is order A1016?"
    assert not bench.value_stated("Order A1016 is on its way.", gold, gold, question)
    assert bench.value_stated("Order A1016 is on its way; you paid 35.00.", gold, gold, question)
    assert not bench.fact_stated("It is 41 dollars each.", ["41.29"]) and bench.fact_stated("41.2857", ["41.29"])


def test_writes_are_judged_by_the_end_state(bench, tmp_path):
    row = next(r for r in bench.handwritten_rows() if r["id"] == "hw-s08")  # refund A1018 (99.00)

    def planner(amount):
        steps = [
            {"id": 1, "question": "Look up A1018", "tool": "order_status", "args": {"order_id": "A1018"}},
            {
                "id": 2,
                "question": "Refund it",
                "tool": "issue_refund",
                "args": {"order_id": "A1018", "amount": amount, "reason": "arrived ripped"},
            },
        ]
        combine = "Answer: refunded 99.00"
        return ScriptedChatModel(rules=[(asks_for_plan, plan_json(*steps)), (asks_to_combine, combine)])

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    right = asyncio.run(bench.run_row(planner("{1.paid}"), row, tmp_path / "a"))
    assert right["tool_exact"] and right["write_right"] and right["answer_right"] and not right["unexpected_writes"]
    partial = asyncio.run(bench.run_row(planner("50.00"), row, tmp_path / "b"))
    assert not partial["tool_exact"] and not partial["write_right"] and not partial["answer_right"]
    assert partial["unexpected_writes"] == [{"kind": "refund", "order_id": "A1018", "amount": "50.00"}]
