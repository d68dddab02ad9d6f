"""Judging one agent conversation (`agents_quality.py`): the shop's end state against the gold writes, the facts
each answer states, identifiers the agent invented, follow-ups resolved to the right order. Pure functions over
plain data, so the tests can check each verdict on its own."""

from __future__ import annotations

import re
import sqlite3
from collections import Counter
from datetime import date
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

ID_ARGS = ("email", "order_id", "customer", "zip_code")  # the arguments an agent must not make up
_NUMBER = re.compile(r"^[-−]?\d+(?:\.\d+)?$")
# A number in prose: "$1,199.10", "-21.04", "15%"; never the digits inside an id such as A1003 or a date's parts.
_IN_TEXT = re.compile(r"(?<![\w.\-/])([-−]?)\s?[$€£]?\s?([-−]?)(\d[\d,]*(?:\.\d+)?)(?![\w\-/])")
_MONTHS = [
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
]


def normalize(text: str) -> str:
    text = text.lower().replace("’", "'").replace("e-mail", "email")
    return " ".join(re.sub(r"[-_/*`]", " ", text).split())


def numbers_in(text: str) -> list[Decimal]:
    found = []
    for (
        sign,
        sign_after,
        digits,
    ) in ((m[1], m[2], m[3]) for m in _IN_TEXT.finditer(text)):
        try:
            value = Decimal(digits.replace(",", ""))
        except InvalidOperation:
            continue
        found.append(-value if sign or sign_after else value)
    return found


def _date_forms(day: date) -> re.Pattern:
    """An ISO date as prose writes it too: 2026-01-17, January 17, Jan 17th, 17 January."""
    month = _MONTHS[day.month - 1]
    m, d = f"(?:{month}|{month[:3]}\\.?)", f"0?{day.day}(?:st|nd|rd|th)?"
    return re.compile(rf"{day.isoformat()}|\b{m}\s+{d}\b|\b{d}\s+(?:of\s+)?{m}\b", re.IGNORECASE)


def states(answer: str, alternatives: list[str]) -> bool:
    """Whether `answer` states the fact: any alternative, numbers compared as numbers, dates in any usual form."""
    prose, numbers = normalize(answer), None
    for alt in alternatives:
        if _NUMBER.match(alt):
            numbers = numbers if numbers is not None else numbers_in(answer)
            if Decimal(alt.replace("−", "-")) in numbers:
                return True
        elif re.fullmatch(r"\d{4}-\d{2}-\d{2}", alt):
            if _date_forms(date.fromisoformat(alt)).search(answer):
                return True
        elif re.search(rf"(?<!\w){re.escape(normalize(alt))}(?!\w)", prose):
            return True
    return False


def facts_stated(answers: list[str], facts: list[list[list[str]]]) -> list[list[bool]]:
    return [[states(answer or "", fact) for fact in turn] for answer, turn in zip(answers, facts)]


def shop_writes(db: Path) -> dict[str, list[dict[str, Any]]]:
    """The refunds and tickets written beyond the seed (seed rows carry `seed-` idempotency keys)."""
    with sqlite3.connect(db) as conn:
        refunds = conn.execute(
            "SELECT order_id, amount_cents FROM refunds WHERE idempotency_key NOT LIKE 'seed-%' ORDER BY id"
        ).fetchall()
        tickets = conn.execute(
            "SELECT order_id FROM tickets WHERE idempotency_key NOT LIKE 'seed-%' ORDER BY id"
        ).fetchall()
    return {
        "refunds": [{"order_id": o, "amount": str(Decimal(c).scaleb(-2))} for o, c in refunds],
        "tickets": [{"order_id": o} for (o,) in tickets],
    }


def _keys(writes: dict[str, list[dict[str, Any]]]) -> Counter:
    keys: Counter = Counter()
    for r in writes.get("refunds", []):
        keys[("refund", r["order_id"], Decimal(str(r["amount"])))] += 1
    for t in writes.get("tickets", []):
        keys[("ticket", t.get("order_id"), None)] += 1
    return keys


def compare_writes(actual: dict, gold: dict) -> tuple[list[dict], list[dict]]:
    """(writes the gold end state does not contain, gold writes missing), as multisets: a second identical
    refund is an unexpected write."""
    have, want = _keys(actual), _keys(gold)

    def listed(keys: Counter) -> list[dict]:
        return [
            {"kind": k, "order_id": o, **({"amount": str(a)} if a is not None else {})}
            for (k, o, a), n in sorted(keys.items(), key=str)
            for _ in range(n)
        ]

    return listed(have - want), listed(want - have)


def invented_ids(turns: list[str], calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Tool calls whose identifying argument appears neither in the customer's messages so far nor in a tool result
    that came back before the call started. `calls`: {turn, tool, args, start, end, output} with start/end a
    sequence number shared by all calls."""
    invented = []
    for call in calls:
        earlier = [c["output"] for c in calls if c["end"] is not None and c["end"] < call["start"]]
        seen = " ".join([*turns[: call["turn"] + 1], *earlier]).lower()
        for arg in ID_ARGS:
            value = call["args"].get(arg)
            if value is not None and str(value).strip() and str(value).strip().lower() not in seen:
                invented.append({"turn": call["turn"], "tool": call["tool"], "arg": arg, "value": str(value)})
    return invented


def follow_ups_resolved(follow_ups: list[dict[str, Any]], calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A follow-up ("it", "that order") is resolved when its turn's tool calls use the order it refers to and no
    other order."""
    verdicts = []
    for f in follow_ups:
        used = sorted(
            {
                str(c["args"]["order_id"]).strip().upper()
                for c in calls
                if c["turn"] == f["turn"] and c["args"].get("order_id")
            }
        )
        verdicts.append({**f, "used": used, "resolved": used == [f["order_id"]]})
    return verdicts
