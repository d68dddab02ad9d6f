"""Tool approvals (decompose/approvals.py): a call waits for a person in a real SQLite checkpoint store, and a
resumed run goes on with the decision; scripted models, a refund tool that records what it did in SQLite."""

from __future__ import annotations

import json
import sqlite3
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from langchain_core.tools import tool

from decompose import ApprovalRequested, Approve, ConfigError, Edit, InputError, Orchestrator, Reject, ToolRunner
from decompose.approvals import amount_over, requires_approval, writes_need_approval
from decompose.checkpoints import AWAITING, CANCELLED, EXPIRED, FINISHED, CheckpointStore
from decompose.models.scripted import ScriptedChatModel, asks_for_plan, asks_to_combine
from decompose.tools.runner import side_effects

QUESTION = "Please refund order 7 in full and confirm it."
PLAN = {
    "steps": [
        {"id": 1, "question": "What is the amount of order 7?"},
        {"id": 2, "question": "Refund order 7", "tool": "refund", "args": {"order": "7", "amount": "{1}"}},
        {"id": 3, "question": "Write a confirmation of {2}", "depends_on": [2]},
    ]
}
PLAN["steps"][1]["depends_on"] = [1]


class Shop:
    """Refunds made and model calls asked, in a SQLite file (what a person would audit)."""

    def __init__(self, path: Path):
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.execute("CREATE TABLE IF NOT EXISTS refunds (order_id TEXT, amount TEXT)")
        self.db.execute("CREATE TABLE IF NOT EXISTS calls (what TEXT)")

    def refunds(self) -> list[tuple[str, str]]:
        return self.db.execute("SELECT order_id, amount FROM refunds").fetchall()

    def calls(self, what: str) -> int:
        return self.db.execute("SELECT COUNT(*) FROM calls WHERE what = ?", (what,)).fetchone()[0]


def agent(shop: Shop, checkpoints: Any, *, amount: str = "142", **runner: Any) -> Orchestrator:
    def said(what: str, text: str) -> Any:
        def reply(_messages: Any) -> str:
            shop.db.execute("INSERT INTO calls VALUES (?)", (what,))
            return text

        return reply

    model = ScriptedChatModel(
        rules=[
            (asks_for_plan, said("plan", json.dumps(PLAN))),
            (asks_to_combine, said("synthesis", "Answer: order 7 was refunded.")),
            (r"amount of order 7", said("amount", amount)),
            (r"confirmation of", said("confirm", "Confirmation C-7 sent")),
        ],
        default="?",
    )

    @tool
    def refund(order: str, amount: Decimal) -> str:
        """Refund an order."""
        shop.db.execute("INSERT INTO refunds VALUES (?, ?)", (order, str(amount)))
        return f"refund of {amount} dollars for order {order}"

    policy = runner.pop("approval", amount_over(100, tools=("refund",)))
    return Orchestrator(
        model,
        tools=[side_effects(refund)],
        checkpoints=checkpoints,
        tool_runner=ToolRunner(approval=policy, guard=False, **runner),
    )


@pytest.fixture
def shop(tmp_path: Path) -> Shop:
    return Shop(tmp_path / "shop.sqlite3")


@pytest.fixture
def ck(database: str) -> str:
    """The checkpoint store: a SQLite file, and a PostgreSQL database too where one is given (conftest.py)."""
    return database


def waiting(shop: Shop, ck: str, run_id: str = "r1") -> Orchestrator:
    orch = agent(shop, ck)
    result = orch.run(QUESTION, run_id=run_id)
    assert result.awaiting_approval and result.answer is None and result.error is None
    return orch


def test_a_call_above_the_policy_waits_and_the_rest_of_the_run_goes_on(shop, ck):
    events: list[Any] = []
    result = agent(shop, ck).run(QUESTION, run_id="r1", on_event=events.append)
    assert result.awaiting_approval and not result.ok and result.answer is None
    [request] = result.approvals
    assert (request.run_id, request.step_id, request.tool) == ("r1", 2, "refund")
    assert request.args == {"order": "7", "amount": "142"} and request.reason == "amount 142 is above 100"
    assert request.expires_at - request.requested_at == pytest.approx(24 * 3600)
    assert [s.status for s in result.plan.steps] == ["done", "awaiting", "skipped"]
    assert result.plan.steps[2].error == "step 2 waits for approval"
    assert [e for e in events if isinstance(e, ApprovalRequested)][0].args == request.args
    assert shop.refunds() == [] and shop.calls("synthesis") == 0  # nothing made, nothing answered
    data = json.loads(result.to_json())
    assert data["awaiting_approval"] is True and data["approvals"][0]["tool"] == "refund"
    store = CheckpointStore(ck)
    assert store.load("r1").status == AWAITING
    assert [a.step_id for a in store.approvals()] == [2]


def test_a_call_under_the_policy_runs_without_asking(shop, ck):
    result = agent(shop, ck, amount="42").run(QUESTION, run_id="r1")
    assert result.ok and not result.approvals and shop.refunds() == [("7", "42")]


def test_approved_the_call_is_made_once_and_ended_steps_are_not_asked_again(shop, ck):
    orch = waiting(shop, ck)
    resumed = agent(shop, ck).resume("r1", decisions={2: Approve()})  # another Orchestrator: a restarted process
    assert resumed.ok and resumed.answer == "order 7 was refunded." and resumed.run_id == "r1"
    assert shop.refunds() == [("7", "142")]
    assert shop.calls("amount") == 1 and shop.calls("plan") == 1
    assert [s.status for s in resumed.plan.steps] == ["done", "done", "done"]
    assert CheckpointStore(ck).load("r1").status == FINISHED
    with pytest.raises(InputError, match="already finished"):
        orch.resume("r1", decisions={2: Approve()})
    assert shop.refunds() == [("7", "142")]


def test_edited_arguments_are_checked_against_the_schema_then_used(shop, ck):
    orch = waiting(shop, ck)
    with pytest.raises(InputError, match=r"edited arguments of step 2 do not fit: .*'amount'"):
        orch.resume("r1", decisions={2: Edit({"order": "7", "amount": "a lot"})})
    with pytest.raises(InputError, match="has no argument 'note'"):
        orch.resume("r1", decisions={2: {"decision": "edit", "args": {"order": "7", "amount": "1", "note": "x"}}})
    assert [a.step_id for a in orch.approvals("r1")] == [2]  # a bad decision records nothing
    resumed = orch.resume("r1", decisions={2: {"decision": "edit", "args": {"order": "7", "amount": "99.50"}}})
    assert resumed.ok and shop.refunds() == [("7", "99.50")]
    assert resumed.plan.steps[1].args == {"order": "7", "amount": "99.50"}


def test_rejected_the_step_fails_with_the_reason_and_the_answer_says_so(shop, ck):
    orch = waiting(shop, ck)
    resumed = orch.resume("r1", decisions={2: Reject("over the agent's limit")})
    assert shop.refunds() == []
    assert [s.status for s in resumed.plan.steps] == ["done", "failed", "skipped"]
    assert resumed.plan.steps[1].error == "refund was not approved: over the agent's limit"
    assert "The request to refund was not approved: over the agent's limit." in resumed.answer
    assert shop.calls("confirm") == 0


def test_bad_decisions_are_refused_with_what_waits(shop, ck):
    orch = waiting(shop, ck)
    with pytest.raises(InputError, match=r"waits for approval of step 2: refund .*amount 142 is above 100"):
        orch.resume("r1")
    with pytest.raises(InputError, match=r"step 5 of run r1 has no pending approval \(steps waiting: 2\)"):
        orch.resume("r1", decisions={5: Approve()})
    with pytest.raises(InputError, match="unknown decision"):
        orch.resume("r1", decisions={2: {"decision": "maybe"}})
    with pytest.raises(InputError, match="no run 'nope'"):
        orch.resume("nope", decisions={2: Approve()})
    orch.resume("r1", decisions={2: Approve()})
    with pytest.raises(InputError, match="already finished"):
        orch.resume("r1", decisions={2: Reject()})  # a second decision
    plain = agent(shop, ck, amount="42")
    plain.run(QUESTION, run_id="r2")
    with pytest.raises(InputError, match="already finished"):
        plain.resume("r2", decisions={2: Approve()})


def test_a_second_decision_on_a_waiting_step_is_refused_by_the_store(shop, ck):
    waiting(shop, ck)
    store = CheckpointStore(ck)
    store.decide("r1", {2: {"decision": "approve"}})
    with pytest.raises(InputError, match="step 2 of run r1 has no pending approval"):
        store.decide("r1", {2: {"decision": "reject", "reason": "no"}})


def test_decisions_saved_in_the_store_let_the_run_resume_without_them(shop, ck):
    # A server records the decision first (the store is the arbiter between replicas), then resumes: a process
    # that died in between leaves a run another one can finish.
    waiting(shop, ck)
    CheckpointStore(ck).decide("r1", {2: {"decision": "edit", "args": {"order": "7", "amount": "120"}}})
    resumed = agent(shop, ck).resume("r1")
    assert resumed.ok and shop.refunds() == [("7", "120")]


def test_pending_approvals_expire_and_expired_runs_are_deleted_later(shop, ck):
    now = [1_000_000.0]
    store = CheckpointStore(ck, approval_ttl=3600, ttl=600, clock=lambda: now[0])
    orch = waiting(shop, store)
    now[0] += 3601
    store.purge()
    saved = store.load("r1")
    assert saved.status == EXPIRED and "no decision on its approval within 1 h" in saved.error
    assert store.approvals() == []
    with pytest.raises(InputError, match="run r1 was expired"):
        orch.resume("r1", decisions={2: Approve()})
    now[0] += 601
    store.purge()
    assert store.counts() == {"decompose_runs": 0, "decompose_run_steps": 0, "decompose_ledger": 0,
                              "decompose_approvals": 0}  # fmt: skip
    assert shop.refunds() == []


def test_a_waiting_run_can_be_cancelled_and_is_not_resumed(shop, ck):
    orch = waiting(shop, ck)
    orch.cancel("r1", "the customer withdrew the request")
    saved = CheckpointStore(ck).load("r1")
    assert saved.status == CANCELLED and saved.error == "the customer withdrew the request"
    with pytest.raises(InputError, match="run r1 was cancelled"):
        orch.resume("r1", decisions={2: Approve()})
    with pytest.raises(InputError, match="has ended already"):
        orch.cancel("r1")
    with pytest.raises(InputError, match="no run 'nope'"):
        orch.cancel("nope")
    assert shop.refunds() == []


def test_an_approver_decides_at_once(shop, ck):
    asked: list[Any] = []

    def approver(request: Any) -> Any:
        asked.append(request)
        return Edit({"order": "7", "amount": "100"})

    result = agent(shop, None, approver=approver).run(QUESTION)
    assert result.ok and shop.refunds() == [("7", "100")] and asked[0].reason == "amount 142 is above 100"

    async def rejects(request: Any) -> Any:
        return Reject("not today")

    rejected = agent(shop, None, approver=rejects).run(QUESTION)
    assert "The request to refund was not approved: not today." in rejected.answer and len(shop.refunds()) == 1


def test_an_approver_that_returns_nonsense_fails_the_step_clearly(shop):
    result = agent(shop, None, approver=lambda request: "yes").run(QUESTION)
    assert result.plan.steps[1].status == "failed" and shop.refunds() == []
    assert "the approver returned str, not Approve()" in result.plan.steps[1].error


def test_an_approver_that_defers_without_a_store_says_the_run_cannot_wait(shop):
    result = agent(shop, None, approver=lambda request: None).run(QUESTION)
    assert result.awaiting_approval and "has no checkpoint store" in result.error and shop.refunds() == []


def test_tools_that_may_wait_need_a_place_to_wait(shop):
    with pytest.raises(ConfigError, match="refund may wait for a person's approval") as raised:
        agent(shop, None)
    assert "checkpoints=" in raised.value.hint


def test_a_marked_tool_and_the_writes_policy_always_wait(shop, ck):
    @tool
    def note(text: str) -> str:
        """Write a note."""
        return "noted"

    assert agent(shop, ck).tool_runner.needs_approval(requires_approval(note))
    result = agent(shop, ck, amount="1", approval=writes_need_approval).run(QUESTION, run_id="w")
    assert result.approvals[0].reason == "refund changes the world" and shop.refunds() == []


def test_a_conversation_remembers_a_turn_that_waits_for_approval(shop, ck):
    from decompose.conversation import Conversation

    conversation = Conversation(agent(shop, ck))
    result = conversation.send(QUESTION)
    assert result.awaiting_approval
    assert conversation.history[-1].answer == "(no answer: waiting for a person to approve refund {'order': '7', " \
        "'amount': '142'})"  # fmt: skip


def test_a_conversation_resumes_its_waiting_turn_and_remembers_the_answer(shop, ck):
    from decompose.conversation import Conversation

    conversation = Conversation(agent(shop, ck))
    waited = conversation.send(QUESTION)
    resumed = conversation.resume(waited.run_id, decisions={2: Approve()})
    assert resumed.ok and shop.refunds() == [("7", "142")]
    assert [(t.question, t.answer) for t in conversation.history] == [(QUESTION, "order 7 was refunded.")]
    with pytest.raises(InputError, match="is not a turn of this conversation"):
        conversation.resume("another-run", decisions={2: Approve()})


def test_a_policy_that_raises_fails_the_step_and_makes_no_call(shop, ck):
    def broken(tool: Any, args: Any) -> str | None:
        raise KeyError("limit")

    result = agent(shop, ck, approval=broken).run(QUESTION)
    assert result.plan.steps[1].status == "failed" and shop.refunds() == []
    error = result.plan.steps[1].error
    assert "the approval policy failed on refund: KeyError: 'limit'; the call was not made" in error


def test_an_approver_that_raises_fails_the_step_and_makes_no_call(shop):
    async def down(request: Any) -> Any:
        raise ConnectionError("review queue unreachable")

    result = agent(shop, None, approver=down).run(QUESTION)
    assert result.plan.steps[1].status == "failed" and shop.refunds() == []
    assert "the approver failed on step 2 (refund): ConnectionError: review queue unreachable" in (
        result.plan.steps[1].error
    )
