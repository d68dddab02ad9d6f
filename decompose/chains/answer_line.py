"""Reading the answer out of a model's reply: the text after its last "Answer:" line, without markup."""

from __future__ import annotations

import re

ANSWER_LINE = re.compile(r"answer\s*(?:is)?\s*[:：]\s*(.+)", re.IGNORECASE)


def final_answer_line(text: str) -> str:
    """The answer after the last 'Answer:' marker, else the last non-empty line (chain-of-thought output), without
    the markup models wrap it in (`**bold**`, `\\boxed{42}`, `\\( ... \\)`)."""
    matches = ANSWER_LINE.findall(text)
    if matches:
        return strip_markup(matches[-1])
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return strip_markup(lines[-1]) if lines else ""


BOXED = re.compile(r"\\boxed\{([^{}]*)\}")
LATEX_DELIMITERS = re.compile(r"\\[()\[\]]|\$\$?")


def strip_markup(answer: str) -> str:
    answer = BOXED.sub(r"\1", answer)
    answer = LATEX_DELIMITERS.sub("", answer).replace("**", "").replace("__", "")
    return answer.strip().strip("*").strip()
