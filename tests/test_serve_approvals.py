"""Tool approvals through `decompose serve`'s API, on a real server (uvicorn on 127.0.0.1): the customer-service
agent's plan refunds order A1023 (a 189 dollar tent, marked damaged here so the shop's policy allows it), which is
above the 100 dollar limit, so the call waits for a person; the shop is a real SQLite file, checked for refunds."""

import json

import httpx
import pytest
from helpers import REFUND_ANSWER, REFUND_ARGS, REFUND_PLAN, REFUND_QUESTION, damaged_tent_shop, tent_refunds
from servers import serving

pytest.importorskip("sqlalchemy")
from decompose.models.scripted import ScriptedChatModel, asks_for_plan, asks_to_combine  # noqa: E402
from decompose.serve import create_app  # noqa: E402

pytestmark = pytest.mark.server

QUESTION, ARGS = REFUND_QUESTION, REFUND_ARGS
DAY = 24 * 3600


def shop_model():
    return ScriptedChatModel(
        rules=[(asks_for_plan, json.dumps(REFUND_PLAN)), (asks_to_combine, REFUND_ANSWER)], default="?"
    )


class Clock:
    def __init__(self):
        import time

        self.now = time.time()

    def __call__(self):
        return self.now


@pytest.fixture
def shop(tmp_path, monkeypatch):
    monkeypatch.setenv("DECOMPOSE_CACHE", str(tmp_path / "cache"))
    return damaged_tent_shop(tmp_path / "cache")


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def app(database, shop, clock):
    app = create_app(shop_model(), db=database)  # a SQLite file, and PostgreSQL where given (conftest.py)
    app.state.service.store.clock = app.state.service.checkpoints.clock = clock  # a day passes in no time
    return app


@pytest.fixture
def url(app):
    with serving(app) as base:
        yield base


def frames(reply):
    """[(event, data)] of a server-sent event stream."""
    found, name = [], None
    for line in reply.text.splitlines():
        if line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: "):
            found.append((name, json.loads(line[6:])))
    return found


def result_of(reply):
    assert reply.status_code == 200, reply.text
    ((name, result),) = [f for f in frames(reply) if f[0] == "result"]
    return result


def ask(url):
    """A conversation whose first turn waits for the refund's approval: (conversation id, the turn's result)."""
    cid = httpx.post(f"{url}/v1/conversations", json={"agent": "customer-service"}).json()["id"]
    reply = httpx.post(f"{url}/v1/conversations/{cid}/messages", json={"question": QUESTION}, timeout=30)
    return cid, result_of(reply)


def decide(url, run_id, decisions):
    return httpx.post(f"{url}/v1/runs/{run_id}/decisions", json={"decisions": decisions}, timeout=30)


def error(reply, status):
    assert reply.status_code == status, reply.text
    body = reply.json()["error"]
    assert body["hint"], body
    return body["message"]


def test_a_turn_waits_then_approved_it_refunds_once_and_the_turn_gets_the_answer(url, shop):
    cid, result = ask(url)
    assert result["awaiting_approval"] is True and result["answer"] is None and result["error"] is None
    [request] = result["approvals"]
    assert (request["step_id"], request["tool"], request["args"]) == (2, "issue_refund", ARGS)
    assert request["reason"] == "amount 189 is above 100"
    assert [s["status"] for s in result["steps"]] == ["done", "awaiting"]
    assert tent_refunds(shop) == []

    turn = httpx.get(f"{url}/v1/conversations/{cid}").json()["turns"][0]
    assert turn["status"] == "awaiting" and turn["error"] is None and turn["run_id"] == result["run_id"]
    assert [a["step_id"] for a in turn["approvals"]] == [2]
    listed = httpx.get(f"{url}/v1/approvals").json()["approvals"]
    assert [(a["run_id"], a["step_id"], a["agent"], a["conversation_id"]) for a in listed] == [
        (result["run_id"], 2, "customer-service", cid)
    ]
    assert listed[0]["decide"] == f"/v1/runs/{result['run_id']}/decisions"
    assert httpx.get(f"{url}/v1/approvals", params={"run_id": "other"}).json()["approvals"] == []

    reply = decide(url, result["run_id"], {"2": {"decision": "approve"}})
    streamed = frames(reply)
    assert streamed[0] == (
        "turn",
        {
            "conversation_id": cid,
            "agent": "customer-service",
            "seq": 1,
            "question": QUESTION,
            "status": "running",
            "run_id": result["run_id"],
        },
    )
    resumed = result_of(reply)
    assert resumed["ok"] and resumed["answer"] and [s["status"] for s in resumed["steps"]] == ["done", "done"]
    assert tent_refunds(shop) == [("A1023", 18900)]
    turn = httpx.get(f"{url}/v1/conversations/{cid}").json()["turns"][0]
    assert (turn["status"], turn["answer"]) == ("answered", resumed["answer"])
    assert "approvals" not in turn and httpx.get(f"{url}/v1/approvals").json()["approvals"] == []

    again = decide(url, result["run_id"], {"2": {"decision": "approve"}})
    assert "is not waiting for approval: it has finished" in error(again, 409)
    assert tent_refunds(shop) == [("A1023", 18900)]

    # The conversation goes on: the next turn sees the answered one.
    follow_up = httpx.post(f"{url}/v1/conversations/{cid}/messages", json={"question": "Thanks!"}, timeout=30)
    assert follow_up.status_code == 200


def test_edited_arguments_are_checked_then_used(url, shop):
    _, result = ask(url)
    run_id = result["run_id"]
    bad = decide(url, run_id, {"2": {"decision": "edit", "args": {**ARGS, "amount": "a lot"}}})
    assert "edited arguments of step 2 do not fit" in error(bad, 422) and "'amount'" in bad.text
    unknown = decide(url, run_id, {"2": {"decision": "edit", "args": {**ARGS, "note": "x"}}})
    assert "has no argument 'note'" in error(unknown, 422)
    assert len(httpx.get(f"{url}/v1/approvals").json()["approvals"]) == 1  # nothing recorded

    resumed = result_of(decide(url, run_id, {"2": {"decision": "edit", "args": {**ARGS, "amount": "150.00"}}}))
    assert resumed["ok"] and tent_refunds(shop) == [("A1023", 15000)]


def test_rejected_no_refund_and_the_answer_says_why(url, shop):
    cid, result = ask(url)
    resumed = result_of(decide(url, result["run_id"], {"2": {"decision": "reject", "reason": "torn by the dog"}}))
    assert "The request to issue refund was not approved: torn by the dog." in resumed["answer"]
    assert [s["status"] for s in resumed["steps"]] == ["done", "failed"]
    assert tent_refunds(shop) == []
    assert httpx.get(f"{url}/v1/conversations/{cid}").json()["turns"][0]["status"] == "answered"


def test_a_run_of_v1_runs_waits_too_streamed_or_not(url, shop):
    reply = httpx.post(f"{url}/v1/runs", json={"question": QUESTION, "agent": "customer-service"}, timeout=30)
    run_frame = frames(reply)[0]
    result = result_of(reply)
    assert result["awaiting_approval"] and result["run_id"] == run_frame[1]["id"]
    listed = httpx.get(f"{url}/v1/approvals", params={"run_id": result["run_id"]}).json()["approvals"]
    assert [(a["agent"], a["conversation_id"], a["question"]) for a in listed] == [("customer-service", None, QUESTION)]
    reply = decide(url, result["run_id"], {"2": {"decision": "approve"}})
    assert frames(reply)[0][0] == "run" and result_of(reply)["ok"]
    assert tent_refunds(shop) == [("A1023", 18900)]


def test_bad_decisions_are_refused_with_a_clear_message(url, shop):
    _, result = ask(url)
    run_id = result["run_id"]
    assert "no run waiting for approval has id 'nope'" in error(
        decide(url, "nope", {"2": {"decision": "approve"}}), 404
    )
    not_json = httpx.post(f"{url}/v1/runs/{run_id}/decisions", content=b"{nope", timeout=30)
    assert "not valid JSON" in error(not_json, 400)
    assert '"decisions" must be an object' in error(decide(url, run_id, []), 422)
    assert '"decisions" must be an object' in error(decide(url, run_id, {}), 422)
    assert "not a step id" in error(decide(url, run_id, {"two": {"decision": "approve"}}), 422)
    assert "unknown decision" in error(decide(url, run_id, {"2": {"decision": "maybe"}}), 422)
    assert "step 1 of run" in error(decide(url, run_id, {"1": {"decision": "approve"}}), 409)
    assert tent_refunds(shop) == [] and len(httpx.get(f"{url}/v1/approvals").json()["approvals"]) == 1


def test_cancelled_the_run_never_refunds_and_the_turn_says_so(url, shop):
    cid, result = ask(url)
    run_id = result["run_id"]
    cancelled = httpx.post(f"{url}/v1/runs/{run_id}/cancel", json={"reason": "the customer changed their mind"})
    assert cancelled.status_code == 200 and cancelled.json() == {
        "run_id": run_id,
        "status": "cancelled",
        "review": False,
    }
    turn = httpx.get(f"{url}/v1/conversations/{cid}").json()["turns"][0]
    assert (turn["status"], turn["error"]) == ("cancelled", "cancelled: the customer changed their mind")
    assert "was cancelled" in error(decide(url, run_id, {"2": {"decision": "approve"}}), 409)
    assert "was cancelled" in error(httpx.post(f"{url}/v1/runs/{run_id}/cancel"), 409)
    assert "no run waiting" in error(httpx.post(f"{url}/v1/runs/nope/cancel"), 404)
    assert tent_refunds(shop) == [] and httpx.get(f"{url}/v1/approvals").json()["approvals"] == []


def test_a_call_not_decided_within_a_day_expires(url, shop, clock):
    cid, result = ask(url)
    clock.now += DAY + 1
    assert httpx.get(f"{url}/v1/approvals").json()["approvals"] == []
    assert "expired" in error(decide(url, result["run_id"], {"2": {"decision": "approve"}}), 409)
    turn = httpx.get(f"{url}/v1/conversations/{cid}").json()["turns"][0]
    assert turn["status"] == "expired" and "expired" in turn["error"]
    assert tent_refunds(shop) == []


def test_without_approvals_the_refund_is_made_at_once(tmp_path, shop):
    app = create_app(shop_model(), db=f"sqlite:///{tmp_path / 'serve.sqlite3'}", approvals=False)
    with serving(app) as url:
        _, result = ask(url)
    assert result["ok"] and not result["approvals"] and tent_refunds(shop) == [("A1023", 18900)]


# ----- plan reviews: cancelled, expired ---------------------------------------------------------------------


def review(url):
    reply = httpx.post(f"{url}/v1/runs?review=true", json={"question": QUESTION, "agent": "customer-service"})
    assert reply.status_code == 201, reply.text
    return reply.json()


def test_a_plan_review_cancelled_can_never_run(url, shop, app):
    plan = review(url)
    assert plan["cancel"] == f"/v1/runs/{plan['run_id']}/cancel"
    cancelled = httpx.post(f"{url}{plan['cancel']}")
    assert cancelled.json() == {"run_id": plan["run_id"], "status": "cancelled", "review": True}
    assert "was already cancelled" in error(httpx.post(f"{url}{plan['approve']}"), 409)
    assert "not awaiting review: it was cancelled" in error(httpx.post(f"{url}{plan['cancel']}"), 409)
    assert app.state.service.store.review(plan["run_id"])["status"] == "cancelled"
    assert tent_refunds(shop) == []


def test_a_plan_review_expires_after_a_day(url, shop, clock):
    plan = review(url)
    assert plan["expires_at"] == pytest.approx(clock.now + DAY)
    clock.now += DAY + 1
    assert "expired unapproved after 24 h" in error(httpx.post(f"{url}{plan['approve']}"), 409)
    assert "it was expired" in error(httpx.post(f"{url}{plan['cancel']}"), 409)
    assert tent_refunds(shop) == []


def test_an_approved_review_whose_refund_waits_is_decided_like_any_run(url, shop):
    plan = review(url)
    result = result_of(httpx.post(f"{url}{plan['approve']}", timeout=30))
    assert result["awaiting_approval"] and result["run_id"] == plan["run_id"]
    assert result_of(decide(url, plan["run_id"], {"2": {"decision": "approve"}}))["ok"]
    assert tent_refunds(shop) == [("A1023", 18900)]


def test_a_reviewed_plan_of_a_conversation_is_its_next_turn_and_counts_the_planning_call(url, shop):
    cid = httpx.post(f"{url}/v1/conversations", json={"agent": "customer-service"}).json()["id"]
    plan = httpx.post(f"{url}/v1/runs?review=true", json={"question": QUESTION, "conversation_id": cid}).json()
    assert (plan["agent"], plan["conversation_id"]) == ("customer-service", cid)
    reply = httpx.post(f"{url}{plan['approve']}", timeout=30)
    first = frames(reply)[0]
    assert first[0] == "turn" and (first[1]["seq"], first[1]["run_id"]) == (1, plan["run_id"])
    result = result_of(reply)
    assert result["awaiting_approval"] and result["usage"]["phases"]["decompose"]["calls"] == 1
    turn = httpx.get(f"{url}/v1/conversations/{cid}").json()["turns"][0]
    assert (turn["status"], turn["run_id"]) == ("awaiting", plan["run_id"])

    resumed = result_of(decide(url, plan["run_id"], {"2": {"decision": "approve"}}))
    assert resumed["ok"] and tent_refunds(shop) == [("A1023", 18900)]
    assert httpx.get(f"{url}/v1/conversations/{cid}").json()["turns"][0]["status"] == "answered"

    other = httpx.post(
        f"{url}/v1/runs?review=true", json={"question": QUESTION, "conversation_id": cid, "agent": "finance"}
    )
    assert "is with customer-service, not finance" in error(other, 422)
    unknown = httpx.post(f"{url}/v1/runs?review=true", json={"question": QUESTION, "conversation_id": "nope"})
    assert "no conversation has id 'nope'" in error(unknown, 404)


@pytest.mark.parametrize("stream", [False, True])
def test_a_chat_completion_that_waits_says_so_and_is_decided_like_any_run(url, shop, stream):
    body = {"model": "customer-service", "messages": [{"role": "user", "content": QUESTION}], "stream": stream}
    reply = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=30)
    assert reply.status_code == 200, reply.text
    if stream:
        chunks = [json.loads(line[6:]) for line in reply.text.splitlines() if line.startswith("data: {")]
        content = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    else:
        content = reply.json()["choices"][0]["message"]["content"]
    [waiting] = httpx.get(f"{url}/v1/approvals").json()["approvals"]
    assert content == (
        f"This needs a person's approval first: issue_refund {json.dumps(ARGS)} (amount 189 is above 100). "
        f"It waits as run {waiting['run_id']}: decide with POST /v1/runs/{waiting['run_id']}/decisions."
    )
    assert result_of(decide(url, waiting["run_id"], {"2": {"decision": "approve"}}))["ok"]
    assert tent_refunds(shop) == [("A1023", 18900)]


def test_a_plan_still_in_review_has_nothing_to_decide(url, shop):
    plan = review(url)
    assert "never ran (a plan still awaiting review?)" in error(
        decide(url, plan["run_id"], {"2": {"decision": "approve"}}), 404
    )


def test_a_reviewed_turn_is_planned_and_answered_with_the_conversations_earlier_turns(tmp_path, shop):
    seen: dict[str, list[str]] = {"plan": [], "answer": []}

    def said(kind: str, reply: str):
        def answer(messages):
            seen[kind].append("\n".join(str(m.content) for m in messages))
            return reply

        return answer

    plan = {"steps": [{"id": 1, "question": "Which order was it?"}]}
    model = ScriptedChatModel(
        rules=[(asks_for_plan, said("plan", json.dumps(plan))), (asks_to_combine, said("answer", "Order A1023."))],
        default="A1023",
    )
    with serving(create_app(model, db=f"sqlite:///{tmp_path / 'serve.sqlite3'}")) as url:
        cid = httpx.post(f"{url}/v1/conversations", json={"agent": "customer-service"}).json()["id"]
        first = httpx.post(f"{url}/v1/conversations/{cid}/messages", json={"question": "My tent is torn."}, timeout=30)
        assert first.status_code == 200
        seen["plan"].clear()
        review = {"question": "Which order was that?", "conversation_id": cid}
        reviewed = httpx.post(f"{url}/v1/runs?review=true", json=review).json()
        assert "My tent is torn." in seen["plan"][-1]  # the plan is made knowing the first turn
        seen["answer"].clear()
        assert result_of(httpx.post(f"{url}{reviewed['approve']}", timeout=30))["ok"]
        assert "My tent is torn." in seen["answer"][-1]  # and so is the answer
