"""`decompose eval`: scores, the per-question report, resuming, malformed rows — through the real command."""

import io
import json
import os
import sys

import pytest
from helpers import REPO, cli, interrupt_eval, report

# The example's scripted model: a two-step plan, then synthesis answers by topic; "broken" makes the model fail.
RULES = (REPO / "examples" / "scripted" / "evalrules.py").read_text()

ROWS = [
    '{"id": "q1", "question": "What is the capital of France?", "answer": "Paris"}',
    # GSM8K: the gold is the number after ####
    '{"question": "Janet\'s ducks lay 16 eggs; she sells 9 at $2. How much?", "answer": "9 * 2 = 18\\n#### 18"}',
    "{this line is not JSON",
    # StrategyQA: a boolean gold
    '{"qid": "s1", "question": "Is the sky green?", "answer": false}',
    '{"question": "Which city is the big apple?", "answer": "New York City"}',  # EM 0, F1 0.8
]


@pytest.fixture
def work(tmp_path):
    (tmp_path / "rules.py").write_text(RULES)
    (tmp_path / "qs.jsonl").write_text("\n".join(ROWS) + "\n")
    return tmp_path


@pytest.fixture
def main_in_process(work, monkeypatch, capsys):
    from decompose.cli import main

    monkeypatch.chdir(work)
    monkeypatch.delenv("DECOMPOSE_MODEL", raising=False)
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))

    def run(*args):
        code = main(list(args))
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


@pytest.mark.slow
def test_eval_scores_and_reports_every_question(work):
    proc = cli("eval", "qs.jsonl", "--model", "scripted:rules.py", "--out", "report.jsonl", "--json", cwd=work)
    assert proc.returncode == 1  # a malformed line makes the run partial; the rest still ran
    assert "Traceback" not in proc.stderr
    assert "skipped qs.jsonl:3: not valid JSON" in proc.stderr  # named by its line number
    summary = json.loads(proc.stdout)
    assert summary["rows"] == 4 and summary["malformed"] == 1 and summary["ran"] == 4 and summary["resumed"] == 0
    assert summary["answered"] == 4 and summary["valid_plans"] == 4 and summary["failed"] == 0
    assert summary["exact_match"] == pytest.approx(3 / 4)
    assert summary["f1"] == pytest.approx((1 + 1 + 1 + 0.8) / 4, abs=1e-3)
    assert summary["model_calls"] == 4 * 4  # plan, two steps, synthesis per question
    rows = {r["id"]: r for r in report(work / "report.jsonl")}
    assert set(rows) == {"q1", "line 2", "s1", "line 5"}
    assert rows["line 2"]["gold"] == "18" and rows["s1"]["gold"] == "no"
    assert rows["line 5"]["em"] == 0.0 and rows["line 5"]["f1"] == pytest.approx(0.8)
    assert set(rows["q1"]) >= {
        "id",
        "line",
        "mode",
        "question",
        "gold",
        "prediction",
        "em",
        "f1",
        "valid_plan",
        "answered",
        "ok",
        "error",
        "steps",
        "failed_steps",
        "elapsed",
        "input_tokens",
        "output_tokens",
        "model_calls",
        "retries",
    }
    assert rows["q1"]["mode"] == "decomposed" and rows["q1"]["steps"] == 2


def test_direct_mode_answers_without_a_plan(work, main_in_process):
    (work / "clean.jsonl").write_text("\n".join(r for r in ROWS if "not JSON" not in r) + "\n")
    code, out, err = main_in_process(
        "eval", "clean.jsonl", "--direct", "--model", "scripted:rules.py", "--json", "--trace", "trace.jsonl"
    )
    assert code == 0, err
    summary = json.loads(out)
    assert summary["mode"] == "direct" and summary["report"] == "clean.direct.report.jsonl"
    assert summary["model_calls"] == 4  # one call per question: no plan, no synthesis
    assert summary["exact_match"] == pytest.approx(3 / 4)
    rows = report(work / "clean.direct.report.jsonl")
    assert all(r["steps"] == 1 and r["mode"] == "direct" for r in rows)
    events = [json.loads(line) for line in (work / "trace.jsonl").read_text().splitlines()]
    assert {e["row"] for e in events} == {"q1", "line 2", "s1", "line 4"}  # trace lines name their question


def test_a_failing_question_is_recorded_and_the_rest_run(work, main_in_process):
    (work / "mixed.jsonl").write_text(
        '{"question": "This one is broken", "answer": "x"}\n'
        '{"question": "What is the capital of France?", "answer": "Paris"}\n'
    )
    code, out, err = main_in_process("eval", "mixed.jsonl", "--direct", "--model", "scripted:rules.py", "--json")
    assert code == 1
    rows = {r["id"]: r for r in report(work / "mixed.direct.report.jsonl")}
    assert rows["line 1"]["ok"] is False and "model broke" in rows["line 1"]["error"]
    assert rows["line 1"]["em"] == 0.0 and rows["line 1"]["answered"] is False
    assert rows["line 2"]["ok"] is True and rows["line 2"]["em"] == 1.0


def test_resume_skips_rows_already_in_the_report(work, main_in_process):
    done = {
        "id": "q1",
        "line": 1,
        "mode": "decomposed",
        "question": "What is the capital of France?",
        "gold": "Paris",
        "prediction": "from before",
        "em": 0.0,
        "f1": 0.0,
        "valid_plan": True,
        "answered": True,
        "ok": True,
        "error": None,
        "steps": 2,
        "failed_steps": 0,
        "elapsed": 1.0,
        "input_tokens": 1,
        "output_tokens": 1,
        "model_calls": 1,
        "retries": 0,
    }
    # the previous run was killed while writing its next line: the torn line is ignored
    (work / "report.jsonl").write_text(json.dumps(done) + '\n{"id": "line 2", "pred')
    code, out, err = main_in_process(
        "eval", "qs.jsonl", "--model", "scripted:rules.py", "--out", "report.jsonl", "--json", "--limit", "4"
    )
    summary = json.loads(out)
    assert summary["resumed"] == 1 and summary["ran"] == 2 and summary["rows"] == 3  # --limit 4: lines 1-4
    rows = report(work / "report.jsonl")
    assert sorted(r["id"] for r in rows) == ["line 2", "q1", "s1"]  # each once
    assert '"pred\n' not in (work / "report.jsonl").read_text()  # the torn line is gone, not kept
    assert rows[0]["prediction"] == "from before"  # not run again
    assert "skipped qs.jsonl:3: not valid JSON" in err
    assert summary["exact_match"] == pytest.approx(2 / 3, abs=1e-3)


@pytest.mark.slow
def test_interrupted_eval_loses_nothing_and_resumes(work):
    rows = [
        json.dumps({"id": f"r{i}", "question": "What is the capital of France?", "answer": "Paris"}) for i in range(8)
    ]
    (work / "many.jsonl").write_text("\n".join(rows) + "\n")
    env = {k: v for k, v in os.environ.items() if k not in ("DECOMPOSE_MODEL", "FORCE_COLOR")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env["SCRIPTED_LATENCY"] = "0.15"
    out_file = work / "many.direct.report.jsonl"
    saved = interrupt_eval(
        ["eval", "many.jsonl", "--direct", "--model", "scripted:rules.py", "--concurrency", "1"],
        cwd=work,
        env=env,
        out_file=out_file,
        timeout=30,
    )
    assert 2 <= len(saved) < 8
    again = cli("eval", "many.jsonl", "--direct", "--model", "scripted:rules.py", "--json", cwd=work)
    assert again.returncode == 0, again.stderr
    summary = json.loads(again.stdout)
    assert summary["resumed"] == len(saved) and summary["ran"] == 8 - len(saved)
    ids = [r["id"] for r in report(out_file)]
    assert sorted(ids) == sorted(f"r{i}" for i in range(8))  # every question exactly once
    assert summary["exact_match"] == 1.0


@pytest.mark.slow
def test_summary_table_is_plain_text_without_a_terminal(work):
    proc = cli("eval", "qs.jsonl", "--model", "scripted:rules.py", "--limit", "2", cwd=work)
    assert proc.returncode == 0, proc.stderr
    assert "\x1b" not in proc.stdout + proc.stderr
    assert "exact match" in proc.stdout and "1.000" in proc.stdout
    assert "[2/2] line 2: ok em=1 f1=1.00" in proc.stderr  # one progress line per question


def test_failed_rows_run_again_on_resume_unless_kept(work, main_in_process):
    (work / "mixed.jsonl").write_text(
        '{"question": "This one is broken", "answer": "x"}\n'
        '{"question": "What is the capital of France?", "answer": "Paris"}\n'
    )
    main_in_process("eval", "mixed.jsonl", "--direct", "--model", "scripted:rules.py")
    (work / "rules.py").write_text(RULES.replace('"broken": ValueError("model broke")', '"broken": "x"'))
    code, out, err = main_in_process(
        "eval", "mixed.jsonl", "--direct", "--model", "scripted:rules.py", "--keep-failed", "--json"
    )
    assert code == 1 and json.loads(out)["ran"] == 0  # kept: nothing to run
    code, out, err = main_in_process("eval", "mixed.jsonl", "--direct", "--model", "scripted:rules.py", "--json")
    summary = json.loads(out)
    assert code == 0 and summary["ran"] == 1 and summary["resumed"] == 1 and summary["failed"] == 0
    latest = {r["id"]: r for r in report(work / "mixed.direct.report.jsonl")}  # a later line wins
    assert latest["line 1"]["ok"] is True and latest["line 1"]["prediction"] == "x"


@pytest.mark.slow
@pytest.mark.server
def test_a_server_refusing_the_key_stops_the_eval_and_a_fixed_rerun_answers_every_row(work):
    from fault_server import FaultServer, ok, status

    rows = [json.dumps({"id": f"r{i}", "question": f"What is {i} plus {i}?", "answer": str(2 * i)}) for i in range(6)]
    (work / "sums.jsonl").write_text("\n".join(rows) + "\n")
    with FaultServer() as server:
        server.default = status(401, message="bad key")
        env = {"OPENAI_BASE_URL": server.base_url, "OPENAI_API_KEY": "wrong"}
        args = ("eval", "sums.jsonl", "--direct", "--model", "openai:m", "--concurrency", "2", "--json")
        refused = cli(*args, cwd=work, env=env)
        assert refused.returncode != 0 and "Traceback" not in refused.stderr
        assert "eval stopped: HTTP 401 from http://127.0.0.1" in refused.stderr
        assert "6 rows were not run" in refused.stderr and "OPENAI_API_KEY" in refused.stderr
        assert len(server.hits) <= 2  # one refusal per worker at most, no retries, no further rows
        assert not report(work / "sums.direct.report.jsonl")  # nothing written that a rerun would skip
        server.default = ok("4")
        fixed = cli(*args, cwd=work, env=env)
    assert fixed.returncode == 0  # every row ran (most answers are wrong: that is a score, not a failure)
    summary = json.loads(fixed.stdout)
    assert summary["ran"] == 6 and summary["failed"] == 0
