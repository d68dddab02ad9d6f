"""The Orchestrator's parts from its arguments: a solver from a strategy name, type checks with a fix, and the
flat keyword arguments of earlier versions mapped onto the part each setting lives on now."""

from __future__ import annotations

import difflib
import warnings
from typing import Any, Literal, TypedDict

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
            raise ConfigError(
                f"strategy must be a name or a solver with `async solve(ctx)`, got {type(strategy).__name__}",
                hint=f"use one of: {', '.join(STRATEGIES)}, auto",
            )
        return strategy
    if strategy not in STRATEGIES:
        raise ConfigError(f"unknown strategy {strategy!r}", hint=f"use one of: {', '.join(STRATEGIES)}, auto")
    try:
        return STRATEGIES[strategy](**settings)
    except TypeError:
        raise ConfigError(
            f"strategy {strategy!r} takes no {', '.join(settings)}",
            hint="samples and temperature are for self_consistency, max_depth for recursive, "
            "timeout and memory_mb for program",
        ) from None


def checked(value: Any, kind: type, name: str) -> Any:
    if not isinstance(value, kind):
        raise ConfigError(
            f"{name} must be a {kind.__name__}, got {type(value).__name__}", hint=f"pass {name}={kind.__name__}(...)"
        )
    return value


class MovedSettings(TypedDict, total=False):
    """The flat keyword arguments of earlier versions, typed (`Orchestrator(**moved: Unpack[MovedSettings])`):
    each still works, with a DeprecationWarning naming the part it is set on now."""

    max_steps: int
    max_plan_retries: int
    structured_output: bool | None
    on_plan_failure: Literal["raise", "direct"]
    max_replans: int
    tool_timeout: float | None
    run_timeout: float | None
    step_timeout: float | None
    max_tokens_per_run: int | None
    samples: int
    temperature: float
    max_depth: int


# Where each flat keyword argument of earlier versions lives now (the part, its name there).
_MOVED = {
    "max_steps": ("decomposer", "max_steps"),
    "max_plan_retries": ("decomposer", "max_retries"),
    "structured_output": ("decomposer", "structured_output"),
    "on_plan_failure": ("decomposer", "on_failure"),
    "max_replans": ("decomposer", "max_replans"),
    "tool_timeout": ("tool_runner", "timeout"),
    "run_timeout": ("limits", "run_timeout"),
    "step_timeout": ("limits", "step_timeout"),
    "max_tokens_per_run": ("limits", "max_tokens"),
    "samples": ("strategy", "samples"),
    "temperature": ("strategy", "temperature"),
    "max_depth": ("strategy", "max_depth"),
}
_PART_TYPES = {"decomposer": "Decomposer", "tool_runner": "ToolRunner", "limits": "Limits", "strategy": "the solver"}


def unknown_keyword(name: str, valid: list[str]) -> TypeError:
    """Python's own error for a misspelt keyword, naming the ones there are (and the closest, when one is)."""
    close = difflib.get_close_matches(name, [*valid, *_MOVED], n=1)
    guess = f" (did you mean {close[0]!r}?)" if close else ""
    return TypeError(
        f"Orchestrator() got an unexpected keyword argument {name!r}{guess}; its keyword arguments "
        f"are {', '.join(valid)}"
    )


def moved_settings(
    moved: MovedSettings,
    strategy: str | Solver | AutoStrategy,
    decomposer: Decomposer | None,
    tool_runner: ToolRunner | None,
    limits: Limits | None,
    valid: list[str],
) -> tuple:
    """Build the parts from earlier versions' flat keyword arguments, with a DeprecationWarning naming the new
    spelling; a name that never existed is a TypeError naming the `valid` ones, setting a part both ways a
    ConfigError."""
    unknown = sorted(set(moved) - set(_MOVED))
    if unknown:
        raise unknown_keyword(unknown[0], valid)
    parts: dict[str, dict[str, Any]] = {}
    for name, value in dict(moved).items():
        part, field_name = _MOVED[name]
        parts.setdefault(part, {})[field_name] = value
        new = (
            f"strategy={strategy!r} with its solver's {field_name}="
            if part == "strategy"
            else f"{part}={_PART_TYPES[part]}({field_name}=...)"
        )
        warnings.warn(f"Orchestrator({name}=...) is now {new}", DeprecationWarning, stacklevel=3)
    given = {
        "decomposer": decomposer,
        "tool_runner": tool_runner,
        "limits": limits,
        "strategy": None if isinstance(strategy, str) else strategy,
    }
    both = next((part for part in parts if given[part] is not None), None)
    if both:
        raise ConfigError(
            f"{both} is given both as {both}= and as flat keyword arguments", hint=f"set everything on {both}="
        )
    # a solver object given with flat solver settings was refused above: a strategy with settings is a name
    return (
        make_solver(strategy, **parts["strategy"]) if "strategy" in parts and isinstance(strategy, str) else strategy,
        Decomposer(**parts["decomposer"]) if "decomposer" in parts else decomposer,
        ToolRunner(**parts["tool_runner"]) if "tool_runner" in parts else tool_runner,
        Limits(**parts["limits"]) if "limits" in parts else limits,
    )
