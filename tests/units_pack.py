"""A tiny tool pack none of the shipped adapters has seen (unit conversions), and a scripted teacher that plans
its questions by rule: what `decompose train --bootstrap` is tested on. Usable as `--tools tests/units_pack.py:tools`
and `--teacher scripted:tests/units_pack.py:make_teacher`."""

import json
import re

from langchain_core.tools import ToolException, tool

from decompose.models.scripted import ScriptedChatModel, asks_for_plan, asks_to_combine


@tool
def celsius_to_fahrenheit(celsius: float) -> float:
    """Convert a temperature from degrees Celsius to degrees Fahrenheit."""
    return round(celsius * 9 / 5 + 32, 2)


@tool
def km_to_miles(km: float) -> float:
    """Convert a distance from kilometres to miles."""
    if km < 0:
        raise ToolException("a distance cannot be negative")
    return round(km * 0.621371, 2)


@tool
def kg_to_pounds(kg: float) -> float:
    """Convert a weight from kilograms to pounds."""
    return round(kg * 2.20462, 2)


def tools():
    return [celsius_to_fahrenheit, km_to_miles, kg_to_pounds]


UNITS = [  # (words that name the unit, the tool, its argument)
    (r"celsius|°c|degrees", "celsius_to_fahrenheit", "celsius"),
    (r"\bkm\b|kilomet", "km_to_miles", "km"),
    (r"\bkg\b|kilo", "kg_to_pounds", "kg"),
]


def teacher_plan(question: str) -> str:
    """The teacher's plan: the conversion the question names, with its number; a question marked "broken" gets a
    tool that does not exist (an invalid plan)."""
    number = re.search(r"-?\d+(?:\.\d+)?", question)
    for words, name, arg in UNITS:
        if re.search(words, question, re.IGNORECASE) and number:
            tool_name = "no_such_tool" if "broken" in question else name
            value = number.group(0)
            step = {"id": 1, "question": f"Convert {value}", "tool": tool_name, "args": {arg: value}}
            return json.dumps({"steps": [step]})
    return json.dumps({"steps": [{"id": 1, "question": "Say that no conversion was asked for."}]})


def _question(messages) -> str:
    """The user's question: the last message, or the one before the teacher's plan it is asked to repair."""
    repairing = messages[-1].content.startswith("That plan could not be used")
    return messages[-3 if repairing else -1].content


def _combine(messages) -> str:
    findings = messages[-1].content.split("Sub-questions and answers:")[1]
    numbers = re.findall(r"-?\d+(?:\.\d+)?", findings.split("\n\n")[0])
    return f"Answer: {numbers[-1] if numbers else 'nothing to convert'}"


GENERATED = "How many miles is 5 km?\nWhat is 20 degrees Celsius?"  # what the teacher writes when asked


def make_teacher():
    return ScriptedChatModel(
        rules=[
            (r"write \d+ new questions", GENERATED),
            (asks_for_plan, lambda messages: teacher_plan(_question(messages))),
            (asks_to_combine, _combine),
        ],
        default="I can only convert units.",
    )
