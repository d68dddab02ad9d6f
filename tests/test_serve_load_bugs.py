"""Bugs found while load-testing the server (benchmarks/serve_load.py), each pinned: replicas starting at once on a
new database, a turn whose end cannot be stored, and a database locked past its busy timeout."""

import multiprocessing
import sqlite3
import threading
import time

import pytest
from helpers import TITANIC, Clock, plan_json

pytest.importorskip("sqlalchemy")
from sqlalchemy.exc import OperationalError  # noqa: E402
from starlette.testclient import TestClient  # noqa: E402
from test_serve import sse  # noqa: E402

from decompose.models.scripted import ScriptedChatModel, asks_for_plan, asks_to_combine  # noqa: E402
from decompose.serve import create_app  # noqa: E402
from decompose.serve import store as store_module  # noqa: E402
from decompose.serve.store import Store, StoreUnavailable  # noqa: E402


@pytest.fixture
def db(tmp_path):
    return f"sqlite:///{tmp_path / 'serve.sqlite3'}"


def _open_at(url, start, results):
    while time.time() < start:  # every process creates the tables at the same moment
        pass
    try:
        Store(url).create_conversation("decompose")
        results.put("ok")
    except Exception as exc:  # what a replica that failed to start would print
        results.put(f"{type(exc).__name__}: {exc}")


@pytest.mark.slow
def test_replicas_started_at_once_on_a_new_database_all_open_it(tmp_path):
    # Before: each checked for the tables, then all but the first CREATE failed with "table ... already exists".
    context = multiprocessing.get_context("fork")
    outcomes = []
    for trial in range(3):
        url = f"sqlite:///{tmp_path / f'new-{trial}.sqlite3'}"
        results, start = context.Queue(), time.time() + 0.5
        workers = [context.Process(target=_open_at, args=(url, start, results)) for _ in range(4)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(timeout=60)
        outcomes += [results.get(timeout=10) for _ in workers]
    assert outcomes == ["ok"] * 12


def model_that(during_synthesis):
    def combine(_messages):
        during_synthesis()
        return "James Cameron, born 1954."

    return ScriptedChatModel(
        rules=[(asks_for_plan, plan_json("Who directed Titanic?")), (asks_to_combine, combine)], default="James Cameron"
    )


def test_an_end_that_cannot_be_stored_still_ends_the_stream_and_frees_the_conversation(db, monkeypatch):
    # Before: end_turn's failure escaped the run, so the stream never ended (keep-alives forever) and the turn's
    # lease was renewed while the server lived: every later message of the conversation got 409.
    outage = threading.Event()
    app = create_app(agents=None, model=model_that(outage.set), db=db, lease=30)
    store = app.state.service.store
    store.clock = clock = Clock()
    writing = store._writing

    def failing_writes():
        if outage.is_set():
            raise StoreUnavailable(
                OperationalError("UPDATE decompose_turns", {}, sqlite3.OperationalError("disk I/O error"))
            )
        return writing()

    monkeypatch.setattr(store, "_writing", failing_writes)
    monkeypatch.setattr(store, "retry_wait", 0.01)
    with TestClient(app) as client:
        cid = client.post("/v1/conversations", json={}).json()["id"]
        reply = {}
        sender = threading.Thread(
            target=lambda: reply.update(r=client.post(f"/v1/conversations/{cid}/messages", json={"question": TITANIC}))
        )
        sender.start()
        sender.join(timeout=30)
        assert not sender.is_alive(), "the stream never ended"
        frames = sse(reply["r"].text)
        assert [name for name, _ in frames[-2:]] == ["error", "result"]
        assert "conversation store is unavailable: disk I/O error" in frames[-2][1]["error"]["message"]
        assert frames[-1][1]["answer"] == "James Cameron, born 1954."  # the client still has the answer

        outage.clear()  # the database is back; the turn is no longer renewed, so it reads interrupted
        monkeypatch.undo()
        clock.advance(31)
        turns = client.get(f"/v1/conversations/{cid}").json()["turns"]
        assert [(t["question"], t["status"]) for t in turns] == [(TITANIC, "interrupted")]
        again = client.post(f"/v1/conversations/{cid}/messages", json={"question": TITANIC})
        assert again.status_code == 200 and sse(again.text)[-1][1]["answer"] == "James Cameron, born 1954."


def test_a_database_locked_past_the_busy_timeout_is_503_with_retry_after(tmp_path, monkeypatch):
    # Before: SQLite's "database is locked" escaped as a 500 "internal error ... this is a bug".
    path = tmp_path / "serve.sqlite3"
    monkeypatch.setattr(store_module, "BUSY_TIMEOUT_MS", 100)
    app = create_app(model_that(lambda: None), db=f"sqlite:///{path}")
    with TestClient(app) as client:
        cid = client.post("/v1/conversations", json={}).json()["id"]
        other = sqlite3.connect(path, isolation_level=None)  # another process holding the write lock
        other.execute("BEGIN IMMEDIATE")
        try:
            busy = client.post(f"/v1/conversations/{cid}/messages", json={"question": TITANIC})
            assert busy.status_code == 503 and busy.headers["retry-after"] == "1"
            assert "conversation store is unavailable: database is locked" in busy.json()["error"]["message"]
            assert client.get(f"/v1/conversations/{cid}").json()["turns"] == []  # nothing half-stored
        finally:
            other.execute("ROLLBACK")
            other.close()
        sent = client.post(f"/v1/conversations/{cid}/messages", json={"question": TITANIC})
        assert sent.status_code == 200  # sending it again works once the lock is gone
        assert [t["status"] for t in client.get(f"/v1/conversations/{cid}").json()["turns"]] == ["answered"]


def test_a_locked_database_is_503_on_the_review_routes_too(tmp_path, monkeypatch):
    path = tmp_path / "serve.sqlite3"
    monkeypatch.setattr(store_module, "BUSY_TIMEOUT_MS", 100)
    app = create_app(model_that(lambda: None), db=f"sqlite:///{path}")
    with TestClient(app) as client:
        client.post("/v1/conversations", json={})  # the tables exist before the lock is taken
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        try:
            busy = client.post("/v1/runs?review=true", json={"question": TITANIC})
            assert busy.status_code == 503 and busy.headers["retry-after"] == "1"
            assert "conversation store is unavailable" in busy.json()["error"]["message"]
        finally:
            other.execute("ROLLBACK")
            other.close()
        review = client.post("/v1/runs?review=true", json={"question": TITANIC})
        assert review.status_code == 201 and review.json()["plan"]["steps"]  # the lock gone, the review is stored


def test_an_idle_server_writes_nothing_to_renew(db):
    store = Store(db, lease=0.2)
    cid = store.create_conversation("decompose")["id"]
    seq, _ = store.begin_turn(cid, "q")
    store.end_turn(cid, seq, status="answered", answer="a")
    writes = []
    store._writing = lambda: writes.append(1)  # would fail if called: nothing runs, nothing to renew
    store.renew_leases()
    assert writes == []
