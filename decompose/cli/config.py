"""Flags → environment → defaults: the tools, the Orchestrator and the trace file a command runs with.

Model specs are `load_model`'s (every spec the command takes, a library user's code takes too).
"""

from __future__ import annotations

import argparse
import importlib
import json
from typing import Any, TextIO

from decompose.errors import ConfigError
from decompose.importing import call_factory, resolve, split_target


def load_tools(specs: list[str]) -> list[Any]:
    """`--tools MODULE:ATTR ...`: each ATTR is a tool, a list of tools, or a zero-argument factory of either."""
    from langchain_core.tools import BaseTool

    tools: list[Any] = []
    for spec in specs:
        target, attr = split_target(spec, spec, "MODULE:ATTR, e.g. decompose.tools.calculator:calculator")
        value = resolve(target, attr, spec)
        if callable(value) and not isinstance(value, BaseTool):
            value = call_factory(value, spec)
        found = value if isinstance(value, (list, tuple)) else [value]
        for item in found:
            if not isinstance(item, BaseTool):
                raise ConfigError(
                    f"--tools {spec}: {type(item).__name__} is not a LangChain tool",
                    hint="decorate the function with @tool, or point at a list of tools",
                )
        tools.extend(found)
    names = [t.name for t in tools]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigError(f"--tools: tool name {duplicates[0]!r} is given twice", hint="each tool needs its own name")
    return tools


def load_mcp_tools(args: argparse.Namespace) -> list[Any]:
    """The tools of the `--mcp COMMAND...` and `--mcp-url URL` servers (none when neither is given)."""
    commands, urls = getattr(args, "mcp", None) or [], getattr(args, "mcp_url", None) or []
    if not commands and not urls:
        return []
    try:
        from decompose.tools.mcp import DEFAULT_TIMEOUT, mcp_tools
    except ImportError as exc:
        raise ConfigError(f"--mcp needs the mcp extra ({exc})", hint='pip install "decompose-agents[mcp]"') from None
    for url in urls:
        if not url.startswith(("http://", "https://")):
            raise ConfigError(
                f"--mcp-url {url}: not an http:// or https:// URL",
                hint="give the server's MCP endpoint, e.g. http://127.0.0.1:9000/mcp; a command goes to --mcp",
            )
    # One word: a whole command line in quotes; several: the command's words as given.
    servers = [words[0] if len(words) == 1 else words for words in commands] + urls
    return mcp_tools(*servers, timeout=getattr(args, "mcp_timeout", None) or DEFAULT_TIMEOUT)


def plan_tools(args: argparse.Namespace) -> list[Any]:
    """`--tools` and the MCP servers' tools, no name twice."""
    tools = load_tools(args.tools or []) + load_mcp_tools(args)
    names = [t.name for t in tools]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigError(
            f"tool name {duplicates[0]!r} is given by --tools and by an MCP server", hint="drop one of them"
        )
    return tools


def orchestrator_options(args: argparse.Namespace) -> dict[str, Any]:
    """The Orchestrator's keyword arguments from the flags, each setting on its part; flags not given keep the
    part's defaults."""
    options: dict[str, Any] = {}
    for flag in ("strategy", "max_concurrency"):
        if getattr(args, flag, None) is not None:
            options[flag] = getattr(args, flag)
    plan_flags = {"max_steps": "max_steps", "on_plan_failure": "on_failure", "max_replans": "max_replans"}
    planning = {
        setting: getattr(args, flag) for flag, setting in plan_flags.items() if getattr(args, flag, None) is not None
    }
    if planning:
        from decompose.chains.decompose import Decomposer

        options["decomposer"] = Decomposer(**planning)
    limits = {
        setting: getattr(args, flag)
        for flag, setting in (("timeout", "run_timeout"), ("max_cost", "max_cost"))
        if getattr(args, flag, None) is not None
    }
    if limits:
        from decompose.limits import Limits

        options["limits"] = Limits(**limits)
    docs = getattr(args, "docs", None)
    if docs:
        from decompose.retrieval import LocalDocsRetriever

        options["retriever"] = LocalDocsRetriever.from_path(docs)
    if getattr(args, "cache", None):
        from decompose.cache import as_cache

        options["cache"] = as_cache(args.cache)  # opened once, here: a bad path fails before a model loads
    if getattr(args, "prices", None):
        from decompose.pricing import as_prices

        options["prices"] = as_prices(args.prices)  # a bad file fails before a model loads
    retries = getattr(args, "retries", None)
    if retries is not None:
        from decompose.retry import RetryPolicy

        options["retry"] = RetryPolicy(max_attempts=retries + 1)
    if getattr(args, "otel", False):  # on whatever OTEL_* says; without an endpoint, a local collector's
        from decompose.telemetry import environment_provider

        options["tracer_provider"] = environment_provider()
    checkpoints, resume = getattr(args, "checkpoints", None), getattr(args, "resume", None)
    if checkpoints is not None or resume:  # `--checkpoints` with no value, or `--resume` alone: the default file
        from decompose.checkpoints import CheckpointStore

        options["checkpoints"] = CheckpointStore(checkpoints or None, create=not resume)
    return options


def _wait_for_approval(options: dict[str, Any], approver: Any) -> None:
    """Somewhere for a call to wait: the checkpoint store (the default one unless --checkpoints names another),
    and the person's approver when there is one."""
    if "checkpoints" not in options:
        from decompose.checkpoints import CheckpointStore

        options["checkpoints"] = CheckpointStore()
    if approver is not None:
        from decompose.tools.runner import ToolRunner

        options["tool_runner"] = ToolRunner(approver=approver)


def load_model_from_flags(args: argparse.Namespace) -> Any:
    """The chat model of `--model`, `--adapter` and `--decoding` (repeatable; a later value of a name wins)."""
    from decompose.models import load_model
    from decompose.models.decoding import parse_options

    decoding: dict[str, Any] = {}
    for text in getattr(args, "decoding", None) or []:
        decoding.update(parse_options(text))
    return load_model(args.model, adapter=args.adapter, **({"decoding": decoding} if decoding else {}))


def build_orchestrator(args: argparse.Namespace, *, approvals: bool = False, approver: Any = None) -> Any:
    """An Orchestrator from the flags: `--agent NAME`, or a plain one with `--tools` (none by default). With
    `approvals`, an agent's consequential calls wait for a person (`build_agent(approvals=True)`), as the calls of
    tools marked `@requires_approval` always do: `approver` asks at once (at a terminal), else the run stops
    awaiting the decision in the checkpoint store (`--checkpoints`, or the default one)."""
    options = orchestrator_options(args)
    if args.agent:
        if args.tools or getattr(args, "mcp", None) or getattr(args, "mcp_url", None):
            flag = "--tools" if args.tools else "--mcp" if getattr(args, "mcp", None) else "--mcp-url"
            raise ConfigError(
                f"--agent and {flag} cannot be used together",
                hint=f"an agent brings its own tools: drop {flag}, or drop --agent",
            )
        agents = agents_module()
        spec = agents.get_agent(args.agent)  # an unknown name fails here, before a model is loaded
        approvals = approvals and spec.approval is not None
        if approvals:
            _wait_for_approval(options, approver)
        return agents.build_agent(args.agent, model=load_model_from_flags(args), approvals=approvals, **options)
    tools = plan_tools(args)
    from decompose.orchestrator import Orchestrator
    from decompose.tools.runner import ToolRunner

    if any(ToolRunner().needs_approval(t) for t in tools):  # @requires_approval: the tool's own rule, always kept
        _wait_for_approval(options, approver)
    return Orchestrator(load_model_from_flags(args), tools=tools, **options)


def agents_module() -> Any:
    """`decompose.agents`, or a ConfigError naming why an installation lacks it."""
    try:
        return importlib.import_module("decompose.agents")
    except ImportError as exc:
        raise ConfigError(
            f"agents are not available in this installation ({exc})", hint="run without --agent, or upgrade decompose"
        ) from None


class Trace:
    """`--trace FILE`: every event as one JSON line, flushed as it happens."""

    def __init__(self, path: str):
        try:
            self.file: TextIO = open(path, "w", encoding="utf-8")  # noqa: SIM115 - open for the run, closed by close()
        except OSError as exc:
            raise ConfigError(
                f"cannot write trace file {path}: {exc.strerror or exc}", hint="check the path and its permissions"
            ) from None

    def write(self, event: Any, **extra: Any) -> None:
        data = event.to_dict()
        data.update(extra)
        self.file.write(json.dumps(data, ensure_ascii=False, default=str) + "\n")
        self.file.flush()

    def close(self) -> None:
        self.file.close()
