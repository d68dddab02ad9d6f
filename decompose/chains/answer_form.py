"""What shape an answer should take, read from the question: Yes/No only for yes/no questions, a number for
"how many", a name for "who", a date for "when". The answer and synthesis prompts say it, so a capable model
is never told to answer "Yes" to "How many meters does he run?"."""

from __future__ import annotations

import re
from enum import StrEnum

AUXILIARIES = (
    "is",
    "are",
    "was",
    "were",
    "am",
    "do",
    "does",
    "did",
    "can",
    "could",
    "will",
    "would",
    "shall",
    "should",
    "has",
    "have",
    "had",
    "may",
    "might",
    "must",
    "isn't",
    "aren't",
    "wasn't",
    "weren't",
    "don't",
    "doesn't",
    "didn't",
    "can't",
    "couldn't",
    "won't",
    "wouldn't",
    "shouldn't",
    "hasn't",
    "haven't",
    "hadn't",
)
NUMBER_OPENERS = re.compile(
    r"^(how (many|much|old|long|far|tall|high|big|large|wide|deep|heavy|fast|often)|"
    r"what (is|was|were|are) (the|my|its|their|our|your) "
    r"((monthly|annual|yearly|weekly|net|present|future|expected|final|new) )?"
    r"(total|sum|difference|average|mean|number|amount|percentage|percent|ratio|cost|price|value|area|"
    r"perimeter|speed|distance|payment|interest|npv|irr|balance|profit|revenue|income)|"
    r"what (percentage|percent|fraction|number|amount)|by (how much|what (percent|percentage))|"
    r"calculate|compute|convert)\b"
)
# "What is 72000 received in 14 years worth today?": a value asked for by its worth, not a thing named.
WORTH = re.compile(r"^what (is|are|was|were|would|will)\b.*\bworth\b(?! (reading|seeing|visiting|it)\b)")
DATE_OPENERS = re.compile(r"^(when|what (year|date|day|month|century|decade)|in (what|which) (year|month|century))\b")
PERSON_OPENERS = re.compile(r"^(who|whom|whose)\b")
PLACE_OPENERS = re.compile(r"^(where|in (what|which) (country|city|state|town|place))\b")
SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


class AnswerForm(StrEnum):
    YES_NO = "yes_no"
    NUMBER = "number"
    DATE = "date"
    PERSON = "person"
    PLACE = "place"
    OTHER = "other"

    @property
    def instruction(self) -> str:
        return INSTRUCTIONS[self]


INSTRUCTIONS = {
    AnswerForm.YES_NO: 'This is a yes/no question: start the answer with "Yes" or "No".',
    AnswerForm.NUMBER: "Answer with just the number (and its unit, if it has one), not a sentence.",
    AnswerForm.DATE: "Answer with the date: as exact as known (day, month and year), else the year.",
    AnswerForm.PERSON: "Answer with the person's name.",
    AnswerForm.PLACE: "Answer with the place's name.",
    AnswerForm.OTHER: "Answer with a short phrase, a name or a number, whichever the question asks for.",
}


def asked_sentence(question: str) -> str:
    """The sentence that asks: the last one ending in "?" (word problems state facts first), else the last."""
    sentences = [s.strip() for s in SENTENCE_END.split(question.strip()) if s.strip()]
    asking = [s for s in sentences if s.endswith("?")]
    return (asking or sentences or [""])[-1]


def answer_form(question: str) -> AnswerForm:
    text = asked_sentence(question).lower().lstrip("\"'“(")
    text = re.sub(r"^(so|and|but|then|now|also|finally|therefore|overall|in total|altogether)[,\s]+", "", text)
    first = text.split(" ", 1)[0].rstrip(",")
    if first in AUXILIARIES:
        # "Is it red or blue?" asks to choose, not yes/no; "..., or not?" is still yes/no.
        return AnswerForm.OTHER if re.search(r"\bor\b(?! not\b)", text) else AnswerForm.YES_NO
    for pattern, form in (
        (NUMBER_OPENERS, AnswerForm.NUMBER),
        (WORTH, AnswerForm.NUMBER),
        (DATE_OPENERS, AnswerForm.DATE),
        (PERSON_OPENERS, AnswerForm.PERSON),
        (PLACE_OPENERS, AnswerForm.PLACE),
    ):
        if pattern.search(text):
            return form
    return AnswerForm.OTHER
