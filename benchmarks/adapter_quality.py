"""Does the decomposer adapter make the embedded model plan and answer tool questions right, on questions the
training data never saw? Judged as tau-bench judges an agent: writes by the shop's end state.

    python benchmarks/adapter_quality.py                                   # the shipped adapter, every source
    python benchmarks/adapter_quality.py --adapter DIR --per-source 10 --sources handwritten tools-unseen
    python benchmarks/adapter_quality.py --adapter none --per-source 5    # the model without an adapter

Sources: `handwritten` (benchmarks/adapter_heldout/handwritten.jsonl: questions written by hand in a customer's
or an analyst's own words over the three packs, with the gold tool calls, the answer's key facts and, for the
shop, the gold end state), `tools-unseen` (the held-out templates: tool combinations and wordings never trained
on) and `tools` (the training templates with new numbers, names and ids; a question that is a training question
is left out). Template rows are drawn as `decompose train --build-data` draws its held-out file.

Each row runs end to end as `decompose run` would (`--agent customer-service`, `--agent finance`, or the
calculator alone), on a fresh demo shop of its own (seeded on SEED_DAY, so dates are the gold's); the gold of a
template row runs on another fresh shop. Judged per row:
* right tool + arguments: the calls the run made, in order, are the gold's (handwritten: each gold argument equal,
  free text such as a refund's reason not compared, or the call giving the gold call's result; templates: the
  planned calls equal the gold plan's);
* right final answer: handwritten, every key fact stated (a number up to rounding); templates, the run ended in
  the gold plan's value and the answer states the gold result's verdict, or one of its numbers that the question
  did not already hold (an order id echoed from the question does not pass); a write row also needs the gold end
  state;
* writes right by end state: the shop's refunds and tickets after the run are the gold's, exactly;
* writes not in gold: refunds or tickets the gold does not make (on any row: a refund nobody asked for).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import agents_judge as judge  # noqa: E402

from decompose import Orchestrator, load_model  # noqa: E402
from decompose.agents import build_agent, get_agent  # noqa: E402
from decompose.errors import DecomposeError, ModelError  # noqa: E402
from decompose.models.adapter import DEFAULT_ADAPTER  # noqa: E402
from decompose.plan import Plan, resolve_args  # noqa: E402
from decompose.scoring import leaf_numbers, numbers_in, said_yes, same_number, tool_verdict  # noqa: E402
from decompose.tools.calculator import calculator_tools  # noqa: E402
from decompose.train.data import Example  # noqa: E402
from decompose.train.score import echoes, normal_value, spread, tool_calls  # noqa: E402

HERE = Path(__file__).resolve().parent
HANDWRITTEN = HERE / "adapter_heldout" / "handwritten.jsonl"
SOURCES = ("handwritten", "tools-unseen", "tools")
SEED_DAY = date(2026, 1, 15)  # the handwritten gold's dates and refund windows are a shop seeded on this day
FREE_TEXT = {"reason", "subject", "body", "query", "limit"}  # arguments whose wording is the model's own


# --- rows ------------------------------------------------------------------------------------------------------


def handwritten_rows(path: Path = HANDWRITTEN) -> list[dict[str, Any]]:
    return [{**json.loads(line), "source": "handwritten"} for line in path.read_text().splitlines() if line.strip()]


def template_rows(source: str, per_template: int = 4, seed: int = 0) -> list[dict[str, Any]]:
    """The held-out template rows `decompose train --build-data` writes (customers and orders the shop's)."""
    from decompose.train.templates import synthetic_examples

    if source == "tools-unseen":
        examples = synthetic_examples(per_template, held_out=True, seed=seed + 1, shop_share=1.0)
    else:
        trained = {e.question for e in synthetic_examples(120, seed=seed)}  # what the shipped adapter saw
        examples = [
            e for e in synthetic_examples(per_template, seed=seed + 2, shop_share=1.0) if e.question not in trained
        ]
    return [{"question": e.question, "example": e, "pack": pack_of(e), "source": source} for e in examples]


def pack_of(example: Example) -> str:
    names = set(example.tools)
    return "customer-service" if "issue_refund" in names else "finance" if "npv" in names else "calculator"


# --- running ---------------------------------------------------------------------------------------------------


def orchestrator(model: Any, pack: str, shop: Path) -> Orchestrator:
    """The row's runner, as `decompose run` builds it: an agent on its own shop, or the calculator alone."""
    if pack == "calculator":
        return Orchestrator(model, tools=calculator_tools())
    return build_agent(pack, model, db_path=shop, today=SEED_DAY)


def pack_tools(pack: str, shop: Path) -> dict[str, Any]:
    tools = calculator_tools() if pack == "calculator" else get_agent(pack).make_tools(db_path=shop, today=SEED_DAY)
    return {t.name: t for t in tools}


async def run(orch: Orchestrator, question: str) -> tuple[Any, str | None]:
    try:
        result = await orch.arun(question)
    except ModelError:
        raise
    except DecomposeError as exc:
        return exc.result, str(exc)
    return result, str(result.error) if result.error else None


def made_calls(result: Any) -> list[dict[str, Any]]:
    """The tool calls a run made, in order, with the arguments each was called with (references resolved) and
    its result."""
    if result is None or result.plan is None:
        return []
    answers = {s.id: s.answer for s in result.plan.steps if s.status == "done"}
    calls = []
    for s in (s for s in result.plan.steps if s.tool):
        try:
            args = resolve_args(s.args or {}, answers)
        except DecomposeError:  # a reference to a step that did not run
            args = s.args or {}
        calls.append({"tool": s.tool, "args": args, "answer": s.answer, "status": s.status})
    return calls


def shop_writes(shop: Path) -> dict[str, list]:
    return judge.shop_writes(shop) if shop.exists() else {"refunds": [], "tickets": []}


def compare_writes_of(shop: Path, gold: dict[str, list]) -> tuple[list[dict], list[dict]]:
    """(writes in the shop the gold does not make, gold writes missing)."""
    return judge.compare_writes(shop_writes(shop), gold)


async def run_row(model: Any, row: dict[str, Any], folder: Path) -> dict[str, Any]:
    shop = folder / "shop.sqlite3"
    result, error = await run(orchestrator(model, row["pack"], shop), row["question"])
    steps = result.plan.spec()["steps"] if result is not None and result.plan is not None else []
    answer = (result.answer if result is not None else None) or ""
    record: dict[str, Any] = {
        "source": row["source"],
        "id": row.get("id"),
        "question": row["question"],
        "valid": bool(steps),
        "echo": echoes(steps, row["question"]),
        "answer": answer,
        "plan": steps,
        "error": error,
    }
    if row["source"] == "handwritten":
        gold_writes = row.get("gold_writes", {"refunds": [], "tickets": []})
        calls = made_calls(result)
        record["tool_exact"] = calls_match(calls, row["calls"], row["pack"], folder / "gold")
        stated = error is None and all(fact_stated(answer, fact) for fact in row["key"])
    else:
        example: Example = row["example"]
        gold_shop = folder / "gold" / "shop.sqlite3"
        gold_shop.parent.mkdir(exist_ok=True)
        gold_plan = Plan.from_data({"question": row["question"], "steps": example.plan.spec()["steps"]})
        gold = await orchestrator(model, row["pack"], gold_shop).aexecute(gold_plan)
        gold_value = gold.plan.steps[-1].answer  # None: the gold plan itself failed (an unknown customer)
        gold_writes = shop_writes(gold_shop)
        record["tool_exact"] = bool(steps) and tool_calls(steps) == tool_calls(example.plan.spec()["steps"])
        record["gold_ran"] = gold_value is not None
        last = result.plan.steps[-1].answer if result is not None and result.plan and result.plan.steps else None
        stated = error is None and gold_value is not None and value_stated(answer, last, gold_value, row["question"])
    unexpected, missing = compare_writes_of(shop, gold_writes)
    record["writes"] = bool(gold_writes["refunds"] or gold_writes["tickets"])
    record["write_right"] = not unexpected and not missing
    record["unexpected_writes"] = unexpected
    record["answer_right"] = stated and (record["write_right"] or not record["writes"])
    return record


def calls_match(calls: list[dict[str, Any]], gold: list[dict[str, Any]], pack: str, folder: Path) -> bool:
    """The run made the gold's calls in order: each gold argument equal (free text aside), or the same result."""
    if [c["tool"] for c in calls] != [g["tool"] for g in gold]:
        return False
    return all(_same_call(c, g, pack, folder) for c, g in zip(calls, gold))


def _same_call(call: dict[str, Any], gold: dict[str, Any], pack: str, folder: Path) -> bool:
    args = {k: v for k, v in gold["args"].items() if k not in FREE_TEXT}
    if all(normal_value(call["args"].get(k)) == normal_value(v) for k, v in args.items()):
        return True
    if call["status"] != "done" or gold["tool"] in ("issue_refund", "open_ticket"):
        return False  # a write's arguments are what it does: they must be the gold's
    folder.mkdir(exist_ok=True)
    tools = pack_tools(pack, folder / "lookup.sqlite3")
    try:
        expected = tools[gold["tool"]].invoke(gold["args"])
    except Exception:  # noqa: BLE001 - a gold call that fails matches nothing
        return False
    return normal_value(_plain(call["answer"])) == normal_value(_plain(expected)) or _numbers_agree(
        call["answer"], expected
    )


def _numbers_agree(ours: Any, gold: Any) -> bool:
    a, b = leaf_numbers(_plain(ours)), leaf_numbers(_plain(gold))
    return bool(b) and len(a) == len(b) and all(same_number(x, y) for x, y in zip(a, b))


def fact_stated(answer: str, alternatives: list[str]) -> bool:
    """One key fact: a number as a number (up to rounding), else as `agents_judge.states` reads it."""
    for alt in alternatives:
        try:
            figure = float(alt)
        except ValueError:
            if judge.states(answer, [alt]):
                return True
            continue
        if any(same_number(n, figure) for n in numbers_in(answer)):
            return True
    return False


def value_stated(answer: str, ours: Any, gold: Any, question: str) -> bool:
    """The run ended in the gold plan's value and the answer reports it: the verdict of a yes/no tool, else one
    of the gold result's numbers that the question does not hold already."""
    if normal_value(_plain(ours)) != normal_value(_plain(gold)):
        return False
    verdict = tool_verdict(_plain(gold))
    if verdict is not None:
        return said_yes(answer) == verdict
    asked = numbers_in(question)
    targets = [t for t in leaf_numbers(_plain(gold)) if not any(same_number(t, q) for q in asked)]
    return bool(targets) and any(same_number(n, t) for t in targets for n in numbers_in(answer))


def _plain(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) and value[:1] in "[{" else value


async def evaluate(model: Any, rows: list[dict[str, Any]], concurrency: int) -> list[dict[str, Any]]:
    gate = asyncio.Semaphore(concurrency)

    async def one(row: dict[str, Any]) -> dict[str, Any]:
        async with gate:
            with tempfile.TemporaryDirectory(prefix="adapter-quality-") as tmp:
                record = await run_row(model, row, Path(tmp))
            keys = ("source", "id", "tool_exact", "answer_right", "write_right", "question")
            print(json.dumps({k: record.get(k) for k in keys}), flush=True)
            return record

    return list(await asyncio.gather(*(one(r) for r in rows)))


# --- the table -------------------------------------------------------------------------------------------------


def summary(records: list[dict[str, Any]]) -> dict[str, Any]:
    def pct(rows: list[dict[str, Any]], key: str) -> float:
        return round(100 * sum(bool(r[key]) for r in rows) / len(rows), 1) if rows else 0.0

    judged = [r for r in records if r.get("gold_ran", True)]
    writes = [r for r in records if r["writes"]]
    return {
        "rows": len(records),
        "valid": pct(records, "valid"),
        "tool_exact": pct(records, "tool_exact"),
        "answer_right": pct(judged, "answer_right"),
        "answer_rows": len(judged),
        "write_right": pct(writes, "write_right"),
        "write_rows": len(writes),
        "unexpected_writes": sum(len(r["unexpected_writes"]) for r in records),
        "echo": pct(records, "echo"),
    }


def table(name: str, records: list[dict[str, Any]]) -> list[str]:
    lines = []
    for source in [s for s in SOURCES if any(r["source"] == s for r in records)]:
        s = summary([r for r in records if r["source"] == source])
        lines.append(
            f"| {name} | {source} | {s['rows']} | {s['valid']:.0f} % | {s['tool_exact']:.0f} % | "
            f"{s['answer_right']:.0f} % of {s['answer_rows']} | "
            + (f"{s['write_right']:.0f} % of {s['write_rows']}" if s["write_rows"] else "–")
            + f" | {s['unexpected_writes']} | {s['echo']:.0f} % |"
        )
    return lines


HEADER = [
    "| adapter | source | rows | valid plans | right tool + args | right final answer | writes right (end state) "
    "| writes not in gold | echoes |",
    "|---|---|---|---|---|---|---|---|---|",
]


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--adapter", default=str(DEFAULT_ADAPTER), help="adapter folder, or none (default: shipped)")
    parser.add_argument("--model", default="smollm2", help="the local model the adapter is for (default smollm2)")
    parser.add_argument("--sources", nargs="+", choices=SOURCES, default=list(SOURCES))
    parser.add_argument("--per-source", type=int, help="rows per source at most, spread over it (default: all)")
    parser.add_argument("--handwritten", type=Path, default=HANDWRITTEN)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--out", type=Path, help="write every row's record to this JSONL")
    args = parser.parse_args(argv)

    rows = []
    for source in args.sources:
        found = handwritten_rows(args.handwritten) if source == "handwritten" else template_rows(source)
        rows += spread(found, args.per_source)
    start = time.monotonic()
    model = load_model(args.model, adapter=args.adapter)
    records = asyncio.run(evaluate(model, rows, args.concurrency))
    print(f"{len(rows)} rows in {time.monotonic() - start:.0f} s", flush=True)
    name = "none" if args.adapter == "none" else Path(args.adapter).name
    print("\n" + "\n".join([*HEADER, *table(name, records)]))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        with args.out.open("w", encoding="utf-8") as out:
            for record in records:
                out.write(json.dumps({"adapter": name, **record}, default=str) + "\n")
    return records


if __name__ == "__main__":
    main()
