"""Public decompositions as training rows: GSM8K solutions (calculator steps) and StrategyQA decompositions.

GSM8K writes each calculation of a solution as `<<48/2=24>>`: each becomes a calculator step, and a number in a
later calculation that is an earlier step's result (and not a number of the question) becomes `{n}`. A row is
kept only when the calculator, run on the plan, reproduces every annotated result and the final answer.
StrategyQA's decompositions refer to earlier steps as `#2`: that is `{2}` here. Neither source has tools
besides the calculator, so a converted row shows the decomposer only that.
"""

from __future__ import annotations

import math
import re
from typing import Any

from decompose.errors import DecomposeError
from decompose.plan import Plan
from decompose.tools.calculator import evaluate
from decompose.train.data import Example

_CALCULATION = re.compile(r"<<([^<>=]+)=([^<>]*)>>")
# The calculation as a solution line shows it: " = $<<48/2=24>>24" (the result must not leak into the step).
_SHOWN_CALCULATION = re.compile(r"\s*=?\s*\$?\s*<<[^<>]*>>\$?[\d.,]*")
_NUMBER = re.compile(r"(?<![\d.])\d+(?:\.\d+)?(?![\d.])")
_QUESTION_NUMBER = re.compile(r"\d[\d,]*(?:\.\d+)?")
_MAX_STEP_QUESTION = 200
_STRATEGY_REFERENCE = re.compile(r"#(\d+)")


def gsm8k_example(row: dict[str, Any]) -> Example | None:
    """A GSM8K row (`question`, `answer` with `<<...>>` calculations and `#### final`) as calculator steps;
    None when it has no calculation or the calculator does not reproduce its results."""
    question, solution = row["question"].strip(), row["answer"]
    given = {_value(n.replace(",", "")) for n in _QUESTION_NUMBER.findall(question)}
    steps: list[dict[str, Any]] = []
    results: list[tuple[float, int]] = []  # (value, step id), in order
    final = None
    for line in solution.splitlines():
        if line.startswith("####"):
            final = _value(line[4:].strip().replace(",", ""))
            continue
        for match in _CALCULATION.finditer(line):
            expression, shown = match.group(1).strip(), _value(match.group(2).strip().replace(",", ""))
            if shown is None or not _same(_calculate(expression), shown):
                return None
            step_id = len(steps) + 1
            with_references = _NUMBER.sub(lambda m: _reference(m.group(), results, given), expression)
            steps.append(
                {
                    "id": step_id,
                    "question": _step_question(line, with_references, steps),
                    "tool": "calculator",
                    "args": {"expression": with_references},
                }
            )
            results.append((shown, step_id))
    if not steps or final is None or not _same(results[-1][0], final):
        return None
    return Example(question, Plan.from_data({"steps": steps}), ["calculator"], "gsm8k")


def _reference(number: str, results: list[tuple[float, int]], given: set[float | None]) -> str:
    value = _value(number)
    if value in given:  # a number of the question is itself, even when a step happens to give it too
        return number
    for result, step_id in reversed(results):
        if _same(result, value):
            return f"{{{step_id}}}"
    return number


def _step_question(line: str, expression: str, earlier: list[dict[str, Any]]) -> str:
    """The solution line without its calculations; when that says nothing new, the calculation asked plainly."""
    text = " ".join(_SHOWN_CALCULATION.sub("", line).split())
    if not text or len(text) > _MAX_STEP_QUESTION or any(s["question"] == text for s in earlier):
        return f"What is {expression}?"
    return text


def _calculate(expression: str) -> float | None:
    try:
        value = evaluate(expression)
    except DecomposeError:
        return None
    return float(value) if isinstance(value, (int, float)) else None


def _value(text: str) -> float | None:
    try:
        value = float(text.lstrip("$"))
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _same(a: float | None, b: float | None) -> bool:
    return a is not None and b is not None and math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-6)


def strategyqa_example(row: dict[str, Any]) -> Example | None:
    """A StrategyQA row's gold decomposition as model steps (`#n` → `{n}`); None without one."""
    decomposition = [s.strip() for s in row.get("decomposition") or [] if s and s.strip()]
    if not decomposition:
        return None
    steps = [{"id": i, "question": _STRATEGY_REFERENCE.sub(r"{\1}", text)} for i, text in enumerate(decomposition, 1)]
    try:
        plan = Plan.from_data({"steps": steps})
    except DecomposeError:  # a reference to a later or missing step: not a plan to learn from
        return None
    return Example(row["question"].strip(), plan, [], "strategyqa")
