"""Does the decomposer adapter make the embedded model plan and answer tool questions right? Before and after.

    decompose train --build-data ../shared/data/train --synthetic 120 --gsm8k 0 --strategyqa 100 --out train-data
    python benchmarks/adapter_quality.py train-data/heldout.jsonl                 # the shipped adapter vs none
    python benchmarks/adapter_quality.py train-data/heldout.jsonl --adapter DIR --per-source 20

Each held-out tool row (sources "tools": training templates with new numbers, names and ids; "tools-unseen":
templates never trained on) is run end to end by an Orchestrator over the pack's tools, as `decompose run`
would: the plan is compared with the gold plan (valid, right tool + arguments in order, echoes of the question)
and the final answer with the gold plan's result (the gold plan run with the same tools: its last step's value
must be the run's last step's value, and one of its numbers must appear in the answer; held-out customers and
orders are the demo shop's, and a row whose gold plan still fails is left out of that column). Customer-service
tools run on a fresh demo shop in a temporary folder. Rows print as they finish; a table per system and source follows.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from decompose import Orchestrator, load_model
from decompose.agents import get_agent
from decompose.models.adapter import DEFAULT_ADAPTER
from decompose.plan import Plan
from decompose.scoring import leaf_numbers, numbers_in, said_yes, same_number, tool_verdict
from decompose.train.data import read_examples
from decompose.train.score import echoes, normal_value, spread, tool_calls


def tool_packs(shop: str) -> dict[frozenset[str], list]:
    """Each pack's tools, made once, by their names: the customer-service ones on a fresh demo shop."""
    from decompose.tools.calculator import calculator_tools

    packs = [
        get_agent("customer-service").make_tools(db_path=shop),
        get_agent("finance").make_tools(),
        calculator_tools(),
    ]
    return {frozenset(t.name for t in tools): tools for tools in packs}


def answer_right(answer: str, ours: Any, gold: Any) -> bool:
    """The run ended in the gold plan's value, and the answer reports it: the verdict of a yes/no tool (a dict
    with one bool field, such as `refund_eligibility`), else a number of it (when it has one)."""
    if normal_value(_plain(ours)) != normal_value(_plain(gold)):
        return False
    verdict = tool_verdict(_plain(gold))
    if verdict is not None:
        return said_yes(answer) == verdict
    targets = leaf_numbers(_plain(gold))
    return not targets or any(same_number(n, t) for t in targets for n in numbers_in(answer))


def _plain(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) and value[:1] in "[{" else value


async def run_row(orch: Orchestrator, gold: Orchestrator, example: Any) -> dict[str, Any]:
    gold_result = await gold.aexecute(
        Plan.from_data({"question": example.question, "steps": example.plan.spec()["steps"]})
    )
    gold_value = gold_result.plan.steps[-1].answer  # None: the gold plan itself failed (an unknown customer)
    result = await orch.arun(example.question)
    steps = result.plan.spec()["steps"] if result.plan else []
    last = result.plan.steps[-1].answer if result.plan and result.plan.steps else None
    return {
        "question": example.question,
        "source": example.source,
        "valid": result.plan is not None,
        "tool_exact": bool(steps) and tool_calls(steps) == tool_calls(example.plan.spec()["steps"]),
        "echo": echoes(steps, example.question),
        "answer": result.answer,
        "gold_value": gold_value,
        "gold_ran": gold_value is not None,
        "answer_right": result.error is None and answer_right(result.answer or "", last, gold_value),
        "plan": steps,
        "error": str(result.error) if result.error else None,
    }


async def evaluate(model: Any, examples: list, concurrency: int) -> list[dict[str, Any]]:
    gate = asyncio.Semaphore(concurrency)
    packs = tool_packs(str(Path(tempfile.mkdtemp(prefix="adapter-quality-")) / "shop.sqlite3"))

    async def one(example: Any) -> dict[str, Any]:
        async with gate:
            tools = packs[frozenset(example.tools)]  # a row names exactly its pack's tools
            record = await run_row(Orchestrator(model, tools=tools), Orchestrator(model, tools=tools), example)
            print(json.dumps({k: record[k] for k in ("source", "tool_exact", "answer_right", "question")}), flush=True)
            return record

    return list(await asyncio.gather(*(one(e) for e in examples)))


def per_source(examples: list, limit: int) -> list:
    """At most `limit` rows of each source, spread over its templates."""
    return (
        [e for source in ("tools", "tools-unseen") for e in spread([e for e in examples if e.source == source], limit)]
        if limit
        else []
    )


def table(name: str, records: list[dict[str, Any]]) -> None:
    for source in sorted({r["source"] for r in records}):
        rows = [r for r in records if r["source"] == source]
        rate = lambda key, among=rows: 100 * sum(bool(r[key]) for r in among) / max(1, len(among))  # noqa: E731
        ran = [r for r in rows if r["gold_ran"]]  # a final answer is judged only where the gold plan had one
        print(
            f"| {name} | {source} | {len(rows)} | {rate('valid'):.0f} % | {rate('tool_exact'):.0f} % | "
            f"{rate('answer_right', ran):.0f} % of {len(ran)} | {rate('echo'):.0f} % |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("held_out", help="heldout.jsonl written by `decompose train --build-data`")
    parser.add_argument("--adapter", default=str(DEFAULT_ADAPTER), help="adapter folder (default: the shipped one)")
    parser.add_argument("--per-source", type=int, default=40, help="rows per source at most (default 40)")
    parser.add_argument(
        "--before-per-source",
        type=int,
        default=10,
        help="rows per source for the model without the adapter (default 10: its long prompt is slow)",
    )
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--out", help="write every row's record to this JSONL")
    args = parser.parse_args()

    examples = [e for e in read_examples(args.held_out) if e.source in ("tools", "tools-unseen")]
    chosen = per_source(examples, args.per_source)
    if not chosen:
        sys.exit(f"{args.held_out} has no rows from the tool templates: write it with `decompose train --build-data`")
    results = {}
    for name, adapter, rows in (
        ("adapter", args.adapter, args.per_source),
        ("no adapter", "none", args.before_per_source),
    ):
        start = time.monotonic()
        model = load_model("smollm2", adapter=adapter)
        rows_chosen = per_source(chosen, rows)
        results[name] = asyncio.run(evaluate(model, rows_chosen, args.concurrency))
        print(f"{name}: {len(rows_chosen)} rows in {time.monotonic() - start:.0f} s", flush=True)
    print("\n| model | source | rows | valid plans | right tool + args | right final answer | echoes |")
    print("|---|---|---|---|---|---|---|")
    for name, records in results.items():
        table(name, records)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as out:
            for name, records in results.items():
                for record in records:
                    out.write(json.dumps({"model": name, **record}, default=str) + "\n")


if __name__ == "__main__":
    main()
