"""`decompose serve` as a real process: killed with kill -9 mid-turn and restarted on the same database it has
lost no acknowledged message; stopped with SIGTERM it lets a turn in flight finish, or ends it as interrupted."""

import json
import os
import re
import signal
import subprocess
import sys
import time

import httpx
import pytest
from helpers import REPO, TITANIC

pytest.importorskip("sqlalchemy")
from decompose.serve.store import Store  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.server]

RULES = """
import json
from decompose.models.scripted import asks_for_plan, asks_to_combine

rules = [
    (asks_for_plan, json.dumps({"steps": [{"id": 1, "question": "Who directed Titanic?"},
                                          {"id": 2, "question": "When was {1} born?"}]})),
    (asks_to_combine, "James Cameron, born 1954."),
    (r"Question: Who directed Titanic", "James Cameron"),
    (r"Question: When was James Cameron born", "1954"),
]
default = "I do not know"
latency = LATENCY
"""


class Served:
    """`python -m decompose.cli serve` on a free port; its log in a file."""

    def __init__(self, tmp_path, db, *flags, latency=0.5, rules_text=RULES):
        rules = tmp_path / f"slow_rules_{latency}.py"
        rules.write_text(rules_text.replace("LATENCY", str(latency)))
        env = {k: v for k, v in os.environ.items() if k not in ("DECOMPOSE_MODEL", "OPENAI_API_KEY", "OPENAI_BASE_URL")}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
        env["DECOMPOSE_CACHE"] = str(tmp_path / "cache")
        self.log = tmp_path / f"serve-{time.monotonic_ns()}.log"
        with open(self.log, "w") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "decompose.cli",
                    "serve",
                    "--port",
                    "0",
                    "--model",
                    f"scripted:{rules}",
                    "--db",
                    db,
                    *flags,
                ],
                cwd=tmp_path,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            self.url = self._wait_listening()
        except BaseException:  # never leave a server behind
            self.stop()
            raise

    def _wait_listening(self, timeout=60):
        """The URL once the server says it listens: its socket is bound by then, so requests wait for it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = re.search(r"listening on (http://\S+)", self.log.read_text())
            if found:
                return found.group(1)
            assert self.proc.poll() is None, self.log.read_text()
            time.sleep(0.05)
        raise AssertionError(f"the server did not start: {self.log.read_text()}")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=30)


@pytest.fixture
def db(tmp_path):
    return f"sqlite:///{tmp_path / 'conversations.sqlite3'}"


def frames_until(lines, wanted):
    """Read SSE frames from a reply's lines until the `wanted` event; returns them as [(name, data)]."""
    frames, name = [], None
    for line in lines:
        if line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: "):
            frames.append((name, json.loads(line[6:])))
            if name == wanted:
                return frames
    return frames


def test_kill_9_mid_turn_loses_no_acknowledged_message(tmp_path, db):
    first = Served(tmp_path, db, "--lease", "1", latency=1.0)
    try:
        cid = httpx.post(f"{first.url}/v1/conversations", json={}).json()["id"]
        with httpx.stream(
            "POST", f"{first.url}/v1/conversations/{cid}/messages", json={"question": TITANIC}, timeout=30
        ) as reply:
            frames = frames_until(reply.iter_lines(), "PlanReady")  # acknowledged, and the run is under way
            assert frames[0][0] == "turn" and frames[-1][0] == "PlanReady"
            os.kill(first.proc.pid, signal.SIGKILL)
            first.proc.wait(timeout=10)
    finally:
        first.stop()

    second = Served(tmp_path, db, "--lease", "1", latency=0.0)
    try:
        deadline = time.monotonic() + 10
        while True:  # the dead server's lease runs out within a second
            turns = httpx.get(f"{second.url}/v1/conversations/{cid}").json()["turns"]
            if turns[0]["status"] != "running" or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert [(t["question"], t["answer"], t["status"]) for t in turns] == [(TITANIC, None, "interrupted")]
        assert "stopped before the answer" in turns[0]["error"]

        body = httpx.post(f"{second.url}/v1/conversations/{cid}/messages", json={"question": TITANIC}, timeout=30).text
        assert '"answer": "James Cameron, born 1954."' in body
        turns = httpx.get(f"{second.url}/v1/conversations/{cid}").json()["turns"]
        assert [t["status"] for t in turns] == ["interrupted", "answered"]
    finally:
        second.stop()


def sigterm_mid_turn(server: Served) -> tuple[str, list]:
    """Start a turn, send SIGTERM once it runs, and read its stream to the end: (conversation id, the frames
    after the signal)."""
    cid = httpx.post(f"{server.url}/v1/conversations", json={}).json()["id"]
    with httpx.stream(
        "POST", f"{server.url}/v1/conversations/{cid}/messages", json={"question": TITANIC}, timeout=30
    ) as reply:
        lines = reply.iter_lines()
        frames_until(lines, "turn")
        server.proc.send_signal(signal.SIGTERM)
        return cid, frames_until(lines, "result")


def test_sigterm_lets_the_turn_in_flight_finish(tmp_path, db):
    server = Served(tmp_path, db, "--shutdown-timeout", "20", latency=0.5)
    try:
        cid, frames = sigterm_mid_turn(server)
        assert frames[-1][0] == "result" and frames[-1][1]["answer"] == "James Cameron, born 1954."
        server.proc.wait(timeout=30)
    finally:
        server.stop()
    turn = Store(db).conversation(cid)["turns"][0]
    assert (turn["status"], turn["answer"]) == ("answered", "James Cameron, born 1954.")


def test_sigterm_past_the_shutdown_timeout_ends_the_turn_as_interrupted(tmp_path, db):
    server = Served(tmp_path, db, "--shutdown-timeout", "0.5", latency=3.0)
    try:
        cid, frames = sigterm_mid_turn(server)  # the stream ends cleanly: an error, then the partial result
        assert frames[-2][0] == "error" and "interrupted" in frames[-2][1]["error"]["message"]
        assert frames[-1][1]["ok"] is False and frames[-1][1]["error"] == "interrupted"
        server.proc.wait(timeout=30)
    finally:
        server.stop()
    turn = Store(db).conversation(cid)["turns"][0]
    assert (turn["question"], turn["status"], turn["answer"]) == (TITANIC, "interrupted", None)
    assert "server stopped" in turn["error"]


def test_json_logs_a_line_per_request_and_run_and_says_what_sigterm_does(tmp_path, db):
    server = Served(tmp_path, db, "--log-format", "json", "--shutdown-timeout", "20", latency=0.0)
    try:
        body = httpx.post(f"{server.url}/v1/runs", json={"question": TITANIC}, timeout=30).text
        run_id = json.loads(body.split("data: ", 1)[1].split("\n", 1)[0])["id"]
        httpx.get(f"{server.url}/v1/agents")
        server.proc.send_signal(signal.SIGTERM)
        server.proc.wait(timeout=30)
    finally:
        server.stop()
    lines = [json.loads(line) for line in server.log.read_text().splitlines() if line.startswith("{")]
    by_logger: dict[str, list] = {}
    for line in lines:
        assert {"time", "level", "logger", "message"} <= line.keys()
        by_logger.setdefault(line["logger"], []).append(line)
    access = [(a["method"], a["path"], a["status"]) for a in by_logger["decompose.serve.access"]]
    assert access == [("POST", "/v1/runs", 200), ("GET", "/v1/agents", 200)]
    [run] = by_logger["decompose.serve.runs"]
    assert (run["run_id"], run["agent"], run["status"], run["model_calls"]) == (run_id, "decompose", "answered", 4)
    assert run["input_tokens"] > 0 and run["output_tokens"] > 0 and run["duration_s"] >= 0
    assert any("stopping (signal 15)" in line["message"] for line in by_logger["decompose.serve"])


def test_serve_reports_a_busy_port_in_one_line(tmp_path):
    import socket

    from helpers import cli

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = cli("serve", "--port", str(port), "--model", "scripted:x.py", cwd=tmp_path, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and f"cannot listen on 127.0.0.1:{port}" in done.stderr


def test_keys_rate_limit_and_cors_from_the_command_line(tmp_path, db):
    keys = tmp_path / "keys.txt"
    keys.write_text("# one key a line\nk-alpha\n\nk-beta\n")
    server = Served(
        tmp_path,
        db,
        "--api-key-file",
        str(keys),
        "--rate-limit",
        "3/min",
        "--cors-origin",
        "https://shop.example",
        latency=0.0,
    )
    try:
        agents = f"{server.url}/v1/agents"
        assert httpx.get(agents).status_code == 401
        alpha = httpx.get(agents, headers={"Authorization": "Bearer k-alpha", "Origin": "https://shop.example"})
        assert alpha.status_code == 200 and alpha.headers["access-control-allow-origin"] == "https://shop.example"
        assert httpx.get(agents, headers={"X-API-Key": "k-alpha"}).status_code == 200
        assert httpx.get(agents, headers={"X-API-Key": "k-alpha"}).status_code == 200
        limited = httpx.get(agents, headers={"X-API-Key": "k-alpha"})
        assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
        assert httpx.get(agents, headers={"X-API-Key": "k-beta"}).status_code == 200  # a bucket of its own
        guesses = [httpx.get(agents, headers={"X-API-Key": f"guess-{i}"}).status_code for i in range(3)]
        assert guesses == [401, 401, 429]  # key guessing is limited per address (the first 401 counted too)
    finally:
        server.stop()


LOGGED_RULES = """
import json
from decompose.models.scripted import asks_for_plan, asks_to_combine

def logged(what, text):
    def answer(_messages):
        with open(CALLS, "a") as log:
            log.write(what + "\\n")
        return text
    return answer

rules = [
    (asks_for_plan, logged("plan", json.dumps({"steps": [
        {"id": 1, "question": "Who directed Titanic?"},
        {"id": 2, "question": "When was {1} born?", "depends_on": [1]}]}))),
    (asks_to_combine, logged("synthesis", "James Cameron, born 1954.")),
    (r"Question: Who directed Titanic", logged("step 1", "James Cameron")),
    (r"Question: When was James Cameron born", logged("step 2", "1954")),
]
default = "I do not know"
latency = LATENCY
"""


def test_a_run_of_a_killed_server_is_offered_and_resumed_without_its_finished_steps(tmp_path, db):
    calls = tmp_path / "calls.txt"
    rules = LOGGED_RULES.replace("CALLS", repr(str(calls)))
    flags = ("--checkpoints", str(tmp_path / "runs.sqlite3"))
    first = Served(tmp_path, db, *flags, latency=1.0, rules_text=rules)
    try:
        with httpx.stream("POST", f"{first.url}/v1/runs", json={"question": TITANIC}, timeout=30) as reply:
            frames = frames_until(reply.iter_lines(), "StepFinished")  # step 1's record is in the store by then
            run_id = frames[0][1]["id"]
            os.kill(first.proc.pid, signal.SIGKILL)  # step 2 asked, its answer a second away
            first.proc.wait(timeout=10)
    finally:
        first.stop()
    assert frames[-1][1]["step_id"] == 1
    assert calls.read_text().split("\n")[:-1] == ["plan", "step 1"]  # a call is logged as it answers

    second = Served(tmp_path, db, *flags, latency=0.0, rules_text=rules)
    try:
        assert "runs a stopped server left to resume: 1" in second.log.read_text()
        [offered] = httpx.get(f"{second.url}/v1/runs/resumable").json()["runs"]
        assert (offered["id"], offered["status"], offered["steps"], offered["steps_ended"]) == (run_id, "running", 2, 1)
        body = httpx.post(f"{second.url}/v1/runs/{run_id}/resume", timeout=30).text
        result = json.loads(body.split("event: result\ndata: ", 1)[1].split("\n", 1)[0])
        assert (result["answer"], result["run_id"]) == ("James Cameron, born 1954.", run_id)
        assert [s["status"] for s in result["steps"]] == ["done", "done"]
        assert httpx.get(f"{second.url}/v1/runs/resumable").json()["runs"] == []
        again = httpx.post(f"{second.url}/v1/runs/{run_id}/resume", timeout=30)
        assert again.status_code == 409 and "finished" in again.json()["error"]["message"]
    finally:
        second.stop()
    # neither the plan nor step 1 (ended before the kill) was asked again; step 2, in flight, was
    assert calls.read_text().split("\n")[:-1] == ["plan", "step 1", "step 2", "synthesis"]
