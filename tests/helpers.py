"""Shared test helpers (plain functions; fixtures live in conftest.py).

Test files import them, and the servers in servers.py and fault_server.py, one way: `from helpers import ...`
(tests/ has no __init__.py, so pytest puts the folder itself on sys.path). Never `from tests.helpers` or
`from tests.conftest`, and no sys.path edits in test files.
"""

import json
import os
import pty
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def plan_json(*questions_or_steps):
    """A plan reply: strings become steps 1..n; dicts are taken as they are."""
    steps = [{"id": i, "question": q} if isinstance(q, str) else q for i, q in enumerate(questions_or_steps, 1)]
    return json.dumps({"steps": steps})


TITANIC = "Who directed Titanic, and how old was that person when it was released?"
# The keys of a Result's JSON (`to_json`, `--json`), success or failure alike: a change here is a change to its users.
RESULT_KEYS = {
    "run_id",
    "question",
    "answer",
    "ok",
    "error",
    "elapsed",
    "route",
    "awaiting_approval",
    "approvals",
    "steps",
    "citations",
    "usage",
    "events",
}


class Clock:
    """A wall clock that moves only when told: `Store(..., clock=clock)`, then `clock.advance(seconds)` to let a
    lease run out without waiting for it."""

    def __init__(self, now: float = 1_700_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def cli(*args, cwd, input=None, env=None, timeout=60):
    """Run `python -m decompose.cli ARGS` as a user would; returns the CompletedProcess (text)."""
    full_env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DECOMPOSE_MODEL", "OPENAI_API_KEY", "OPENAI_BASE_URL", "FORCE_COLOR")
    }
    full_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), full_env.get("PYTHONPATH")]))
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "decompose.cli", *args],
        cwd=cwd,
        input=input,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def report(path):
    """An eval report's records (a torn line, as a killed run may leave, is not one)."""
    records = []
    for line in Path(path).read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            pass
    return records


def interrupt_eval(args, *, cwd, env, out_file, timeout):
    """Start `python -m decompose.cli ARGS` (an eval), press Ctrl-C once two rows are in `out_file`, check that it
    stopped as promised (exit 130, how to resume, no traceback) and return the ids of the rows it saved."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "decompose.cli", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and (not out_file.exists() or len(report(out_file)) < 2):
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "run the same command again" in err
    return {r["id"] for r in report(out_file)}


# ----- a refund that waits for a person (tool approvals through the server) ------------------------------------

REFUND_QUESTION = "My tent from order A1023 arrived torn. Please refund the 189 dollars."
REFUND_ARGS = {"order_id": "A1023", "amount": "189.00", "reason": "the tent arrived torn"}
# The customer-service agent's plan: look the order up, then refund it: 189 dollars, above the 100 dollar limit.
REFUND_PLAN = {
    "steps": [
        {
            "id": 1,
            "question": "What is the status of order A1023?",
            "tool": "order_status",
            "args": {"order_id": "A1023"},
        },
        {"id": 2, "question": "Refund order A1023", "tool": "issue_refund", "args": REFUND_ARGS, "depends_on": [1]},
    ]
}
REFUND_ANSWER = "Your refund for order A1023 is made."


def damaged_tent_shop(cache: Path) -> Path:
    """The demo shop in the cache folder `cache` (where a served agent finds it), created and seeded, with order
    A1023 (a 189 dollar tent delivered 60 days ago) marked damaged: within the policy's 90 days, refundable."""
    import sqlite3

    from decompose.tools.customer_service import customer_service_tools

    cache.mkdir(parents=True, exist_ok=True)
    path = cache / "customer_service.sqlite3"
    customer_service_tools(path)
    with sqlite3.connect(path) as db:
        db.execute("UPDATE order_items SET damaged = 1 WHERE order_id = 'A1023'")
    return path


def tent_refunds(shop: Path) -> list[tuple[str, int]]:
    """The refunds of order A1023 in the shop's database: (order, cents)."""
    import sqlite3

    with sqlite3.connect(shop) as db:
        return db.execute("SELECT order_id, amount_cents FROM refunds WHERE order_id = 'A1023'").fetchall()


ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


class Terminal:
    """A child process (`python -m decompose.cli ARGS`) on a pseudo-terminal: `send` keys, `expect` text (ANSI codes
    stripped). For what only a terminal shows: the live view, prompts, Ctrl-C."""

    def __init__(self, args, cwd, env):
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child: becomes the command, with the pty as its controlling terminal
            os.chdir(cwd)
            os.execve(sys.executable, [sys.executable, "-m", "decompose.cli", *args], env)
        self.raw = b""
        self.seen = 0

    def send(self, text):
        os.write(self.fd, text.encode())

    def expect(self, needle, timeout=20):
        deadline = time.monotonic() + timeout
        while True:
            text = self.text()
            found = text.find(needle, self.seen)
            if found >= 0:
                self.seen = found + len(needle)
                return text
            if time.monotonic() > deadline:
                raise AssertionError(f"{needle!r} never appeared; screen so far:\n{text[-2000:]}")
            ready, _, _ = select.select([self.fd], [], [], 0.1)
            if ready:
                try:
                    chunk = os.read(self.fd, 65536)
                except OSError:  # the child closed the terminal
                    chunk = b""
                if not chunk:
                    time.sleep(0.05)
                self.raw += chunk

    def text(self):
        return ANSI.sub("", self.raw.decode("utf-8", errors="replace")).replace("\r", "")

    def wait(self, timeout=20):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                return os.waitstatus_to_exitcode(status)
            try:  # keep draining output so the child never blocks on a full terminal
                if select.select([self.fd], [], [], 0.05)[0]:
                    self.raw += os.read(self.fd, 65536)
            except OSError:
                time.sleep(0.05)
        os.kill(self.pid, signal.SIGKILL)
        raise AssertionError("the command did not exit")


def env_for(**extra):
    """The environment of a command on a terminal: no model or colour settings from outside, this checkout first."""
    env = {k: v for k, v in os.environ.items() if k not in ("DECOMPOSE_MODEL", "NO_COLOR", "FORCE_COLOR")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env.update(TERM="xterm-256color", COLUMNS="120", LINES="40", **extra)
    return env


# ----- a two-step run to serve: who directed Titanic, and when was that person born ---------------------------

DIRECTOR_ANSWER = "James Cameron, born 1954."


def director_model(latency=0.0):
    """A scripted model whose plan asks who directed Titanic, then when {1} was born; `latency` per call."""
    from decompose.models.scripted import ScriptedChatModel, asks_for_plan, asks_to_combine

    return ScriptedChatModel(
        rules=[
            (asks_for_plan, plan_json("Who directed Titanic?", "When was {1} born?")),
            (asks_to_combine, DIRECTOR_ANSWER),
            (r"Question: Who directed Titanic", "James Cameron"),
            (r"Question: When was James Cameron born", "1954"),
        ],
        default="I do not know",
        latency=latency,
    )
