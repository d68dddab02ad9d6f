"""Scoring a decomposer on held-out rows: does it write valid plans, call the right tools with the right
arguments, take as many steps as the gold plan, and avoid merely echoing the question?

Plans are asked for as the Decomposer asks a trained model: the compact prompt, decoded under the plan's
grammar (`with_structured_output`), all rows at once so the local backend batches them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from langchain_core.tools import BaseTool

from decompose.chains.decompose import plan_schema_for
from decompose.errors import DecomposeError
from decompose.plan import same_question
from decompose.train.data import Example, check_row
from decompose.train.prompt import compact_messages

MAX_STEPS = 8


@dataclass
class Scores:
    rows: int
    valid: float  # plans that parse, validate and fit their tools' arguments
    echo: float  # plans with a step that asks the whole question again
    tool_rows: int  # rows whose gold plan calls tools: the denominator of tool_exact
    tool_exact: float  # ... whose plan makes exactly the gold tool calls, in order, with the same arguments
    steps_agree: float  # plans with as many steps as the gold plan
    by_source: dict[str, dict[str, Any]] = field(default_factory=dict)  # the same scores per row source

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def score_plans(
    model: Any, examples: Sequence[Example], known: dict[str, BaseTool], max_concurrency: int = 16
) -> tuple[Scores, list[dict[str, Any]]]:
    """Scores over `examples`, and one record per row (question, gold and predicted steps, verdicts)."""
    structured: dict[tuple[str, ...], Any] = {}  # one grammar per tool set
    calls = []
    for example in examples:
        names = tuple(example.tools)
        if names not in structured:  # the schema the Decomposer would ask this model for a plan under
            schema = plan_schema_for(model, [known[n] for n in names], MAX_STEPS)
            structured[names] = model.with_structured_output(schema, include_raw=True)
        calls.append((structured[names], compact_messages(example.question, [known[n] for n in names])))
    outputs = _invoke_all(calls, max_concurrency)
    records = [_judge(example, output, known) for example, output in zip(examples, outputs)]
    return summarize(records), records


def spread(rows: Sequence[Any], limit: int | None) -> list[Any]:
    """At most `limit` of `rows`, evenly spaced: a held-out file lists each template's rows together, so its
    first rows would all come from the first templates."""
    if limit is None or len(rows) <= limit:
        return list(rows)
    if limit <= 0:
        return []
    step = len(rows) / limit
    return [rows[int(i * step)] for i in range(limit)]


def _invoke_all(calls: list[tuple[Any, list]], max_concurrency: int) -> list[Any]:
    """Each call's output (an exception as itself): concurrent, so the backend batches the generations."""
    from concurrent.futures import ThreadPoolExecutor

    def one(call: tuple[Any, list]) -> Any:
        runnable, messages = call
        try:
            return runnable.invoke(messages)
        except DecomposeError as exc:
            return exc

    with ThreadPoolExecutor(max_workers=max_concurrency) as pool:
        return list(pool.map(one, calls))


def _judge(example: Example, output: Any, known: dict[str, BaseTool]) -> dict[str, Any]:
    gold = example.plan.spec()["steps"]
    record: dict[str, Any] = {
        "question": example.question,
        "source": example.source,
        "gold": gold,
        "plan": None,
        "error": None,
    }
    parsed = output.get("parsed") if isinstance(output, dict) else None
    if parsed is None:
        record["error"] = str(output if isinstance(output, Exception) else output.get("parsing_error"))
        return {**record, "valid": False, "echo": False, "tool_exact": False, "steps_agree": False}
    data = parsed.model_dump() if hasattr(parsed, "model_dump") else parsed
    try:
        plan = check_row({"question": example.question, "plan": data, "tools": example.tools}, known, where="plan").plan
    except DecomposeError as exc:
        record.update(plan=data.get("steps"), error=str(exc))
        return {
            **record,
            "valid": False,
            "echo": echoes(data.get("steps"), example.question),
            "tool_exact": False,
            "steps_agree": len(data.get("steps") or []) == len(gold),
        }
    steps = plan.spec()["steps"]
    record["plan"] = steps
    return {
        **record,
        "valid": True,
        "echo": echoes(steps, example.question),
        "tool_exact": tool_calls(steps) == tool_calls(gold),
        "steps_agree": len(steps) == len(gold),
    }


def echoes(steps: Any, question: str) -> bool:
    """True when a step without a tool merely repeats the whole question."""
    return any(
        isinstance(s, dict)
        and not s.get("tool")
        and isinstance(s.get("question"), str)
        and same_question(s["question"], question)
        for s in steps or []
    )


def tool_calls(steps: list[dict[str, Any]]) -> list[tuple[str, Any]]:
    """The plan's tool calls in order, each (tool, its arguments as `normal_value`): what must equal gold's."""
    return [(s["tool"], normal_value(s.get("args", {}))) for s in steps if s.get("tool")]


def normal_value(value: Any) -> Any:
    """Arguments compared as values: 6 == 6.0 == "6", "EUR" == "eur", spacing in expressions ignored."""
    if isinstance(value, dict):
        return {k: normal_value(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [normal_value(v) for v in value]
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return "".join(value.lower().split())
        return number if math.isfinite(number) else value
    return value


def summarize(records: Sequence[dict[str, Any]], *, per_source: bool = True) -> Scores:
    n = len(records)
    tool_records = [r for r in records if any(s.get("tool") for s in r["gold"])]

    def rate(key: str, rows: Sequence[dict[str, Any]]) -> float:
        return round(sum(bool(r[key]) for r in rows) / len(rows), 4) if rows else 0.0

    sources = sorted({r.get("source") or "" for r in records}) if per_source else []
    by_source = {
        s: asdict(summarize([r for r in records if (r.get("source") or "") == s], per_source=False))
        for s in sources
        if s and len(sources) > 1
    }
    for scores in by_source.values():
        del scores["by_source"]
    return Scores(
        rows=n,
        valid=rate("valid", records),
        echo=rate("echo", records),
        tool_rows=len(tool_records),
        tool_exact=rate("tool_exact", tool_records),
        steps_agree=rate("steps_agree", records),
        by_source=by_source,
    )
