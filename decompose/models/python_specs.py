"""Model specs that name Python code: `py:MODULE:ATTR`, `py:FILE.py:ATTR` and `scripted:FILE.py[:ATTR]`.

* `py:` — a `BaseChatModel` object, or a zero-argument factory returning one.
* `scripted:` — for tests: FILE defines ATTR, or by default `model` (a chat model), else `make_model()` (a
  factory), else `rules` (and optionally `default`, `latency`) for a `ScriptedChatModel`.
"""

from __future__ import annotations

from typing import Any

from langchain_core.language_models import BaseChatModel

from decompose.errors import ConfigError
from decompose.importing import attribute, call_factory, load_file, resolve, split_target

SCRIPTED_NAMES = ("model", "make_model", "rules")


def load_py(rest: str, spec: str) -> BaseChatModel:
    target, attr = split_target(rest, spec, "py:MODULE:ATTR or py:FILE.py:ATTR")
    return _as_model(resolve(target, attr, spec), spec)


def load_scripted(rest: str, spec: str) -> BaseChatModel:
    if not rest:
        raise ConfigError(f"model spec {spec!r} names no file", hint="write scripted:path/to/rules.py")
    path, attr = rest, None
    head, sep, tail = rest.rpartition(":")
    if sep and head.endswith(".py") and tail.isidentifier():
        path, attr = head, tail
    module = load_file(path, spec)
    if attr is None:
        attr = next((name for name in SCRIPTED_NAMES if hasattr(module, name)), None)
        if attr is None:
            raise ConfigError(
                f"{path} defines none of {', '.join(SCRIPTED_NAMES)}",
                hint="define `model = ScriptedChatModel(rules=[...])` or `rules = [...]`",
            )
    value = attribute(module, attr, spec)
    if attr == "rules" and isinstance(value, list):
        from decompose.models.scripted import ScriptedChatModel

        return ScriptedChatModel(
            rules=value, default=getattr(module, "default", None), latency=float(getattr(module, "latency", 0.0))
        )
    return _as_model(value, spec)


def _as_model(value: Any, spec: str) -> BaseChatModel:
    if not isinstance(value, BaseChatModel) and callable(value):
        value = call_factory(value, spec)
    if not isinstance(value, BaseChatModel):
        raise ConfigError(
            f"{spec!r} gives a {type(value).__name__}, not a chat model",
            hint="point at a langchain BaseChatModel, or a zero-argument factory returning one",
        )
    return value
