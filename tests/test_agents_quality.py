"""The agent-quality harness (benchmarks/agents_quality.py): its verdicts on real conversations with the real
customer-service agent on a real SQLite shop, driven by scripted models; and the conversation sets' gold answers,
checked against the tools themselves."""

import importlib.util
import json
import sys
import uuid

import pytest
from helpers import REPO, plan_json

from decompose import ScriptedChatModel
from decompose.models.scripted import asks_for_plan, asks_to_combine
from decompose.tools.customer_service import customer_service_tools
from decompose.tools.finance import finance_tools


def _load(name):
    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


aq = _load("agents_quality")
judge = sys.modules["agents_judge"]  # imported by agents_quality from its own folder


def findings(messages):
    """Synthesis stand-in: the sub-answers as the answer, so the facts judged are what the tools returned."""
    return messages[-1].content.split("Sub-questions and answers:")[1].strip()


def agent_model(*plans):
    """A model that plans turn by turn: each (words in the turn, steps) answers the plan request for that turn."""
    rules = [(lambda m, w=words: asks_for_plan(m) and w in m[-1].content, plan_json(*steps)) for words, steps in plans]
    return ScriptedChatModel(rules=[*rules, (asks_to_combine, findings)], default="I cannot help with that.")


def conversation(turns, facts, gold=None, follow_ups=()):
    return {
        "id": "t1",
        "split": "tune",
        "kind": ["test"],
        "turns": turns,
        "facts": facts,
        "gold_writes": gold or {"refunds": [], "tickets": []},
        "follow_ups": list(follow_ups),
    }


async def run(conv, model):
    return await aq.run_conversation(conv, "ours", model, "customer-service")


FIND_ANN = {"id": 1, "question": "Find the customer", "tool": "find_customer", "args": {"email": "ann@example.com"}}


async def test_a_write_the_gold_lacks_is_counted_apart_from_a_missing_one():
    conv = conversation(
        ["I'm ann@example.com. Please refund 20.00 on order A1001, and open a ticket."],
        [[["20.00"]]],
        gold={"refunds": [{"order_id": "A1001", "amount": "49.99"}], "tickets": []},
    )
    model = agent_model(
        (
            "refund 20.00",
            [
                FIND_ANN,
                {
                    "id": 2,
                    "question": "Refund",
                    "tool": "issue_refund",
                    "args": {"order_id": "A1001", "amount": "20.00", "reason": "asked"},
                },
                {
                    "id": 3,
                    "question": "Ticket",
                    "tool": "open_ticket",
                    "args": {"customer": "{1.customer_id}", "subject": "refund", "body": "refunded 20.00"},
                },
            ],
        )
    )
    record = await run(conv, model)
    assert record["unexpected_writes"] == [
        {"kind": "refund", "order_id": "A1001", "amount": "20.00"},
        {"kind": "ticket", "order_id": None},
    ]
    assert record["missing_writes"] == [{"kind": "refund", "order_id": "A1001", "amount": "49.99"}]
    assert record["facts"] == [[True]] and not record["success"]


async def test_the_gold_end_state_and_every_fact_is_a_success():
    conv = conversation(
        ["I'm ann@example.com. Please refund order A1001, it is unused."],
        [[["49.990"]]],
        gold={"refunds": [{"order_id": "A1001", "amount": "49.99"}], "tickets": []},
    )
    model = agent_model(
        (
            "refund order A1001",
            [
                FIND_ANN,
                {
                    "id": 2,
                    "question": "Refund",
                    "tool": "issue_refund",
                    "args": {"order_id": "A1001", "amount": "49.99", "reason": "unused"},
                },
            ],
        )
    )
    record = await run(conv, model)
    assert record["success"], record
    assert record["model_calls"] == 2 and record["invented_ids"] == []  # a plan and a synthesis
    assert [c[1] for c in record["tool_calls"]] == ["find_customer", "issue_refund"]


def test_facts_match_numbers_as_numbers_and_dates_as_prose_writes_them():
    assert judge.states("We refunded $49.990 to your card.", ["49.99"])
    assert not judge.states("We refunded 49.9.", ["49.99"])
    assert judge.states("The NPV is -$21.04.", ["-21.04"]) and not judge.states("The NPV is 21.04.", ["-21.04"])
    assert judge.states("That is 1,199.10 a month.", ["1199.10"])
    assert not judge.states("Order A1003 is here.", ["1003"])  # digits inside an id are no number
    assert not judge.states("It shipped on 2026-01-17.", ["17"])  # nor a date's parts
    assert judge.states("It should arrive on January 17th.", ["2026-01-17"])
    assert judge.states("ETA: 17 Jan", ["2026-01-17"]) and not judge.states("ETA: January 7", ["2026-01-17"])
    assert judge.states("Your parcel is In-Transit.", ["in transit"])
    assert not judge.states("The order cannot be refunded.", ["can"])  # whole words only
    assert judge.facts_stated(["a", "Your E-mail please?"], [[], [["email"]]]) == [[], [True]]


async def test_an_identifier_the_customer_never_gave_and_no_tool_returned_is_invented():
    conv = conversation(["I'm ann@example.com. Where is my latest order?"], [[["A1003"]]])
    # The judge, on a call log: A1003 was neither said nor returned before the call.
    call = {"turn": 0, "tool": "order_status", "args": {"order_id": "A1003"}, "start": 0, "end": 1, "output": "{}"}
    assert judge.invented_ids(conv["turns"], [call]) == [
        {"turn": 0, "tool": "order_status", "arg": "order_id", "value": "A1003"}
    ]
    # Ours never makes that call: its tool guard refuses the guessed id before the tool runs.
    guessed = await run(
        conv,
        agent_model(
            ("latest order", [{"id": 1, "question": "Status", "tool": "order_status", "args": {"order_id": "A1003"}}])
        ),
    )
    assert guessed["invented_ids"] == [] and guessed["tool_calls"] == []
    looked_up = await run(
        conv,
        agent_model(
            (
                "latest order",
                [
                    FIND_ANN,
                    {"id": 2, "question": "Orders", "tool": "list_orders", "args": {"customer": "{1.customer_id}"}},
                    {
                        "id": 3,
                        "question": "Status",
                        "tool": "order_status",
                        "args": {"order_id": "{2.latest_order_id}"},
                    },
                ],
            )
        ),
    )
    assert looked_up["invented_ids"] == [] and looked_up["facts"] == [[True]]
    assert looked_up["tool_calls"][1][2] == {"customer": "C001"}  # the resolved reference, as the tool got it


async def test_a_follow_up_is_resolved_only_by_calls_on_the_order_it_refers_to():
    conv = conversation(
        ["Where is order A1003?", "When will it arrive?"],
        [[["shipped"]], [["2026-01-17"]]],
        follow_ups=[{"turn": 1, "order_id": "A1003"}],
    )

    def model(order):
        return agent_model(
            (
                "Where is order A1003",
                [{"id": 1, "question": "Status", "tool": "order_status", "args": {"order_id": "A1003"}}],
            ),
            (
                "When will it arrive",
                [{"id": 1, "question": "ETA", "tool": "order_status", "args": {"order_id": order}}],
            ),
        )

    right = await run(conv, model("A1003"))
    assert right["follow_ups"] == [{"turn": 1, "order_id": "A1003", "used": ["A1003"], "resolved": True}]
    assert right["success"]
    # A call on another order than the one referred to is not resolved (judged on a call log: ours' tool guard
    # would replace the unheard-of A1001 by A1003, the one order the customer named).
    calls = [{"turn": 1, "tool": "order_status", "args": {"order_id": "A1001"}, "start": 0, "end": 1, "output": ""}]
    assert judge.follow_ups_resolved(conv["follow_ups"], calls) == [
        {"turn": 1, "order_id": "A1003", "used": ["A1001"], "resolved": False}
    ]
    repaired = await run(conv, model("A1001"))
    assert repaired["follow_ups"][0]["resolved"] is True and repaired["invented_ids"] == []


async def test_a_run_resumes_from_its_records(tmp_path):
    rows = [conversation(["Where is order A1003?"], [[["shipped"]]]) | {"id": i} for i in ("a", "b")]
    out = tmp_path / "records.jsonl"
    out.write_text(json.dumps({"id": "a", "success": True, "marker": "kept"}) + "\n")
    model = agent_model(
        ("order A1003", [{"id": 1, "question": "Status", "tool": "order_status", "args": {"order_id": "A1003"}}])
    )
    records = await aq.run_cell(rows, "ours", model, "customer-service", out)
    assert [r["id"] for r in records] == ["a", "b"] and records[0]["marker"] == "kept"
    calls = len(model.calls)
    assert calls == 2  # only "b" ran: its plan and its answer
    assert [json.loads(line)["id"] for line in out.read_text().splitlines()] == ["a", "b"]
    assert await aq.run_cell(rows, "ours", model, "customer-service", out) == records
    assert len(model.calls) == calls


def test_the_sets_have_their_form():
    for name in aq.SETS:
        rows = aq.load_set(name)
        assert len({r["id"] for r in rows}) == len(rows)
        for r in rows:
            assert len(r["facts"]) == len(r["turns"]) and r["split"] in ("tune", "report"), r["id"]
    cs = aq.load_set("customer_service")
    assert len(cs) >= 40 and sum(r["split"] == "tune" for r in cs) == 10
    with pytest.raises(SystemExit, match="no conversation cs99"):
        aq.load_set("customer_service", ids=["cs99"])


def _shop(tmp_path):
    db = tmp_path / f"{uuid.uuid4().hex}.sqlite3"
    return {t.name: t for t in customer_service_tools(db, today=aq.SEED_DAY)}, db


@pytest.mark.slow
def test_every_gold_write_is_one_the_shop_accepts_and_every_fact_comes_from_the_tools(tmp_path):
    """The gold end state replays on a fresh shop; each number, date and id of a fact is in what the tools return
    for the customers and orders the conversation names (or in the gold refund's own result)."""
    for conv in aq.load_set("customer_service"):
        shop, db = _shop(tmp_path)
        replayed = []
        for n, r in enumerate(conv["gold_writes"]["refunds"]):
            replayed += (
                shop["issue_refund"]
                .invoke(
                    {"order_id": r["order_id"], "amount": r["amount"], "reason": "gold", "idempotency_key": f"r{n}"}
                )
                .values()
            )
        for n, t in enumerate(conv["gold_writes"]["tickets"]):
            customer = (
                "ann.lee@example.com"
                if t["order_id"] is None
                else shop["order_status"].invoke({"order_id": t["order_id"]})["customer_id"]
            )
            made = shop["open_ticket"].invoke(
                {
                    "customer": customer,
                    "order_id": t["order_id"],
                    "subject": "gold",
                    "body": "gold",
                    "idempotency_key": f"t{n}",
                }
            )
            assert made["ticket_id"] == "T00002", conv["id"]  # the id the facts expect: the seed holds T00001
        assert judge.compare_writes(judge.shop_writes(db), conv["gold_writes"]) == ([], []), conv["id"]
        seen = _tool_outputs(_shop(tmp_path)[0], " ".join(conv["turns"])) + json.dumps(replayed)
        for turn in conv["facts"]:
            for fact in turn:
                checkable = [a for a in fact if " " not in a and any(ch.isdigit() for ch in a)]  # numbers, ids
                assert not checkable or any(judge.states(seen, [a]) for a in checkable), (conv["id"], fact)


def _tool_outputs(shop, text):
    """Everything the tools say about the emails, name-and-zip pairs and order ids in `text`, as one text."""
    import re

    found, orders = [], set(re.findall(r"A1\d{3}", text))
    customers = re.findall(r"[\w.]+@example\.com", text)
    for name in re.findall(r"I'm ([A-Z]\w+ [A-Z]\w+)", text):
        for zip_code in re.findall(r"\b\d{5}\b", text):
            customers.append(shop["find_customer"].invoke({"name": name, "zip_code": zip_code})["customer_id"])
    for customer in customers:
        listed = shop["list_orders"].invoke({"customer": customer})
        found.append(listed)
        orders |= {o["order_id"] for o in listed["orders"]}
    for order in orders:
        found += [
            shop["order_status"].invoke({"order_id": order}),
            shop["refund_eligibility"].invoke({"order_id": order}),
        ]
    found.append(shop["search_policy"].invoke({"query": "refund window damaged", "limit": 9}))
    return json.dumps(found) + " T00002"  # the first ticket a conversation opens


def test_every_finance_fact_is_what_its_tool_returns(tmp_path):
    tools = {t.name: t for t in finance_tools(tmp_path / "prices.csv")}
    for conv in aq.load_set("finance"):
        for facts, sources in zip(conv["facts"], conv["sources"], strict=True):
            for fact, source in zip(facts, sources, strict=True):
                value = tools[source["tool"]].invoke(source["args"])[source["field"]]
                assert judge.states(str(value), fact), (conv["id"], fact, value)


async def test_the_react_peer_is_judged_from_the_same_tool_calls():
    pytest.importorskip("langgraph")
    from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
    from langchain_core.messages import AIMessage

    class ToolCallingFake(GenericFakeChatModel):  # replies in order; bound to the tools as an OpenAI model is
        def bind_tools(self, tools, **kwargs):
            from langchain_core.utils.function_calling import convert_to_openai_tool

            return self.bind(tools=[convert_to_openai_tool(t) for t in tools])

    def call(name, **args):
        return AIMessage("", tool_calls=[{"name": name, "args": args, "id": name}])

    model = ToolCallingFake(
        messages=iter(
            [
                call("find_customer", email="ann@example.com"),
                call("issue_refund", order_id="A1001", amount="49.99", reason="unused"),
                AIMessage("Refunded 49.99 on A1001."),
            ]
        )
    )
    conv = conversation(
        ["I'm ann@example.com. Please refund order A1001."],
        [[["49.99"]]],
        gold={"refunds": [{"order_id": "A1001", "amount": "49.99"}], "tickets": []},
    )
    record = await aq.run_conversation(conv, "react", model, "customer-service")
    assert record["success"] and record["model_calls"] == 3, record
    assert [c[1] for c in record["tool_calls"]] == ["find_customer", "issue_refund"]  # the key is given, not asked


def test_a_fact_fixed_after_a_run_is_judged_again_from_the_stored_answer():
    conv = conversation(["Can I return it?"], [[["yes"], ["2026-02-12"]]])
    record = {
        "answers": ["Yes, until February 12."],
        "facts": [[True]],
        "facts_stated": 1,
        "facts_total": 1,
        "success": True,
        "unexpected_writes": [],
        "missing_writes": [],
    }
    assert aq.refresh_facts(record, conv)["facts"] == [[True, True]]
    assert aq.refresh_facts(record | {"answers": ["Yes."]}, conv)["success"] is False
