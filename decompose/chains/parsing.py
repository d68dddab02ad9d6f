"""Turn what a model wrote into plan data: JSON (bare, fenced, or inside prose) or a plain numbered list."""

from __future__ import annotations

import json
import re
from typing import Any

from decompose.errors import PlanError

FENCE = re.compile(r"```(?:json|JSON)?\s*(.*?)```", re.DOTALL)
LIST_ITEM = re.compile(r"^\s*(?:(?:step\s*)?(\d+)\s*[.):]|[-*•])\s+(.+?)\s*$", re.IGNORECASE)
HASH_REF = re.compile(r"#(\d+)\b")  # Break/QDMR-style "#1" references, common in small models' lists
TRAILING_COMMA = re.compile(r",\s*([}\]])")


def extract_plan_data(text: str) -> Any:
    """Best-effort: return a dict/list for `Plan.from_data`, or raise PlanError saying what was wrong."""
    text = (text or "").strip()
    if not text:
        raise PlanError("the model replied with nothing")
    for candidate in _json_candidates(text):
        for attempt in (candidate, TRAILING_COMMA.sub(r"\1", candidate)):
            try:
                return json.loads(attempt)
            except json.JSONDecodeError:
                continue
    steps = _numbered_list(text)
    if steps:
        return {"steps": steps}
    snippet = text[:80].replace("\n", " ")
    raise PlanError(f"the model's reply is neither JSON nor a numbered list: {snippet!r}")


def _json_candidates(text: str):
    yield from (m.group(1).strip() for m in FENCE.finditer(text))
    yield text
    for opener, closer in (("{", "}"), ("[", "]")):
        span = _balanced(text, opener, closer)
        if span:
            yield span


def _balanced(text: str, opener: str, closer: str) -> str | None:
    """The first balanced {...} or [...] span, skipping brackets inside strings."""
    start = text.find(opener)
    if start < 0:
        return None
    depth, in_string, escaped = 0, False, False
    for i in range(start, len(text)):
        ch = text[i]
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch == opener:
            depth += 1
        elif ch == closer:
            depth -= 1
            if depth == 0:
                return text[start : i + 1]
    return None


def _numbered_list(text: str) -> list[dict[str, Any]]:
    steps: list[dict[str, Any]] = []
    for line in text.splitlines():
        match = LIST_ITEM.match(line)
        if not match:
            continue
        question = HASH_REF.sub(r"{\1}", match.group(2).strip())
        if question:
            steps.append({"id": len(steps) + 1, "question": question})
    return steps
