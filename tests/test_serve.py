"""The HTTP service in process: Starlette's TestClient against `create_app`, a real SQLite file, scripted models."""

import json

import pytest
from helpers import TITANIC, Clock, director_model

pytest.importorskip("sqlalchemy")
from starlette.testclient import TestClient  # noqa: E402

from decompose.events import Event  # noqa: E402
from decompose.models.scripted import ScriptedChatModel, asks_for_plan  # noqa: E402
from decompose.serve import create_app  # noqa: E402
from decompose.serve.store import INTERRUPTED, RUNNING, Store, TurnBusy  # noqa: E402


def sse(text):
    """[(event name, data)] from a server-sent-events body (comments skipped)."""
    frames = []
    for block in text.strip().split("\n\n"):
        lines = [line for line in block.splitlines() if not line.startswith(":")]
        if lines:
            name = next((line[7:] for line in lines if line.startswith("event: ")), None)
            data = "\n".join(line[6:] for line in lines if line.startswith("data: "))
            frames.append((name, json.loads(data)))
    return frames


@pytest.fixture
def db(tmp_path):
    return f"sqlite:///{tmp_path / 'serve.sqlite3'}"


@pytest.fixture
def model():
    return director_model()


@pytest.fixture
def client(model, db):
    with TestClient(create_app(model, db=db)) as c:
        yield c


def test_agents_lists_the_ready_agents_and_the_plain_one(client):
    reply = client.get("/v1/agents")
    assert reply.status_code == 200
    agents = {a["name"]: a for a in reply.json()["agents"]}
    assert list(agents) == ["decompose", "customer-service", "finance"]
    assert "issue_refund" in agents["customer-service"]["tools"]
    assert agents["finance"]["examples"]


def test_a_run_streams_each_event_then_the_result(client):
    reply = client.post("/v1/runs", json={"question": TITANIC})
    assert reply.status_code == 200
    assert reply.headers["content-type"].startswith("text/event-stream")
    frames = sse(reply.text)
    names = [name for name, _ in frames]
    assert names[0] == "run" and frames[0][1]["agent"] == "decompose" and frames[0][1]["question"] == TITANIC
    assert names[1] == "PlanReady" and len(frames[1][1]["plan"]["steps"]) == 2
    assert names.count("StepStarted") == 2 and names.count("StepFinished") == 2
    assert names[-2:] == ["Answered", "result"]
    for name, data in frames[1:-1]:  # every event frame is event.to_dict(), each step change followed by the state
        if name != "state":
            assert Event.from_dict(data).type == name
    states = [data for name, data in frames if name == "state"]
    assert [names[i - 1] for i, name in enumerate(names) if name == "state"] == [
        "PlanReady",
        "StepStarted",
        "StepFinished",
        "StepStarted",
        "StepFinished",
    ]
    assert [(s["id"], s["status"], s["shown_question"], s["attempts"]) for s in states[-1]["steps"]] == [
        (1, "done", "Who directed Titanic?", 1),
        (2, "done", "When was James Cameron born?", 1),
    ]
    assert states[0]["steps"][1]["shown_question"] == "When was {1} born?"  # before step 1 answered
    result = frames[-1][1]
    assert result["ok"] and result["answer"] == "James Cameron, born 1954."
    assert [s["answer"] for s in result["steps"]] == ["James Cameron", "1954"]


def test_a_run_with_a_given_plan_runs_exactly_that_plan(client, model):
    plan = {"steps": [{"id": 1, "question": "Who directed Titanic?"}]}
    frames = sse(client.post("/v1/runs", json={"question": TITANIC, "plan": plan}).text)
    assert [s["question"] for s in frames[-1][1]["steps"]] == ["Who directed Titanic?"]
    assert not any(asks_for_plan_prompt(c) for c in model.calls)


def asks_for_plan_prompt(call):
    return '"steps"' in (call["reply"] or "")  # the call the plan was the reply to


def test_review_returns_the_plan_and_approval_runs_the_edited_plan(client, model):
    reply = client.post("/v1/runs?review=true", json={"question": TITANIC})
    assert reply.status_code == 201
    review = reply.json()
    assert [s["question"] for s in review["plan"]["steps"]] == ["Who directed Titanic?", "When was {1} born?"]
    assert not any("Question: Who directed" in c["prompt"] for c in model.calls)  # nothing ran yet

    bad = client.post(
        f"/v1/runs/{review['run_id']}/approve", json={"plan": {"steps": [{"id": 1, "question": "When was {7} born?"}]}}
    )
    assert bad.status_code == 422
    assert "{7}" in bad.json()["error"]["message"] and bad.json()["error"]["message"].startswith("the plan is invalid")

    edited = {"steps": [{"id": 1, "question": "Who directed Titanic?"}]}
    frames = sse(client.post(f"/v1/runs/{review['run_id']}/approve", json={"plan": edited}).text)
    assert frames[0] == ("run", {"id": review["run_id"], "agent": "decompose", "question": TITANIC})
    assert [s["question"] for s in frames[-1][1]["steps"]] == ["Who directed Titanic?"]

    again = client.post(f"/v1/runs/{review['run_id']}/approve")
    assert again.status_code == 409 and "already approved" in again.json()["error"]["message"]


def test_approving_without_a_body_runs_the_reviewed_plan(client):
    run_id = client.post("/v1/runs?review=true", json={"question": TITANIC}).json()["run_id"]
    result = sse(client.post(f"/v1/runs/{run_id}/approve").text)[-1][1]
    assert result["ok"] and len(result["steps"]) == 2


def test_a_failed_run_streams_an_error_then_the_partial_result(db):
    model = ScriptedChatModel(rules=[(asks_for_plan, "no plan here, sorry")], default="x")
    with TestClient(create_app(model, db=db)) as client:
        frames = sse(client.post("/v1/runs", json={"question": TITANIC}).text)
    assert [name for name, _ in frames][-2:] == ["error", "result"]
    assert frames[-2][1]["error"]["message"] and frames[-1][1]["ok"] is False


@pytest.mark.parametrize(
    "send, status, words",
    [
        ({"content": b"{not json", "headers": {"content-type": "application/json"}}, 400, "not valid JSON"),
        ({"json": ["a list"]}, 400, "must be a JSON object"),
        ({"json": {}}, 422, "no question given"),
        ({"json": {"question": "   "}}, 422, "the question is empty"),
        ({"json": {"question": 42}}, 422, "must be a string"),
        ({"json": {"question": "why? " * 5000}}, 422, "characters long, over 20000"),
        ({"json": {"question": "hi", "agent": "astrologer"}}, 404, "unknown agent 'astrologer'"),
        ({"json": {"question": "hi", "plan": {"steps": []}}}, 422, "plan has no steps"),
    ],
)
def test_user_errors_are_json_with_the_right_status(client, send, status, words):
    reply = client.post("/v1/runs", **send)
    assert reply.status_code == status
    error = reply.json()["error"]
    assert words in error["message"] and set(error) == {"message", "hint"}


def test_unknown_agent_names_the_known_ones(client):
    hint = client.post("/v1/runs", json={"question": "hi", "agent": "astrologer"}).json()["error"]["hint"]
    assert "customer-service" in hint and "finance" in hint and "decompose" in hint


def test_unknown_endpoints_and_methods_are_json_too(client):
    missing = client.get("/v1/nothing")
    assert missing.status_code == 404 and "no such endpoint" in missing.json()["error"]["message"]
    wrong = client.get("/v1/runs")
    assert wrong.status_code == 405 and "POST" in wrong.json()["error"]["hint"]


def test_a_body_over_the_limit_is_413(model, db):
    with TestClient(create_app(model, db=db, max_body_bytes=100)) as client:
        reply = client.post("/v1/runs", json={"question": "x" * 200})
        assert reply.status_code == 413 and "over 100 bytes" in reply.json()["error"]["message"]
        chunked = client.post("/v1/runs", content=iter([b'{"question": "', b"x" * 200, b'"}']))
        assert chunked.status_code == 413


def test_conversation_turns_are_stored_and_the_next_turn_sees_them(client, model):
    created = client.post("/v1/conversations", json={"agent": "decompose"})
    assert created.status_code == 201
    cid = created.json()["id"]
    first = sse(client.post(f"/v1/conversations/{cid}/messages", json={"question": TITANIC}).text)
    assert first[0] == (
        "turn",
        {"conversation_id": cid, "agent": "decompose", "seq": 1, "question": TITANIC, "status": RUNNING},
    )
    assert first[-1][1]["answer"] == "James Cameron, born 1954."
    calls_before = len(model.calls)
    client.post(f"/v1/conversations/{cid}/messages", json={"question": "And where was he born?"})
    planner_prompt = next(c["prompt"] for c in model.calls[calls_before:] if asks_for_plan_prompt(c))
    assert TITANIC in planner_prompt and "James Cameron, born 1954." in planner_prompt  # the history
    turns = client.get(f"/v1/conversations/{cid}").json()["turns"]
    assert [(t["seq"], t["question"], t["status"]) for t in turns] == [
        (1, TITANIC, "answered"),
        (2, "And where was he born?", "answered"),
    ]
    assert turns[0]["answer"] == "James Cameron, born 1954."


def test_a_conversation_is_shared_by_replicas_on_one_database(db):
    model_a, model_b = director_model(), director_model()
    with TestClient(create_app(model_a, db=db)) as replica_a, TestClient(create_app(model_b, db=db)) as replica_b:
        cid = replica_a.post("/v1/conversations", json={}).json()["id"]
        replica_a.post(f"/v1/conversations/{cid}/messages", json={"question": TITANIC})
        replica_b.post(f"/v1/conversations/{cid}/messages", json={"question": "And where was he born?"})
        planner_prompt = next(c["prompt"] for c in model_b.calls if asks_for_plan_prompt(c))
        assert TITANIC in planner_prompt  # replica B's turn had replica A's turn as history
        assert len(replica_a.get(f"/v1/conversations/{cid}").json()["turns"]) == 2


def test_conversation_errors(client):
    assert client.get("/v1/conversations/nope").status_code == 404
    reply = client.post("/v1/conversations/nope/messages", json={"question": "hi"})
    assert reply.status_code == 404 and "POST /v1/conversations" in reply.json()["error"]["hint"]
    assert client.post("/v1/conversations", json={"agent": "astrologer"}).status_code == 404
    cid = client.post("/v1/conversations").json()["id"]
    assert client.post(f"/v1/conversations/{cid}/messages", json={"question": ""}).status_code == 422
    assert client.get(f"/v1/conversations/{cid}").json()["turns"] == []  # a rejected message is not stored


def test_a_second_message_while_one_runs_is_refused(db):
    store = Store(db)
    cid = store.create_conversation("decompose")["id"]
    assert store.begin_turn(cid, "first") == (1, [])
    with pytest.raises(TurnBusy):
        store.begin_turn(cid, "second")
    store.end_turn(cid, 1, status="answered", answer="yes")
    seq, earlier = store.begin_turn(cid, "second")
    assert seq == 2 and [(t["question"], t["answer"], t["status"]) for t in earlier] == [("first", "yes", "answered")]


def test_a_turn_whose_server_stopped_renewing_reads_interrupted_on_every_replica(db):
    clock = Clock()
    crashed, replica = Store(db, lease=15, clock=clock), Store(db, lease=15, clock=clock)
    cid = crashed.create_conversation("decompose")["id"]
    crashed.begin_turn(cid, "are you there?")
    clock.advance(14.9)
    assert replica.conversation(cid)["turns"][0]["status"] == RUNNING
    clock.advance(0.2)  # past the lease: the crashed server renewed nothing
    turn = replica.conversation(cid)["turns"][0]
    assert (turn["question"], turn["status"], turn["answer"]) == ("are you there?", INTERRUPTED, None)
    assert replica.begin_turn(cid, "hello again?")[0] == 2  # the conversation goes on


def test_a_live_server_keeps_its_turn_running(db):
    clock = Clock()
    live, replica = Store(db, lease=15, clock=clock), Store(db, lease=15, clock=clock)
    cid = live.create_conversation("decompose")["id"]
    live.begin_turn(cid, "long question")
    for _ in range(4):  # 40 s in all, each renewal within the lease
        clock.advance(10)
        live.renew_leases()
    assert replica.conversation(cid)["turns"][0]["status"] == RUNNING
    clock.advance(15.1)  # the renewals stop: the lease runs out
    assert replica.conversation(cid)["turns"][0]["status"] == INTERRUPTED


def test_api_keys(model, db):
    with TestClient(create_app(model, db=db, api_keys=["s3cret-key"])) as client:
        missing = client.get("/v1/agents")
        assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
        assert "API key is required" in missing.json()["error"]["message"]
        assert "Authorization: Bearer" in missing.json()["error"]["hint"]
        wrong = client.get("/v1/agents", headers={"Authorization": "Bearer guess"})
        assert wrong.status_code == 401 and "not valid" in wrong.json()["error"]["message"]
        assert client.get("/v1/agents", headers={"Authorization": "Bearer s3cret-key"}).status_code == 200
        assert client.get("/v1/agents", headers={"X-API-Key": "s3cret-key"}).status_code == 200


def test_keys_are_kept_hashed(model, db):
    app = create_app(model, db=db, api_keys=["s3cret-key"])
    guard = app.build_middleware_stack()
    while not hasattr(guard, "keys"):
        guard = guard.app
    assert "s3cret-key" not in repr(vars(guard.keys)) and b"s3cret-key" not in repr(vars(guard.keys)).encode()


def test_rate_limit_per_key_answers_429_with_retry_after(model, db):
    app = create_app(model, db=db, api_keys=["key-a", "key-b"], rate_limit="2/min")
    with TestClient(app) as client:
        a, b = {"Authorization": "Bearer key-a"}, {"Authorization": "Bearer key-b"}
        assert [client.get("/v1/agents", headers=a).status_code for _ in range(2)] == [200, 200]
        limited = client.get("/v1/agents", headers=a)
        assert limited.status_code == 429
        assert 1 <= int(limited.headers["retry-after"]) <= 30
        assert "2 requests a minute" in limited.json()["error"]["message"]
        assert client.get("/v1/agents", headers=b).status_code == 200  # another key has its own bucket


def test_cors_is_off_by_default_and_on_for_named_origins(model, db):
    preflight = {"Origin": "https://shop.example", "Access-Control-Request-Method": "POST"}
    with TestClient(create_app(model, db=db)) as client:
        assert "access-control-allow-origin" not in client.get("/v1/agents", headers={"Origin": "https://x"}).headers
    with TestClient(create_app(model, db=db, cors_origins=["https://shop.example"])) as client:
        reply = client.options("/v1/runs", headers=preflight)
        assert reply.status_code == 200
        assert reply.headers["access-control-allow-origin"] == "https://shop.example"
        other = client.get("/v1/agents", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers


def test_custom_orchestrators_are_served_by_name(db, model):
    from decompose import Orchestrator

    with TestClient(create_app(db=db, agents={"titanic": Orchestrator(model)})) as client:
        assert [a["name"] for a in client.get("/v1/agents").json()["agents"]] == ["titanic"]
        result = sse(client.post("/v1/runs", json={"question": TITANIC}).text)[-1][1]
        assert result["answer"] == "James Cameron, born 1954."
        assert client.post("/v1/runs", json={"question": "x", "agent": "decompose"}).status_code == 404


def test_a_bad_database_url_is_a_clear_error(model):
    from decompose.errors import ConfigError

    with pytest.raises(ConfigError, match="cannot use database"):
        create_app(model, db="nosuchdialect://x")


@pytest.mark.parametrize(
    "flags, words",
    [
        (["--agent", "finance"], "serve offers every agent"),
        (["--trace", "t.jsonl"], "serve writes no trace file"),
        (["--rate-limit", "often"], "rate limit 'often' is not N/min"),
        (["--api-key-file", "missing-keys.txt"], "cannot read API key file missing-keys.txt"),
    ],
)
def test_serve_flags_that_cannot_work_are_one_line_errors(flags, words, capsys, tmp_path, monkeypatch):
    from decompose.cli.app import main

    monkeypatch.chdir(tmp_path)
    assert main(["serve", "--model", "scripted:none.py", *flags]) == 2
    err = capsys.readouterr().err
    assert words in err and err.count("\n") == 1


def test_a_bug_is_a_json_500_never_a_traceback(db):
    class Broken:  # not an Orchestrator: listing its tools fails inside the route
        @property
        def tools(self):
            raise RuntimeError("boom")

    with TestClient(create_app(db=db, agents={"broken": Broken()}), raise_server_exceptions=False) as client:
        reply = client.get("/v1/agents")
    assert reply.status_code == 500
    assert reply.json()["error"]["message"] == "internal error: RuntimeError: boom"
    assert "Traceback" not in reply.text


def test_a_store_write_retried_while_the_database_is_locked_is_a_retried_event(tmp_path, monkeypatch):
    import sqlite3

    import decompose.serve.store as store_module
    from decompose.events import Retried

    monkeypatch.setattr(store_module, "BUSY_TIMEOUT_MS", 50)  # a locked database fails the write at once
    path = tmp_path / "serve.sqlite3"
    blocker = sqlite3.connect(path, isolation_level=None)  # another process's writer, holding the lock
    events = []

    def on_event(event):
        events.append(event)
        blocker.execute("COMMIT")  # the other writer finishes while the store waits to try again

    store = Store(f"sqlite:///{path}", on_event=on_event)
    store.retry_wait = 0.01
    cid = store.create_conversation("decompose")["id"]
    seq, _ = store.begin_turn(cid, "first")
    blocker.execute("BEGIN EXCLUSIVE")
    store.end_turn(cid, seq, status="answered", answer="yes")
    assert [(type(e), e.kind, e.phase, e.attempt, e.wait) for e in events] == [(Retried, "store", "store", 1, 0.01)]
    assert "database is locked" in events[0].reason
    assert store.conversation(cid)["turns"][0]["answer"] == "yes"  # stored on the second try

    blocker.execute("BEGIN EXCLUSIVE")  # held for good: every try fails, the last failure is raised
    store.on_event = events.append
    with pytest.raises(store_module.StoreUnavailable, match="locked"):
        store.end_turn(cid, 1, status="answered", answer="again", attempts=2)
    assert len(events) == 2  # one retry, then no more
    blocker.close()
