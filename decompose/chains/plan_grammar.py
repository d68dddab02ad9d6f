"""The plan schema a grammar-constrained local model decodes under: each tool step's `args` are that tool's own
arguments (their names, types and the required ones), so a weak model cannot invent an argument, drop a required
one or write words where a number goes. A `{n}` reference is allowed wherever a value is: it stands for a step's
result, not known when the plan is written. A tool may narrow a string argument further with a regular
expression in its metadata (`arg_patterns`, e.g. the calculator's expression: arithmetic, not prose).

API models get the plain schema (`plan_schema`): a server's own schema support varies, and their plans are
checked against each tool's arguments after the fact anyway, with a re-ask on a mistake.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool

from decompose.models import chat_model_of

# A whole value that is a step's result: {2}, {1.paid}, {3.items.0}; see `decompose.plan.REFERENCE`.
REFERENCE_VALUE = {"type": "string", "pattern": r"^\{\d+(\.[A-Za-z_][A-Za-z0-9_]*|\.\d+)*\}$"}
_STEP_FIELDS = {
    "id": {"type": "integer", "minimum": 1, "maximum": 99},
    "question": {"type": "string", "maxLength": 300},
    "depends_on": {"type": "array", "items": {"type": "integer", "minimum": 1, "maximum": 99}, "maxItems": 10},
}


def decodes_under_grammar(model: Any) -> bool:
    """True for a local model whose structured output is grammar-constrained decoding (`ChatTransformers`)."""
    return bool(getattr(chat_model_of(model), "grammar_decoding", False))


def typed_plan_schema(tools: Sequence[BaseTool], max_steps: int) -> dict[str, Any]:
    """The plan's JSON schema with one kind of step per tool, plus the step with no tool."""
    no_tool = _step({"tool": {"type": "null"}}, required=[])
    tool_steps = [
        _step({"tool": {"enum": [tool.name]}, "args": tool_args_schema(tool)}, required=["tool", "args"])
        for tool in tools
    ]
    steps = {"type": "array", "items": {"anyOf": [no_tool, *tool_steps]}, "minItems": 1, "maxItems": max_steps}
    return {"type": "object", "properties": {"steps": steps}, "required": ["steps"], "additionalProperties": False}


def tool_args_schema(tool: BaseTool) -> dict[str, Any]:
    """`tool`'s arguments as a closed object whose values may also be `{n}` references."""
    parameters = copy.deepcopy(convert_to_openai_tool(tool)["function"]["parameters"])
    patterns = (tool.metadata or {}).get("arg_patterns", {})
    properties = {}
    for name, spec in parameters.get("properties", {}).items():
        spec = {k: v for k, v in spec.items() if k not in ("description", "default", "title")}
        if name in patterns and spec.get("type") == "string":
            spec["pattern"] = patterns[name]
        properties[name] = _or_reference(spec)
    return {
        "type": "object",
        "properties": properties,
        "required": list(parameters.get("required", [])),
        "additionalProperties": False,
    }


def _step(extra: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {**_STEP_FIELDS, **extra},
        "required": ["id", "question", *required],
        "additionalProperties": False,
    }


def _or_reference(spec: dict[str, Any]) -> dict[str, Any]:
    """`spec`, or a reference where `spec` takes no free string (a number, a date, a pattern, a list's items)."""
    if spec.get("type") == "array" and isinstance(spec.get("items"), dict):
        spec = {**spec, "items": _or_reference(spec["items"])}
    if _takes_free_string(spec):
        return spec
    return {"anyOf": [spec, REFERENCE_VALUE]}


def _takes_free_string(spec: dict[str, Any]) -> bool:
    if spec.get("type") == "string":
        return not {"pattern", "format", "enum", "const"} & spec.keys()
    return any(_takes_free_string(option) for option in spec.get("anyOf", []))
