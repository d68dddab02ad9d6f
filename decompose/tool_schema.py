"""A tool's argument schema as the model sees it, for the prompts, the grammar and the argument checks."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from langchain_core.tools import BaseTool, tool
from pydantic import BaseModel

from decompose.errors import ConfigError


def call_schema(tool: BaseTool) -> dict[str, Any] | type[BaseModel]:
    """The schema of the arguments the model sees: a JSON schema (a dict) or a pydantic model."""
    schema = tool.tool_call_schema
    if isinstance(schema, dict) or issubclass(schema, BaseModel):
        return schema
    raise ConfigError(
        f"tool {tool.name!r} describes its arguments with a pydantic.v1 model",
        hint="write its args_schema with pydantic v2: from pydantic import BaseModel",
    )


_SCHEMAS: dict[str, Any] = {}  # a closure's qualified name -> the argument schema `@tool` built for it


def closure_tool(func: Callable[..., Any]) -> BaseTool:
    """`@tool` for a tool made afresh for each store or data file (a closure over it): the argument schema, the
    same for every copy, is built once per process (pydantic takes ~10 ms a tool; agents and tests make many)."""
    key = f"{func.__module__}.{func.__qualname__}"
    schema = _SCHEMAS.get(key)
    made = tool(func) if schema is None else tool(args_schema=schema)(func)
    _SCHEMAS.setdefault(key, made.args_schema)
    return made
