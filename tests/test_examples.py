"""The examples run as scripts (with a scripted model loaded through a tiny wrapper module)."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # each example runs in a new interpreter

ROOT = Path(__file__).resolve().parents[1]


def run_example(tmp_path, name, rules):
    runner = tmp_path / "run_example.py"
    runner.write_text(
        textwrap.dedent(f"""
        import runpy, sys
        from decompose import ScriptedChatModel
        from decompose.models.scripted import asks_for_plan, asks_to_combine
        import decompose.models as models
        model = ScriptedChatModel(rules={rules})
        models_load = models.load_model
        models.load_model = lambda spec=None, **kw: model if spec in (None, "scripted") else models_load(spec, **kw)
        import decompose.orchestrator as orch
        orch.load_model = models.load_model
        sys.argv = ["{name}", "scripted"]
        runpy.run_path(r"{ROOT / "examples" / name}", run_name="__main__")
    """)
    )
    env = {"XDG_CACHE_HOME": str(tmp_path), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    return subprocess.run([sys.executable, str(runner)], capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)


def test_custom_tool_example(tmp_path):
    rules = """[(asks_for_plan, '{"steps": [{"id": 1, "question": "Dune", "tool": "stock_level",'
               ' "args": {"title": "Dune"}},'
               ' {"id": 2, "question": "Ulysses", "tool": "stock_level", "args": {"title": "Ulysses"}}]}'),
              (asks_to_combine, "15 copies")]"""
    done = run_example(tmp_path, "custom_tool.py", rules)
    assert done.returncode == 0, done.stderr
    assert "-> 12 (done)" in done.stdout and "-> 3 (done)" in done.stdout and "Answer: 15 copies" in done.stdout


def test_customer_service_example(tmp_path):
    rules = """[(asks_for_plan, '{"steps": [{"id": 1, "question": "orders", "tool": "list_orders",'
               ' "args": {"customer": "ann@example.com"}}]}'),
              (asks_to_combine, "done")]"""
    done = run_example(tmp_path, "customer_service.py", rules)
    assert done.returncode == 0, done.stderr
    assert "[list_orders]" in done.stdout and "A1003" in done.stdout


def test_finance_example(tmp_path):
    rules = """[(asks_for_plan, '{"steps": [{"id": 1, "question": "pay", "tool": "loan_payment",'
               ' "args": {"principal": 200000, "annual_rate_pct": 6, "n_payments": 360}}]}'),
              (asks_to_combine, "done")]"""
    done = run_example(tmp_path, "finance.py", rules)
    assert done.returncode == 0, done.stderr
    assert "1199.10" in done.stdout


def test_the_readme_commands_run_as_written_from_the_repository(tmp_path):
    """The README's `--model scripted:examples/scripted/...` commands, run from the repository root."""
    readme = (ROOT / "README.md").read_text()
    question = "Who directed Titanic, and how old was that person when it was released?"
    assert f'decompose run --model scripted:examples/scripted/rules.py "{question}"' in readme
    done = subprocess.run(
        [sys.executable, "-m", "decompose.cli", "run", "--model", "scripted:examples/scripted/rules.py", question],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "Answer: James Cameron was 43 when Titanic was released." in done.stdout
    assert "[done] 4. How old was someone born in 1954 in 1997? (after 2, 3)" in done.stdout
    assert "decompose eval examples/scripted/qs.jsonl --model scripted:examples/scripted/evalrules.py" in readme
    report = tmp_path / "qs.report.jsonl"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "decompose.cli",
            "eval",
            str(ROOT / "examples/scripted/qs.jsonl"),
            "--model",
            f"scripted:{ROOT / 'examples/scripted/evalrules.py'}",
            "--out",
            str(report),
            "--json",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert done.returncode == 1, done.stderr  # the malformed line on purpose
    summary = json.loads(done.stdout)
    assert summary["rows"] == 4 and summary["exact_match"] == 0.75 and summary["malformed"] == 1


def test_approvals_example(tmp_path):
    rules = """[(asks_for_plan, '{"steps": [{"id": 1, "question": "refund", "tool": "issue_refund",'
               ' "args": {"order_id": "A1023", "amount": "150", "reason": "torn"}}]}'),
              (asks_to_combine, "refunded")]"""
    done = run_example(tmp_path, "approvals.py", rules)
    assert done.returncode == 0, done.stderr
    assert "waiting: step 1 wants issue_refund" in done.stdout and "amount 150 is above 100" in done.stdout
    assert "1. [issue_refund] refund -> done: {'refund_id'" in done.stdout and "'amount': '150.00'" in done.stdout
