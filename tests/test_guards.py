"""The customer-facing guards, on the real customer-service tools and a real SQLite shop, with scripted models:
no write nobody asked for, no invented identifier, no answer against a tool's verdict or status."""

import sqlite3
from datetime import date

import pytest
from helpers import plan_json
from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.tools import tool

from decompose import Orchestrator, ScriptedChatModel, ToolRunner
from decompose.agents import build_agent
from decompose.chains.answer_form import AnswerForm
from decompose.chains.tool_facts import keep_tool_facts
from decompose.conversation import Conversation
from decompose.models.scripted import asks_for_plan, asks_to_combine
from decompose.plan import Plan
from decompose.tools.guards import UserWords, request_of, requires_request
from decompose.tools.runner import side_effects

SEED_DAY = date(2026, 12, 6)


def writes(db):
    """Refunds and tickets the run wrote (not the seed's)."""
    conn = sqlite3.connect(db)
    refunds = conn.execute("SELECT order_id, amount_cents FROM refunds WHERE idempotency_key NOT LIKE 'seed-%'")
    tickets = conn.execute("SELECT order_id, subject FROM tickets WHERE idempotency_key NOT LIKE 'seed-%'")
    return refunds.fetchall(), tickets.fetchall()


def agent(db, plan, combine="Done."):
    model = ScriptedChatModel(rules=[(asks_for_plan, plan), (asks_to_combine, combine)])
    return build_agent("customer-service", model, db_path=db, today=SEED_DAY)


KETTLE_PLAN = plan_json(
    {"id": 1, "question": "Find the customer", "tool": "find_customer", "args": {"email": "ann@example.com"}},
    {"id": 2, "question": "Her orders", "tool": "list_orders", "args": {"customer": "{1.customer_id}"}},
    {
        "id": 3,
        "question": "Can the kettle be returned?",
        "tool": "refund_eligibility",
        "args": {"order_id": "{2.orders.1.order_id}"},
    },
    {
        "id": 4,
        "question": "Open a ticket",
        "tool": "open_ticket",
        "args": {
            "customer": "{1.customer_id}",
            "subject": "Damaged kettle",
            "body": "I bought a kettle but it broke.",
            "order_id": "A1003",
        },
    },
    {
        "id": 5,
        "question": "Refund it",
        "tool": "issue_refund",
        "args": {"order_id": "A1001", "amount": "{3.max_refundable}", "reason": "return"},
    },
)


# ----- no write without a request ------------------------------------------------------------------------------


def test_a_question_about_returning_writes_nothing_and_offers_instead(tmp_path):
    db = tmp_path / "shop.sqlite3"
    result = agent(db, KETTLE_PLAN, "Your latest order A1003 is shipped, and the kettle can be returned.").run(
        "I'm ann@example.com. Where is my latest order, and can I still return the kettle?"
    )
    assert writes(db) == ([], [])
    for step_id, tool_name in ((4, "open_ticket"), (5, "issue_refund")):
        step = result.plan.step(step_id)
        assert step.status == "skipped" and f"did not ask for {tool_name}" in step.error
    assert [s.status for s in result.plan.steps[:3]] == ["done"] * 3  # the look-ups still ran
    assert "Do you want me to issue the refund?" in result.answer
    assert "Do you want me to open a support ticket about it?" in result.answer
    skipped = [e.step_id for e in result.events if e.type == "StepSkipped"]
    assert sorted(skipped) == [4, 5]


def test_a_refund_asked_for_runs_and_the_ticket_nobody_asked_for_does_not(tmp_path):
    db = tmp_path / "shop.sqlite3"
    result = agent(db, KETTLE_PLAN.replace('"A1003"', '"A1001"')).run(
        "Please refund order A1001 for ann@example.com: the kettle arrived broken."
    )
    assert writes(db) == ([("A1001", 4999)], [])
    assert result.plan.step(5).status == "done" and result.plan.step(4).status == "skipped"


def test_a_refund_on_another_order_than_the_one_named_is_refused(tmp_path):
    db = tmp_path / "shop.sqlite3"
    plan = plan_json(
        {"id": 1, "question": "Orders", "tool": "list_orders", "args": {"customer": "ann@example.com"}},
        {
            "id": 2,
            "question": "Refund",
            "tool": "issue_refund",
            "args": {"order_id": "{1.orders.2.order_id}", "amount": "10.00", "reason": "asked"},
        },
    )
    result = agent(db, plan).run("Please refund order A1001, I am ann@example.com")
    assert writes(db) == ([], [])
    assert "asked about a1001, ann@example.com, not A1002" in result.plan.step(2).error


def test_yes_to_the_agents_offer_is_a_request(tmp_path):
    db = tmp_path / "shop.sqlite3"
    plan = plan_json(
        {
            "id": 1,
            "question": "Refund",
            "tool": "issue_refund",
            "args": {"order_id": "A1001", "amount": "49.99", "reason": "customer asked"},
        }
    )
    history = [
        HumanMessage("Can I still return the kettle from A1001? ann@example.com"),
        AIMessage("Yes, order A1001 can be refunded. Do you want me to issue the refund?"),
    ]
    result = agent(db, plan).run("yes please", history=history)
    assert writes(db) == ([("A1001", 4999)], [])
    assert result.plan.step(1).status == "done"
    # Without the offer, "yes please" asks for nothing.
    db2 = tmp_path / "other.sqlite3"
    agent(db2, plan).run("yes please", history=history[:1] + [AIMessage("Order A1001 can be refunded.")])
    assert writes(db2) == ([], [])


@pytest.mark.parametrize(
    "text, asked",
    [
        ("Please refund order A1001.", True),
        ("I want a refund for the kettle", True),
        ("Could you refund A1001?", True),
        ("Can I get a refund please?", True),
        ("I'd like to return the mugs.", True),
        ("Can I still return the kettle?", False),
        ("Is order A1001 refundable?", False),
        ("What is your refund policy?", False),
        ("I don't want a refund, just tell me where it is.", False),
        ("Where is my order?", False),
    ],
)
def test_what_counts_as_asking_for_a_refund(text, asked):
    refund = request_of(
        build_agent("customer-service", ScriptedChatModel(rules=[]), db_path=":memory:").tool_runner.tools[
            "issue_refund"
        ]
    )
    assert bool(UserWords.of(text).requesting(refund["pattern"])) is asked


def test_an_undeclared_side_effecting_tool_is_asked_for_by_its_name():
    @side_effects
    @tool
    def delete_account(customer: str) -> str:
        """Delete a customer's account."""
        return "deleted"

    request = request_of(delete_account)
    assert UserWords.of("Please delete my account, I'm C001").requesting(request["pattern"])
    assert not UserWords.of("How do I see my account?").requesting(request["pattern"])
    assert request["offer"] == "Do you want me to delete account?"


def test_a_declared_request_must_be_a_valid_pattern():
    @tool
    def noop() -> str:
        """Nothing."""
        return ""

    with pytest.raises(Exception, match="unterminated|missing"):
        requires_request(noop, "(refund", "Do you want a refund?")


def test_the_gate_is_off_for_a_plan_a_person_wrote_and_with_guard_false(tmp_path):
    db = tmp_path / "shop.sqlite3"
    ticket = plan_json(
        {
            "id": 1,
            "question": "Ticket",
            "tool": "open_ticket",
            "args": {"customer": "C001", "subject": "Kettle", "body": "Broken kettle"},
        }
    )
    result = agent(db, ticket).execute(ticket, question="Where is my kettle?")  # a person's plan: their request
    assert result.ok and len(writes(db)[1]) == 1
    model = ScriptedChatModel(rules=[(asks_for_plan, ticket), (asks_to_combine, "ok")])
    unguarded = build_agent("customer-service", model, db_path=db, tool_runner=ToolRunner(guard=False))
    unguarded.run("Where is my kettle? I'm C001")
    assert len(writes(db)[1]) == 2


# ----- ask, don't invent ---------------------------------------------------------------------------------------


def test_an_invented_email_is_refused_before_the_call_and_the_answer_asks_for_it(tmp_path):
    db = tmp_path / "shop.sqlite3"
    plan = plan_json(
        {"id": 1, "question": "Find the customer", "tool": "find_customer", "args": {"email": "example@example.com"}},
        {"id": 2, "question": "Orders", "tool": "list_orders", "args": {"customer": "{1.customer_id}"}},
    )
    result = agent(db, plan, "I could not find your order.").run("where is my latest order?")
    step = result.plan.step(1)
    assert step.status == "failed" and "'example@example.com' is neither in the conversation" in step.error
    assert result.plan.step(2).status == "skipped"
    assert result.answer.endswith("Could you tell me your email?")


def test_an_id_from_a_tool_result_or_the_history_is_grounded(tmp_path):
    db = tmp_path / "shop.sqlite3"
    plan = plan_json({"id": 1, "question": "Status", "tool": "order_status", "args": {"order_id": "A1003"}})
    history = [HumanMessage("I'm ann@example.com"), AIMessage("Your latest order is A1003.")]
    result = agent(db, plan, "It is shipped.").run("where is it now?", history=history)
    assert result.plan.step(1).status == "done"
    invented = agent(tmp_path / "b.sqlite3", plan, "It is shipped.").run("where is it now?")
    assert invented.plan.step(1).status == "failed"
    assert "Could you tell me your order id?" in invented.answer


def test_a_whole_record_or_a_field_name_where_an_id_is_meant_is_repaired(tmp_path):
    db = tmp_path / "shop.sqlite3"
    plan = plan_json(
        {"id": 1, "question": "Find", "tool": "find_customer", "args": {"email": "ann@example.com"}},
        {"id": 2, "question": "Orders", "tool": "list_orders", "args": {"customer": "{1}"}},
        {
            "id": 3,
            "question": "Latest",
            "tool": "order_status",
            "args": {"order_id": "latest_order_id"},
            "depends_on": [2],
        },
        {
            "id": 4,
            "question": "Refundable?",
            "tool": "refund_eligibility",
            "args": {"order_id": "latest_order_id"},
            "depends_on": [2],
        },
    )
    result = agent(db, plan, "Order A1003 is shipped.").run("I'm ann@example.com: where's my latest order?")
    assert result.ok, result.error
    assert result.plan.step(2).args == {"customer": "C001"}  # the arguments it was called with are recorded
    assert result.plan.step(3).answer["order_id"] == "A1003"


# ----- verdicts and statuses from the tools --------------------------------------------------------------------


def test_can_i_return_it_about_an_order_in_transit_is_not_yes(tmp_path):
    db = tmp_path / "shop.sqlite3"
    plan = plan_json(
        {"id": 1, "question": "Can A1003 be refunded?", "tool": "refund_eligibility", "args": {"order_id": "A1003"}},
        {"id": 2, "question": "Status", "tool": "order_status", "args": {"order_id": "A1003"}},
    )
    history = [HumanMessage("I'm ann@example.com"), AIMessage("Your latest order is A1003.")]
    result = agent(db, plan, "Yes").run("can I return it?", history=history)
    assert result.answer.startswith("No. Order A1003 cannot be refunded: order is in transit")


def test_a_status_or_verdict_sentence_against_the_tool_is_replaced_by_the_tools_statement(tmp_path):
    db = tmp_path / "shop.sqlite3"
    plan = plan_json(
        {"id": 1, "question": "Status of A1003", "tool": "order_status", "args": {"order_id": "A1003"}},
        {"id": 2, "question": "Kettle?", "tool": "refund_eligibility", "args": {"order_id": "A1001"}},
    )
    combine = (
        "Your order A1003 is pending. The kettle (A1001) cannot be returned anymore. Thank you for shopping with us!"
    )
    result = agent(db, plan, combine).run("I'm ann@example.com: where is A1003, and can I return the kettle A1001?")
    assert result.answer.startswith("Order A1003 is shipped. Order A1001 can be refunded until ")
    assert ": delivered 7 days ago" in result.answer
    assert result.answer.endswith("Thank you for shopping with us!")
    right = "Your order A1003 is in transit. You can still return the kettle from A1001."
    # A reply that agrees keeps its words; the deadline it left out is added in the tool's sentence.
    assert agent(tmp_path / "c.sqlite3", plan, right).run(
        "I'm ann@example.com: where is A1003, and can I return the kettle A1001?"
    ).answer == (
        f"{right} Order A1001 can be refunded until 2026-12-29: delivered 7 days ago, within the 30-day return "
        "window; 49.99 still refundable."
    )


def test_sentences_the_tool_does_not_decide_are_left_alone():
    plan = Plan.from_data(
        {"steps": [{"id": 1, "question": "Status", "tool": "order_status", "args": {"order_id": "A1003"}}]}
    )
    plan.steps[0].status, plan.steps[0].answer = "done", {"order_id": "A1003", "status": "shipped"}
    for answer in (
        "A1003 is on its way and will be refundable once it has been delivered.",
        "It has not been delivered yet: it shipped yesterday.",
        "Thanks for waiting!",
    ):
        assert keep_tool_facts(answer, plan, AnswerForm.OTHER, {}) == answer
    assert keep_tool_facts("A1003 was delivered.", plan, AnswerForm.OTHER, {}) == "Order A1003 is shipped."


def test_a_conversation_remembers_the_offer_and_refunds_on_yes(tmp_path):
    db = tmp_path / "shop.sqlite3"
    first = plan_json(
        {"id": 1, "question": "Refundable?", "tool": "refund_eligibility", "args": {"order_id": "A1001"}},
        {
            "id": 2,
            "question": "Refund",
            "tool": "issue_refund",
            "args": {"order_id": "A1001", "amount": "{1.max_refundable}", "reason": "return"},
        },
    )
    chat = Conversation(agent(db, first, "Order A1001 can be refunded."))
    answer = chat.send("Can I return the kettle from order A1001?").answer
    assert writes(db) == ([], []) and answer.endswith("Do you want me to issue the refund?")
    chat.send("Yes, go ahead.")
    assert writes(db) == ([("A1001", 4999)], [])


def test_an_orchestrator_without_tools_is_unchanged():
    model = ScriptedChatModel(rules=[(asks_for_plan, plan_json({"id": 1, "question": "What is 2+2?"})), (r"2\+2", "4")])
    assert Orchestrator(model).run("What is 2+2?").answer == "4"


def test_a_tool_that_finds_nothing_is_told_to_the_user_not_raised(tmp_path):
    plan = plan_json({"id": 1, "question": "Status", "tool": "order_status", "args": {"order_id": "A1099"}})
    model = ScriptedChatModel(
        rules=[
            (asks_for_plan, plan),
            (
                lambda m: asks_to_combine(m) and "order 'A1099' not found" in m[-1].content,
                "I could not find order A1099: could you check the number?",
            ),
        ]
    )
    result = build_agent("customer-service", model, db_path=tmp_path / "shop.sqlite3").run("Where is order A1099?")
    assert result.ok and result.answer == "I could not find order A1099: could you check the number?"


def test_a_sentence_around_the_one_id_a_step_found_is_cut_to_the_id_and_field_names_are_no_values(tmp_path):
    plan = plan_json(
        {"id": 1, "question": "Orders", "tool": "list_orders", "args": {"customer": "ann@example.com"}},
        {"id": 2, "question": "Which order in {1} has the kettle?", "depends_on": [1]},
        {"id": 3, "question": "Returnable?", "tool": "refund_eligibility", "args": {"order_id": "{2}"}},
        {"id": 4, "question": "Status", "tool": "order_status", "args": {"order_id": "customer_id"}, "depends_on": [1]},
    )
    model = ScriptedChatModel(
        rules=[(asks_for_plan, plan), (r"Which order", "The kettle is in order A1001."), (asks_to_combine, "Done.")]
    )
    result = build_agent("customer-service", model, db_path=tmp_path / "s.sqlite3", today=SEED_DAY).run(
        "I'm ann@example.com: can I still return the kettle?"
    )
    assert result.plan.step(3).args == {"order_id": "A1001"} and result.plan.step(3).answer["eligible"] is True
    # "customer_id" is a field name of step 1's result, not a value in it, and no order id: refused, never called.
    assert "'customer_id' is neither in the conversation" in result.plan.step(4).error


def test_an_id_copied_from_a_worked_example_becomes_the_one_the_user_gave(tmp_path):
    plan = plan_json(
        {"id": 1, "question": "Who?", "tool": "find_customer", "args": {"email": "zoe@example.com"}},
        {"id": 2, "question": "Status", "tool": "order_status", "args": {"order_id": "A2002"}},
    )
    model = ScriptedChatModel(rules=[(asks_for_plan, plan), (asks_to_combine, "Done.")])
    result = build_agent("customer-service", model, db_path=tmp_path / "s.sqlite3", today=SEED_DAY).run(
        "I'm ann@example.com, where is order A1003?"
    )
    assert result.plan.step(1).args == {"email": "ann@example.com"}
    assert result.plan.step(2).args == {"order_id": "A1003"} and result.plan.step(2).answer["status"] == "shipped"
    # With two emails given, which one was meant is not known: refused and asked, never guessed.
    two = build_agent("customer-service", model, db_path=tmp_path / "t.sqlite3", today=SEED_DAY).run(
        "I'm ann@example.com or ann.lee@example.com, where is order A1003?"
    )
    assert two.plan.step(1).status == "failed" and "neither in the conversation" in two.plan.step(1).error


def test_a_step_copying_a_worked_examples_email_is_a_copy():
    from decompose.chains.decompose import copies_an_example
    from decompose.plan import question_key

    examples = {question_key("Who is zoe@example.com?"): "Hi, I'm zoe@example.com ..."}
    assert copies_an_example("Who is zoe@example.com?", "I'm ann@example.com: my order?", examples)
    assert not copies_an_example("Who is zoe@example.com?", "I'm zoe@example.com: my order?", examples)


def test_a_replaced_sentence_does_not_take_a_right_status_with_it():
    plan = Plan.from_data(
        {
            "steps": [
                {"id": 1, "question": "Status", "tool": "order_status", "args": {"order_id": "A1003"}},
                {"id": 2, "question": "Refundable?", "tool": "refund_eligibility", "args": {"order_id": "A1003"}},
            ]
        }
    )
    plan.steps[0].status, plan.steps[0].answer = "done", {"order_id": "A1003", "status": "shipped"}
    plan.steps[1].status = "done"
    plan.steps[1].answer = {"order_id": "A1003", "eligible": False, "reason": "not eligible"}
    tools = build_agent("customer-service", ScriptedChatModel(rules=[]), db_path=":memory:").tool_runner.tools
    answer = keep_tool_facts("Your order A1003 has shipped and you can return it.", plan, AnswerForm.OTHER, tools)
    assert answer == "Order A1003 cannot be refunded: not eligible. Order A1003 is shipped."


@pytest.mark.parametrize(
    "text, asked",
    [
        ("I don't need it anymore, refund that order please.", True),
        ("I don't want a refund.", False),
        ("No need to refund it, thanks", False),
    ],
)
def test_a_negation_counts_in_the_actions_own_clause(text, asked):
    assert bool(UserWords.of(text).requesting(r"\brefund")) is asked


def test_the_amount_the_request_names_is_the_one_refunded_and_no_offer_follows_a_no(tmp_path):
    db = tmp_path / "shop.sqlite3"
    plan = plan_json(
        {"id": 1, "question": "Refundable?", "tool": "refund_eligibility", "args": {"order_id": "A1022"}},
        {
            "id": 2,
            "question": "Refund",
            "tool": "issue_refund",
            "args": {"order_id": "A1022", "amount": "{1.max_refundable}", "reason": "one pillow back"},
        },
    )
    agent(db, plan).run(
        "I'm ivy@example.com. On order A1022 I'm returning one of the two pillows: please refund 27.50."
    )
    assert writes(db) == ([("A1022", 2750)], [])
    # Asked whether, about an order the policy refuses: the refund is withheld and not offered after the no.
    transit = plan.replace("A1022", "A1003")
    answer = (
        agent(tmp_path / "b.sqlite3", transit, "It cannot be refunded yet.")
        .run("Can I return order A1003? I'm ann@example.com")
        .answer
    )
    assert writes(tmp_path / "b.sqlite3") == ([], []) and "Do you want me to issue the refund?" not in answer


def test_a_reply_never_claims_a_write_that_did_not_happen(tmp_path):
    plan = plan_json({"id": 1, "question": "Orders", "tool": "list_orders", "args": {"customer": "carla@example.com"}})
    claim = (
        "Thank you for reaching out. The glass vase arrived cracked, and we have opened a support ticket about "
        "it. We are sorry."
    )
    answer = (
        agent(tmp_path / "s.sqlite3", plan, claim)
        .run("I'm carla@example.com. The vase in order A1008 arrived cracked. Please open a support ticket about it.")
        .answer
    )
    assert "we have opened" not in answer and writes(tmp_path / "s.sqlite3") == ([], [])
    assert answer == ("Thank you for reaching out. Do you want me to open a support ticket about it? We are sorry.")
    # A ticket that was opened may be told.
    opened = plan_json(
        {
            "id": 1,
            "question": "Ticket",
            "tool": "open_ticket",
            "args": {
                "customer": "carla@example.com",
                "subject": "Cracked vase",
                "body": "Vase cracked",
                "order_id": "A1008",
            },
        }
    )
    told = agent(tmp_path / "t.sqlite3", opened, "We have opened a support ticket about it.").run(
        "I'm carla@example.com. The vase in order A1008 arrived cracked. Please open a support ticket about it."
    )
    # ... with the new ticket's id, which the reply left out.
    assert (
        told.answer
        == (
            "We have opened a support ticket about it. Support ticket T00002 is open; the support "
            "team will reply to you."
        )
        and len(writes(tmp_path / "t.sqlite3")[1]) == 1
    )


# ----- a plan that leaves out the user's words is asked for again, once ------------------------------------------


def critiqued(db, plans, combine="Done."):
    """An agent whose planner writes `plans` in turn (a list) or always the one; its model, to read the re-asks."""
    model = ScriptedChatModel(rules=[(asks_for_plan, plans), (asks_to_combine, combine)])
    return build_agent("customer-service", model, db_path=db, today=SEED_DAY), model


def reasks(model):
    """The prompts that asked the planner again with a problem."""
    return [c["prompt"] for c in model.calls if "could not be used" in c["prompt"]]


def test_a_plan_without_the_write_the_user_asked_for_is_asked_again_with_the_reason(tmp_path):
    looked_only = plan_json(
        {"id": 1, "question": "Orders", "tool": "list_orders", "args": {"customer": "carla@example.com"}}
    )
    with_ticket = plan_json(
        {
            "id": 1,
            "question": "Ticket",
            "tool": "open_ticket",
            "args": {
                "customer": "carla@example.com",
                "subject": "Cracked vase",
                "body": "The vase arrived cracked",
                "order_id": "A1008",
            },
        }
    )
    db = tmp_path / "shop.sqlite3"
    orchestrator, model = critiqued(db, [looked_only, with_ticket])
    result = orchestrator.run(
        "I'm carla@example.com. The vase in order A1008 arrived cracked. Please open a support ticket about it."
    )
    reask = reasks(model)
    assert len(reask) == 1 and "no step calls open_ticket" in reask[0]
    assert [s.tool for s in result.plan.steps] == ["open_ticket"] and len(writes(db)[1]) == 1
    assert "Support ticket T00002 is open" in result.answer  # the reply says which ticket


def test_a_plan_that_ignores_the_order_the_user_named_is_asked_again(tmp_path):
    latest = plan_json(
        {"id": 1, "question": "Orders", "tool": "list_orders", "args": {"customer": "ann@example.com"}},
        {"id": 2, "question": "Refundable?", "tool": "refund_eligibility", "args": {"order_id": "{1.latest_order_id}"}},
    )
    named = plan_json({"id": 1, "question": "Refundable?", "tool": "refund_eligibility", "args": {"order_id": "A1002"}})
    orchestrator, model = critiqued(tmp_path / "s.sqlite3", [latest, named])
    result = orchestrator.run("I'm ann@example.com. Can I return my headphones, order A1002?")
    assert "the user named A1002 but no step uses it" in reasks(model)[0]
    assert result.plan.step(1).args == {"order_id": "A1002"}


def test_a_re_asked_plan_no_better_keeps_the_first_and_a_good_plan_is_not_re_asked(tmp_path):
    looked_only = plan_json(
        {"id": 1, "question": "Orders", "tool": "list_orders", "args": {"customer": "carla@example.com"}}
    )
    db = tmp_path / "shop.sqlite3"
    orchestrator, model = critiqued(db, looked_only)
    result = orchestrator.run("I'm carla@example.com. Please open a support ticket about order A1008.")
    assert [s.tool for s in result.plan.steps] == ["list_orders"] and writes(db) == ([], [])
    assert len(reasks(model)) == 1  # asked again once, not again
    plans = len([c for c in model.calls if '"steps"' in c["prompt"]])
    good = plan_json({"id": 1, "question": "Status", "tool": "order_status", "args": {"order_id": "A1003"}})
    orchestrator, model = critiqued(db, good, "It is on its way.")
    orchestrator.run("Where is order A1003?")
    assert not reasks(model) and plans >= 2


def test_a_tool_less_plan_for_an_agent_over_records_is_asked_again():
    guessed = plan_json({"id": 1, "question": "Where is the order?"})
    orchestrator, model = critiqued(None, guessed, "It is at the online shop.")
    orchestrator.run("Where is my order?")
    assert "no step calls a tool" in reasks(model)[0]


def test_every_identifier_left_empty_is_asked_for_in_one_question():
    from decompose.tools.guards import identifier_args

    @tool
    def find_user_id_by_name_zip(first_name: str, last_name: str, zip: str) -> str:
        """Find a user id by name and zip code."""
        return "user_1"

    identifier_args(find_user_id_by_name_zip, "first_name", "last_name", "zip")
    plan = plan_json(
        {
            "id": 1,
            "question": "Who is it?",
            "tool": "find_user_id_by_name_zip",
            "args": {"first_name": "", "last_name": "", "zip": ""},
        }
    )
    model = ScriptedChatModel(rules=[(asks_for_plan, plan), (asks_to_combine, "I need more details.")])
    result = Orchestrator(model, tools=[find_user_id_by_name_zip]).run("I want to exchange my keyboard.")
    assert result.plan.step(1).status == "failed"
    assert result.answer.endswith("Could you tell me your first name, last name and zip?")


def test_the_calculator_alone_is_never_asked_to_be_used():
    from decompose.tools.calculator import calculator

    model = ScriptedChatModel(
        rules=[(asks_for_plan, plan_json({"id": 1, "question": "What is 2 + 2?"})), (asks_to_combine, "Answer: 4")]
    )
    Orchestrator(model, tools=[calculator]).run("What is 2 + 2?")
    assert not reasks(model)


def test_an_identifier_left_empty_is_asked_for_not_invented(tmp_path):
    empty = plan_json(
        {"id": 1, "question": "Who is it?", "tool": "find_customer", "args": {"email": ""}},
        {"id": 2, "question": "Orders", "tool": "list_orders", "args": {"customer": "{1.customer_id}"}},
    )
    result = agent(tmp_path / "s.sqlite3", empty, "I could not find it.").run("Where is my order?")
    assert result.plan.step(1).status == "failed" and "needs the user's email" in result.plan.step(1).error
    assert result.answer.endswith("Could you tell me your email?")


# ----- a reply states what the tools found ------------------------------------------------------------------


def check_then_refund(order_id, reason):
    """A plan that checks the policy, then refunds what it allows."""
    return plan_json(
        {"id": 1, "question": "Refundable?", "tool": "refund_eligibility", "args": {"order_id": order_id}},
        {
            "id": 2,
            "question": "Refund",
            "tool": "issue_refund",
            "args": {"order_id": order_id, "amount": "{1.max_refundable}", "reason": reason},
        },
    )


def test_a_refused_refund_is_explained_with_the_policy_reason_not_a_refusal_to_help(tmp_path):
    plan = check_then_refund("A1003", "not needed")
    db = tmp_path / "s.sqlite3"
    result = agent(db, plan, "I'm sorry, but I can't assist with that.").run(
        "I'm ann@example.com, I don't need order A1003 anymore, please refund it."
    )
    assert writes(db) == ([], [])
    assert "refund refused for order 'A1003': order is in transit" in result.plan.step(2).error  # not "amount 0"
    assert "can't assist" not in result.answer
    assert "Order A1003 cannot be refunded: order is in transit" in result.answer


def test_an_order_status_the_reply_never_mentions_is_stated(tmp_path):
    plan = plan_json({"id": 1, "question": "Status", "tool": "order_status", "args": {"order_id": "A1003"}})
    result = agent(tmp_path / "s.sqlite3", plan, "Your order is located at our website.").run("Where is order A1003?")
    assert result.answer == "Your order is located at our website. Order A1003 is shipped."


def test_a_done_refund_is_told_by_its_receipt_not_by_the_check_before_it(tmp_path):
    plan = check_then_refund("A1001", "unused")
    db = tmp_path / "s.sqlite3"
    answer = agent(db, plan, "Thank you for your message.").run("Please refund order A1001, it is unused.").answer
    assert writes(db)[0] == [("A1001", 4999)]
    assert answer == (
        "Thank you for your message. Refund R00004 of 49.99 for order A1001 is done: the money goes "
        "back to the original payment method."
    )
