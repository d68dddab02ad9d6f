import asyncio
import json
import subprocess
import sys
import textwrap
import threading
from typing import Annotated

import pytest
from helpers import plan_json
from langchain_core.tools import InjectedToolArg, tool

from decompose import Orchestrator, Plan, PlanError, RetryableToolError, ScriptedChatModel, ToolError, side_effects
from decompose.events import Retried
from decompose.models.scripted import asks_for_plan, asks_to_combine
from decompose.tools.runner import ToolRunner, injected_args, validate_args


def tool_plan(*steps):
    return Plan.from_data({"question": "q", "steps": list(steps)})


def model_for(plan=None, *rules):
    return ScriptedChatModel(rules=[(asks_for_plan, plan or "{}"), (asks_to_combine, "combined"), *rules])


def make_charge(ledger, *, fail_first=False, takes_key=True):
    """A side-effecting tool whose writes land in `ledger` (a list), keyed like a real payment API."""
    state = {"calls": 0}

    if takes_key:

        @side_effects
        @tool
        def charge(amount: float, idempotency_key: Annotated[str, InjectedToolArg]) -> dict:
            """Charge a card."""
            state["calls"] += 1
            if fail_first and state["calls"] == 1:
                raise RetryableToolError("payment gateway busy")
            if not any(row["key"] == idempotency_key for row in ledger):
                ledger.append({"key": idempotency_key, "amount": amount})
            return {"charged": amount}
    else:

        @side_effects
        @tool
        def charge(amount: float) -> dict:
            """Charge a card."""
            state["calls"] += 1
            if fail_first and state["calls"] == 1:
                raise RetryableToolError("payment gateway busy")
            ledger.append({"amount": amount})
            return {"charged": amount}

    return charge, state


def test_injected_key_is_hidden_from_the_model_and_passed_to_the_tool():
    ledger = []
    charge, _ = make_charge(ledger)
    assert injected_args(charge) == {"idempotency_key"}
    assert "idempotency_key" not in charge.tool_call_schema.model_fields
    plan = tool_plan({"id": 1, "question": "charge", "tool": "charge", "args": {"amount": 5}})
    result = Orchestrator(model_for(), tools=[charge]).execute(plan, run_id="run-1")
    assert result.plan.step(1).answer == {"charged": 5.0}
    assert ledger == [{"key": "run-1:1", "amount": 5.0}]


def test_transient_failure_inside_a_keyed_side_effect_tool_is_retried_once_effective():
    ledger = []
    charge, state = make_charge(ledger, fail_first=True)
    plan = tool_plan({"id": 1, "question": "charge", "tool": "charge", "args": {"amount": 5}})
    events = []
    result = Orchestrator(model_for(), tools=[charge]).execute(plan, on_event=events.append)
    assert result.plan.step(1).status == "done"
    assert state["calls"] == 2 and len(ledger) == 1
    assert any(isinstance(e, Retried) and e.kind == "tool" and "busy" in e.reason for e in events)


def test_side_effect_tool_without_a_key_is_never_retried():
    ledger = []
    charge, state = make_charge(ledger, fail_first=True, takes_key=False)
    plan = tool_plan({"id": 1, "question": "charge", "tool": "charge", "args": {"amount": 5}})
    result = Orchestrator(model_for(), tools=[charge]).execute(plan)
    assert result.plan.step(1).status == "failed" and "busy" in result.plan.step(1).error
    assert state["calls"] == 1 and ledger == []


def test_re_executing_the_same_run_never_repeats_a_side_effect():
    ledger = []
    charge, state = make_charge(ledger, takes_key=False)
    orch = Orchestrator(model_for(), tools=[charge])
    plan = tool_plan({"id": 1, "question": "charge", "tool": "charge", "args": {"amount": 5}})
    first = orch.execute(plan, run_id="run-7")
    again = orch.execute(plan, run_id="run-7")  # e.g. a person re-submits the reviewed plan
    assert first.plan.step(1).answer == again.plan.step(1).answer == {"charged": 5.0}
    assert state["calls"] == 1 and len(ledger) == 1
    orch.execute(plan, run_id="run-8")  # a new run is a new request
    assert len(ledger) == 2


def test_crash_between_call_and_record_is_covered_by_the_tools_own_key(tmp_path):
    from decompose.tools.customer_service import customer_service_tools

    db = tmp_path / "shop.sqlite3"
    plan = tool_plan(
        {
            "id": 1,
            "question": "refund",
            "tool": "issue_refund",
            "args": {"order_id": "A1001", "amount": "20", "reason": "broken"},
        }
    )
    # The first process refunds, then dies before it records anything: its in-memory ledger is lost.
    Orchestrator(model_for(), tools=customer_service_tools(db)).execute(plan, run_id="run-42")
    # A new process resumes the same run: the store sees the same idempotency key and does not pay twice.
    resumed = Orchestrator(model_for(), tools=customer_service_tools(db)).execute(plan, run_id="run-42")
    assert resumed.plan.step(1).answer["amount"] == "20.00"
    import sqlite3

    rows = sqlite3.connect(db).execute("SELECT amount_cents FROM refunds WHERE order_id = 'A1001'").fetchall()
    assert rows == [(2000,)]


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


def test_bad_arguments_are_reasked_once_then_used():
    plan = plan_json({"id": 1, "question": "2+3?", "tool": "add", "args": {"a": "two", "b": 3}})
    model = model_for(plan, (r"Corrected arguments", '{"a": 2, "b": 3}'))
    result = Orchestrator(model, tools=[add]).run("2+3?")
    assert result.answer == "5" and result.usage.parse_retries == 1
    assert result.plan.step(1).args == {"a": 2, "b": 3}  # what the tool was called with, not the bad args
    reask = next(c["prompt"] for c in model.calls if "Corrected arguments" in c["prompt"])
    assert "argument 'a'" in reask and "'two'" in reask


def test_the_argument_reask_is_a_prompt_you_can_replace():
    from langchain_core.prompts import ChatPromptTemplate

    from decompose import Prompts

    plan = plan_json({"id": 1, "question": "2+3?", "tool": "add", "args": {"a": "two", "b": 3}})
    model = model_for(plan, (r"Fix \{a\}", '{"a": 2, "b": 3}'))
    mine = ChatPromptTemplate.from_messages([("human", "Fix {{a}} for {tool}: {problem}")])
    result = Orchestrator(model, tools=[add], prompts=Prompts(tool_args=mine)).run("2+3?")
    assert result.answer == "5"
    assert any("Fix {a} for add: tool 'add', argument 'a'" in c["prompt"] for c in model.calls)


def test_bad_arguments_twice_fail_with_the_tool_and_field_named():
    plan = plan_json({"id": 1, "question": "add", "tool": "add", "args": {"a": 1}})
    model = model_for(plan, (r"Corrected arguments", '{"a": 1, "c": 2}'))
    result = Orchestrator(model, tools=[add]).run("1+?")
    step = result.plan.step(1)
    assert step.status == "failed" and "tool 'add' has no argument 'c'" in step.error


@pytest.mark.parametrize(
    "args, message",
    [
        ({"a": 1}, "argument 'b': Field required"),
        ({"a": 1, "b": "x"}, "argument 'b': Input should be a valid integer"),
        ({"a": 1, "b": 2, "c": 3}, "has no argument 'c'; arguments: a, b"),
        ([1, 2], "needs an object of arguments"),
    ],
)
def test_validate_args_messages(args, message):
    assert message in validate_args(add, args)


def test_executing_a_plan_with_an_unknown_tool_is_a_plan_error():
    plan = tool_plan({"id": 1, "question": "x", "tool": "nope", "args": {}})
    with pytest.raises(PlanError, match="uses tool 'nope', which does not exist; tools: add"):
        Orchestrator(model_for(), tools=[add]).execute(plan)


def test_a_slow_sync_tool_runs_in_a_thread_and_does_not_block_other_steps():
    released = threading.Event()

    @tool
    def slow() -> str:
        """Wait until the other step has run."""
        return "released" if released.wait(timeout=10) else "blocked"

    @tool
    async def quick() -> str:
        """Release the slow tool."""
        released.set()
        return "done"

    plan = tool_plan(
        {"id": 1, "question": "slow", "tool": "slow", "args": {}},
        {"id": 2, "question": "quick", "tool": "quick", "args": {}},
    )
    result = Orchestrator(model_for(), tools=[slow, quick]).execute(plan)
    assert result.plan.step(1).answer == "released"


def test_tool_timeout_fails_the_step_clearly():
    @tool
    async def hang() -> str:
        """Never returns."""
        await asyncio.Event().wait()

    plan = tool_plan(
        {"id": 1, "question": "hang", "tool": "hang", "args": {}},
        {"id": 2, "question": "add", "tool": "add", "args": {"a": 1, "b": 1}},
    )
    result = Orchestrator(model_for(), tools=[hang, add], tool_runner=ToolRunner(timeout=0.1)).execute(plan)
    assert "tool 'hang' timed out after 0.1s" in result.plan.step(1).error
    assert result.plan.step(2).answer == 2


@pytest.mark.slow
def test_a_sync_tool_hanging_past_its_timeout_does_not_keep_the_process_alive(tmp_path):
    script = tmp_path / "hang.py"
    script.write_text(
        textwrap.dedent("""
        import time
        from langchain_core.tools import tool
        from decompose import Orchestrator, ScriptedChatModel, ToolRunner

        @tool
        def stuck() -> str:
            \"\"\"Hangs.\"\"\"
            time.sleep(120)
            return "late"

        plan = {"steps": [{"id": 1, "question": "stuck", "tool": "stuck", "args": {}}]}
        orch = Orchestrator(ScriptedChatModel(default="x"), tools=[stuck], tool_runner=ToolRunner(timeout=0.5))
        result = orch.execute(plan)
        print(result.plan.step(1).error)
    """)
    )
    # the tool alone would take 120 s: a process kept alive by it would run past the timeout and fail the test
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "tool 'stuck' timed out after 0.5s (it is still running in a background thread" in done.stdout


def test_a_sync_tool_runs_with_its_result_and_errors_intact():
    seen = []

    @tool
    def where() -> str:
        """Names its thread."""
        seen.append(threading.current_thread())
        return "here"

    @tool
    def broken() -> str:
        """Fails."""
        raise ValueError("bad")

    plan = tool_plan(
        {"id": 1, "question": "w", "tool": "where", "args": {}},
        {"id": 2, "question": "b", "tool": "broken", "args": {}},
    )
    result = Orchestrator(model_for(), tools=[where, broken]).execute(plan)
    assert result.plan.step(1).answer == "here" and seen[0].daemon
    assert result.plan.step(2).error == "tool 'broken' failed: bad"


def test_a_tool_raising_a_plain_exception_becomes_a_tool_error():
    @tool
    def broken(x: int) -> int:
        """Fails."""
        raise ValueError("bad x")

    plan = tool_plan({"id": 1, "question": "b", "tool": "broken", "args": {"x": 1}})
    result = Orchestrator(model_for(), tools=[broken]).execute(plan)
    assert result.plan.step(1).error == "tool 'broken' failed: bad x"


def test_tool_errors_keep_their_message():
    @tool
    def picky(x: int) -> int:
        """Refuses."""
        raise ToolError("order 'X' not found", hint="check the id")

    plan = tool_plan({"id": 1, "question": "p", "tool": "picky", "args": {"x": 1}})
    result = Orchestrator(model_for(), tools=[picky]).execute(plan)
    assert result.plan.step(1).error == "tool 'picky' failed: order 'X' not found (hint: check the id)"


def test_an_unexpected_exception_names_the_tool_and_its_kind():
    @tool
    def odd() -> str:
        """Breaks oddly."""
        raise RuntimeError("socket pool exhausted")

    result = Orchestrator(model_for(), tools=[odd]).execute(tool_plan({"id": 1, "question": "o", "tool": "odd"}))
    assert result.plan.step(1).error == "tool 'odd' failed: RuntimeError: socket pool exhausted"


def test_pydantic_results_can_be_referenced_by_field():
    from pydantic import BaseModel

    class Quote(BaseModel):
        price: float

    @tool
    def quote() -> Quote:
        """A price."""
        return Quote(price=2.5)

    plan = tool_plan(
        {"id": 1, "question": "q", "tool": "quote", "args": {}},
        {"id": 2, "question": "add", "tool": "add", "args": {"a": "{1.price}", "b": 1}},
    )
    model = model_for(None, (r"Corrected arguments", '{"a": 2.5, "b": 1}'))
    result = Orchestrator(model, tools=[quote, add]).execute(plan)
    assert result.plan.step(2).status == "failed"  # 2.5 is not an int: validated, not silently truncated
    assert "argument 'a'" in result.plan.step(2).error
    assert json.loads(json.dumps(result.to_dict(), default=str))


@pytest.mark.parametrize("max_retries, calls, waits", [(0, 1, []), (2, 3, [0.1, 0.2])])
def test_a_tools_transient_failures_are_retried_up_to_max_retries(max_retries, calls, waits):
    tries = []

    @tool
    def busy() -> str:
        """Always busy."""
        tries.append(1)
        raise RetryableToolError("gateway busy")

    events = []
    result = Orchestrator(model_for(), tools=[busy], tool_runner=ToolRunner(max_retries=max_retries)).execute(
        tool_plan({"id": 1, "question": "b", "tool": "busy"}), on_event=events.append
    )
    assert len(tries) == calls and "gateway busy" in result.plan.step(1).error
    retried = [e for e in events if isinstance(e, Retried)]
    assert [(e.kind, e.attempt, e.wait) for e in retried] == [("tool", n, w) for n, w in enumerate(waits, 1)]
    assert result.usage.transport_retries == result.usage.parse_retries == 0  # a tool's retry is an event only


def test_arguments_still_wrong_after_the_reask_fail_the_step_with_one_retry_counted():
    plan = plan_json({"id": 1, "question": "2+3?", "tool": "add", "args": {"a": "two", "b": 3}})
    model = model_for(plan, (r"Corrected arguments", '{"a": "still two", "b": 3}'))
    events = []
    result = Orchestrator(model, tools=[add]).run("2+3?", on_event=events.append)
    assert "argument 'a'" in result.plan.step(1).error and "'still two'" in result.plan.step(1).error
    assert [(e.kind, e.attempt, e.step_id) for e in events if isinstance(e, Retried)] == [("parse", 1, 1)]
    assert result.usage.parse_retries == 1


def test_a_tool_whose_arguments_are_a_pydantic_v1_model_is_a_config_error_naming_the_fix():
    from langchain_core.tools import StructuredTool
    from pydantic.v1 import BaseModel as BaseModelV1

    from decompose.errors import ConfigError

    class Args(BaseModelV1):
        x: int

    old = StructuredTool.from_function(lambda x: x, name="old", description="An old tool.", args_schema=Args)
    with pytest.raises(ConfigError, match="'old' describes its arguments with a pydantic.v1 model") as err:
        validate_args(old, {"x": 1})
    assert "from pydantic import BaseModel" in err.value.hint
