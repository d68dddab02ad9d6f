import sqlite3
from datetime import date

import pytest
from helpers import plan_json

from decompose import ConfigError, ScriptedChatModel
from decompose.agents import build_agent, get_agent, list_agents
from decompose.conversation import Conversation
from decompose.models.scripted import asks_for_plan, asks_to_combine


def findings(messages):
    """Synthesis stand-in: echo the sub-answers, so the test sees what the agent found."""
    return messages[-1].content.split("Sub-questions and answers:")[1].strip()


def refunds(db, order_id):
    return (
        sqlite3.connect(db)
        .execute(
            "SELECT amount_cents FROM refunds WHERE order_id = ? AND idempotency_key NOT LIKE 'seed-%'", (order_id,)
        )
        .fetchall()
    )


def test_agents_are_listed_with_their_tools():
    names = [a.name for a in list_agents()]
    assert names == ["customer-service", "finance"]
    assert {"issue_refund", "order_status", "find_customer"} <= set(get_agent("customer-service").tool_names())
    assert {"loan_payment", "irr", "calculator"} <= set(get_agent("finance").tool_names())
    with pytest.raises(ConfigError, match="unknown agent 'sales'.*customer-service, finance"):
        get_agent("sales")


def test_customer_service_refund_end_to_end(tmp_path):
    db = tmp_path / "shop.sqlite3"
    plan = plan_json(
        {"id": 1, "question": "Find the customer", "tool": "find_customer", "args": {"email": "ann@example.com"}},
        {"id": 2, "question": "Is A1001 refundable?", "tool": "refund_eligibility", "args": {"order_id": "A1001"}},
        {
            "id": 3,
            "question": "Refund it",
            "tool": "issue_refund",
            "args": {"order_id": "A1001", "amount": "{2.max_refundable}", "reason": "kettle arrived broken"},
        },
    )
    model = ScriptedChatModel(rules=[(asks_for_plan, plan), (asks_to_combine, findings)])
    agent = build_agent("customer-service", model, db_path=db)
    result = agent.run("Please refund order A1001 for ann@example.com: the kettle arrived broken.")
    assert result.ok, result.error
    assert result.plan.step(3).answer["amount"] == "49.99"
    assert "49.99" in result.answer
    assert refunds(db, "A1001") == [(4999,)]  # exactly one refund row, for what was paid
    # the agent's instructions reach the planner
    assert "customer-service agent" in model.calls[0]["prompt"]


def test_refund_outside_the_policy_is_refused_by_the_tool_whatever_the_plan_says(tmp_path):
    db = tmp_path / "shop.sqlite3"
    plan = plan_json(
        {
            "id": 1,
            "question": "Refund A1002",
            "tool": "issue_refund",
            "args": {"order_id": "A1002", "amount": "89.00", "reason": "changed my mind"},
        }
    )
    model = ScriptedChatModel(rules=[(asks_for_plan, plan)])
    result = build_agent("customer-service", model, db_path=db).run("Refund A1002 please")
    step = result.plan.step(1)
    assert step.status == "failed" and "window" in step.error
    assert refunds(db, "A1002") == []


def test_finance_agent_end_to_end(tmp_path):
    plan = plan_json(
        {
            "id": 1,
            "question": "Monthly payment",
            "tool": "loan_payment",
            "args": {"principal": 200000, "annual_rate_pct": 6, "n_payments": 360},
        },
        {
            "id": 2,
            "question": "Payment in EUR",
            "tool": "currency_convert",
            "args": {"amount": "{1.payment}", "from_currency": "USD", "to_currency": "EUR"},
        },
    )
    model = ScriptedChatModel(rules=[(asks_for_plan, plan), (asks_to_combine, findings)])
    agent = build_agent("finance", model, market_data=tmp_path / "prices.csv")
    result = agent.run("Monthly payment on 200000 USD at 6% for 30 years, in EUR?")
    assert result.plan.step(1).answer["payment"] == "1199.10"
    assert result.plan.step(2).answer["amount"] == "1110.28"  # 1199.10 / 1.08 (demo rate table)
    assert "1199.10" in result.answer and "1110.28" in result.answer


def test_conversation_keeps_earlier_turns_in_view(tmp_path):
    model = ScriptedChatModel(
        rules=[
            (
                lambda m: asks_for_plan(m) and "Where is order A1003" in m[-1].content,
                plan_json(
                    {"id": 1, "question": "Status of A1003", "tool": "order_status", "args": {"order_id": "A1003"}}
                ),
            ),
            (
                lambda m: asks_for_plan(m) and "when will it arrive" in m[-1].content,
                plan_json({"id": 1, "question": "ETA of A1003", "tool": "order_status", "args": {"order_id": "A1003"}}),
            ),
            (asks_to_combine, findings),
        ]
    )
    chat = Conversation(build_agent("customer-service", model, db_path=tmp_path / "s.sqlite3", today=date(2026, 1, 1)))
    first = chat.send("Where is order A1003?")
    assert first.ok
    second = chat.send("And when will it arrive?")
    assert second.ok and len(chat.history) == 2
    plan_prompt = [c["prompt"] for c in model.calls if "when will it arrive" in c["prompt"]][0]
    assert "Where is order A1003?" in plan_prompt  # the earlier turn is shown to the planner
    chat.reset()
    assert chat.history == [] and chat.last_result is None


def test_conversation_history_is_bounded_by_tokens():
    model = ScriptedChatModel(rules=[(asks_for_plan, plan_json("x?"))], default="an answer " * 50)
    from decompose import Orchestrator

    chat = Conversation(Orchestrator(model), max_history_tokens=200)
    for i in range(5):
        chat.send(f"Question number {i}?")
    kept = chat.history_messages()
    assert 0 < len(kept) < 10 and kept[0].type == "human"
    assert kept[-2].content == "Question number 4?"  # the newest turns are the ones kept


def test_with_approvals_a_refund_above_100_dollars_waits_and_a_smaller_one_does_not(tmp_path):
    db, checkpoints = tmp_path / "shop.sqlite3", tmp_path / "ck.sqlite3"

    def agent(order_id, amount, **options):
        step = {"order_id": order_id, "amount": amount, "reason": "it arrived damaged"}
        model = ScriptedChatModel(
            rules=[
                (asks_for_plan, plan_json({"id": 1, "question": "Refund", "tool": "issue_refund", "args": step})),
                (asks_to_combine, "Done."),
            ]
        )
        return build_agent("customer-service", model, db_path=db, checkpoints=checkpoints, **options)

    big = agent("A1023", "150.00", approvals=True).run("Refund 150 dollars on order A1023: the tent is torn.")
    assert big.awaiting_approval and big.answer is None and refunds(db, "A1023") == []
    [request] = big.approvals
    assert (request.step_id, request.tool, request.reason) == (1, "issue_refund", "amount 150 is above 100")
    small = agent("A1001", "49.99", approvals=True).run("Refund order A1001: the kettle arrived broken.")
    assert small.ok and not small.approvals and refunds(db, "A1001") == [(4999,)]
    # Without approvals nobody is asked: the call goes to the shop, whose own policy refuses this one (no window).
    plain = agent("A1023", "150.00").run("Refund 150 dollars on order A1023: the tent is torn.")
    assert not plain.approvals and "outside the 30-day return window" in plain.plan.steps[0].error
