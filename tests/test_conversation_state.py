"""A conversation's structured state: learned from its tools' results, shown to the planner, stored by the
server with the conversation."""

import json
from datetime import date

from helpers import plan_json
from starlette.testclient import TestClient

from decompose.agents import build_agent
from decompose.conversation import Conversation
from decompose.conversation_state import STATE_HEADER, ConversationState
from decompose.models.scripted import ScriptedChatModel, asks_for_plan, asks_to_combine
from decompose.plan import Plan
from decompose.serve import create_app
from decompose.serve.store import Store

LOOKUP = plan_json(
    {"id": 1, "question": "Find", "tool": "find_customer", "args": {"email": "ann@example.com"}},
    {"id": 2, "question": "Orders", "tool": "list_orders", "args": {"customer": "{1.customer_id}"}},
)
RETURN_IT = plan_json(
    {"id": 1, "question": "Can A1003 be refunded?", "tool": "refund_eligibility", "args": {"order_id": "A1003"}}
)


def planned(question):
    return lambda messages: asks_for_plan(messages) and question in messages[-1].content


def shop_model():
    return ScriptedChatModel(
        rules=[
            (planned("latest order"), LOOKUP),
            (planned("return it"), RETURN_IT),
            (asks_to_combine, "Your latest order is A1003."),
        ],
        default="ok",
    )


def test_the_state_holds_what_the_tools_found_and_what_was_discussed_last(tmp_path):
    agent = build_agent("customer-service", shop_model(), db_path=tmp_path / "shop.sqlite3", today=date(2026, 12, 6))
    chat = Conversation(agent)
    chat.send("I am ann@example.com, what's my latest order?")
    state = chat.state.to_dict()
    kinds = {(e["kind"], e["id"]) for e in state["entities"]}
    assert {("customer", "C001"), ("order", "A1001"), ("order", "A1002"), ("order", "A1003")} <= kinds
    a1003 = next(e for e in state["entities"] if e["id"] == "A1003")
    assert a1003["facts"]["status"] == "shipped" and "Ceramic mug" in a1003["facts"]["items"]
    assert state["last"] == {"customer": "C001", "order": "A1003"}  # the answer named one order
    # The next turn's planner sees it, after the history.
    calls = len(chat.orchestrator.model.calls)
    result = chat.send("can I return it?")
    prompt = next(c["prompt"] for c in chat.orchestrator.model.calls[calls:] if STATE_HEADER in c["prompt"])
    assert "- order A1003: status shipped" in prompt and "- the order discussed last: A1003" in prompt
    assert result.plan.step(1).status == "done"  # A1003 counts as said: the guard let it through
    assert result.answer.endswith(
        "Order A1003 cannot be refunded: order is in transit; it can be refunded once it has been delivered."
    )


def test_what_the_user_names_wins_and_the_state_round_trips():
    plan = Plan.from_data(
        {
            "steps": [
                {"id": 1, "question": "Status", "tool": "order_status", "args": {"order_id": "A1001"}},
                {"id": 2, "question": "Status", "tool": "order_status", "args": {"order_id": "A1003"}},
            ]
        }
    )
    for step, status in zip(plan.steps, ("delivered", "shipped")):
        step.status, step.answer = "done", {"order_id": step.args["order_id"], "status": status, "total": 49.0}
    state = ConversationState()
    state.learn(plan, "where are A1001 and A1003?", intent="order_status")
    assert state.last == {"order": "A1003"}  # the plan's last call
    state.learn(None, "and what about A1001?")
    assert state.last == {"order": "A1001"}
    again = ConversationState.from_dict(json.loads(json.dumps(state.to_dict())))
    assert again.to_dict() == state.to_dict()
    assert "total 49" in again.message().content and "intent: order_status" in again.message().content
    assert ConversationState().message() is None and ConversationState.from_dict(None).entities == {}


def test_the_server_stores_the_state_with_the_conversation_and_the_next_turn_uses_it(tmp_path, monkeypatch):
    monkeypatch.setenv("DECOMPOSE_CACHE", str(tmp_path / "cache"))
    model = shop_model()
    db = f"sqlite:///{tmp_path / 'serve.sqlite3'}"
    with TestClient(create_app(model, db=db)) as client:
        cid = client.post("/v1/conversations", json={"agent": "customer-service"}).json()["id"]
        client.post(f"/v1/conversations/{cid}/messages", json={"question": "I am ann@example.com, latest order?"})
        turns = client.get(f"/v1/conversations/{cid}").json()["turns"]
        assert turns[0]["state"]["last"]["order"] == "A1003"
    with TestClient(create_app(model, db=db)) as client:  # a restarted server: the state comes from the database
        calls = len(model.calls)
        client.post(f"/v1/conversations/{cid}/messages", json={"question": "can I return it?"})
        prompt = next(c["prompt"] for c in model.calls[calls:] if STATE_HEADER in c["prompt"])
        assert "- the order discussed last: A1003" in prompt
        turns = client.get(f"/v1/conversations/{cid}").json()["turns"]
        assert "Order A1003 cannot be refunded: order is in transit" in turns[1]["answer"]


def test_a_database_of_an_earlier_version_gets_the_state_column(tmp_path):
    import sqlite3

    path = tmp_path / "old.sqlite3"
    old = sqlite3.connect(path)
    old.execute(
        "CREATE TABLE decompose_conversations (id VARCHAR(32) PRIMARY KEY, agent VARCHAR(200) NOT NULL, "
        "created_at FLOAT NOT NULL)"
    )
    old.execute(
        "CREATE TABLE decompose_turns (conversation_id VARCHAR(32), seq INTEGER, question TEXT NOT NULL, "
        "answer TEXT, status VARCHAR(16) NOT NULL, error TEXT, owner VARCHAR(32), lease_until FLOAT, "
        "created_at FLOAT NOT NULL, finished_at FLOAT, PRIMARY KEY (conversation_id, seq))"
    )
    old.execute("INSERT INTO decompose_conversations VALUES ('c1', 'decompose', 1.0)")
    old.execute("INSERT INTO decompose_turns VALUES ('c1', 1, 'hi', 'hello', 'answered', NULL, NULL, NULL, 1.0, 2.0)")
    old.commit()
    old.close()
    store = Store(f"sqlite:///{path}")
    turns = store.conversation("c1")["turns"]
    assert turns[0]["answer"] == "hello" and turns[0]["state"] is None
    seq, earlier = store.begin_turn("c1", "and now?")
    assert seq == 2 and earlier[0]["state"] is None
    store.end_turn("c1", 2, status="answered", answer="ok", state={"entities": [], "last": {}, "intent": None})
    assert store.conversation("c1")["turns"][1]["state"] == {"entities": [], "last": {}, "intent": None}
    store.close()
