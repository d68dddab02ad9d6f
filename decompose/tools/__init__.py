"""Tools: any LangChain tool plugs in; `runner` calls them safely; the packs are ready-made tool sets."""

from langchain_core.tools import BaseTool, InjectedToolArg, StructuredTool, tool

from decompose.tools.runner import RetryableToolError, ToolRunner, has_side_effects, side_effects, validate_args

__all__ = [
    "BaseTool",
    "InjectedToolArg",
    "RetryableToolError",
    "StructuredTool",
    "ToolRunner",
    "has_side_effects",
    "side_effects",
    "tool",
    "validate_args",
]
