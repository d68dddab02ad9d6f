"""`decompose chat` (and the live view of `decompose run`) through a pseudo-terminal, as a person uses them."""

import json
import re

import pytest
from helpers import Terminal, env_for

pytestmark = pytest.mark.slow  # each test drives the command on a pseudo-terminal

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
