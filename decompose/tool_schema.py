"""A tool's argument schema as the model sees it, for the prompts, the grammar and the argument checks."""

from __future__ import annotations

from typing import Any

from langchain_core.tools import BaseTool
from pydantic import BaseModel

from decompose.errors import ConfigError


def call_schema(tool: BaseTool) -> dict[str, Any] | type[BaseModel]:
    """The schema of the arguments the model sees: a JSON schema (a dict) or a pydantic model."""
    schema = tool.tool_call_schema
    if isinstance(schema, dict) or issubclass(schema, BaseModel):
        return schema
    raise ConfigError(f"tool {tool.name!r} describes its arguments with a pydantic.v1 model",
                      hint="write its args_schema with pydantic v2: from pydantic import BaseModel")
