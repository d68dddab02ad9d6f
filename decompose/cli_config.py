"""Flags → environment → defaults: the model, the tools and the Orchestrator a command runs with.

Model specs the command adds to `load_model`'s (`openai:`, `hf:`, `smollm2`):

* `py:MODULE:ATTR` or `py:FILE.py:ATTR` — a `BaseChatModel` object, or a zero-argument factory returning one.
* `scripted:FILE.py[:ATTR]` — for tests: FILE defines ATTR, or by default `model` (a chat model), else
  `make_model()` (a factory), else `rules` (and optionally `default`) for a `ScriptedChatModel`.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import sys
from pathlib import Path
from typing import Any, TextIO

from decompose.errors import ConfigError

SCRIPTED_NAMES = ("model", "make_model", "rules")
COMMAND_SPECS = "; the command also takes 'py:MODULE:ATTR', 'py:FILE.py:ATTR' and 'scripted:FILE.py[:ATTR]'"


def resolve_model(spec: str | None) -> Any:
    """The chat model for `--model SPEC`, else `$DECOMPOSE_MODEL`, else the embedded default."""
    spec = (spec or os.environ.get("DECOMPOSE_MODEL") or "").strip() or None
    if spec and spec.startswith("scripted:"):
        return _scripted(spec.removeprefix("scripted:"), spec)
    if spec and spec.startswith("py:"):
        target, attr = _split_target(spec.removeprefix("py:"), spec, "py:MODULE:ATTR or py:FILE.py:ATTR")
        return _as_model(_resolve(target, attr, spec), spec)
    from decompose.models import SPEC_HELP, load_model

    try:
        return load_model(spec)
    except ConfigError as exc:  # the command also takes py: and scripted: specs: say so
        if exc.hint == SPEC_HELP:
            exc.hint = SPEC_HELP + COMMAND_SPECS
        raise


def load_tools(specs: list[str]) -> list[Any]:
    """`--tools MODULE:ATTR ...`: each ATTR is a tool, a list of tools, or a zero-argument factory of either."""
    from langchain_core.tools import BaseTool

    tools: list[Any] = []
    for spec in specs:
        target, attr = _split_target(spec, spec, "MODULE:ATTR, e.g. decompose.tools.calculator:calculator")
        value = _resolve(target, attr, spec)
        if callable(value) and not isinstance(value, BaseTool):
            value = _call(value, spec)
        found = value if isinstance(value, (list, tuple)) else [value]
        for item in found:
            if not isinstance(item, BaseTool):
                raise ConfigError(f"--tools {spec}: {type(item).__name__} is not a LangChain tool",
                                  hint="decorate the function with @tool, or point at a list of tools")
        tools.extend(found)
    names = [t.name for t in tools]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigError(f"--tools: tool name {duplicates[0]!r} is given twice", hint="each tool needs its own name")
    return tools


def orchestrator_options(args: argparse.Namespace) -> dict[str, Any]:
    options = {"strategy": getattr(args, "strategy", None), "max_concurrency": getattr(args, "max_concurrency", None),
               "max_steps": getattr(args, "max_steps", None), "run_timeout": getattr(args, "timeout", None),
               "on_plan_failure": getattr(args, "on_plan_failure", None),
               "max_replans": getattr(args, "max_replans", None)}
    docs = getattr(args, "docs", None)
    if docs:
        from decompose.retrieval import LocalDocsRetriever

        options["retriever"] = LocalDocsRetriever.from_path(docs)
    retries = getattr(args, "retries", None)
    if retries is not None:
        from decompose.retry import RetryPolicy

        options["retry"] = RetryPolicy(max_attempts=retries + 1)
    return {k: v for k, v in options.items() if v is not None}


def build_orchestrator(args: argparse.Namespace) -> Any:
    """An Orchestrator from the flags: `--agent NAME`, or a plain one with `--tools` (none by default)."""
    options = orchestrator_options(args)
    if args.agent:
        if args.tools:
            raise ConfigError("--agent and --tools cannot be used together",
                              hint="an agent brings its own tools: drop --tools, or drop --agent")
        agents = _agents_module()
        agents.get_agent(args.agent)  # an unknown name fails here, before a model is loaded
        return agents.build_agent(args.agent, model=resolve_model(args.model), **options)
    tools = load_tools(args.tools or [])
    from decompose.orchestrator import Orchestrator

    return Orchestrator(resolve_model(args.model), tools=tools, **options)


def _agents_module() -> Any:
    try:
        return importlib.import_module("decompose.agents")
    except ImportError as exc:
        raise ConfigError(f"agents are not available in this installation ({exc})",
                          hint="run without --agent, or upgrade decompose") from None


class Trace:
    """`--trace FILE`: every event as one JSON line, flushed as it happens."""

    def __init__(self, path: str):
        try:
            self.file: TextIO = open(path, "w", encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot write trace file {path}: {exc.strerror or exc}",
                              hint="check the path and its permissions") from None

    def write(self, event: Any, **extra: Any) -> None:
        data = event.to_dict()
        data.update(extra)
        self.file.write(json.dumps(data, ensure_ascii=False, default=str) + "\n")
        self.file.flush()

    def close(self) -> None:
        self.file.close()


# ----- resolution of MODULE:ATTR and FILE.py:ATTR ----------------------------------------------------------


def _scripted(rest: str, spec: str) -> Any:
    if not rest:
        raise ConfigError(f"model spec {spec!r} names no file", hint="write scripted:path/to/rules.py")
    path, attr = rest, None
    head, sep, tail = rest.rpartition(":")
    if sep and head.endswith(".py") and tail.isidentifier():
        path, attr = head, tail
    module = _load_file(path, spec)
    if attr is None:
        attr = next((name for name in SCRIPTED_NAMES if hasattr(module, name)), None)
        if attr is None:
            raise ConfigError(f"{path} defines none of {', '.join(SCRIPTED_NAMES)}",
                              hint="define `model = ScriptedChatModel(rules=[...])` or `rules = [...]`")
    value = _attr(module, attr, spec)
    if attr == "rules" and isinstance(value, list):
        from decompose.models.scripted import ScriptedChatModel

        return ScriptedChatModel(rules=value, default=getattr(module, "default", None),
                                 latency=float(getattr(module, "latency", 0.0)))
    return _as_model(value, spec)


def _split_target(text: str, spec: str, form: str) -> tuple[str, str]:
    target, sep, attr = text.rpartition(":")
    if not sep or not target or not attr.isidentifier():
        raise ConfigError(f"{spec!r} is not of the form {form}", hint=f"write {form}")
    return target, attr


def _resolve(target: str, attr: str, spec: str) -> Any:
    if target.endswith(".py") or os.sep in target:
        return _attr(_load_file(target, spec), attr, spec)
    try:
        module = importlib.import_module(target)
    except ImportError as exc:
        raise ConfigError(f"cannot import module {target!r} (from {spec!r}): {exc}",
                          hint="check the module name and that it is installed or on PYTHONPATH") from None
    except Exception as exc:
        raise ConfigError(f"importing {target!r} (from {spec!r}) failed: {type(exc).__name__}: {exc}") from None
    return _attr(module, attr, spec)


def _attr(module: Any, attr: str, spec: str) -> Any:
    try:
        return getattr(module, attr)
    except AttributeError:
        public = sorted(n for n in vars(module) if not n.startswith("_"))[:12]
        where = getattr(module, "__file__", None) if module.__name__.startswith(_FILE_MODULE) else module.__name__
        raise ConfigError(f"{where} has no attribute {attr!r} (from {spec!r})",
                          hint=f"names there include: {', '.join(public) or 'none'}") from None


_FILE_MODULE = "_decompose_user_"  # the name prefix of modules loaded from a file path


def _load_file(path: str, spec: str) -> Any:
    file = Path(path).expanduser()
    if not file.is_file():
        raise ConfigError(f"cannot read {path!r} (from {spec!r}): no such file", hint="check the path")
    name = f"{_FILE_MODULE}{abs(hash(str(file.resolve())))}"
    loader_spec = importlib.util.spec_from_file_location(name, file)
    if loader_spec is None or loader_spec.loader is None:
        raise ConfigError(f"cannot load {path!r} as Python (from {spec!r})", hint="give a .py file")
    module = importlib.util.module_from_spec(loader_spec)
    sys.modules[name] = module
    folder = str(file.resolve().parent)
    if folder not in sys.path:  # the file may import the modules beside it, as when run as a script
        sys.path.append(folder)
    try:
        loader_spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[name]
        raise ConfigError(f"running {path} (from {spec!r}) failed: {type(exc).__name__}: {exc}",
                          hint="fix the file; run with --debug for the traceback") from exc
    return module


def _call(factory: Any, spec: str) -> Any:
    try:
        return factory()
    except TypeError as exc:
        raise ConfigError(f"{spec!r}: calling it with no arguments failed: {exc}",
                          hint="point at an object, or at a factory that takes no arguments") from None


def _as_model(value: Any, spec: str) -> Any:
    from langchain_core.language_models import BaseChatModel

    if not isinstance(value, BaseChatModel) and callable(value):
        value = _call(value, spec)
    if not isinstance(value, BaseChatModel):
        raise ConfigError(f"{spec!r} gives a {type(value).__name__}, not a chat model",
                          hint="point at a langchain BaseChatModel, or a zero-argument factory returning one")
    return value
