"""A server with checkpoints offers the runs a stopped server left (`GET /v1/runs/resumable`) and resumes one
(`POST /v1/runs/{run_id}/resume`), over real HTTP on 127.0.0.1 with a real SQLite checkpoint file; a run still in
flight here, a finished one and an unknown one say so; without `checkpoints` the server's own database holds
them. The kill -9 of a real server
process is in test_serve_process.py."""

import json

import httpx
import pytest
from helpers import DIRECTOR_ANSWER, TITANIC, director_model
from servers import serving

pytest.importorskip("sqlalchemy")
from decompose.checkpoints import STOPPED, CheckpointStore  # noqa: E402
from decompose.serve import create_app  # noqa: E402

pytestmark = pytest.mark.server
ANSWER = DIRECTOR_ANSWER


def result_of(body: str) -> dict:
    return json.loads(body.split("event: result\ndata: ", 1)[1].split("\n", 1)[0])


def test_without_checkpoints_given_the_runs_are_kept_in_the_servers_own_database(tmp_path):
    db = f"sqlite:///{tmp_path / 'serve.sqlite3'}"
    earlier = CheckpointStore(db)  # a stopped server's run, in the database the server keeps its conversations in
    earlier.begin("left-behind", TITANIC, history=[], given_plan=False)
    earlier.end("left-behind", STOPPED, error="the server stopped")
    with serving(create_app(director_model(), db=db)) as url:
        [offered] = httpx.get(f"{url}/v1/runs/resumable").json()["runs"]
        assert offered["id"] == "left-behind"
        resumed = result_of(httpx.post(f"{url}/v1/runs/left-behind/resume", json={}, timeout=30).text)
        assert resumed["answer"] == ANSWER


def test_a_stopped_run_is_offered_and_resumed_and_the_others_say_why_not(tmp_path):
    ck = tmp_path / "runs.sqlite3"
    earlier = CheckpointStore(ck)  # another process's run, stopped before its plan was saved
    earlier.begin("left-behind", TITANIC, history=[], given_plan=False)
    earlier.end("left-behind", STOPPED, error="the server stopped")
    app = create_app(
        director_model(latency=0.3),
        db=f"sqlite:///{tmp_path / 'serve.sqlite3'}",
        orchestrator_options={"checkpoints": str(ck)},
    )
    with serving(app) as url:
        [offered] = httpx.get(f"{url}/v1/runs/resumable").json()["runs"]
        assert (offered["id"], offered["status"], offered["question"]) == ("left-behind", "stopped", TITANIC)

        with httpx.stream("POST", f"{url}/v1/runs", json={"question": TITANIC}, timeout=30) as running:
            lines = running.iter_lines()
            run_id = json.loads(next(line for line in lines if line.startswith("data: "))[6:])["id"]
            next(line for line in lines if line == "event: PlanReady")  # the run is under way
            busy = httpx.post(f"{url}/v1/runs/{run_id}/resume")  # in flight on this server
            assert busy.status_code == 409 and "is still running" in busy.json()["error"]["message"]
            assert [r["id"] for r in httpx.get(f"{url}/v1/runs/resumable").json()["runs"]] == ["left-behind"]
            assert result_of("\n".join(lines) + "\n")["answer"] == ANSWER
        finished = httpx.post(f"{url}/v1/runs/{run_id}/resume")
        assert finished.status_code == 409 and "finished" in finished.json()["error"]["message"]
        unknown = httpx.post(f"{url}/v1/runs/nope/resume")
        assert unknown.status_code == 404 and "GET /v1/runs/resumable" in unknown.json()["error"]["hint"]

        resumed = result_of(httpx.post(f"{url}/v1/runs/left-behind/resume", json={}, timeout=30).text)
        assert (resumed["run_id"], resumed["answer"]) == ("left-behind", ANSWER)
        assert httpx.get(f"{url}/v1/runs/resumable").json()["runs"] == []
