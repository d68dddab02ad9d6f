"""`decompose chat` (and the live view of `decompose run`) through a pseudo-terminal, as a person uses them."""

import json
import os
import pty
import re
import select
import signal
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # each test drives the command on a pseudo-terminal

REPO = Path(__file__).resolve().parents[1]

RULES = """
import json, os
from decompose.models.scripted import ScriptedChatModel, asks_for_plan, asks_to_combine

model = ScriptedChatModel(latency=float(os.environ.get("SCRIPTED_LATENCY", "0")), rules=[
    (asks_for_plan, json.dumps({"steps": [{"id": 1, "question": "Who directed Titanic?"},
                                          {"id": 2, "question": "When was {1} born?"}]})),
    (asks_to_combine, "James Cameron, born 1954."),
    (r"Question: Who directed Titanic", "James Cameron"),
    (r"Question: When was James Cameron born", "1954"),
])
"""

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


class Terminal:
    """A child process on a pseudo-terminal: `send` keys, `expect` text (ANSI codes stripped)."""

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
    env = {k: v for k, v in os.environ.items() if k not in ("DECOMPOSE_MODEL", "NO_COLOR", "FORCE_COLOR")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env.update(TERM="xterm-256color", COLUMNS="120", LINES="40", **extra)
    return env


@pytest.fixture
def work(tmp_path):
    (tmp_path / "rules.py").write_text(RULES)
    return tmp_path


def test_chat_turns_commands_and_ctrl_c_cancels_only_the_turn(work):
    term = Terminal(
        ["chat", "--model", "scripted:rules.py", "--trace", "trace.jsonl"], work, env_for(SCRIPTED_LATENCY="0.6")
    )
    term.expect("/plan")  # the greeting names the commands
    term.expect("you> ")
    term.send("Who directed Titanic, and when was he born?\r")
    term.expect("When was {1} born?")  # the live tree
    term.expect("James Cameron, born 1954.")  # the answer panel
    term.expect("model calls")  # the summary line
    term.expect("you> ")

    term.send("/plan\r")
    screen = term.expect("you> ")
    last = screen[screen.rfind("/plan") :]
    assert "1. Who directed Titanic?" in last and "→ James Cameron" in last and "→ 1954" in last

    term.send("Who directed Titanic, and when was he born? Again please.\r")
    term.expect("1. Who directed Titanic?")  # the turn is running ...
    term.send("\x03")  # ... Ctrl-C
    term.expect("turn cancelled")
    term.expect("you> ")  # the session goes on
    term.send("/plan\r")  # the cancelled turn's plan, as far as it got
    screen = term.expect("you> ")
    last = screen[screen.rfind("/plan") :]
    assert "Again please" in last and "1. Who directed Titanic?" in last and "no plan yet" not in last

    term.send("/nonsense\r")
    term.expect("unknown command /nonsense")
    term.send("/reset\r")
    term.expect("conversation cleared")
    term.send("/plan\r")
    term.expect("no plan yet")

    term.send("Who directed Titanic, and when was he born?\r")
    term.expect("James Cameron, born 1954.")
    term.expect("you> ")
    term.send("/exit\r")
    assert term.wait() == 0
    assert "Traceback" not in term.text()
    turns = {json.loads(line)["turn"] for line in (work / "trace.jsonl").read_text().splitlines()}
    assert turns == {1, 2, 3}  # every turn's events, tagged with the turn


def test_chat_ends_on_ctrl_d(work):
    term = Terminal(["chat", "--model", "scripted:rules.py"], work, env_for())
    term.expect("you> ")
    term.send("\x04")
    assert term.wait() == 0


def test_run_live_view_on_a_terminal_honours_no_color(work):
    term = Terminal(
        ["run", "--model", "scripted:rules.py", "Who directed Titanic, and when was he born?"],
        work,
        env_for(NO_COLOR="1"),
    )
    assert term.wait() == 0
    raw = term.raw.decode("utf-8", errors="replace")
    assert not re.search(r"\x1b\[[0-9;]*3[0-7]m", raw)  # no colours ...
    text = term.text()
    # Step 1's answer in place of {1}.
    assert "✓ 2. When was James Cameron born?" in text and "Answer" in text and "James Cameron, born 1954." in text
