"""Tool approvals through the command: `decompose run --agent customer-service` as a real process on a scripted
model, the demo shop a real SQLite file in the cache folder. Off a terminal a refund above 100 dollars stops
awaiting approval and says how to decide it; `--resume --approve/--edit/--reject` decides; at a terminal (a
pseudo-terminal here) the person is asked before the call is made."""

from __future__ import annotations

import json
import re
import shlex
import sqlite3
import subprocess
from contextlib import closing
from pathlib import Path

import pytest
from helpers import Terminal, cli, damaged_tent_shop, env_for
from helpers import tent_refunds as refunds_of_the_tent

pytestmark = pytest.mark.slow  # the command runs as a process (on a pseudo-terminal for the prompts)

QUESTION = "Please refund 150 dollars on order A1023 for jon@example.com: the tent arrived torn."
ARGS = {"order_id": "A1023", "amount": "150.00", "reason": "the tent arrived torn"}
REFUND_PLAN = f"""import json
from decompose.models.scripted import asks_for_plan, asks_to_combine

rules = [
    (asks_for_plan, json.dumps({{"steps": [
        {{"id": 1, "question": "Refund order A1023", "tool": "issue_refund", "args": {ARGS!r}}},
    ]}})),
    (asks_to_combine, "Order A1023 was refunded."),
]
"""
AGENT = ("--agent", "customer-service", "--model", "scripted:refund.py")


@pytest.fixture
def shop(tmp_path: Path) -> Path:
    """The demo shop where the CLI keeps it ($DECOMPOSE_CACHE), its camping tent (189 dollars, delivered 60 days
    ago) marked damaged, so a refund above 100 dollars is within the shop's own policy."""
    (tmp_path / "refund.py").write_text(REFUND_PLAN)
    return damaged_tent_shop(tmp_path / "cache")


def tent_refunds(db: Path) -> list[int]:
    return [cents for _, cents in refunds_of_the_tent(db)]


def run(tmp_path: Path, *args: str, **kwargs) -> subprocess.CompletedProcess:
    return cli(*args, cwd=tmp_path, env={"DECOMPOSE_CACHE": str(tmp_path / "cache")}, **kwargs)


def stopped(tmp_path: Path, *extra: str) -> tuple[str, str]:
    """A run that stopped awaiting approval off a terminal: its id and what it said on stderr."""
    proc = run(tmp_path, "run", "--json", *extra, *AGENT, QUESTION)
    assert proc.returncode == 3, proc.stderr
    data = json.loads(proc.stdout)
    assert data["awaiting_approval"] is True and data["answer"] is None and data["error"] is None
    [request] = data["approvals"]
    assert (request["step_id"], request["tool"], request["args"]) == (1, "issue_refund", ARGS)
    assert request["reason"] == "amount 150 is above 100"
    return data["run_id"], proc.stderr


def printed(stderr: str, flag: str) -> list[str]:
    """The resume command the run printed for `flag`, as the words a shell would pass."""
    [line] = [line for line in stderr.splitlines() if line.strip().startswith("decompose run") and flag in line]
    return shlex.split(line)[1:]


def test_off_a_terminal_the_refund_waits_and_the_printed_approve_command_makes_it_once(tmp_path, shop):
    run_id, err = stopped(tmp_path)
    assert f"run {run_id} awaits approval:" in err and "amount 150 is above 100; expires " in err
    base = f"decompose run --resume {run_id} --agent customer-service --model scripted:refund.py"
    assert f"{base} --approve 1" in err
    assert f"{base} --edit 1='{json.dumps(ARGS)}'" in err and f"{base} --reject 1='the reason'" in err
    assert "Traceback" not in err and "checkpoints" not in err  # the default store goes unsaid
    assert tent_refunds(shop) == []

    listed = run(tmp_path, "runs", "--status", "awaiting")
    assert listed.returncode == 0 and run_id in listed.stdout
    assert f"step 1: issue_refund {json.dumps(ARGS)} (amount 150 is above 100; expires " in listed.stdout
    as_json = json.loads(run(tmp_path, "runs", "--status", "awaiting", "--json").stdout)
    assert [(r["id"], [a["step_id"] for a in r["approvals"]]) for r in as_json] == [(run_id, [1])]

    approved = run(tmp_path, *printed(err, "--approve"))
    assert approved.returncode == 0, approved.stderr
    assert "Answer: Order A1023 was refunded." in approved.stdout and tent_refunds(shop) == [15000]
    again = run(tmp_path, *printed(err, "--approve"))
    assert again.returncode == 2 and "already finished" in again.stderr and "Traceback" not in again.stderr
    assert tent_refunds(shop) == [15000]
    assert run(tmp_path, "runs", "--status", "awaiting").stdout.startswith("no awaiting runs")


def test_an_edit_names_only_what_changes_and_a_bad_one_is_refused_before_anything_runs(tmp_path, shop):
    store = tmp_path / "ck.sqlite3"
    run_id, err = stopped(tmp_path, "--checkpoints", str(store))
    assert f"--resume {run_id} --checkpoints {store} --agent customer-service" in err
    resume = ("run", "--resume", run_id, "--checkpoints", str(store), *AGENT)
    bad = run(tmp_path, *resume, "--edit", '1={"amount": "lots"}')
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert "the edited arguments of step 1 do not fit: tool 'issue_refund', argument 'amount'" in bad.stderr
    edited = run(tmp_path, *resume, "--json", "--edit", '1={"amount": "60"}')
    assert edited.returncode == 0, edited.stderr
    assert json.loads(edited.stdout)["steps"][0]["args"] == {**ARGS, "amount": "60"}
    assert tent_refunds(shop) == [6000]


def test_a_rejected_refund_is_not_made_and_the_answer_says_why(tmp_path, shop):
    run_id, err = stopped(tmp_path)
    rejected = run(tmp_path, *printed(err, "--reject")[:-2], "--reject", "1=above what a tent is refunded")
    assert rejected.returncode == 1, rejected.stderr
    assert "issue_refund was not approved: above what a tent is refunded" in rejected.stdout
    assert tent_refunds(shop) == []


def test_bad_decisions_are_named_with_the_fix(tmp_path, shop):
    cases = [
        (["--approve", "x"], "argument --approve: expected a step number, got 'x'"),
        (["--edit", "1=notjson"], "argument --edit: step 1's arguments are not JSON"),
        (["--edit", "1=[50]"], "argument --edit: step 1's arguments must be a JSON object"),
        (["--edit", "2"], """argument --edit: expected STEP=JSON, e.g. 2='{"amount": "50"}'"""),
        (["--reject", "one=no"], "argument --reject: expected a step number, got 'one'"),
    ]
    for flags, message in cases:
        proc = run(tmp_path, "run", "--resume", "r1", *AGENT, *flags)
        assert proc.returncode == 2 and message in proc.stderr, (flags, proc.stderr)
    proc = run(tmp_path, "run", *AGENT, "--approve", "1", QUESTION)
    assert proc.returncode == 2 and "give the run with --resume RUN_ID" in proc.stderr
    run_id, _ = stopped(tmp_path)
    for flags, message, hint in [
        ([], f"run {run_id} waits for approval of step 1: issue_refund", f"decide it: decompose run --resume {run_id}"),
        (["--approve", "1", "--reject", "1=no"], "step 1 is given two decisions", "give one of --approve, --edit"),
        (["--approve", "2"], f"step 2 of run {run_id} has no pending approval (steps waiting: 1)", "decide only"),
    ]:
        proc = run(tmp_path, "run", "--resume", run_id, *AGENT, *flags)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
        assert proc.stderr.startswith(f"decompose: error: {message}") and f"(hint: {hint}" in proc.stderr
    assert tent_refunds(shop) == []


def test_a_waiting_run_is_cancelled_and_cannot_be_resumed(tmp_path, shop):
    run_id, err = stopped(tmp_path)
    cancelled = run(tmp_path, "runs", "--cancel", run_id, "--reason", "the customer withdrew")
    assert cancelled.returncode == 0 and f"run {run_id} cancelled" in cancelled.stdout
    listed = json.loads(run(tmp_path, "runs", "--status", "cancelled", "--json").stdout)
    assert [(r["id"], r["error"]) for r in listed] == [(run_id, "the customer withdrew")]
    resumed = run(tmp_path, *printed(err, "--approve"))
    assert resumed.returncode == 2 and f"run {run_id} was cancelled" in resumed.stderr
    twice = run(tmp_path, "runs", "--cancel", run_id)
    assert twice.returncode == 2 and "has ended already" in twice.stderr
    assert tent_refunds(shop) == []


def test_no_approvals_makes_the_call_without_asking_or_a_store(tmp_path, shop):
    proc = run(tmp_path, "run", "--no-approvals", *AGENT, QUESTION)
    assert proc.returncode == 0, proc.stderr
    assert tent_refunds(shop) == [15000] and not (tmp_path / "cache" / "checkpoints.sqlite3").exists()


def test_chat_off_a_terminal_says_how_to_resume_a_waiting_turn_and_goes_on(tmp_path, shop):
    proc = run(tmp_path, "chat", *AGENT, input=f"{QUESTION}\n/plan\n")
    assert proc.returncode == 0, proc.stderr
    [run_id] = re.findall(r"run (\w+) awaits approval:", proc.stdout)
    assert f"decompose run --resume {run_id} --agent customer-service --model scripted:refund.py --approve 1" in (
        proc.stdout
    )
    assert "[awaiting] 1. Refund order A1023" in proc.stdout.split("awaits approval")[1]  # /plan after it
    assert tent_refunds(shop) == []


# ----- at a terminal ---------------------------------------------------------------------------------------------

CHOICE = "[a]pprove, [e]dit the arguments, [r]eject, or decide [l]ater?"


def at_terminal(tmp_path: Path) -> Terminal:
    return Terminal(["run", *AGENT, QUESTION], tmp_path, env_for(DECOMPOSE_CACHE=str(tmp_path / "cache")))


def test_at_a_terminal_the_person_approves_before_the_call_is_made(tmp_path, shop):
    term = at_terminal(tmp_path)
    term.expect("step 1 wants to call issue_refund: amount 150 is above 100")
    term.expect(f"arguments: {json.dumps(ARGS)}")
    term.expect(CHOICE)
    assert tent_refunds(shop) == []  # asked before the call is made
    term.send("a\n")
    term.expect("Order A1023 was refunded.")
    assert term.wait() == 0 and tent_refunds(shop) == [15000]


def test_at_a_terminal_a_bad_edit_is_asked_again_and_a_rejection_is_kept(tmp_path, shop):
    term = at_terminal(tmp_path)
    term.expect(CHOICE)
    term.send("e\n")
    term.expect("new arguments, a JSON object over these")
    term.send('{"amount": "lots"}\n')
    term.expect("error: tool 'issue_refund', argument 'amount'")
    term.expect("new arguments, a JSON object over these")
    term.send("\n")  # back to the choice
    term.expect(CHOICE)
    term.send("r\n")
    term.expect("why")
    term.send("a tent is not worth it\n")
    term.expect("issue_refund was not approved: a tent is not worth it")
    assert term.wait() == 1 and tent_refunds(shop) == []


def test_at_a_terminal_later_leaves_the_call_waiting_with_the_commands_that_decide_it(tmp_path, shop):
    term = at_terminal(tmp_path)
    term.expect(CHOICE)
    term.send("l\n")
    term.expect("awaits approval:")
    term.expect("--agent customer-service --model scripted:refund.py --approve 1")
    assert term.wait() == 3 and tent_refunds(shop) == []


def test_a_tool_marked_requires_approval_waits_too_and_its_resume_names_the_tools(tmp_path):
    (tmp_path / "notes.py").write_text(
        "import json, sqlite3\n"
        "from langchain_core.tools import tool\n"
        "from decompose import requires_approval\n"
        "from decompose.models.scripted import asks_for_plan, asks_to_combine\n\n"
        "@requires_approval\n@tool\ndef send_note(text: str) -> str:\n"
        '    """Send a note to the customer."""\n'
        '    with sqlite3.connect("notes.sqlite3") as db:\n'
        '        db.execute("CREATE TABLE IF NOT EXISTS notes (text TEXT)")\n'
        '        db.execute("INSERT INTO notes VALUES (?)", (text,))\n'
        '    return "sent"\n\n'
        "rules = [(asks_for_plan, json.dumps({'steps': [{'id': 1, 'question': 'Send it', 'tool': 'send_note',"
        " 'args': {'text': 'hello'}}]})), (asks_to_combine, 'Sent.')]\n"
    )
    flags = ("--tools", "notes.py:send_note", "--model", "scripted:notes.py")
    waiting = run(tmp_path, "run", *flags, "Send the customer a note saying hello")
    assert waiting.returncode == 3, waiting.stderr
    assert "(every send_note call is approved by a person;" in waiting.stderr
    assert not (tmp_path / "notes.sqlite3").exists()
    approved = run(tmp_path, *printed(waiting.stderr, "--approve"))
    assert approved.returncode == 0 and "Answer: Sent." in approved.stdout, approved.stderr
    with closing(sqlite3.connect(tmp_path / "notes.sqlite3")) as notes:
        assert notes.execute("SELECT text FROM notes").fetchall() == [("hello",)]


def test_chat_at_a_terminal_asks_and_the_conversation_goes_on(tmp_path, shop):
    term = Terminal(["chat", *AGENT], tmp_path, env_for(DECOMPOSE_CACHE=str(tmp_path / "cache")))
    term.expect("you>")
    term.send(QUESTION + "\n")
    term.expect(CHOICE)
    term.send("a\n")
    term.expect("Order A1023 was refunded.")
    term.expect("you>")
    term.send("/exit\n")
    assert term.wait() == 0 and tent_refunds(shop) == [15000]
