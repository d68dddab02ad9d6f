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
- `STRUCTURED_OUTPUT_DOWNGRADE`: a server that refused a request for structured output is asked again in plain
  text, once.
- `store_write(...)`, `STORE_SCHEMA_RACE`: the conversation store's writes while its database is unavailable, and
  the creation of its tables while replicas race to create them (`retrying_blocking`: the store is synchronous).

Strategies are tenacity's (composable with `|` and `&`) and run by tenacity's own `AsyncRetrying`/`Retrying`,
from the first failure on (a first attempt that succeeds needs no engine); the attempt and the hooks get a
`RetryState`: tenacity's record of the call (`call`), the start time and the failures so far. `retry_events` is
the one hook that turns a retry into a `Retried` event and counts it in `Usage`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal, TypeVar

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    Retrying,
    retry_if_exception,
    retry_if_exception_type,
    retry_never,
    stop_after_attempt,
    stop_before_delay,
    wait_exponential,
    wait_exponential_jitter,
    wait_incrementing,
    wait_none,
)
from tenacity.retry import retry_base
from tenacity.stop import stop_base
from tenacity.wait import wait_base

from decompose.errors import ModelError
from decompose.events import Emit, Retried, Usage
from decompose.transport_errors import describe_error, error_reason, is_model_failure, is_transient, retry_after_seconds

T = TypeVar("T")
RetryKind = Literal["transport", "parse", "tool", "format", "store"]


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
    re-ask (the model's reply was unusable), a `tool` failure, a `format` downgrade (the same request in a form
    the server accepts) or a `store` write; `Retried.kind` and `Usage` say so."""

    name: str
    kind: RetryKind
    retry: retry_base  # which failures may be retried
    stop: stop_base  # when to give up, asked after each retryable failure
    wait: wait_base = wait_none()  # seconds before the next attempt


class RetryState:
    """One call under a rule, as its attempt and hooks see it: when it started, every failure so far, and from the
    first failure on tenacity's record of the call (`call`: the attempt number, the wait ahead)."""

    def __init__(self, rule: Rule):
        self.rule = rule
        self.failures: list[BaseException] = []
        self.start_time = time.monotonic()  # when the first attempt started: what a deadline counts from
        self.call: RetryCallState | None = None  # tenacity's record, once the first attempt has failed

    @property
    def attempt_number(self) -> int:
        return self.call.attempt_number if self.call is not None else 1

    @property
    def upcoming_sleep(self) -> float:
        return self.call.upcoming_sleep if self.call is not None else 0.0

    def failed(self, exc: BaseException) -> None:
        """Record that the current attempt raised `exc`; an unusable reply the model gave twice running is
        marked so (`stop_if_reply_repeated`)."""
        previous = self.failures[-1] if self.failures else None
        if isinstance(exc, UnusableReply) and isinstance(previous, UnusableReply):
            exc.repeats = exc.reply == previous.reply
        self.failures.append(exc)


class UnusableReply(Exception):
    """A model's reply that could not be used: re-asked under `plan_reask` or `TOOL_ARGS_REASK`."""

    repeats = False  # the same reply as the attempt before: asking again cannot help

    def __init__(self, reply: str, problem: str):
        super().__init__(problem)
        self.reply = reply  # shown to the model when it is asked again


class StructuredOutputRefused(Exception):
    """The server answered a request for structured output with an HTTP error: asked again in plain text."""


Hook = Callable[[RetryState], None]


async def retrying(
    rule: Rule,
    attempt: Callable[[RetryState], Awaitable[T]],
    *,
    before_sleep: Hook | None = None,
    give_up: Callable[[RetryState], T] | None = None,
) -> T:
    """Await `attempt(state)` until it succeeds or `rule` gives up. A result is final; a failure is retried while
    `rule.retry` allows it and `rule.stop` does not object, with `before_sleep(state)` told of each retry. A failure
    that is not retried goes to `give_up(state)` (which returns a result or raises), or is raised as it is.
    Cancellation is no failure: it passes.

    The first attempt runs before tenacity is set up (most calls succeed at once, and `AsyncRetrying` costs tens
    of µs a call); its failure is handed to tenacity as its attempt 1, so every rule decides exactly as if tenacity
    had run it."""
    state = RetryState(rule)
    try:
        return await attempt(state)
    except Exception as exc:
        state.failed(exc)
    try:
        async for call in AsyncRetrying(**_strategies(rule, state, before_sleep)):
            with call:
                if state.call is None:  # attempt 1 has run: tenacity takes over from its failure
                    _hand_over(state, call.retry_state)
                try:
                    return await attempt(state)
                except Exception as exc:
                    state.failed(exc)
                    raise
    except Exception as exc:
        return _given_up(state, exc, give_up)
    raise AssertionError("tenacity ended the attempts without an outcome")


def retrying_blocking(
    rule: Rule,
    attempt: Callable[[RetryState], T],
    *,
    before_sleep: Hook | None = None,
    give_up: Callable[[RetryState], T] | None = None,
) -> T:
    """`retrying` for synchronous code: the waits sleep the thread."""
    state = RetryState(rule)
    try:
        return attempt(state)
    except Exception as exc:
        state.failed(exc)
    try:
        for call in Retrying(**_strategies(rule, state, before_sleep)):
            with call:
                if state.call is None:  # attempt 1 has run: tenacity takes over from its failure
                    _hand_over(state, call.retry_state)
                try:
                    return attempt(state)
                except Exception as exc:
                    state.failed(exc)
                    raise
    except Exception as exc:
        return _given_up(state, exc, give_up)
    raise AssertionError("tenacity ended the attempts without an outcome")


def _hand_over(state: RetryState, call: RetryCallState) -> None:
    """Make the first attempt, run before tenacity, tenacity's attempt 1: its record starts when that attempt
    started (a deadline such as `max_total` counts from there) and it fails as that attempt failed; tenacity then
    asks the rule's strategies, calls `before_sleep`, waits, and runs attempt 2."""
    state.call = call
    call.start_time = state.start_time
    raise state.failures[-1]


def _strategies(rule: Rule, state: RetryState, before_sleep: Hook | None) -> dict:
    """The rule as tenacity's arguments; the last failure is raised as itself when the rule gives up."""
    hook = None if before_sleep is None else (lambda _call: before_sleep(state))
    return {"retry": rule.retry, "stop": rule.stop, "wait": rule.wait, "before_sleep": hook, "reraise": True}


def _given_up(state: RetryState, exc: Exception, give_up: Callable[[RetryState], T] | None) -> T:
    if give_up is None or not state.failures or exc is not state.failures[-1]:
        raise exc  # no hook, or not an attempt's failure (a hook's own error)
    return give_up(state)


def retry_events(emit: Emit, usage: Usage | None, phase: str, step_id: int | None = None) -> Hook:
    """The `before_sleep` hook that announces every retry: one `Retried` event, counted in `usage` as a transport
    or parse retry (a tool's own retries are events only)."""

    def announce(state: RetryState) -> None:
        kind = state.rule.kind
        failure = state.failures[-1]
        if usage is not None and kind == "transport":
            usage.transport_retries += 1
        elif usage is not None and kind == "parse":
            usage.parse_retries += 1
        emit(
            Retried(
                phase=phase,
                attempt=state.attempt_number,
                wait=state.upcoming_sleep,
                step_id=step_id,
                kind=kind,
                reason=error_reason(failure) if kind == "transport" else str(failure),
            )
        )

    return announce


# ----- the named rules ---------------------------------------------------------------------------------------


class wait_retry_after(wait_base):
    """As long as the server asked (`Retry-After`, `retry-after-ms`), up to `cap`; `otherwise` when it did not."""

    def __init__(self, cap: float, otherwise: wait_base):
        self.cap, self.otherwise = cap, otherwise

    def __call__(self, state: RetryCallState) -> float:
        failure = state.outcome.exception() if state.outcome is not None else None
        asked = retry_after_seconds(failure) if failure is not None else None
        return self.otherwise(state) if asked is None else min(asked, self.cap)


class stop_if_reply_repeated(stop_base):
    """Stop when the model's unusable reply is the one it gave before: asking again cannot help."""

    def __call__(self, state: RetryCallState) -> bool:
        failure = state.outcome.exception() if state.outcome is not None else None
        return isinstance(failure, UnusableReply) and failure.repeats


@lru_cache(maxsize=32)  # a policy is fixed for a run: its rule is built once, not per call
def transport(policy: RetryPolicy) -> Rule:
    stop: stop_base = stop_after_attempt(policy.max_attempts)
    if policy.max_total is not None:
        stop = stop | stop_before_delay(policy.max_total)  # counted from the call's start: `RetryState.start_time`
    backoff = wait_exponential_jitter(multiplier=policy.initial_wait, max=policy.max_wait, jitter=policy.jitter)
    return Rule(
        "transport",
        "transport",
        retry_if_exception(is_transient),
        stop,
        wait_retry_after(policy.max_retry_after, backoff),
    )


@lru_cache(maxsize=32)  # asked for at every plan: built once per setting
def plan_reask(max_retries: int) -> Rule:
    return Rule(
        "plan re-ask",
        "parse",
        retry_if_exception_type(UnusableReply),
        stop_after_attempt(max_retries + 1) | stop_if_reply_repeated(),
    )


TOOL_ARGS_REASK = Rule("tool-argument re-ask", "parse", retry_if_exception_type(UnusableReply), stop_after_attempt(2))


@lru_cache(maxsize=64)  # asked for at every tool call: built once per setting
def transient_tool_error(error: type[BaseException], max_retries: int, *, may_repeat: bool) -> Rule:
    """`error` is the tool's way to say "call me again" (`RetryableToolError`); `may_repeat` is False for a tool
    with side effects and no idempotency key, which a second call could repeat."""
    return Rule(
        "transient tool error",
        "tool",
        retry_if_exception_type(error) if may_repeat else retry_never,
        stop_after_attempt(max_retries + 1),
        wait_exponential(multiplier=0.1),
    )


STRUCTURED_OUTPUT_DOWNGRADE = Rule(
    "structured-output downgrade", "format", retry_if_exception_type(StructuredOutputRefused), stop_after_attempt(2)
)


def store_write(error: type[BaseException], attempts: int, first_wait: float) -> Rule:
    """A store write while the database is unavailable (`error`): `attempts` in all, `first_wait` s, doubling."""
    return Rule(
        "store write",
        "store",
        retry_if_exception_type(error),
        stop_after_attempt(attempts),
        wait_exponential(multiplier=first_wait),
    )


def store_schema_race(
    error: type[BaseException] | tuple[type[BaseException], ...],
    raced: Callable[[BaseException], bool],
    attempts: int = 8,
) -> Rule:
    """Creating the store's tables while other replicas create them: `error`s that `raced` says were the race are
    tried again, 0.05 s more patient each time."""
    return Rule(
        "store schema race",
        "store",
        retry_if_exception(lambda exc: isinstance(exc, error) and raced(exc)),
        stop_after_attempt(attempts),
        wait_incrementing(start=0.05, increment=0.05),
    )


# ----- model calls ------------------------------------------------------------------------------------------


async def call_with_retries(
    fn: Callable[[], Awaitable[T]],
    policy: RetryPolicy,
    before_sleep: Hook | None = None,
    *,
    endpoint: str | None = None,
) -> T:
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
