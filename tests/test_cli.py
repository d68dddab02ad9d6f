"""`decompose run / agents`, driven as a real command in a subprocess with a scripted model."""

import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from helpers import REPO, RESULT_KEYS, cli

TITANIC = "Who directed Titanic, and how old was that person when it was released?"

# The README's own scripted model (examples/scripted/rules.py), without its latency, plus one rule.
RULES = (REPO / "examples" / "scripted" / "rules.py").read_text().replace(
    "latency = 0.3", "latency = 0"
) + '\nrules.append((r"Question: What is 6 times 7", "42"))\n'

EVENT_TYPES = {"PlanReady", "StepStarted", "StepFinished", "StepFailed", "StepSkipped", "Retried", "Answered"}


def cli_parallel(cases, cwd):
    """Several commands at once (each its own process): [(args, env), ...] -> [CompletedProcess]."""
    procs = []
    for args, env in cases:
        full_env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("DECOMPOSE_MODEL", "OPENAI_API_KEY", "OPENAI_BASE_URL", "FORCE_COLOR")
        }
        full_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), full_env.get("PYTHONPATH")]))
        full_env.update(env)
        procs.append(
            (
                args,
                subprocess.Popen(
                    [sys.executable, "-m", "decompose.cli", *args],
                    cwd=cwd,
                    env=full_env,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                ),
            )
        )
    done = []
    for args, proc in procs:
        out, err = proc.communicate(timeout=60)
        done.append(subprocess.CompletedProcess(args, proc.returncode, out, err))
    return done


@pytest.fixture
def main_in_process(work, monkeypatch, capsys):
    """`decompose.cli.main(ARGS)` in this process (faster; for the many small cases): (code, stdout, stderr)."""
    from decompose.cli import main

    monkeypatch.chdir(work)
    monkeypatch.syspath_prepend(str(work))
    for name in ("DECOMPOSE_MODEL", "OPENAI_API_KEY", "OPENAI_BASE_URL", "FORCE_COLOR"):
        monkeypatch.delenv(name, raising=False)

    def run(*args, stdin=""):
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
        try:
            code = main(list(args))
        except SystemExit as exc:  # argparse
            code = exc.code
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


def assert_one_line_error(proc, code, *needles):
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr + proc.stdout
    errors = [line for line in proc.stderr.splitlines() if line.startswith("decompose: error:")]
    assert len(errors) == 1, proc.stderr
    for needle in needles:
        assert needle in errors[0], errors[0]


@pytest.fixture
def work(tmp_path):
    (tmp_path / "rules.py").write_text(RULES)
    return tmp_path


def test_help_lists_commands_model_specs_and_exit_codes(work):
    proc = cli("--help", cwd=work)
    assert proc.returncode == 0
    for text in ("run", "chat", "agents", "eval", "scripted:FILE.py", "py:MODULE:ATTR", "exit codes", "130"):
        assert text in proc.stdout
    version = cli("--version", cwd=work)
    assert version.returncode == 0 and version.stdout.startswith("decompose ")


@pytest.mark.slow
def test_run_prints_plan_answer_and_summary_as_plain_text(work):
    proc = cli("run", "--model", "scripted:rules.py", TITANIC, cwd=work)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "\x1b" not in out + proc.stderr  # not a terminal: no control codes
    assert "[done] 1. Who directed Titanic? " in out and "-> James Cameron" in out
    assert "[done] 4. How old was someone born in 1954 in 1997? (after 2, 3)" in out  # {2}, {3} resolved
    assert "Answer: James Cameron was 43 when Titanic was released." in out
    summary = out.strip().splitlines()[-1]
    assert summary.startswith("6 model calls · ") and "tokens in /" in summary and "0 retries" in summary
    assert "step 4 done" in proc.stderr  # progress lines go to stderr


@pytest.mark.slow
def test_json_output_schema_and_trace(work):
    proc = cli(
        "run", "--json", "--trace", "trace.jsonl", "--model", "scripted:rules.py", "-", cwd=work, input=TITANIC + "\n"
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)  # stdout is the JSON document alone
    assert set(data) == RESULT_KEYS
    assert data["question"] == TITANIC and data["ok"] is True and data["error"] is None
    assert data["answer"] == "James Cameron was 43 when Titanic was released."
    assert [s["answer"] for s in data["steps"]] == ["James Cameron", "1954", "1997", "43"]
    assert set(data["steps"][0]) >= {
        "id",
        "question",
        "depends_on",
        "status",
        "answer",
        "error",
        "attempts",
        "model",
        "elapsed",
        "vote",
        "sources",
    }
    assert data["steps"][3]["depends_on"] == [2, 3]
    usage = data["usage"]
    assert set(usage) >= {
        "input_tokens",
        "output_tokens",
        "total_tokens",
        "model_calls",
        "transport_retries",
        "parse_retries",
        "phases",
    }
    assert usage["model_calls"] == 6 and set(usage["phases"]) == {"decompose", "solve", "synthesize"}
    types = [e["type"] for e in data["events"]]
    assert types[0] == "PlanReady" and types[-1] == "Answered" and set(types) <= EVENT_TYPES
    trace = [json.loads(line) for line in (work / "trace.jsonl").read_text().splitlines()]
    assert [e["type"] for e in trace] == types


EDITOR = """
import json, pathlib, sys
count = pathlib.Path("edits.count")  # in the test's directory: how many times the editor was opened
n = int(count.read_text()) if count.exists() else 0
count.write_text(str(n + 1))
path = pathlib.Path(sys.argv[1])
if {bad_first} and n == 0:
    path.write_text('{{"steps": [{{"id": 1, "question": "Who directed {{9}}?"}}]}}')
else:
    plan = json.loads(path.read_text())
    plan["steps"] = [{{"id": 1, "question": "Who directed Titanic?"}}]
    path.write_text(json.dumps(plan))
"""


@pytest.mark.parametrize("bad_first", [False, True])
@pytest.mark.slow
def test_review_edit_then_approve(work, bad_first):
    (work / "editor.py").write_text(EDITOR.format(bad_first=bad_first))
    keys = "e\ny\na\n" if bad_first else "e\na\n"
    proc = cli(
        "run",
        "--review",
        "--json",
        "--model",
        "scripted:rules.py",
        TITANIC,
        cwd=work,
        input=keys,
        env={"EDITOR": f"{sys.executable} {work / 'editor.py'}", "VISUAL": ""},
    )
    assert proc.returncode == 0, proc.stderr
    assert "[a]pprove, [e]dit, [c]ancel?" in proc.stderr  # prompts stay off stdout with --json
    if bad_first:
        assert "error: step 1 refers to {9}, which does not exist" in proc.stderr
        assert "edit again? [Y/n]" in proc.stderr
    data = json.loads(proc.stdout)
    assert [s["question"] for s in data["steps"]] == ["Who directed Titanic?"]
    assert data["steps"][0]["answer"] == "James Cameron" and data["question"] == TITANIC
    assert data["usage"]["phases"]["synthesize"]["calls"] == 1  # one sub-question is still combined


@pytest.mark.slow
def test_review_cancel_runs_nothing(work):
    proc = cli("run", "--review", "--model", "scripted:rules.py", TITANIC, cwd=work, input="c\n")
    assert proc.returncode == 1
    assert "[waiting] 2. When was {1} born? (after 1)" in proc.stdout  # the plan was shown
    assert "cancelled: nothing was run" in proc.stdout and "Answer:" not in proc.stdout


@pytest.mark.slow
def test_agents_lists_agents_and_tools(work):
    proc = cli("agents", cwd=work)
    assert proc.returncode == 0, proc.stderr
    assert "customer-service:" in proc.stdout and "finance:" in proc.stdout
    assert "issue_refund" in proc.stdout and "loan_payment" in proc.stdout


def test_agents_json(main_in_process):
    code, out, _ = main_in_process("agents", "--json")
    assert code == 0
    rows = json.loads(out)
    assert {r["name"] for r in rows} >= {"customer-service", "finance"}
    assert all(set(r) == {"name", "description", "tools", "examples"} and r["tools"] for r in rows)


KEY_ERRORS = [  # the ones the issue names, each through the real command
    (["run", "--agent", "nobody", "hi"], {}, 2, ["unknown agent 'nobody'", "customer-service"]),
    (["run", "--tools", "no_such_module:thing", "hi"], {}, 2, ["cannot import module 'no_such_module'"]),
    (["run", "--model", "openai:gpt-4o-mini", "hi"], {}, 2, ["OPENAI_API_KEY", "hint:"]),
    (
        ["run", "--retries", "0", "--model", "openai:gpt-4o-mini", "hi"],
        {"OPENAI_API_KEY": "sk-test", "OPENAI_BASE_URL": "http://127.0.0.1:9/v1"},
        1,
        ["could not reach", "hint:"],
    ),
    (["run", "--model", "scripted:rules.py", "--plan", "missing.json"], {}, 2, ["cannot read plan file missing.json"]),
]


@pytest.mark.slow
def test_key_errors_are_one_line_with_a_hint(work):
    results = cli_parallel([(args, env) for args, env, _, _ in KEY_ERRORS], cwd=work)
    for (_, _, code, needles), proc in zip(KEY_ERRORS, results):
        assert_one_line_error(proc, code, *needles)


class _Proc:
    def __init__(self, code, out, err):
        self.returncode, self.stdout, self.stderr = code, out, err


@pytest.mark.parametrize(
    "args, code, needles",
    [
        (["run", "--tools", "os:sep", "hi"], 2, ["--tools os:sep", "not a LangChain tool"]),
        (["run", "--tools", "nocolon", "hi"], 2, ["'nocolon' is not of the form MODULE:ATTR"]),
        (
            ["run", "--model", "no-such-backend", "hi"],
            2,
            ["unknown model spec", "openai:MODEL", "py:MODULE:ATTR", "scripted:FILE.py"],
        ),
        (["run", "--model", "scripted:rules.py:nosuch", "hi"], 2, ["rules.py has no attribute 'nosuch'"]),
        (["run", "--model", "scripted:missing.py", "hi"], 2, ["cannot read 'missing.py'"]),
        (["run", "--model", "scripted:syntax.py", "hi"], 2, ["running syntax.py", "SyntaxError"]),
        (["run", "--model", "py:rules:nothing", "hi"], 2, ["has no attribute 'nothing'"]),
        (["run", "--model", "py:rules:rules", "hi"], 2, ["gives a list, not a chat model"]),
        (
            ["run", "--model", "scripted:rules.py", "--plan", "bad.json"],
            2,
            ["plan file bad.json is invalid: step 2 refers to {7}, which does not exist; steps are 1–2"],
        ),
        (["run", "--model", "scripted:rules.py", "--plan", "notjson.json"], 2, ["plan is not valid JSON"]),
        (
            ["run", "--model", "scripted:rules.py", "--plan", "toolplan.json"],
            2,
            ["uses tool 'refund', which does not exist"],
        ),
        (["run", "--model", "scripted:rules.py", "   "], 2, ["no question given"]),
        (
            ["run", "--model", "scripted:rules.py", "--agent", "finance", "--tools", "os:sep", "hi"],
            2,
            ["--agent and --tools cannot be used together"],
        ),
        (
            ["run", "--model", "scripted:rules.py", "--trace", "no/such/dir/t.jsonl", "hi"],
            2,
            ["cannot write trace file"],
        ),
        (["eval", "--model", "scripted:rules.py", "missing.jsonl"], 2, ["cannot read missing.jsonl"]),
    ],
)
def test_errors_are_one_line_with_a_hint(work, main_in_process, args, code, needles):
    (work / "syntax.py").write_text("rules = [\n")
    (work / "bad.json").write_text('{"steps": [{"id": 1, "question": "a"}, {"id": 2, "question": "b {7}"}]}')
    (work / "notjson.json").write_text("steps: 1, 2")
    (work / "toolplan.json").write_text('{"steps": [{"id": 1, "question": "refund", "tool": "refund"}]}')
    assert_one_line_error(_Proc(*main_in_process(*args)), code, *needles)


def test_debug_shows_the_traceback(main_in_process):
    code, _, err = main_in_process("run", "--debug", "--model", "scripted:missing.py", "hi")
    assert code == 2 and "Traceback" in err


@pytest.mark.parametrize(
    "args, message",
    [
        (["--max-concurrency", "zero"], "expected a whole number"),
        (["--retries", "-1"], "must be 0 or more, got -1"),
        (["--timeout", "0"], "must be a number of seconds above 0"),
        (["--timeout", "-1"], "must be a number of seconds above 0"),
        (["--timeout", "soon"], "expected a number of seconds"),
        (["--model", ""], "--model: is empty"),
    ],
)
def test_usage_errors_exit_2(main_in_process, args, message):
    code, _, err = main_in_process("run", *args, "hi")
    assert code == 2 and message in err


@pytest.mark.parametrize("command", ["run", "chat", "eval"])
def test_each_command_help_lists_the_model_specs_it_mentions(work, command):
    proc = cli(command, "--help", cwd=work)
    assert "see below" in proc.stdout and "model specs" in proc.stdout and "scripted:FILE.py" in proc.stdout
    assert "FILE.py:ATTR" in proc.stdout


def test_files_given_by_path_import_their_neighbours(work, main_in_process):
    (work / "sub").mkdir()
    (work / "sub" / "shared_rules.py").write_text(RULES)
    (work / "sub" / "mymodel.py").write_text("from shared_rules import rules\n")
    (work / "sub" / "mytools.py").write_text("from helper_tools import add\ntools = [add]\n")
    (work / "sub" / "helper_tools.py").write_text(
        "from langchain_core.tools import tool\n\n@tool\ndef add(a: int, b: int) -> int:\n"
        '    """Adds."""\n    return a + b\n'
    )
    (work / "p.json").write_text(
        json.dumps({"steps": [{"id": 1, "question": "1+2", "tool": "add", "args": {"a": 1, "b": 2}}]})
    )
    code, out, err = main_in_process(
        "run",
        "--json",
        "--model",
        "scripted:sub/mymodel.py",
        "--plan",
        "p.json",
        "--tools",
        "sub/mytools.py:tools",
        "1+2",
    )
    assert code == 0, err
    assert json.loads(out)["steps"][0]["answer"] == 3


def test_py_spec_accepts_an_object_or_a_factory(work, main_in_process):
    (work / "models_mod.py").write_text(
        textwrap.dedent("""
        from decompose.models.scripted import ScriptedChatModel
        def make():
            return ScriptedChatModel(rules=[], default="42")
        model = make()
    """)
    )
    (work / "one.json").write_text(json.dumps({"steps": [{"id": 1, "question": "What is 6 times 7?"}]}))
    for spec in ("py:models_mod:model", "py:models_mod:make", "py:models_mod.py:make", "scripted:models_mod.py:make"):
        code, out, err = main_in_process("run", "--json", "--plan", "one.json", "--model", spec)
        assert code == 0, (spec, err)
        assert json.loads(out)["answer"] == "42"


PROGRAM_RULES = textwrap.dedent("""
    from decompose.models.scripted import asks_to_combine
    rules = [
        (asks_to_combine, "Answer: 42"),
        (r"Question: What is 6 times 7", "```python\\nproduct = 6 * 7\\nprint(product)\\nanswer = product\\n```"),
    ]
    default = "It is even."
""")


def test_strategy_program_and_the_program_in_the_json(work, main_in_process):
    (work / "prog.py").write_text(PROGRAM_RULES)
    (work / "plan.json").write_text(
        json.dumps({"steps": [{"id": 1, "question": "What is 6 times 7?"}, {"id": 2, "question": "Is {1} even?"}]})
    )
    code, out, err = main_in_process(
        "run",
        "--json",
        "--strategy",
        "program",
        "--plan",
        "plan.json",
        "--model",
        "scripted:prog.py",
        "Is 6 times 7 even?",
    )
    step = json.loads(out)["steps"][0]
    assert (step["answer"], step["program"], step["program_output"]) == (
        42,
        "product = 6 * 7\nprint(product)\nanswer = product",
        "42\n",
    )
    finished = [e for e in json.loads(out)["events"] if e["type"] == "StepFinished"]
    assert finished[0]["program"] == step["program"]
    # step 2 got no program from the scripted model: its reply is prose, refused twice, the step fails cleanly
    second = json.loads(out)["steps"][1]
    assert second["status"] == "failed" and second["error"].startswith("the repaired program failed too: ")
    assert code == 1 and "Traceback" not in err


def test_failed_step_means_partial_result_and_exit_1(work, main_in_process):
    (work / "broken.py").write_text(RULES.replace('"1997"', 'ValueError("model broke")'))
    code, out, err = main_in_process("run", "--json", "--model", "scripted:broken.py", TITANIC)
    assert code == 1, err
    steps = {s["id"]: s["status"] for s in json.loads(out)["steps"]}
    assert steps == {1: "done", 2: "done", 3: "failed", 4: "skipped"}


def test_tools_flag_adds_a_tool(work, main_in_process):
    plan = {"steps": [{"id": 1, "question": "What is 6 times 7?", "tool": "calculator", "args": {"expression": "6*7"}}]}
    (work / "plan.json").write_text(json.dumps(plan))
    # the greedy --tools list gives the question back
    code, out, err = main_in_process(
        "run",
        "--json",
        "--plan",
        "plan.json",
        "--model",
        "scripted:rules.py",
        "--tools",
        "decompose.tools.calculator:calculator",
        "What is 6 times 7?",
    )
    assert code == 0, err
    data = json.loads(out)
    assert data["steps"][0]["tool"] == "calculator" and data["steps"][0]["answer"] == 42
    # a saved plan: no decomposing; its one step asks the question itself: no synthesis
    assert data["usage"]["model_calls"] == 0


@pytest.mark.slow
def test_plan_file_runs_without_decomposing(work):
    # asking this model for a plan fails: the run must not ask
    never = "(asks_for_plan, ValueError('no plans')), (lambda m: False, json.dumps("
    (work / "noplan.py").write_text(RULES.replace("(asks_for_plan, json.dumps(", never))
    plan = {
        "question": "Who directed Titanic, and when was he born?",
        "steps": [{"id": 1, "question": "Who directed Titanic?"}, {"id": 2, "question": "When was {1} born?"}],
    }
    (work / "plan.json").write_text(json.dumps(plan))
    proc = cli("run", "--json", "--plan", "plan.json", "--model", "scripted:noplan.py", cwd=work)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["question"] == plan["question"] and [s["answer"] for s in data["steps"]] == ["James Cameron", "1954"]
    assert "decompose" not in data["usage"]["phases"]


@pytest.mark.slow  # waits out the default retry policy's first backoff
def test_a_retried_step_shows_in_progress_and_summary(work, main_in_process):
    flaky = RULES.replace(
        '(r"Question: When was Titanic released", "1997")',
        '(r"Question: When was Titanic released", [ConnectionError("reset by peer"), "1997"])',
    )
    (work / "flaky.py").write_text(flaky)
    code, out, err = main_in_process("run", "--model", "scripted:flaky.py", TITANIC)
    assert code == 0, err
    assert "step 3: retry 1 (transport): connection lost" in err
    assert "[done] 3. When was Titanic released? " in out and " · 1 retry · " in out.splitlines()[-1]


def test_no_usable_plan_still_gives_json_with_the_same_keys(work, main_in_process):
    (work / "garbage.py").write_text(
        "from decompose.models.scripted import asks_for_plan\n"
        "rules = [(asks_for_plan, 'I cannot make a plan, sorry.')]\n"
    )
    code, out, err = main_in_process("run", "--json", "--model", "scripted:garbage.py", TITANIC)
    assert code == 1 and "Traceback" not in err
    data = json.loads(out)
    assert set(data) == RESULT_KEYS
    assert data["ok"] is False and "usable plan" in data["error"]
    assert err.count("decompose: error:") == 1 and "usable plan" in err


def test_json_keeps_what_happened_when_the_run_fails(work, main_in_process):
    (work / "noplan.py").write_text("rules = []\ndefault = 'I would rather not make a plan.'\n")
    code, out, err = main_in_process("run", "--json", "--model", "scripted:noplan.py", TITANIC)
    assert code != 0 and "did not write a usable plan" in err
    data = json.loads(out)
    assert data["ok"] is False and data["answer"] is None and "did not write a usable plan" in data["error"]
    assert data["usage"]["model_calls"] == 2 and data["elapsed"] > 0  # the ask and its re-ask
    retried = [e for e in data["events"] if e["type"] == "Retried"]
    assert len(retried) == 1 and retried[0]["kind"] == "parse" and data["usage"]["parse_retries"] == 1


@pytest.mark.slow
def test_ctrl_c_with_json_still_prints_what_happened(work):
    (work / "slow.py").write_text(RULES + "\nlatency = 0.4\n")
    env = {k: v for k, v in os.environ.items() if k not in ("DECOMPOSE_MODEL", "FORCE_COLOR")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "decompose.cli",
            "run",
            "--json",
            "--trace",
            "t.jsonl",
            "--model",
            "scripted:slow.py",
            TITANIC,
        ],
        cwd=work,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    trace, deadline = work / "t.jsonl", time.monotonic() + 30
    while time.monotonic() < deadline and not (trace.exists() and "PlanReady" in trace.read_text()):
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130 and "Traceback" not in err
    data = json.loads(out)
    assert data["error"] == "interrupted" and data["answer"] is None
    assert data["usage"]["model_calls"] >= 1 and data["elapsed"] > 0
    assert "PlanReady" in {e["type"] for e in data["events"]} and data["steps"]  # the plan it was running


@pytest.mark.slow
def test_piped_chat_prints_answers_without_prompts(work):
    proc = cli("chat", "--model", "scripted:rules.py", cwd=work, input=f"{TITANIC}\n/plan\n")
    assert proc.returncode == 0, proc.stderr
    assert "you>" not in proc.stdout and "you>" not in proc.stderr
    assert "James Cameron was 43 when Titanic was released." in proc.stdout
    assert "1. Who directed Titanic?" in proc.stdout  # /plan after the turn


@pytest.mark.slow
def test_review_edit_without_an_editor_off_a_terminal_fails_instead_of_hanging(work):
    env = {"EDITOR": "", "VISUAL": ""}
    proc = cli("run", "--review", "--model", "scripted:rules.py", TITANIC, cwd=work, input="e\n", env=env, timeout=30)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "no $EDITOR is set and this is not a terminal" in proc.stderr and "--plan FILE" in proc.stderr


@pytest.mark.slow
def test_a_failed_chat_turn_shows_its_message_and_the_hint_only_with_debug(work):
    (work / "noplan.py").write_text("rules = [(r'.', 'no plan, sorry')]\n")
    plain = cli("chat", "--model", "scripted:noplan.py", cwd=work, input=f"{TITANIC}\n")
    debug = cli("chat", "--debug", "--model", "scripted:noplan.py", cwd=work, input=f"{TITANIC}\n")
    assert plain.returncode == 0 and debug.returncode == 0, plain.stderr
    line = next(x for x in plain.stdout.splitlines() + plain.stderr.splitlines() if x.startswith("error: "))
    assert "plan" in line and "hint" not in line
    assert "(hint: " in debug.stdout + debug.stderr
