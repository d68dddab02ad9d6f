"""The Orchestrator's parts from its arguments: a solver from a strategy name, type checks with a fix, and the
flat keyword arguments of earlier versions mapped onto the part each setting lives on now."""

from __future__ import annotations

import warnings
from typing import Any

from decompose.auto import AutoStrategy
from decompose.chains.decompose import Decomposer
from decompose.errors import ConfigError
from decompose.limits import Limits
from decompose.solvers import STRATEGIES, DirectSolver, Solver
from decompose.tools.runner import ToolRunner


def make_strategy(strategy: str | Solver | AutoStrategy) -> tuple[Solver, AutoStrategy | None]:
    """The steps' solver and, for "auto" (or an `AutoStrategy`), the per-question choice of route; under auto a
    decomposition's steps are answered directly (the choice already tried the other ways on the whole question)."""
    if isinstance(strategy, str) and strategy == "auto":
        strategy = AutoStrategy()
    if isinstance(strategy, AutoStrategy):
        return DirectSolver(), strategy
    return make_solver(strategy), None


def make_solver(strategy: str | Solver, **settings: Any) -> Solver:
    """A solver from its name (with `settings`, e.g. samples=5), or the solver object given."""
    if not isinstance(strategy, str):
        if not callable(getattr(strategy, "solve", None)):
            raise ConfigError(f"strategy must be a name or a solver with `async solve(ctx)`, got "
                              f"{type(strategy).__name__}", hint=f"use one of: {', '.join(STRATEGIES)}, auto")
        return strategy
    if strategy not in STRATEGIES:
        raise ConfigError(f"unknown strategy {strategy!r}", hint=f"use one of: {', '.join(STRATEGIES)}, auto")
    try:
        return STRATEGIES[strategy](**settings)
    except TypeError:
        raise ConfigError(f"strategy {strategy!r} takes no {', '.join(settings)}",
                          hint="samples and temperature are for self_consistency, max_depth for recursive, "
                               "timeout and memory_mb for program") from None


def checked(value: Any, kind: type, name: str) -> Any:
    if not isinstance(value, kind):
        raise ConfigError(f"{name} must be a {kind.__name__}, got {type(value).__name__}",
                          hint=f"pass {name}={kind.__name__}(...)")
    return value


# The flat keyword arguments of earlier versions: where each setting lives now (the part, its name there).
_MOVED = {
    "max_steps": ("decomposer", "max_steps"), "max_plan_retries": ("decomposer", "max_retries"),
    "structured_output": ("decomposer", "structured_output"), "on_plan_failure": ("decomposer", "on_failure"),
    "max_replans": ("decomposer", "max_replans"), "tool_timeout": ("tool_runner", "timeout"),
    "run_timeout": ("limits", "run_timeout"), "step_timeout": ("limits", "step_timeout"),
    "max_tokens_per_run": ("limits", "max_tokens"), "samples": ("strategy", "samples"),
    "temperature": ("strategy", "temperature"), "max_depth": ("strategy", "max_depth"),
}
_PART_TYPES = {"decomposer": "Decomposer", "tool_runner": "ToolRunner", "limits": "Limits", "strategy": "the solver"}


def moved_settings(moved: dict[str, Any], strategy: str | Solver, decomposer: Decomposer | None,
                    tool_runner: ToolRunner | None, limits: Limits | None) -> tuple:
    """Build the parts from earlier versions' flat keyword arguments, with a DeprecationWarning naming the new
    spelling; a name that never existed is a ConfigError, as is setting a part both ways."""
    unknown = sorted(set(moved) - set(_MOVED))
    if unknown:
        raise ConfigError(f"Orchestrator got an unexpected keyword argument {unknown[0]!r}",
                          hint="see help(Orchestrator) for its arguments")
    parts: dict[str, dict[str, Any]] = {}
    for name, value in moved.items():
        part, field_name = _MOVED[name]
        parts.setdefault(part, {})[field_name] = value
        new = f"strategy={strategy!r} with its solver's {field_name}=" if part == "strategy" else \
            f"{part}={_PART_TYPES[part]}({field_name}=...)"
        warnings.warn(f"Orchestrator({name}=...) is now {new}", DeprecationWarning, stacklevel=3)
    given = {"decomposer": decomposer, "tool_runner": tool_runner, "limits": limits,
             "strategy": None if isinstance(strategy, str) else strategy}
    both = next((part for part in parts if given[part] is not None), None)
    if both:
        raise ConfigError(f"{both} is given both as {both}= and as flat keyword arguments",
                          hint=f"set everything on {both}=")
    return (make_solver(strategy, **parts["strategy"]) if "strategy" in parts else strategy,
            Decomposer(**parts["decomposer"]) if "decomposer" in parts else decomposer,
            ToolRunner(**parts["tool_runner"]) if "tool_runner" in parts else tool_runner,
            Limits(**parts["limits"]) if "limits" in parts else limits)
