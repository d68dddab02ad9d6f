"""MCP tools in: a real MCP server (tests/mcp_fixture_server.py, on the SDK's FastMCP) over stdio and streamable
HTTP, its tools run as plan steps; the failure paths end in one error naming the server."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import plan_json
from servers import free_port, wait_for_port

from decompose import ConfigError, Orchestrator, ScriptedChatModel
from decompose.events import Retried
from decompose.models.scripted import asks_for_plan, asks_to_combine
from decompose.tools.mcp import MCPServer, mcp_tools
from decompose.tools.runner import has_side_effects

pytestmark = [pytest.mark.slow]

FIXTURE = Path(__file__).with_name("mcp_fixture_server.py")


def ledger_lines(path):
    return path.read_text().splitlines() if path.exists() else []


@pytest.fixture(scope="module")
def ledger(tmp_path_factory):
    return tmp_path_factory.mktemp("mcp") / "ledger.txt"


@pytest.fixture(scope="module")
def stdio_server(ledger):
    return MCPServer(
        command=(sys.executable, str(FIXTURE)),
        name="fixture",
        timeout=20,
        env={**os.environ, "MCP_LEDGER": str(ledger)},
    )


@pytest.fixture(scope="module")
def tools(stdio_server):
    return {t.name: t for t in mcp_tools(stdio_server)}


def orchestrator(tools, plan=None, **options):
    model = ScriptedChatModel(rules=[(asks_for_plan, plan or "{}"), (asks_to_combine, "combined")])
    return Orchestrator(model, tools=list(tools.values()), **options)


def step(id_, tool, **args):
    return {"id": id_, "question": f"call {tool}", "tool": tool, "args": args}


def test_annotations_become_side_effect_rules(tools):
    assert set(tools) == {"add", "weather", "record", "fail", "slow", "crash"}
    assert not has_side_effects(tools["add"]) and not has_side_effects(tools["weather"])
    assert has_side_effects(tools["record"]) and has_side_effects(tools["crash"])
    assert tools["add"].metadata["mcp_server"] == "fixture"
    assert set(tools["add"].tool_call_schema["properties"]) == {"a", "b"}


def test_a_written_plan_calls_the_servers_tools_over_stdio(tools):
    plan = {"steps": [step(1, "add", a=2, b=3), step(2, "weather", city="Oslo")]}
    result = orchestrator(tools).execute(plan, question="2+3, and the weather in Oslo?")
    assert result.ok, result.error
    assert [s.answer for s in result.plan.steps] == [5, {"city": "Oslo", "sky": "sunny", "celsius": 21}]


def test_a_destructive_tool_runs_once_only_when_asked_and_never_again_for_its_step(tools, ledger):
    before = len(ledger_lines(ledger))
    orch = orchestrator(tools, plan_json(step(1, "record", note="hello")))
    not_asked = orch.run("What notes are there?")  # the request gate: nobody asked for a record
    assert not_asked.plan.steps[0].status == "skipped"
    assert len(ledger_lines(ledger)) == before
    asked = orch.run("Please record the note hello.")
    assert asked.plan.steps[0].answer == "recorded hello"
    plan = {"steps": [step(1, "record", note="again")]}
    orch.execute(plan, run_id="run-1")
    orch.execute(plan, run_id="run-1")  # the same run again (a re-submitted plan): not called again
    assert ledger_lines(ledger)[before:] == ["record hello", "record again"]


def test_a_tool_error_is_a_step_error_naming_tool_and_server(tools):
    result = orchestrator(tools).execute({"steps": [step(1, "fail", reason="no stock")]})
    error = result.plan.steps[0].error
    assert result.plan.steps[0].status == "failed"
    assert "tool 'fail' of MCP server fixture returned an error" in error and "refused: no stock" in error


def test_a_server_that_dies_during_a_destructive_call_is_a_step_error_and_is_not_called_again(tools, ledger):
    before = len(ledger_lines(ledger))
    events = []
    result = orchestrator(tools).execute({"steps": [step(1, "crash", note="x")]}, on_event=events.append)
    error = result.plan.steps[0].error
    assert "MCP server fixture failed during tool 'crash'" in error and "not called again" in error
    assert ledger_lines(ledger)[before:] == ["crash x"]  # ran exactly once
    assert not [e for e in events if isinstance(e, Retried)]


def test_a_slow_server_times_out_with_the_servers_name(stdio_server):
    slow = {
        t.name: t
        for t in mcp_tools(MCPServer(command=stdio_server.command, name="fixture", env=stdio_server.env, timeout=4))
    }
    started = time.monotonic()
    result = orchestrator(slow).execute({"steps": [step(1, "slow", seconds=30)]})
    assert "MCP server fixture did not answer tool 'slow' within 4s" in result.plan.steps[0].error
    assert time.monotonic() - started < 15


@pytest.mark.parametrize(
    "spec, needle",
    [
        ("no-such-mcp-command --flag", "MCP server no-such-mcp-command --flag could not be started: FileNotFoundError"),
        (f"{sys.executable} no_such_server.py", "no_such_server.py could not be started: McpError: Connection closed"),
    ],
)
def test_a_server_that_is_not_there_fails_at_start_up(spec, needle):
    with pytest.raises(ConfigError) as caught:
        mcp_tools(spec, timeout=20)
    assert needle in str(caught.value) and "hint: check the command" in str(caught.value)


def test_two_servers_with_the_same_tool_need_prefixes(stdio_server):
    twin = MCPServer(command=stdio_server.command, name="twin", env=stdio_server.env, timeout=20)
    with pytest.raises(ConfigError, match="tool 'add' is offered by MCP server fixture and by twin"):
        mcp_tools(stdio_server, twin)
    names = {t.name for t in mcp_tools(stdio_server, twin, prefix=True)}
    assert {"fixture_add", "twin_add"} <= names


@pytest.fixture
def http_server(ledger):
    port = free_port()
    # As a context manager: the stderr pipe is closed after the process (else a ResourceWarning, an error here).
    with subprocess.Popen(
        [sys.executable, str(FIXTURE), "--http", str(port)],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "MCP_LEDGER": str(ledger)},
    ) as proc:
        try:
            wait_for_port(port, proc, timeout=30)
            yield proc, f"http://127.0.0.1:{port}/mcp"
        finally:
            proc.kill()
            proc.wait()


@pytest.mark.server
def test_streamable_http_tools_and_a_server_that_goes_away(http_server):
    proc, url = http_server
    tools = {t.name: t for t in mcp_tools(url, timeout=10)}
    orch = orchestrator(tools)
    assert orch.execute({"steps": [step(1, "add", a=40, b=2)]}).plan.steps[0].answer == 42
    proc.kill()
    proc.wait()
    events = []
    result = orch.execute({"steps": [step(1, "add", a=1, b=1), step(2, "record", note="lost")]}, on_event=events.append)
    read_only, write = result.plan.steps
    assert f"MCP server {url} failed during tool 'add'" in read_only.error
    assert f"MCP server {url} failed during tool 'record'" in write.error and "not called again" in write.error
    retried = [e.step_id for e in events if isinstance(e, Retried)]
    assert retried == [1, 1]  # the read-only tool is retried (ToolRunner's max_retries=2), the write never


@pytest.mark.server
def test_an_http_server_that_is_not_there_fails_at_start_up():
    url = f"http://127.0.0.1:{free_port()}/mcp"
    with pytest.raises(ConfigError, match=f"MCP server {url} could not be started: ConnectError"):
        mcp_tools(url, timeout=10)
