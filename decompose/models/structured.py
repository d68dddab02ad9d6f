"""`with_structured_output` for local models: the schema a grammar is compiled from, and the parser after it.

A grammar must be able to *finish* within the token cap, so the schema the grammar is compiled from gets bounds
(string lengths, array sizes, integer ranges) wherever the caller left them open; the parsed result is still
validated against the caller's original schema. Nothing here imports torch: the grammar itself is compiled and
applied by the model's batcher (`decompose.models.grammar`).
"""

from __future__ import annotations

import copy
import json
from operator import itemgetter
from typing import Any

from langchain_core.exceptions import OutputParserException
from langchain_core.messages import AIMessage
from langchain_core.runnables import Runnable, RunnableLambda, RunnableMap, RunnablePassthrough
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_json_schema
from pydantic import BaseModel
from pydantic.v1 import BaseModel as BaseModelV1

from decompose.errors import ConfigError

# Bounds for what a schema leaves open: roomy for real content, finite so no single field loops forever.
MAX_STRING_LENGTH = 200
MAX_ITEMS = 10
MAX_PROPERTIES = 8
MAX_INT = 10**15  # 16 digits: no id or count needs more, and a digit loop must end
_SCALAR = ["string", "number", "integer", "boolean", "null"]


def resolve_schema(schema: Any) -> tuple[dict, type[BaseModel] | type[BaseModelV1] | None]:
    """The JSON schema to decode under, and the pydantic class (v2 or v1) to parse into (None: return a dict).

    A `BaseTool` stands for its arguments: the result is the dict to pass to `tool.invoke`.
    """
    if isinstance(schema, BaseTool):
        args = schema.args_schema
        if args is None:
            return {"type": "object", "properties": {}}, None
        if isinstance(args, dict):
            return args, None
        return (args.schema() if issubclass(args, BaseModelV1) else args.model_json_schema()), None
    if isinstance(schema, type) and issubclass(schema, BaseModel):
        return schema.model_json_schema(), schema
    if isinstance(schema, type) and issubclass(schema, BaseModelV1):
        return convert_to_json_schema(schema), schema  # its references resolved, as for any other class
    if isinstance(schema, dict) and "parameters" in schema and "name" in schema:  # OpenAI function format
        return schema["parameters"], None
    if isinstance(schema, dict):
        return schema, None
    return convert_to_json_schema(schema), None


def bound_schema(
    schema: dict,
    max_string_length: int = MAX_STRING_LENGTH,
    max_items: int = MAX_ITEMS,
    max_properties: int = MAX_PROPERTIES,
) -> dict:
    """A copy of `schema` with a finite bound on every string, array, integer and free-form object."""

    def visit(node: Any) -> None:
        if isinstance(node, list):
            for item in node:
                visit(item)
            return
        if not isinstance(node, dict):
            return
        types = node.get("type")
        types = types if isinstance(types, list) else [types]
        if "string" in types and not {"maxLength", "enum", "const", "pattern", "format"} & node.keys():
            node["maxLength"] = max_string_length
        if "array" in types:
            node.setdefault("maxItems", max_items)
        if "integer" in types:
            node.setdefault("minimum", -MAX_INT)
            node.setdefault("maximum", MAX_INT)
        if "object" in types and "properties" not in node and node.get("additionalProperties", True) in (True, {}):
            # Free-form object (a step's `args`): scalar values or short scalar lists, so it cannot nest forever.
            scalar = {"type": _SCALAR}
            node["additionalProperties"] = {"anyOf": [scalar, {"type": "array", "items": scalar}]}
            node.setdefault("maxProperties", max_properties)
        for value in node.values():
            visit(value)

    bounded = copy.deepcopy(schema)
    visit(bounded)
    return bounded


_GRAMMAR_OPTIONS = ("max_string_length", "max_items", "max_properties")


def structured_runnable(
    llm: Runnable, schema: Any, *, include_raw: bool, method: str | None = None, **grammar_kwargs: Any
) -> Runnable:
    """`llm` bound to decode under `schema`'s grammar, piped into a parser, per LangChain's contract."""
    if unknown := sorted(set(grammar_kwargs) - set(_GRAMMAR_OPTIONS)):
        raise ConfigError(
            f"with_structured_output does not take {unknown}",
            hint=f"use include_raw, method, strict, max_new_tokens, {', '.join(_GRAMMAR_OPTIONS)}",
        )
    json_schema, pydantic_cls = resolve_schema(schema)
    bounded = bound_schema(json_schema, **grammar_kwargs)
    # Traced as LangChain traces every model's structured output: the caller's schema, converted by LangChain.
    traced = {"schema": schema, "kwargs": {"method": method or "json_schema"}}
    bound = llm.bind(json_schema=json.dumps(bounded), ls_structured_output_format=traced)

    def parse(message: AIMessage) -> Any:
        try:
            data = json.loads(message.text)
            if pydantic_cls is None:
                return data
            if issubclass(pydantic_cls, BaseModelV1):
                return pydantic_cls.parse_obj(data)
            return pydantic_cls.model_validate(data)
        except ValueError as err:  # json and pydantic (v2 and v1) errors are all ValueErrors
            raise OutputParserException(f"output does not match the schema: {err}", llm_output=message.text) from err

    parser = RunnableLambda(parse)
    if not include_raw:
        return bound | parser
    parsed = RunnablePassthrough.assign(parsed=itemgetter("raw") | parser, parsing_error=lambda _: None)
    failed = RunnablePassthrough.assign(parsed=lambda _: None)
    return RunnableMap(raw=bound) | parsed.with_fallbacks([failed], exception_key="parsing_error")
