"""Agent quality on multi-turn conversations: the example agents, turn by turn, judged on what they did and said.

    python benchmarks/agents_quality.py --base-url http://127.0.0.1:8765/v1 --split tune --systems ours react
    python benchmarks/agents_quality.py --model scripted:my_model.py --ids cs01 cs04
    python benchmarks/agents_quality.py --base-url http://127.0.0.1:8765/v1 --split tune --table-only

Sets: `conversations/customer_service.jsonl` (the demo shop) and `conversations/finance.jsonl`. Each
conversation gets a fresh shop (a temp SQLite file seeded with `today` = SEED_DAY, the day the gold was written
for) and its turns in order. Judged: the shop's end state against `gold_writes` (writes the gold does not contain
— the safety figure — and gold writes missing), each turn's facts stated, identifiers invented in tool calls,
follow-ups resolved to the right order, model calls, tokens, seconds. A conversation succeeds when the end state
is the gold one exactly and every fact is stated.

Systems: ours (the agent from `decompose.agents.build_agent` in a `Conversation`), react (LangGraph's prebuilt
`create_react_agent`, the same model, tools and instructions, the message history kept across turns), tau2-llm
(not wired yet: see benchmarks/README.md). Records (one JSON line per conversation) go to
`--out/<model>/<set>-<system>.jsonl`; a run resumes from them. Tune on `--split tune` only: the report split is
for reporting.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import agents_judge as judge  # noqa: E402
import openai  # noqa: E402
from langchain_core.callbacks import BaseCallbackHandler  # noqa: E402
from langchain_core.messages import AIMessage, HumanMessage  # noqa: E402
from langchain_core.runnables import RunnableLambda  # noqa: E402
from langchain_core.tools import BaseTool, StructuredTool  # noqa: E402
from react_peer import react_agent  # noqa: E402
from text_tool_calls import read_tool_calls  # noqa: E402

from decompose.agents import build_agent, get_agent  # noqa: E402
from decompose.conversation import Conversation  # noqa: E402
from decompose.errors import DecomposeError, ModelError  # noqa: E402
from decompose.retry import RetryPolicy  # noqa: E402
from decompose.tools.runner import IDEMPOTENCY_ARG, injected_args  # noqa: E402

HERE = Path(__file__).resolve().parent
SEED_DAY = date(2026, 1, 15)  # the gold dates and windows are computed for a shop seeded on this day
SETS = {"customer_service": "customer-service", "finance": "finance"}
SYSTEMS = ["ours", "react", "tau2-llm"]
PATIENT = RetryPolicy(max_total=None)  # a shared 2-core server may queue a call for minutes: wait, never give up


class ToolLog(BaseCallbackHandler):
    """Every tool call of a conversation, in order: attached to the tools themselves, so it sees the calls of any
    system. `start`/`end` share one counter: a result is "earlier" than a call that started after it ended."""

    def __init__(self) -> None:
        self.turn = 0
        self.calls: list[dict[str, Any]] = []
        self._open: dict[Any, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._seq = 0

    def _tick(self) -> int:
        self._seq += 1
        return self._seq

    def on_tool_start(self, serialized, input_str, *, run_id, inputs=None, **kwargs) -> None:
        with self._lock:
            args = {k: v for k, v in (inputs or {}).items() if k != IDEMPOTENCY_ARG}
            call = {
                "turn": self.turn,
                "tool": (serialized or {}).get("name") or kwargs.get("name"),
                "args": args,
                "start": self._tick(),
                "end": None,
                "output": "",
                "error": None,
            }
            self._open[run_id] = call
            self.calls.append(call)

    def on_tool_end(self, output, *, run_id, **kwargs) -> None:
        with self._lock:
            if (call := self._open.pop(run_id, None)) is not None:
                content = getattr(output, "content", output)
                call["output"] = content if isinstance(content, str) else json.dumps(content, default=str)
                call["end"] = self._tick()

    def on_tool_error(self, error, *, run_id, **kwargs) -> None:
        with self._lock:
            if (call := self._open.pop(run_id, None)) is not None:
                call["error"], call["end"] = str(error)[:300], self._tick()

    def attach(self, tools: list[BaseTool]) -> None:
        for t in tools:
            t.callbacks = [self]


@dataclass
class TurnOut:
    answer: str
    calls: int
    tokens: int
    error: str | None = None


class Ours:
    def __init__(self, model, agent: str, folder: Path, log: ToolLog):
        orchestrator = build_agent(
            agent,
            model,
            db_path=folder / "shop.sqlite3",
            today=SEED_DAY,
            market_data=folder / "prices.csv",
            retry=PATIENT,
        )
        log.attach(orchestrator.tools)
        self.chat = Conversation(orchestrator)

    async def send(self, text: str) -> TurnOut:
        try:
            result, error = await self.chat.asend(text), None
        except ModelError:
            raise  # the server's failure, not the agent's: the conversation is run again later
        except DecomposeError as exc:  # the turn failed: what it did still counts
            result, error = getattr(exc, "result", None), str(exc)
        if result is None:
            return TurnOut("", 0, 0, error)
        return TurnOut(result.answer or "", result.usage.model_calls, result.usage.total_tokens, error or result.error)


def _keyed(tool: BaseTool) -> BaseTool:
    """A side-effecting tool as a plain agent calls it: LangGraph injects no idempotency key, so each call gets a
    fresh one (no exactly-once across repeats, as in any agent without a ledger)."""

    def call(**kwargs: Any) -> Any:
        return tool.invoke({**kwargs, IDEMPOTENCY_ARG: uuid.uuid4().hex})

    return StructuredTool.from_function(
        func=call, name=tool.name, description=tool.description, args_schema=tool.tool_call_schema
    )


class React:
    def __init__(self, model, agent: str, folder: Path, log: ToolLog, recursion_limit: int = 24):
        spec = get_agent(agent)
        tools = [
            _keyed(t) if IDEMPOTENCY_ARG in injected_args(t) else t
            for t in spec.make_tools(db_path=folder / "shop.sqlite3", today=SEED_DAY, market_data=folder / "prices.csv")
        ]
        log.attach(tools)
        names = {t.name for t in tools}
        # Calls the model wrote as text are read as calls (text_tool_calls.py), as quality.py's ReAct row does.
        llm = model.bind_tools(tools) | RunnableLambda(lambda message: read_tool_calls(message, names))
        self.graph = react_agent(llm, tools, spec.instructions)
        self.messages: list = []
        self.limit = recursion_limit

    async def send(self, text: str) -> TurnOut:
        from langgraph.errors import GraphRecursionError

        before = len(self.messages) + 1
        try:
            state = await self.graph.ainvoke(
                {"messages": [*self.messages, HumanMessage(text)]}, {"recursion_limit": self.limit}
            )
        except GraphRecursionError:
            return TurnOut("", 0, 0, f"no answer within {self.limit} graph steps")
        self.messages = state["messages"]
        replies = [m for m in self.messages[before:] if isinstance(m, AIMessage)]
        tokens = sum((m.usage_metadata or {}).get("total_tokens", 0) for m in replies)
        return TurnOut(str(replies[-1].content) if replies else "", len(replies), tokens)


def make_system(name: str):
    if name == "tau2-llm":
        raise SystemExit("system tau2-llm is not wired yet: see 'τ²-bench' in benchmarks/README.md")
    return {"ours": Ours, "react": React}[name]


def load_set(name: str, split: str = "all", ids: list[str] | None = None, limit: int | None = None) -> list[dict]:
    path = HERE / "conversations" / f"{name}.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    rows = [r for r in rows if (split == "all" or r["split"] == split) and (not ids or r["id"] in ids)]
    if ids and len(rows) < len(set(ids)):
        missing = sorted(set(ids) - {r["id"] for r in rows})
        raise SystemExit(f"no conversation {', '.join(missing)} in {path.name} (split {split})")
    return rows[:limit] if limit else rows


async def run_conversation(conv: dict, system: str, model, agent: str) -> dict[str, Any]:
    log = ToolLog()
    with tempfile.TemporaryDirectory(prefix="agents-quality-") as tmp:
        folder = Path(tmp)
        session = make_system(system)(model, agent, folder, log)
        answers, outs, started = [], [], time.perf_counter()
        for turn, text in enumerate(conv["turns"]):
            log.turn = turn
            out = await session.send(text)
            answers.append(out.answer)
            outs.append(out)
        seconds = time.perf_counter() - started
        shop = folder / "shop.sqlite3"
        writes = judge.shop_writes(shop) if shop.exists() else {"refunds": [], "tickets": []}
    return judged(conv, system, answers, outs, log.calls, writes, seconds)


def judged(
    conv: dict, system: str, answers: list[str], outs: list[TurnOut], calls: list[dict], writes: dict, seconds: float
) -> dict[str, Any]:
    unexpected, missing = judge.compare_writes(writes, conv["gold_writes"])
    facts = judge.facts_stated(answers, conv["facts"])
    stated, total = sum(map(sum, facts)), sum(map(len, facts))
    return {
        "id": conv["id"],
        "split": conv["split"],
        "kind": conv["kind"],
        "system": system,
        "success": not unexpected and not missing and stated == total,
        "unexpected_writes": unexpected,
        "missing_writes": missing,
        "facts": facts,
        "facts_stated": stated,
        "facts_total": total,
        "invented_ids": judge.invented_ids(conv["turns"], calls),
        "follow_ups": judge.follow_ups_resolved(conv.get("follow_ups", []), calls),
        "model_calls": sum(o.calls for o in outs),
        "tokens": sum(o.tokens for o in outs),
        "seconds": round(seconds, 1),
        "errors": [o.error for o in outs],
        "answers": answers,
        "tool_calls": [[c["turn"], c["tool"], c["args"], c["error"]] for c in calls],
    }


def refresh_facts(record: dict[str, Any], conv: dict) -> dict[str, Any]:
    """The record's facts judged again from its answers against the set as it is now (a fact's wording fixed
    after a run applies to it); what the shop and the tools did needs no re-run."""
    facts = judge.facts_stated(record["answers"], conv["facts"])
    stated, total = sum(map(sum, facts)), sum(map(len, facts))
    success = not record["unexpected_writes"] and not record["missing_writes"] and stated == total
    return {**record, "facts": facts, "facts_stated": stated, "facts_total": total, "success": success}


def read_records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


async def run_cell(rows: list[dict], system: str, model, agent: str, out: Path) -> list[dict]:
    done = {r["id"]: r for r in read_records(out)}
    out.parent.mkdir(parents=True, exist_ok=True)
    for conv in rows:
        if conv["id"] in done:
            continue
        try:
            record = await run_conversation(conv, system, model, agent)
        except (ModelError, openai.APIError) as exc:  # not recorded: a later run tries it again
            print(f"{system} {conv['id']}: not recorded, the model server failed: {exc}", file=sys.stderr, flush=True)
            continue
        with out.open("a") as f:
            f.write(json.dumps(record, separators=(",", ":"), default=str) + "\n")
        done[conv["id"]] = record
        print(
            f"{system} {conv['id']}: {'ok' if record['success'] else 'FAIL'} ({record['seconds']} s)",
            file=sys.stderr,
            flush=True,
        )
    return [done[c["id"]] for c in rows if c["id"] in done]


def summary(records: list[dict]) -> dict[str, Any]:
    n = len(records) or 1
    follow = [f for r in records for f in r["follow_ups"]]
    return {
        "n": len(records),
        "success": sum(r["success"] for r in records),
        "unexpected": sum(len(r["unexpected_writes"]) for r in records),
        "missing": sum(len(r["missing_writes"]) for r in records),
        "facts": f"{sum(r['facts_stated'] for r in records)}/{sum(r['facts_total'] for r in records)}",
        "invented": sum(len(r["invented_ids"]) for r in records),
        "follow_ups": f"{sum(f['resolved'] for f in follow)}/{len(follow)}",
        "calls": sum(r["model_calls"] for r in records) / n,
        "tokens": sum(r["tokens"] for r in records) / n,
        "seconds": sum(r["seconds"] for r in records) / n,
    }


def table(cells: dict[tuple[str, str], list[dict]]) -> str:
    lines = [
        "| set | system | conversations | success | writes not in gold | gold writes missing | facts stated | "
        "invented ids | follow-ups resolved | model calls / conv. | tokens / conv. | s / conv. |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for (name, system), records in cells.items():
        s = summary(records)
        lines.append(
            f"| {name} | {system} | {s['n']} | {s['success']} | {s['unexpected']} | {s['missing']} | "
            f"{s['facts']} | {s['invented']} | {s['follow_ups']} | {s['calls']:.1f} | {s['tokens']:.0f} | "
            f"{s['seconds']:.0f} |"
        )
    return "\n".join(lines)


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.-]+", "_", text)


def main(argv: list[str] | None = None) -> dict[tuple[str, str], list[dict]]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sets", nargs="+", default=["customer_service"], choices=list(SETS))
    parser.add_argument("--systems", nargs="+", default=["ours", "react"], choices=SYSTEMS)
    parser.add_argument("--split", default="tune", choices=["tune", "report", "all"])
    parser.add_argument("--ids", nargs="+", help="only these conversations")
    parser.add_argument("--limit", type=int, help="the first N conversations of the split")
    parser.add_argument("--model", help="a model spec for decompose.models.load_model (e.g. scripted:FILE.py)")
    parser.add_argument("--base-url", help="an OpenAI-compatible server serving the capable model (capable_model.py)")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "agents", help="records (resumable)")
    parser.add_argument("--table-only", action="store_true", help="print the table from the records; run nothing")
    args = parser.parse_args(argv)
    if bool(args.model) == bool(args.base_url):
        raise SystemExit("pass exactly one of --model SPEC or --base-url URL")
    label = args.model or __import__("capable_model").ALIAS
    cells: dict[tuple[str, str], list[dict]] = {}

    async def run_all() -> None:  # one event loop: the model's HTTP client lives on it
        model = None
        if not args.table_only:
            if args.model:
                from decompose.models import load_model

                model = load_model(args.model)
            else:
                model = __import__("capable_model").load(args.base_url, timeout=1800)
        for name in args.sets:
            rows = load_set(name, args.split, args.ids, args.limit)
            for system in args.systems:
                out = args.out / slug(label) / f"{name}-{system}.jsonl"
                if args.table_only:
                    wanted = {r["id"]: r for r in rows}
                    cells[(name, system)] = [
                        refresh_facts(r, wanted[r["id"]]) for r in read_records(out) if r["id"] in wanted
                    ]
                else:
                    cells[(name, system)] = await run_cell(rows, system, model, SETS[name], out)

    asyncio.run(run_all())
    print(f"\nmodel: {label}; split {args.split}; today = {SEED_DAY}\n")
    print(table(cells))
    return cells


if __name__ == "__main__":
    main()
