"""The peer both agent benchmarks compare against: LangGraph's prebuilt ReAct agent, as LangGraph ships it.

LangGraph 1.x deprecates `create_react_agent` for `langchain.agents.create_agent`, which lives in another package
(`langchain`) and is a different agent; the figures are LangGraph's ReAct agent's, so this one is kept, and only
its own deprecation notice is silenced here (any other warning still fails the tests)."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

from langchain_core.tools import BaseTool


def react_agent(llm: Any, tools: Sequence[BaseTool], prompt: str) -> Any:
    """A compiled ReAct graph; a tool's error goes back to the model as the tool's reply, to be fixed (LangGraph
    re-raises most by default)."""
    from langgraph.prebuilt import ToolNode, create_react_agent
    from langgraph.warnings import LangGraphDeprecatedSinceV10

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=LangGraphDeprecatedSinceV10, message="create_react_agent")
        return create_react_agent(llm, ToolNode(list(tools), handle_tool_errors=True), prompt=prompt)
