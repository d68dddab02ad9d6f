"""`Limits`: what one run may spend — time, tokens, model calls, money — checked before each model call.

The Orchestrator holds a default record; `run(..., limits=...)` replaces it for a single run. As pydantic-ai's
`UsageLimits` does, a call that would start past a limit is refused before it is sent (no tokens are spent on a
run that is already over budget), and the tokens a reply brings are checked when it arrives.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from decompose.errors import BudgetExceeded, ConfigError
from decompose.events import Usage


@dataclass(frozen=True)
class Limits:
    run_timeout: float | None = None  # seconds for a whole run, planning and synthesis included
    step_timeout: float | None = None  # seconds for one step (a model step or a tool call)
    max_tokens: int | None = None  # input + output tokens of every model call of a run
    max_model_calls: int | None = None  # model calls of a run, retries of a failed call not counted
    max_cost: float | None = None  # USD of a run's model calls, at `decompose.pricing` prices

    def __post_init__(self) -> None:
        for name in ("run_timeout", "step_timeout", "max_tokens", "max_model_calls", "max_cost"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0):
                raise ConfigError(
                    f"Limits.{name} must be a positive number or None, got {value!r}",
                    hint=f"leave {name} out for no limit",
                )

    def replace(self, **changes: Any) -> Limits:
        """This record with some limits changed: `orch.limits.replace(max_tokens=2000)` for one run."""
        return dataclasses.replace(self, **changes)

    def check_before_call(self, usage: Usage, calls_started: int) -> None:
        """Refuse a model call that would start with a limit already reached. `calls_started` counts the calls in
        flight too: parallel steps must not together start more calls than the limit."""
        calls_over = self.max_model_calls is not None and calls_started >= self.max_model_calls
        spent = self.max_cost is not None and usage.cost is not None and usage.cost >= self.max_cost
        if calls_over or spent or (self.max_tokens is not None and usage.total_tokens >= self.max_tokens):
            raise self.exceeded(usage, calls_started)

    def check_after_call(self, usage: Usage, calls_started: int) -> None:
        if (self.max_tokens is not None and usage.total_tokens > self.max_tokens) or self._over_cost(usage):
            raise self.exceeded(usage, calls_started)

    def _over_cost(self, usage: Usage) -> bool:
        return self.max_cost is not None and usage.cost is not None and usage.cost > self.max_cost

    def exceeded(self, usage: Usage, calls_started: int) -> BudgetExceeded:
        """The error, from the run's final usage: calls in flight when a limit was reached still count."""
        if self.max_cost is not None and usage.cost is not None and usage.cost >= self.max_cost:
            return BudgetExceeded(
                f"cost limit reached: ${usage.cost:.6f} spent, max_cost=${self.max_cost}",
                hint="raise Limits.max_cost (--max-cost) or ask a narrower question",
            )
        if (
            self.max_model_calls is not None
            and calls_started >= self.max_model_calls
            and not (self.max_tokens is not None and usage.total_tokens > self.max_tokens)
        ):
            return BudgetExceeded(
                f"model call limit reached: {calls_started} calls made, max_model_calls={self.max_model_calls}",
                hint="raise Limits.max_model_calls or ask a narrower question",
            )
        return BudgetExceeded(
            f"token budget exceeded: {usage.total_tokens} tokens used, max_tokens={self.max_tokens}",
            hint="raise Limits.max_tokens or ask a narrower question",
        )
