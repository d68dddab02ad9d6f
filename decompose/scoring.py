"""Answers compared SQuAD-style: normalisation (shared by self-consistency's vote) and the eval scores (exact
match, token F1, the task-aware answer match)."""

from __future__ import annotations

import re
import string
from collections import Counter

ARTICLES = re.compile(r"\b(a|an|the)\b")
NUMBER = re.compile(r"-?\d[\d,]*\.?\d*")
PUNCT = str.maketrans("", "", string.punctuation)


def normalize_answer(text: str) -> str:
    """Lower-case, drop punctuation and articles, squeeze spaces; numbers lose thousands separators and
    trailing zeros first, so '1,000.0' and '1000' agree."""
    text = NUMBER.sub(lambda m: _plain_number(m.group(0)), str(text).lower())
    text = ARTICLES.sub(" ", text.translate(PUNCT))
    return " ".join(text.split())


def _plain_number(token: str) -> str:
    digits = token.replace(",", "").rstrip(".")
    if "." in digits:
        digits = digits.rstrip("0").rstrip(".")
    return digits or token


def numbers_in(text: str) -> list[float]:
    """Every number written in `text`, as a float ("1,234.5" is 1234.5)."""
    found = []
    for token in NUMBER.findall(str(text)):
        try:
            found.append(float(token.replace(",", "").rstrip(".")))
        except ValueError:  # a lone "-" or ","-only run
            continue
    return found


def leaf_numbers(value: object) -> list[float]:
    """Every number in a value: itself, a numeric string's, or each field's of a tool's dict or list, nested."""
    if isinstance(value, bool):
        return []
    if isinstance(value, (int, float)):
        return [float(value)]
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, list):
        return [n for item in value for n in leaf_numbers(item)]
    return numbers_in(value) if isinstance(value, str) else []


def same_number(a: float, b: float) -> bool:
    """Equal up to the rounding an answer may apply (half a percent, or a cent)."""
    return abs(a - b) <= max(0.005 * abs(b), 0.01)


def exact_match(prediction: str, gold: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(gold))


def token_f1(prediction: str, gold: str) -> float:
    pred, ref = normalize_answer(prediction).split(), normalize_answer(gold).split()
    if not pred or not ref:
        return float(pred == ref)
    common = sum((Counter(pred) & Counter(ref)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


YES_NO = re.compile(r"\b(yes|no|true|false)\b")


def said_yes(text: str) -> bool | None:
    """The first yes/no (true/false) word of `text` as True or False; None when it has none."""
    word = YES_NO.search(str(text).lower())
    return None if word is None else word.group(1) in ("yes", "true")


def tool_verdict(result: object) -> bool | None:
    """A tool result's yes/no: a bool, or the one bool field of a dict (`refund_eligibility`'s `eligible`);
    None when there is no single verdict."""
    flags = [v for v in result.values() if isinstance(v, bool)] if isinstance(result, dict) else [result]
    return flags[0] if len(flags) == 1 and isinstance(flags[0], bool) else None


def answer_match(prediction: str, gold: str) -> float:
    """Task-aware match, as GSM8K and StrategyQA are usually scored: for a numeric gold, the last number in the
    prediction; for a yes/no gold, the first yes/no (true/false) word; otherwise exact match."""
    gold_number = _number_value(gold)
    if gold_number is not None:
        numbers = NUMBER.findall(str(prediction))
        return float(bool(numbers) and _plain_number(numbers[-1]) == gold_number)
    gold_norm = normalize_answer(gold)
    if gold_norm in ("yes", "no"):
        said = said_yes(prediction)
        return float(said is not None and said == (gold_norm == "yes"))
    return exact_match(prediction, gold)


def _number_value(gold: str) -> str | None:
    """A gold answer that is a number ("18", "10.8", "$1,496.5", "-12.6", "40%"), as a plain number; else None.
    (normalize_answer would drop the decimal point with the punctuation.)"""
    text = str(gold).strip().lstrip("$").rstrip("%").strip()
    return _plain_number(text) if re.fullmatch(r"-?\d[\d,]*(\.\d+)?", text) else None
