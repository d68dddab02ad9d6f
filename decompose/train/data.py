"""Training rows: `{"question", "plan", "tools"?}` in the project's own plan JSON, read, checked and written.

`tools` names the tools the decomposer is shown for that question (the pack it would run with); a row without
it is shown none. Every row is checked as the Orchestrator would check the plan: `Plan.from_data`, tools that
exist, and arguments that fit each tool's schema (a `{n}` reference stands for a value not known yet).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from langchain_core.tools import BaseTool

from decompose.errors import ConfigError, DecomposeError
from decompose.plan import REFERENCE, Plan
from decompose.tools.runner import validate_args

ROW_HINT = 'each line is {"question": "...", "plan": {"steps": [...]}, "tools": ["calculator", ...]}'


class TrainDataError(ConfigError):
    """A training file or row that cannot be used."""


@dataclass
class Example:
    question: str
    plan: Plan
    tools: list[str] = field(default_factory=list)
    # Where the row came from ("gsm8k", "strategyqa", "tools", "tools-unseen": a held-out template), so scores
    # can be read per kind of question; not shown to the model.
    source: str = ""

    def to_row(self) -> dict[str, Any]:
        row: dict[str, Any] = {"question": self.question, "plan": {"steps": self.plan.spec()["steps"]}}
        if self.tools:
            row["tools"] = self.tools
        if self.source:
            row["source"] = self.source
        return row


@functools.cache
def pack_tools() -> dict[str, BaseTool]:
    """Every tool of the ready packs (calculator, finance, customer service) by name: what rows may name."""
    from decompose.agents import list_agents

    return {t.name: t for agent in list_agents() for t in agent.make_tools(dry_run=True)}


@functools.cache
def tool_set(pack: str) -> tuple[str, ...]:
    """The tool names a decomposer is shown for `pack`: an agent's tools, or the calculator alone."""
    if pack == "calculator":
        return ("calculator",)
    from decompose.agents import get_agent

    return tuple(get_agent(pack).tool_names())


def check_row(row: Any, known: dict[str, BaseTool], where: str = "row") -> Example:
    """The row as an Example, or TrainDataError saying what is wrong with it."""
    if not isinstance(row, dict) or not isinstance(row.get("question"), str) or not row["question"].strip():
        raise TrainDataError(f'{where}: needs a non-empty "question" string', hint=ROW_HINT)
    tools = row.get("tools") or []
    if not isinstance(tools, list) or not all(isinstance(t, str) for t in tools):
        raise TrainDataError(f'{where}: "tools" must be a list of tool names', hint=ROW_HINT)
    if unknown := [t for t in tools if t not in known]:
        raise TrainDataError(
            f"{where}: unknown tool {unknown[0]!r}",
            hint="name tools of the packs (see `decompose agents`) or pass them with tools=[...]",
        )
    try:
        plan = Plan.from_data(row.get("plan"))
    except DecomposeError as exc:
        raise TrainDataError(f"{where}: {exc.args[0]}", hint=exc.hint or ROW_HINT) from None
    for step in plan.steps:
        if step.tool and step.tool not in tools:
            raise TrainDataError(
                f'{where}: step {step.id} calls {step.tool!r}, which is not in the row\'s "tools"',
                hint='list every tool the plan calls in "tools"',
            )
        if step.tool and (problem := validate_args(known[step.tool], _placeholders(step.args))):
            raise TrainDataError(f"{where}: step {step.id}: {problem}", hint="fix the step's args")
    return Example(row["question"].strip(), plan, tools, str(row.get("source") or ""))


def _placeholders(args: Any) -> Any:
    """Arguments with each `{n}` reference replaced by a value any field accepts: it is not known before the run."""
    if isinstance(args, dict):
        return {k: _placeholders(v) for k, v in args.items()}
    if isinstance(args, list):
        return [_placeholders(v) for v in args]
    return REFERENCE.sub("1", args) if isinstance(args, str) else args


def read_examples(path: str | Path, tools: Iterable[BaseTool] = ()) -> list[Example]:
    """Every row of a JSONL file, checked; TrainDataError names the first bad line."""
    path = Path(path)
    if not path.is_file():
        raise TrainDataError(
            f"training data {path} does not exist",
            hint="pass a JSONL of plans, e.g. one written by `decompose train --build-data`",
        )
    known = {**pack_tools(), **{t.name: t for t in tools}}
    examples = []
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise TrainDataError(f"{path}:{number} is not JSON ({exc.msg})", hint=ROW_HINT) from None
            examples.append(check_row(row, known, where=f"{path}:{number}"))
    if not examples:
        raise TrainDataError(f"training data {path} holds no rows", hint=ROW_HINT)
    return examples


def write_examples(path: str | Path, examples: Iterable[Example]) -> int:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with path.open("w", encoding="utf-8") as out:
        for example in examples:
            out.write(json.dumps(example.to_row(), ensure_ascii=False) + "\n")
            count += 1
    return count


def iter_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            if line.strip():
                yield json.loads(line)
