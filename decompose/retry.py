"""The one retry engine: every retry in decompose runs `retrying(rule, attempt)` under a named `Rule`.

A rule is tenacity's three strategies plus a name and what a retry under it counts as:

- `transport(policy)`: a model call's transient failure (see `transport_errors`): exponential backoff with jitter,
  a server's `Retry-After` obeyed up to `max_retry_after`, at most `max_attempts`, and no wait that would cross
  `max_total` seconds from the call's start (the attempt running at that deadline is cancelled).
- `plan_reask(max_retries)`: a plan that would not parse or validate is asked for again with the problem, at most
  `max_retries` times, and not after the model repeated its previous reply (a greedy model will again).
- `TOOL_ARGS_REASK`: tool arguments that do not fit the tool's schema are asked for again, once.
- `transient_tool_error(...)`: a tool that raised its retryable error is called again after 0.1, 0.2, 0.4 s...,
  up to `max_retries` times, and a tool with side effects only when it takes an idempotency key.

Strategies are tenacity's (composable with `|` and `&`); every strategy and hook is handed the call's one
`RetryState` (tenacity's `RetryCallState`, plus the failures so far). `retry_events` is the one hook that turns a
retry into a `Retried` event and counts it in `Usage`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal, TypeVar

from tenacity import (
    RetryCallState,
    retry_if_exception,
    retry_if_exception_type,
    retry_never,
    stop_after_attempt,
    stop_before_delay,
    wait_exponential,
    wait_exponential_jitter,
    wait_none,
)
from tenacity.retry import retry_base
from tenacity.stop import stop_base
from tenacity.wait import wait_base

from decompose.errors import ModelError
from decompose.events import Emit, Retried, Usage
from decompose.transport_errors import describe_error, error_reason, is_model_failure, is_transient, retry_after_seconds

T = TypeVar("T")
RetryKind = Literal["transport", "parse", "tool"]


@dataclass(frozen=True)
class RetryPolicy:
    """How a model call is retried: the settings of its `transport` rule."""

    max_attempts: int = 4
    initial_wait: float = 0.5  # first backoff; doubles each retry
    max_wait: float = 20.0  # cap on one backoff
    max_retry_after: float = 60.0  # cap on a server's Retry-After
    max_total: float | None = 120.0  # seconds for the whole call, all attempts and waits; None: no limit
    jitter: float = 0.5  # up to this many random seconds added to each backoff


@dataclass(frozen=True)
class Rule:
    """When a failed attempt is tried again. `kind` is what a retry counts as: a `transport` failure, a `parse`
    re-ask (the model's reply was unusable) or a `tool` failure; `Retried.kind` and `Usage` say so."""

    name: str
    kind: RetryKind
    retry: retry_base  # which failures may be retried
    stop: stop_base  # when to give up, asked after each retryable failure
    wait: wait_base = wait_none()  # seconds before the next attempt


class RetryState(RetryCallState):
    """tenacity's record of one call under a rule (`retry_object` is the rule), plus every failure so far."""

    def __init__(self, rule: Rule):
        super().__init__(rule, None, (), {})  # type: ignore[arg-type]  # a Rule has retry/stop/wait as Retrying has
        self.failures: list[BaseException] = []

    def failed(self, exc: BaseException) -> None:
        """Record that the current attempt raised `exc`."""
        self.set_exception((type(exc), exc, exc.__traceback__))
        self.failures.append(exc)


class UnusableReply(Exception):
    """A model's reply that could not be used: re-asked under `plan_reask` or `TOOL_ARGS_REASK`."""

    def __init__(self, reply: str, problem: str):
        super().__init__(problem)
        self.reply = reply  # shown to the model when it is asked again


Hook = Callable[[RetryState], None]


async def retrying(rule: Rule, attempt: Callable[[RetryState], Awaitable[T]], *, before_sleep: Hook | None = None,
                   give_up: Callable[[RetryState], T] | None = None) -> T:
    """Await `attempt(state)` until it succeeds or `rule` gives up. A result is final; a failure is retried while
    `rule.retry` allows it and `rule.stop` does not object, with `before_sleep(state)` told of each retry. A failure
    that is not retried goes to `give_up(state)` (which returns a result or raises), or is raised as it is.

    Tenacity's `AsyncRetrying` costs ~25 µs a call even when the first attempt succeeds; this loop runs the same
    strategies on the same record, and a first attempt that succeeds costs only the record (<1 µs)."""
    state = RetryState(rule)
    while True:
        try:
            return await attempt(state)
        except Exception as exc:  # cancellation is no failure: it passes
            state.failed(exc)
        if rule.retry(state):
            state.upcoming_sleep = rule.wait(state)
            if not rule.stop(state):
                state.idle_for += state.upcoming_sleep
                if before_sleep is not None:
                    before_sleep(state)
                if state.upcoming_sleep:
                    await asyncio.sleep(state.upcoming_sleep)
                state.attempt_number += 1
                continue
        if give_up is None:
            raise state.failures[-1]
        return give_up(state)


def retry_events(emit: Emit, usage: Usage | None, phase: str, step_id: int | None = None) -> Hook:
    """The `before_sleep` hook that announces every retry: one `Retried` event, counted in `usage` as a transport
    or parse retry (a tool's own retries are events only)."""

    def announce(state: RetryState) -> None:
        kind = state.retry_object.kind  # type: ignore[attr-defined]
        failure = state.failures[-1]
        if usage is not None and kind == "transport":
            usage.transport_retries += 1
        elif usage is not None and kind == "parse":
            usage.parse_retries += 1
        emit(Retried(phase=phase, attempt=state.attempt_number, wait=state.upcoming_sleep, step_id=step_id,
                     kind=kind, reason=error_reason(failure) if kind == "transport" else str(failure)))

    return announce


# ----- the named rules ---------------------------------------------------------------------------------------


class wait_retry_after(wait_base):
    """As long as the server asked (`Retry-After`, `retry-after-ms`), up to `cap`; `otherwise` when it did not."""

    def __init__(self, cap: float, otherwise: wait_base):
        self.cap, self.otherwise = cap, otherwise

    def __call__(self, state: RetryCallState) -> float:
        asked = retry_after_seconds(state.outcome.exception())  # type: ignore[union-attr, arg-type]
        return self.otherwise(state) if asked is None else min(asked, self.cap)


class stop_if_reply_repeated(stop_base):
    """Stop when the model's unusable reply is the one it gave before: asking again cannot help."""

    def __call__(self, state: RetryCallState) -> bool:
        failures = getattr(state, "failures", [])
        replies = [getattr(f, "reply", None) for f in failures[-2:]]
        return len(replies) == 2 and replies[0] is not None and replies[0] == replies[1]


@lru_cache(maxsize=32)  # a policy is fixed for a run: its rule is built once, not per call
def transport(policy: RetryPolicy) -> Rule:
    stop: stop_base = stop_after_attempt(policy.max_attempts)
    if policy.max_total is not None:
        stop = stop | stop_before_delay(policy.max_total)  # counted from the call's start: `RetryState.start_time`
    backoff = wait_exponential_jitter(multiplier=policy.initial_wait, max=policy.max_wait, jitter=policy.jitter)
    return Rule("transport", "transport", retry_if_exception(is_transient), stop,
                wait_retry_after(policy.max_retry_after, backoff))


def plan_reask(max_retries: int) -> Rule:
    return Rule("plan re-ask", "parse", retry_if_exception_type(UnusableReply),
                stop_after_attempt(max_retries + 1) | stop_if_reply_repeated())


TOOL_ARGS_REASK = Rule("tool-argument re-ask", "parse", retry_if_exception_type(UnusableReply), stop_after_attempt(2))


def transient_tool_error(error: type[BaseException], max_retries: int, *, may_repeat: bool) -> Rule:
    """`error` is the tool's way to say "call me again" (`RetryableToolError`); `may_repeat` is False for a tool
    with side effects and no idempotency key, which a second call could repeat."""
    return Rule("transient tool error", "tool", retry_if_exception_type(error) if may_repeat else retry_never,
                stop_after_attempt(max_retries + 1), wait_exponential(multiplier=0.1))


# ----- model calls ------------------------------------------------------------------------------------------


async def call_with_retries(fn: Callable[[], Awaitable[T]], policy: RetryPolicy, before_sleep: Hook | None = None,
                            *, endpoint: str | None = None) -> T:
    """Await `fn()` under `transport(policy)`; raise `ModelError` (chained) when the server fails for good.
    `endpoint` is named when the error itself carries no request (a body that would not parse)."""

    async def attempt(state: RetryState) -> T:
        if policy.max_total is None:
            return await fn()
        async with asyncio.timeout(max(0.0, state.start_time + policy.max_total - time.monotonic())):
            return await fn()

    def give_up(state: RetryState) -> T:
        failure = state.failures[-1]
        if isinstance(failure, ModelError) or not is_model_failure(failure):
            raise failure  # a bug or a parse error is not ours to describe
        raise describe_error(failure, state.attempt_number, endpoint) from failure

    return await retrying(transport(policy), attempt, before_sleep=before_sleep, give_up=give_up)
