"""MCP out: `decompose mcp` serves the agents as MCP tools, driven by the official `mcp` client over stdio and
streamable HTTP (with API keys), and plugged back in as the MCP server of another Orchestrator; and `--mcp` on the
other commands, with tests/mcp_fixture_server.py."""

import json
import os
import subprocess
import sys
from pathlib import Path

import anyio
import httpx
import pytest
from helpers import REPO, cli
from servers import free_port, wait_for_port

from decompose import Orchestrator, ScriptedChatModel
from decompose.models.scripted import asks_for_plan, asks_to_combine
from decompose.tools.mcp import MCPServer, mcp_tools

pytestmark = [pytest.mark.slow]

FIXTURE = Path(__file__).with_name("mcp_fixture_server.py")
QUESTION = "What is 12 times 7?"
# The agent's model: a plan with one calculator step, and an answer from it.
AGENT_RULES = """
import json
from decompose.models.scripted import asks_for_plan, asks_to_combine
rules = [
    (asks_for_plan, json.dumps({"steps": [{"id": 1, "question": "Compute 12 times 7", "tool": "calculator",
                                           "args": {"expression": "12*7"}}]})),
    (asks_to_combine, "12 times 7 is 84."),
]
"""
# A model whose plan calls the MCP server's `add` tool.
ADD_RULES = """
import json
from decompose.models.scripted import asks_for_plan, asks_to_combine
rules = [
    (asks_for_plan, json.dumps({"steps": [{"id": 1, "question": "Add 40 and 2", "tool": "add",
                                           "args": {"a": 40, "b": 2}}]})),
    (asks_to_combine, "40 and 2 make 42."),
]
"""


def env():
    full = {k: v for k, v in os.environ.items() if k not in ("DECOMPOSE_MODEL", "OPENAI_API_KEY", "OPENAI_BASE_URL")}
    full["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), full.get("PYTHONPATH")]))
    return full


@pytest.fixture
def work(tmp_path):
    (tmp_path / "agent_rules.py").write_text(AGENT_RULES)
    (tmp_path / "add_rules.py").write_text(ADD_RULES)
    (tmp_path / "keys.txt").write_text("# the clients' keys\nsecret-key-1\n")
    return tmp_path


def serve_command(*extra):
    return [sys.executable, "-m", "decompose.cli", "mcp", "--model", "scripted:agent_rules.py", *extra]


async def call_agent(session, name, question):
    progress = []

    async def noted(done, total, message):
        progress.append((done, total, message))

    await session.initialize()
    listed = {t.name: t for t in (await session.list_tools()).tools}
    result = await session.call_tool(name, {"question": question}, progress_callback=noted)
    return listed, result, progress


def check_finance_reply(listed, result, progress):
    assert {"finance", "customer_service"} <= set(listed)
    assert listed["finance"].annotations.readOnlyHint is True  # its tools only compute
    assert listed["customer_service"].annotations.destructiveHint is True  # it can refund
    assert not result.isError, result.content
    reply = result.structuredContent
    assert reply["answer"] == "12 times 7 is 84."
    assert reply["steps"] == [
        {
            "id": 1,
            "question": "Compute 12 times 7",
            "tool": "calculator",
            "args": {"expression": "12*7"},
            "status": "done",
            "answer": 84,
            "error": None,
        }
    ]
    assert [m for _, _, m in progress] == ["planned 1 step", "step 1 done", "answered"]
    assert [d for d, _, _ in progress] == [1, 2, 3] and progress[-1][1] == 3


def test_decompose_mcp_over_stdio_with_the_official_client(work):
    # The client here, not at the top: every test process collects this module, also where slow tests are left out.
    from mcp import ClientSession, StdioServerParameters
    from mcp.client.stdio import stdio_client

    async def main():
        params = StdioServerParameters(command=sys.executable, args=serve_command()[1:], env=env(), cwd=str(work))
        async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
            return await call_agent(session, "finance", QUESTION)

    check_finance_reply(*anyio.run(main))


@pytest.fixture
def http_mcp(work):
    port = free_port()
    # As a context manager: the stderr pipe is closed after the process (else a ResourceWarning, an error here).
    with subprocess.Popen(
        serve_command("--http", str(port), "--api-key-file", "keys.txt"),
        cwd=work,
        env=env(),
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        try:
            wait_for_port(port, proc)
            yield f"http://127.0.0.1:{port}/mcp"
        finally:
            proc.terminate()
            proc.wait(timeout=20)


@pytest.mark.server
def test_decompose_mcp_over_http_needs_the_key_and_plugs_into_another_orchestrator(http_mcp):
    from mcp import ClientSession
    from mcp.client.streamable_http import streamable_http_client

    async def main(headers):
        async with (
            httpx.AsyncClient(headers=headers, timeout=60) as http,
            streamable_http_client(http_mcp, http_client=http) as (read, write, _),
            ClientSession(read, write) as session,
        ):
            return await call_agent(session, "finance", QUESTION)

    check_finance_reply(*anyio.run(main, {"Authorization": "Bearer secret-key-1"}))
    refused = httpx.post(http_mcp, json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
    assert refused.status_code == 401 and "API key" in refused.json()["error"]["message"]
    # The same server as the tools of another Orchestrator: its plan asks the finance agent.
    tools = mcp_tools(MCPServer(url=http_mcp, headers={"Authorization": "Bearer secret-key-1"}, timeout=60))
    outer = ScriptedChatModel(
        rules=[
            (
                asks_for_plan,
                json.dumps(
                    {"steps": [{"id": 1, "question": "Ask finance", "tool": "finance", "args": {"question": QUESTION}}]}
                ),
            ),
            (asks_to_combine, "Finance says 84."),
        ]
    )
    result = Orchestrator(outer, tools=tools).run("Ask the finance agent what 12 times 7 is.")
    assert result.answer == "Finance says 84.", result.error
    assert result.plan.steps[0].answer["answer"] == "12 times 7 is 84."
    with pytest.raises(Exception, match="could not be started: .*401"):
        mcp_tools(MCPServer(url=http_mcp, headers={"Authorization": "Bearer wrong"}, timeout=30))


def test_run_with_mcp_plugs_decompose_mcp_in_over_stdio(work):
    inner = " ".join(serve_command("--agent", "finance"))
    outer = work / "outer_rules.py"
    outer.write_text(
        ADD_RULES.replace('"tool": "add"', '"tool": "finance"')
        .replace('{"a": 40, "b": 2}', json.dumps({"question": QUESTION}))
        .replace("40 and 2 make 42.", "Finance says 84.")
    )
    proc = cli(
        "run",
        "--json",
        "--model",
        "scripted:outer_rules.py",
        "Ask finance what 12 times 7 is",
        "--mcp",
        inner,
        cwd=work,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["answer"] == "Finance says 84."
    assert data["steps"][0]["tool"] == "finance" and data["steps"][0]["answer"]["answer"] == "12 times 7 is 84."


def test_run_chat_and_eval_take_an_mcp_server(work):
    server = [sys.executable, str(FIXTURE)]
    run = cli(
        "run",
        "--model",
        "scripted:add_rules.py",
        "--json",
        "--mcp",
        *server,
        "What is 40 plus 2?",
        cwd=work,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["steps"][0]["answer"] == 42
    chat = cli(
        "chat",
        "--model",
        "scripted:add_rules.py",
        "--mcp",
        " ".join(server),
        cwd=work,
        input="What is 40 plus 2?\n/exit\n",
        timeout=120,
    )
    assert chat.returncode == 0, chat.stderr
    assert "40 and 2 make 42." in chat.stdout
    (work / "q.jsonl").write_text(json.dumps({"question": "What is 40 plus 2?", "answer": "42"}) + "\n")
    ev = cli(
        "eval",
        "--model",
        "scripted:add_rules.py",
        "--json",
        "--out",
        "r.jsonl",
        "--mcp",
        *server,
        "q.jsonl",
        cwd=work,
        timeout=120,
    )
    assert ev.returncode == 0, ev.stderr
    row = json.loads((work / "r.jsonl").read_text().splitlines()[0])
    assert row["prediction"] == "40 and 2 make 42.", row


@pytest.mark.parametrize(
    "args, needle",
    [
        (["run", "--mcp", "no-such-mcp-server", "hi there"], "MCP server no-such-mcp-server could not be started"),
        (["run", "--mcp-url", "127.0.0.1:9/mcp", "hi"], "--mcp-url 127.0.0.1:9/mcp: not an http:// or https:// URL"),
        (["run", "hi", "--agent", "finance", "--mcp", "x y"], "--agent and --mcp cannot be used together"),
        (["mcp", "--agent", "nosuch"], "unknown agent 'nosuch'"),
        (["mcp", "--api-key-file", "keys.txt"], "API keys and rate limits apply to --http only"),
    ],
)
def test_mcp_usage_errors_are_one_line(work, args, needle):
    proc = cli(*args[:1], "--model", "scripted:add_rules.py", *args[1:], cwd=work, timeout=60)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("decompose: error:")]
    assert len(errors) == 1 and needle in errors[0], proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.server
def test_serve_offers_an_mcp_servers_tools_to_its_plain_agent(work):
    port = free_port()
    with subprocess.Popen(
        [
            sys.executable,
            "-m",
            "decompose.cli",
            "serve",
            "--port",
            str(port),
            "--db",
            f"sqlite:///{work / 'serve.sqlite3'}",
            "--model",
            "scripted:add_rules.py",
            "--mcp",
            sys.executable,
            str(FIXTURE),
        ],
        cwd=work,
        env=env(),
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        try:
            wait_for_port(port, proc)
            base = f"http://127.0.0.1:{port}"
            agents = {a["name"]: a for a in httpx.get(f"{base}/v1/agents", timeout=30).json()["agents"]}
            assert {"add", "record"} <= set(agents["decompose"]["tools"])
            reply = httpx.post(
                f"{base}/v1/chat/completions",
                timeout=120,
                json={"model": "decompose", "messages": [{"role": "user", "content": "What is 40 plus 2?"}]},
            )
            assert reply.status_code == 200, reply.text
            assert reply.json()["choices"][0]["message"]["content"] == "40 and 2 make 42."
        finally:
            proc.terminate()
            proc.wait(timeout=30)
