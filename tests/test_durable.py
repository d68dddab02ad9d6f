"""Checkpoints and resume (decompose/checkpoints.py, decompose/durable.py): real SQLite files; the crash points are
real processes killed with SIGKILL (tests/durable_worker.py), then resumed by another."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from decompose import InputError, Orchestrator
from decompose.checkpoints import FINISHED, RUNNING, STOPPED, CheckpointStore
from decompose.errors import CheckpointError, ConfigError, ModelAccessError
from decompose.events import StepFinished
from decompose.tools.runner import MemoryLedger, ToolRunner

sys.path.insert(0, str(Path(__file__).parent))
from durable_worker import QUESTION, Log, build  # noqa: E402

WORKER = Path(__file__).parent / "durable_worker.py"
ANSWER = "Order 7 was refunded 42 dollars; confirmation sent."


def calls(log_path: Path) -> dict[str, int]:
    with sqlite3.connect(log_path) as db:
        return dict(db.execute("SELECT what, COUNT(*) FROM model_calls GROUP BY what").fetchall())


def refunds(log_path: Path) -> int:
    with sqlite3.connect(log_path) as db:
        return db.execute("SELECT COUNT(*) FROM refunds").fetchone()[0]


def statuses(result) -> list[str]:
    return [s.status for s in result.plan.steps]


def test_a_run_writes_its_plan_each_step_and_its_ledger(tmp_path):
    ck = tmp_path / "ck.sqlite3"
    result = build(Log(str(tmp_path / "log.sqlite3")), None, False, str(ck)).run(QUESTION, run_id="run-1")
    assert result.ok and result.answer == ANSWER and result.run_id == "run-1"
    assert json.loads(result.to_json())["run_id"] == "run-1"
    saved = CheckpointStore(ck, create=False).load("run-1")
    assert saved.status == FINISHED and saved.answer == ANSWER and saved.question == QUESTION
    assert [s["id"] for s in saved.plan["steps"]] == [1, 2, 3]
    assert {i: r["type"] for i, r in saved.records.items()} == {1: "StepFinished", 2: "StepFinished", 3: "StepFinished"}
    entry = CheckpointStore(ck).ledger_entry("run-1", 2)
    assert entry["status"] == "done" and entry["tool"] == "refund" and entry["args"] == {"order": "7", "amount": "42"}
    assert entry["result"]["answer"] == "refund R-7 of 42 dollars"


def test_every_run_gets_an_id_even_without_checkpoints(tmp_path):
    orch = build(Log(str(tmp_path / "log.sqlite3")), None, False, str(tmp_path / "ck.sqlite3")).replace(
        checkpoints=None
    )
    first, second = orch.run(QUESTION), orch.run(QUESTION)
    assert first.run_id and second.run_id and first.run_id != second.run_id


def test_a_run_that_raised_resumes_without_asking_its_ended_steps_again(tmp_path):
    log_path, ck = tmp_path / "log.sqlite3", str(tmp_path / "ck.sqlite3")
    orch = build(Log(str(log_path)), None, False, ck)
    broken = orch.replace(
        model=orch.model.model_copy(
            update={"rules": [(r"confirmation of", ModelAccessError("HTTP 401: bad key")), *orch.model.rules]}
        )
    )
    with pytest.raises(ModelAccessError) as raised:
        broken.run(QUESTION, run_id="run-2")
    assert raised.value.result.run_id == "run-2"
    assert CheckpointStore(ck).load("run-2").status == STOPPED
    assert refunds(log_path) == 1

    resumed = orch.resume("run-2")  # the key fixed: the same agent again
    assert resumed.ok and resumed.answer == ANSWER and resumed.run_id == "run-2"
    assert refunds(log_path) == 1  # the refund is not made again
    assert calls(log_path) == {"planning": 1, "amount": 1, "confirm": 1, "synthesis": 1}
    assert resumed.usage.model_calls == 2  # the confirmation and the synthesis, nothing else
    with pytest.raises(InputError, match="already finished"):
        orch.resume("run-2")


def _cancel_during_the_refund(orch: Orchestrator, run_id: str) -> None:
    """Start the run, cancel it while the refund runs (a stand-in for a crash inside the call)."""
    started = asyncio.Event()
    release = asyncio.Event()
    tool = orch.tools[0]
    original = tool.func

    async def slow_refund(**kwargs):
        original(**kwargs)
        started.set()
        await release.wait()

    async def go() -> None:
        tool.coroutine = slow_refund
        task = asyncio.create_task(orch.arun(QUESTION, run_id=run_id))
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        tool.coroutine = None

    asyncio.run(go())


def test_a_side_effect_of_unknown_outcome_is_not_repeated_but_surfaced(tmp_path):
    log_path, ck = tmp_path / "log.sqlite3", str(tmp_path / "ck.sqlite3")
    orch = build(Log(str(log_path)), None, False, ck)
    _cancel_during_the_refund(orch, "run-3")
    assert refunds(log_path) == 1 and CheckpointStore(ck).ledger_entry("run-3", 2)["status"] == "started"

    resumed = orch.resume("run-3")
    assert refunds(log_path) == 1  # never twice
    assert statuses(resumed) == ["done", "failed", "skipped"]
    failed = resumed.plan.steps[1]
    assert "whether it took effect is unknown" in failed.error and "a person must check refund" in failed.error
    assert resumed.plan.steps[2].error == "step 2 failed"
    assert calls(log_path)["amount"] == 1


def test_a_tool_with_an_idempotency_key_in_flight_is_called_again_with_the_same_key(tmp_path):
    log_path, ck = tmp_path / "log.sqlite3", str(tmp_path / "ck.sqlite3")
    orch = build(Log(str(log_path)), None, True, ck)
    _cancel_during_the_refund(orch, "run-4")
    resumed = orch.resume("run-4")
    assert resumed.ok and resumed.answer == ANSWER
    with sqlite3.connect(log_path) as db:
        assert db.execute("SELECT key FROM attempts").fetchall() == [("run-4:2",), ("run-4:2",)]
    assert refunds(log_path) == 1


def test_bad_resumes_say_what_is_wrong(tmp_path):
    ck = tmp_path / "ck.sqlite3"
    orch = build(Log(str(tmp_path / "log.sqlite3")), None, False, str(ck))
    with pytest.raises(InputError, match=rf"no run 'nope' in the checkpoint store {ck}.*decompose runs"):
        orch.resume("nope")
    with pytest.raises(ConfigError, match="to resume, the Orchestrator needs a checkpoint store"):
        orch.replace(checkpoints=None).resume("nope")
    with pytest.raises(ConfigError, match="checkpoints must be a path"):
        Orchestrator(orch.model, checkpoints=42)


def test_a_missing_or_corrupt_store_is_named_with_the_fix_and_left_alone(tmp_path):
    with pytest.raises(CheckpointError, match=rf"no checkpoint store at {tmp_path / 'gone.sqlite3'}"):
        CheckpointStore(tmp_path / "gone.sqlite3", create=False)
    assert not (tmp_path / "gone.sqlite3").exists()
    bad = tmp_path / "bad.sqlite3"
    bad.write_bytes(b"this is not a database" * 100)
    with pytest.raises(CheckpointError, match=rf"{bad} is not a usable database.*move the file aside"):
        CheckpointStore(bad)
    assert bad.read_bytes() == b"this is not a database" * 100


def test_a_locked_store_stops_the_run_before_the_side_effect_and_loses_nothing(tmp_path):
    log_path, ck = tmp_path / "log.sqlite3", tmp_path / "ck.sqlite3"
    store = CheckpointStore(ck, busy_timeout=0.05)
    store.retry_wait = 0.01
    orch = build(Log(str(log_path)), None, False, str(ck)).replace(checkpoints=store)
    other = sqlite3.connect(ck, isolation_level=None, check_same_thread=False)

    def lock_after_step_1(event):
        if isinstance(event, StepFinished) and event.step_id == 1:
            other.execute("BEGIN EXCLUSIVE")  # another process writing, for longer than the busy timeout

    with pytest.raises(CheckpointError, match=rf"{ck} is locked by another process.*nothing was lost"):
        orch.run(QUESTION, run_id="run-5", on_event=lock_after_step_1)
    assert refunds(log_path) == 0  # the ledger could not be written, so the refund was not made
    other.execute("ROLLBACK")

    saved = store.load("run-5")
    assert saved.status == RUNNING and set(saved.records) == {1}  # what was written is there
    resumed = orch.resume("run-5")
    assert resumed.answer == ANSWER and refunds(log_path) == 1
    assert calls(log_path)["amount"] == 1


def test_finished_runs_expire_by_the_injected_clock_and_unfinished_ones_stay(tmp_path):
    now = [1000.0]
    ck = tmp_path / "ck.sqlite3"
    store = CheckpointStore(ck, ttl=60, clock=lambda: now[0])
    orch = build(Log(str(tmp_path / "log.sqlite3")), None, False, str(ck)).replace(checkpoints=store)
    orch.run(QUESTION, run_id="done-run")
    store.begin("left-run", "an unfinished run", history=[], given_plan=False)
    store.ledger_start("left-run", 1, "refund", {})
    now[0] = 1059.0
    assert CheckpointStore(ck, ttl=60, clock=lambda: now[0]).counts() == {
        "decompose_runs": 2,
        "decompose_run_steps": 3,
        "decompose_ledger": 2,
        "decompose_approvals": 0,
    }
    now[0] = 1061.0
    reopened = CheckpointStore(ck, ttl=60, clock=lambda: now[0])  # purged on open
    assert reopened.counts() == {
        "decompose_runs": 1,
        "decompose_run_steps": 0,
        "decompose_ledger": 1,
        "decompose_approvals": 0,
    }
    assert reopened.load("done-run") is None and reopened.load("left-run").status == RUNNING


def test_the_memory_ledger_keeps_only_the_last_calls(tmp_path, monkeypatch):
    monkeypatch.setattr(MemoryLedger, "max_entries", 3)
    orch = build(Log(str(tmp_path / "log.sqlite3")), None, False, str(tmp_path / "ck.sqlite3")).replace(
        checkpoints=None
    )
    for i in range(5):
        orch.run(QUESTION, run_id=f"r{i}")
    assert len(orch.tool_runner.ledger) == 3
    assert orch.tool_runner.ledger.get("r0", 2) is None and orch.tool_runner.ledger.get("r4", 2).status == "done"
    assert isinstance(ToolRunner().ledger, MemoryLedger)


# ----- crash points: real processes killed with SIGKILL -----------------------------------------------------------


def worker(tmp_path: Path, *extra: str) -> subprocess.CompletedProcess:
    command = [sys.executable, str(WORKER), "--log", str(tmp_path / "log.sqlite3")]
    command += ["--checkpoints", str(tmp_path / "ck.sqlite3"), "--run-id", "crash-run", *extra]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("crash", "keyed", "asked_twice"),
    [
        ("planning", False, "planning"),  # in flight: a model call, asked again
        ("before", False, None),
        ("during", True, None),  # the refund made, not returned: called again with its key, a no-op
        ("after", False, None),
        ("synthesis", False, "synthesis"),
    ],
)
def test_a_killed_run_resumes_with_no_repeat_and_the_same_answer(tmp_path, crash, keyed, asked_twice):
    flags = ["--keyed"] if keyed else []
    killed = worker(tmp_path, "--crash", crash, *flags)
    assert killed.returncode == -9, killed.stderr
    resumed = worker(tmp_path, "--resume", *flags)
    assert resumed.returncode == 0, resumed.stderr
    result = json.loads(resumed.stdout)
    assert result["answer"] == ANSWER and result["run_id"] == "crash-run"
    assert refunds(tmp_path / "log.sqlite3") == 1
    expected = {"planning": 1, "amount": 1, "confirm": 1, "synthesis": 1}
    if asked_twice:
        expected[asked_twice] = 2
    assert calls(tmp_path / "log.sqlite3") == expected


@pytest.mark.slow
def test_a_refund_killed_mid_call_without_a_key_is_surfaced_and_a_run_killed_twice_still_ends(tmp_path):
    assert worker(tmp_path, "--crash", "during").returncode == -9
    killed_again = worker(tmp_path, "--resume", "--crash", "synthesis")
    assert killed_again.returncode == -9
    resumed = worker(tmp_path, "--resume")
    result = json.loads(resumed.stdout)
    assert [s["status"] for s in result["steps"]] == ["done", "failed", "skipped"]
    assert "whether it took effect is unknown" in result["steps"][1]["error"]
    assert refunds(tmp_path / "log.sqlite3") == 1
    assert calls(tmp_path / "log.sqlite3") == {"planning": 1, "amount": 1, "synthesis": 2}


# ----- the command ------------------------------------------------------------------------------------------------

TITANIC = "Who directed Titanic, and how old was that person when it was released?"


@pytest.fixture
def command(tmp_path, monkeypatch, capsys):
    """`decompose ARGS` in this process, in `tmp_path` with the README's scripted model (rules.py) and one whose
    key is refused at the last step (refused.py): (code, stdout, stderr)."""
    from decompose.cli import main

    rules = (Path(__file__).parents[1] / "examples" / "scripted" / "rules.py").read_text()
    rules = rules.replace("latency = 0.3", "latency = 0")
    (tmp_path / "rules.py").write_text(rules)
    refused = "from decompose.errors import ModelAccessError\n" + rules.replace(
        '"43"', 'ModelAccessError("HTTP 401: the key was refused", hint="check OPENAI_API_KEY")'
    )
    (tmp_path / "refused.py").write_text(refused)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DECOMPOSE_CACHE", str(tmp_path / "cache"))
    for name in ("DECOMPOSE_MODEL", "OPENAI_API_KEY", "OPENAI_BASE_URL", "FORCE_COLOR"):
        monkeypatch.delenv(name, raising=False)

    def run(*args):
        try:
            code = main(list(args))
        except SystemExit as exc:
            code = exc.code
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


def test_the_command_runs_lists_and_resumes_a_stopped_run(command, tmp_path):
    code, out, err = command("run", "--json", "--checkpoints", "ck.sqlite3", "--model", "scripted:refused.py", TITANIC)
    assert code == 1 and "key was refused" in json.loads(out)["error"]
    run_id = json.loads(out)["run_id"]
    assert f"decompose run --resume {run_id} --checkpoints ck.sqlite3" in err

    code, out, _ = command("runs", "--checkpoints", "ck.sqlite3", "--status", "stopped", "--json")
    assert code == 0 and [(r["id"], r["status"], r["steps"], r["steps_ended"]) for r in json.loads(out)] == [
        (run_id, "stopped", 4, 3)
    ]
    code, out, _ = command("runs", "--checkpoints", "ck.sqlite3")
    assert code == 0 and run_id in out and "stopped" in out and "3/4" in out and "Who directed Titanic" in out

    code, out, err = command(
        "run", "--json", "--resume", run_id, "--checkpoints", "ck.sqlite3", "--model", "scripted:rules.py"
    )
    assert code == 0, err
    data = json.loads(out)
    assert data["answer"] == "James Cameron was 43 when Titanic was released." and data["run_id"] == run_id
    assert data["usage"]["model_calls"] == 2  # step 4 and the synthesis: the ended steps are not asked again
    code, out, _ = command("runs", "--checkpoints", "ck.sqlite3", "--status", "stopped")
    assert code == 0 and out.strip() == "no stopped runs in ck.sqlite3"


def test_the_command_says_what_is_wrong_with_a_resume(command, tmp_path):
    code, _, err = command("run", "--resume", "abc", "--model", "scripted:rules.py")
    assert code == 1 and f"no checkpoint store at {tmp_path / 'cache' / 'checkpoints.sqlite3'}" in err
    command("run", "--checkpoints", "--model", "scripted:rules.py", TITANIC)  # the default file
    code, _, err = command("run", "--resume", "abc", "--model", "scripted:rules.py")
    assert code == 2 and "no run 'abc' in the checkpoint store" in err and "decompose runs" in err
    code, _, err = command("run", "--resume", "abc", "--model", "scripted:rules.py", TITANIC)
    assert code == 2 and "--resume goes on with a saved run" in err
    code, _, err = command("runs", "--checkpoints", "nowhere.sqlite3")
    assert code == 1 and "no checkpoint store at nowhere.sqlite3" in err
