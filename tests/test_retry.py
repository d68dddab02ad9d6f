"""The retry engine: the transport rule against a real misbehaving HTTP server (tests/fault_server.py) on
127.0.0.1, and each named rule's decisions on a `RetryState`."""

from __future__ import annotations

import asyncio
import email.utils
import math
import time

import httpx
import openai
import pytest
from fault_server import HANG, HTML_PAGE, MALFORMED, NO_CHOICES, RESET, ok, status
from servers import free_port
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    retry_if_exception_type,
    stop_after_attempt,
    stop_before_delay,
    wait_exponential,
    wait_fixed,
)

from decompose import RetryableToolError, ToolError
from decompose.errors import ModelError
from decompose.events import Retried, Usage
from decompose.models.openai import load_openai
from decompose.retry import (
    TOOL_ARGS_REASK,
    RetryPolicy,
    RetryState,
    Rule,
    UnusableReply,
    call_with_retries,
    plan_reask,
    retry_events,
    retrying,
    retrying_blocking,
    stop_if_reply_repeated,
    transient_tool_error,
    transport,
)
from decompose.transport_errors import error_reason, is_transient, retry_after_seconds

FAST = RetryPolicy(max_attempts=4, initial_wait=0.01, max_wait=0.04, jitter=0.005, max_total=10)


def http_error(code: int, **headers: str) -> httpx.HTTPStatusError:
    request = httpx.Request("POST", "http://127.0.0.1:1/v1/chat/completions")
    return httpx.HTTPStatusError("x", request=request, response=httpx.Response(code, headers=headers, request=request))


def ask(base_url: str, policy: RetryPolicy = FAST, timeout: float = 5.0):
    """Run one chat call under `policy`; returns (answer, [(attempt, failure, wait)] for each retry)."""
    calls: list[tuple[int, BaseException, float]] = []
    model = load_openai("fault", base_url=base_url, timeout=timeout)

    def before_sleep(state):
        calls.append((state.attempt_number, state.failures[-1], state.upcoming_sleep))

    async def go():
        return await call_with_retries(lambda: model.ainvoke("hi"), policy, before_sleep)

    return asyncio.run(go()), calls


@pytest.mark.parametrize(
    "headers",
    [{"Retry-After": "0.3"}, {"retry-after-ms": "300"}],
    ids=["retry-after-seconds", "retry-after-ms"],
)
@pytest.mark.server
def test_429_waits_as_long_as_the_server_asks(fault, headers):
    fault.queue(status(429, headers))
    answer, calls = ask(fault.base_url)
    assert answer.content == "ok"
    assert len(fault.hits) == 2
    assert fault.gaps()[0] >= 0.3
    [(attempt, exc, wait)] = calls
    assert (attempt, error_reason(exc), wait) == (1, "HTTP 429", 0.3)


@pytest.mark.slow
@pytest.mark.server
def test_retry_after_as_http_date(fault):
    when = math.ceil(time.time()) + 1  # a whole second: HTTP dates have no fractions
    fault.queue(status(503, {"Retry-After": email.utils.formatdate(when, usegmt=True)}))
    ask(fault.base_url, RetryPolicy(max_attempts=2, max_total=10))
    assert len(fault.hits) == 2
    assert fault.hits[1].at >= when - 0.005  # small slack: wall clock vs the event loop's clock


@pytest.mark.server
def test_retry_after_is_capped(fault):
    fault.queue(status(429, {"Retry-After": "3600"}))
    _, calls = ask(fault.base_url, RetryPolicy(max_retry_after=0.2, max_total=10))
    assert [wait for _, _, wait in calls] == [0.2]
    assert fault.gaps()[0] >= 0.2


@pytest.mark.server
def test_server_errors_back_off_then_succeed(fault):
    fault.queue(status(500), status(503))
    answer, calls = ask(fault.base_url)
    assert answer.content == "ok"
    assert len(fault.hits) == 3
    assert [(a, error_reason(e)) for a, e, _ in calls] == [(1, "HTTP 500"), (2, "HTTP 503")]
    waits = [w for _, _, w in calls]
    assert waits[0] >= FAST.initial_wait and waits[1] >= 2 * FAST.initial_wait
    assert all(gap >= wait for gap, wait in zip(fault.gaps(), waits, strict=True))


@pytest.mark.parametrize(
    "code, words",
    [(401, "OPENAI_API_KEY"), (403, "OPENAI_API_KEY"), (404, "model name"), (400, "rejected")],
)
@pytest.mark.server
def test_permanent_errors_fail_at_once_with_the_fix(fault, code, words):
    fault.queue(status(code, message="nope"))
    with pytest.raises(ModelError) as err:
        ask(fault.base_url)
    assert len(fault.hits) == 1
    message = str(err.value)
    assert f"HTTP {code} from {fault.base_url}/chat/completions: nope" in message
    assert words in message and "\n" not in message
    assert isinstance(err.value.__cause__, openai.APIStatusError)


@pytest.mark.parametrize(
    "behaviour, reason", [(HANG, "timeout"), (RESET, "connection lost"), (MALFORMED, "malformed response")]
)
@pytest.mark.server
def test_broken_transport_is_retried(fault, behaviour, reason):
    fault.queue(behaviour)
    answer, calls = ask(fault.base_url, timeout=0.3)
    assert answer.content == "ok"
    assert len(fault.hits) == 2
    assert [error_reason(e) for _, e, _ in calls] == [reason]


@pytest.mark.server
def test_retries_exhausted_name_the_endpoint_and_count(fault):
    fault.default = status(503)
    with pytest.raises(ModelError, match=r"HTTP 503 .* \(after 4 attempts\)"):
        ask(fault.base_url)
    assert len(fault.hits) == FAST.max_attempts


@pytest.mark.slow
@pytest.mark.server
def test_max_total_bounds_a_server_that_always_hangs(fault):
    fault.default = HANG
    policy = RetryPolicy(max_attempts=100, initial_wait=0.05, jitter=0, max_total=1.2)
    start = time.monotonic()
    with pytest.raises(ModelError, match="timeout") as err:
        ask(fault.base_url, policy, timeout=0.3)
    # Each attempt lasts at least the 0.3 s client timeout, so max_total allows at most 4 + 1.
    assert 2 <= len(fault.hits) <= 5
    assert time.monotonic() - start >= 0.6
    assert "raise the model's timeout" in err.value.hint


@pytest.mark.server
def test_max_total_cuts_an_attempt_that_would_run_past_it(fault):
    fault.default = HANG  # hangs 30 s, as long as the client's timeout below
    start = time.monotonic()
    with pytest.raises(ModelError, match="timeout"):
        ask(fault.base_url, RetryPolicy(max_total=0.2), timeout=30)
    assert len(fault.hits) == 1
    assert time.monotonic() - start < 10  # far below the 30 s the attempt alone would take


@pytest.mark.parametrize("body", [HTML_PAGE, NO_CHOICES], ids=["html-login-page", "json-without-choices"])
@pytest.mark.server
def test_a_200_that_is_not_a_completion_is_retried_then_named(fault, body):
    fault.queue(body, ok("fine"))
    answer, calls = ask(fault.base_url)
    assert answer.content == "fine" and [error_reason(c[1]) for c in calls] == ["malformed response"]
    fault.reset()
    fault.default = body
    with pytest.raises(ModelError) as err:
        ask(fault.base_url)
    message = str(err.value)
    assert message.startswith(f"malformed response from {fault.base_url}/chat/completions: got ")
    assert ("Sign in to continue" if body is HTML_PAGE else "queued") in message
    assert "(after 4 attempts)" in message and "OpenAI-compatible API" in err.value.hint
    assert "Traceback" not in message and "AttributeError" not in message and len(fault.hits) == 4


def test_connection_refused_says_where_and_what_to_check():
    url = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    with pytest.raises(ModelError) as err:
        ask(url, RetryPolicy(max_attempts=2, initial_wait=0.01, jitter=0))
    assert str(err.value).startswith(f"could not reach {url}/chat/completions")
    assert err.value.hint == "is the server running? check OPENAI_BASE_URL"


def test_errors_that_are_not_the_servers_pass_through_unchanged():
    async def buggy():
        raise KeyError("bug")

    with pytest.raises(KeyError):
        asyncio.run(call_with_retries(buggy, FAST))


def test_classification_of_plain_httpx_errors():
    request = httpx.Request("POST", "http://127.0.0.1:1/v1/chat/completions")
    assert [is_transient(http_error(c)) for c in (408, 409, 429, 500, 502, 503, 504)] == [True] * 7
    assert [is_transient(http_error(c)) for c in (400, 401, 403, 404, 422)] == [False] * 5
    assert is_transient(httpx.ReadTimeout("slow", request=request))
    assert is_transient(ConnectionResetError()) and is_transient(TimeoutError())
    assert not is_transient(ValueError("a parse error is not transient"))
    assert retry_after_seconds(http_error(429, **{"retry-after": "2"})) == 2.0
    assert retry_after_seconds(http_error(429, **{"retry-after-ms": "250"})) == 0.25
    assert retry_after_seconds(http_error(429, **{"retry-after": "soon"})) is None
    assert retry_after_seconds(http_error(500)) is None


# ----- the engine and its named rules, each decision on a RetryState --------------------------------------------


def failed_state(rule: Rule, *failures: BaseException) -> RetryState:
    """The state after `failures`, one attempt each, as `retrying` keeps it: tenacity's record of the call (what
    the rule's strategies are handed) and the failures (what the attempt and the hooks see)."""
    state = RetryState(rule)
    state.call = RetryCallState(Retrying(), None, (), {})
    for number, failure in enumerate(failures, 1):
        state.call.attempt_number = number
        state.call.set_exception((type(failure), failure, None))
        state.failed(failure)
    return state


def record(rule: Rule, *failures: BaseException) -> RetryCallState:
    """tenacity's record after `failures`: what the rule's strategies decide on."""
    return failed_state(rule, *failures).call


def test_the_transport_rule_retries_transient_failures_within_attempts_and_deadline():
    rule = transport(RetryPolicy(max_attempts=3, initial_wait=0.5, max_wait=20, jitter=0.1, max_total=10))
    assert rule is transport(RetryPolicy(max_attempts=3, initial_wait=0.5, max_wait=20, jitter=0.1, max_total=10))
    assert (rule.name, rule.kind) == ("transport", "transport")
    assert rule.retry(record(rule, http_error(503)))
    assert not rule.retry(record(rule, http_error(401))) and not rule.retry(record(rule, KeyError()))
    assert not rule.stop(record(rule, http_error(503), http_error(503)))
    assert rule.stop(record(rule, *[http_error(503)] * 3))  # max_attempts
    late = record(rule, http_error(503))
    late.start_time -= 9.8
    late.upcoming_sleep = 0.5
    assert rule.stop(late)  # the wait would cross max_total
    second = record(rule, http_error(500), http_error(500))
    assert 1.0 <= rule.wait(second) <= 1.1  # backoff: 0.5 * 2 plus jitter
    assert rule.wait(record(rule, http_error(429, **{"retry-after": "3"}))) == 3.0
    assert rule.wait(record(rule, http_error(429, **{"retry-after": "3600"}))) == 60.0  # max_retry_after
    no_deadline = transport(RetryPolicy(max_total=None))
    forever = record(no_deadline, http_error(503))
    forever.start_time -= 10_000
    assert not no_deadline.stop(forever)


def test_the_plan_reask_rule_stops_after_max_retries_or_a_repeated_reply():
    rule = plan_reask(max_retries=2)
    assert rule.kind == "parse" and rule.wait(record(rule, UnusableReply("x", "bad"))) == 0
    assert rule.retry(record(rule, UnusableReply("x", "bad")))
    assert not rule.retry(record(rule, ModelError("HTTP 503")))  # the call failed, not the reply
    assert not rule.stop(record(rule, UnusableReply("a", "bad"), UnusableReply("b", "bad")))
    assert rule.stop(record(rule, *(UnusableReply(r, "bad") for r in "abc")))  # 1 + 2 re-asks
    assert rule.stop(record(rule, UnusableReply("same", "bad"), UnusableReply("same", "bad")))
    assert not rule.stop(record(plan_reask(5), UnusableReply("", "bad")))
    assert plan_reask(0).stop(record(rule, UnusableReply("a", "bad")))


def test_the_tool_argument_rule_reasks_once():
    rule = TOOL_ARGS_REASK
    assert rule.kind == "parse" and rule.retry(record(rule, UnusableReply("{}", "missing 'a'")))
    assert not rule.stop(record(rule, UnusableReply("{}", "missing 'a'")))
    assert rule.stop(record(rule, UnusableReply("{}", "missing 'a'"), UnusableReply("{}", "missing 'a'")))


def test_the_transient_tool_error_rule_backs_off_and_spares_unkeyed_side_effects():
    rule = transient_tool_error(RetryableToolError, 3, may_repeat=True)
    busy = RetryableToolError("busy")
    assert rule.kind == "tool" and rule.retry(record(rule, busy))
    assert not rule.retry(record(rule, ToolError("bad input")))
    assert [rule.wait(record(rule, *[busy] * n)) for n in (1, 2, 3)] == [0.1, 0.2, 0.4]
    assert not rule.stop(record(rule, *[busy] * 3)) and rule.stop(record(rule, *[busy] * 4))
    assert not transient_tool_error(RetryableToolError, 3, may_repeat=False).retry(record(rule, busy))


def test_rules_compose_from_tenacity_strategies():
    rule = Rule(
        "patient re-ask",
        "parse",
        retry_if_exception_type(UnusableReply),
        stop_after_attempt(5) | stop_if_reply_repeated(),
        wait_fixed(0.25),
    )
    assert rule.stop(record(rule, UnusableReply("same", "bad"), UnusableReply("same", "bad")))
    assert not rule.stop(record(rule, UnusableReply("a", "bad"), UnusableReply("b", "bad")))
    assert rule.wait(record(rule, UnusableReply("a", "bad"))) == 0.25


async def test_retrying_hands_one_record_to_the_attempt_and_every_hook():
    rule = Rule("test", "parse", retry_if_exception_type(UnusableReply), stop_after_attempt(3), wait_fixed(0.01))
    seen = []

    async def attempt(state: RetryState) -> str:
        seen.append(("attempt", state.attempt_number, [str(f) for f in state.failures]))
        if state.attempt_number < 3:
            raise UnusableReply("x", f"bad {state.attempt_number}")
        return "done"

    def before_sleep(state: RetryState) -> None:
        seen.append(("sleep", state.attempt_number, state.upcoming_sleep))

    assert await retrying(rule, attempt, before_sleep=before_sleep) == "done"
    assert seen == [
        ("attempt", 1, []),
        ("sleep", 1, 0.01),
        ("attempt", 2, ["bad 1"]),
        ("sleep", 2, 0.01),
        ("attempt", 3, ["bad 1", "bad 2"]),
    ]


async def test_retrying_gives_up_through_its_hook_and_raises_what_it_does_not_retry():
    rule = Rule("test", "parse", retry_if_exception_type(UnusableReply), stop_after_attempt(2))

    async def unusable(state: RetryState) -> str:
        raise UnusableReply("x", f"bad {state.attempt_number}")

    given_up = await retrying(rule, unusable, give_up=lambda s: f"salvaged after {s.attempt_number}: {s.failures[-1]}")
    assert given_up == "salvaged after 2: bad 2"
    with pytest.raises(UnusableReply, match="bad 2"):
        await retrying(rule, unusable)

    calls = []

    async def buggy(state: RetryState) -> str:
        calls.append(state.attempt_number)
        raise KeyError("bug")

    with pytest.raises(KeyError):
        await retrying(rule, buggy)
    assert calls == [1]


def test_one_hook_turns_every_retry_into_an_event_and_a_count():
    events, usage = [], Usage()
    announce = retry_events(events.append, usage, "solve", step_id=4)
    transport_state = failed_state(transport(RetryPolicy()), http_error(503))
    transport_state.call.upcoming_sleep = 0.5
    announce(transport_state)
    announce(failed_state(TOOL_ARGS_REASK, UnusableReply("{}", "tool 'add' is missing argument 'a'")))
    announce(failed_state(transient_tool_error(RetryableToolError, 2, may_repeat=True), RetryableToolError("busy")))
    assert [(e.kind, e.phase, e.step_id, e.attempt, e.reason, e.wait) for e in events] == [
        ("transport", "solve", 4, 1, "HTTP 503", 0.5),
        ("parse", "solve", 4, 1, "tool 'add' is missing argument 'a'", 0.0),
        ("tool", "solve", 4, 1, "busy", 0.0),
    ]
    assert all(isinstance(e, Retried) for e in events)
    assert (usage.transport_retries, usage.parse_retries) == (1, 1)  # a tool's own retry is an event only


async def test_a_first_attempt_that_succeeds_consults_no_strategy():
    def never(state):
        raise AssertionError("consulted on the fast path")

    rule = Rule(
        "strict",
        "transport",
        retry_if_exception(never),
        stop_after_attempt(1) | stop_before_delay(0),
        wait_fixed(0) + wait_exponential(),
    )

    async def fine(state: RetryState) -> str:
        return "ok"

    assert await retrying(rule, fine, before_sleep=never, give_up=never) == "ok"


async def test_a_deadline_counts_from_the_first_attempt_though_it_ran_before_tenacity():
    rule = Rule("deadline", "transport", retry_if_exception_type(ValueError), stop_before_delay(0.3), wait_fixed(0.05))
    attempts = []

    async def slow_then_fails(state: RetryState) -> str:
        attempts.append(state.attempt_number)
        if state.attempt_number == 1:
            await asyncio.sleep(0.3)  # the whole deadline: no retry may start
        raise ValueError("busy")

    with pytest.raises(ValueError):
        await retrying(rule, slow_then_fails)
    assert attempts == [1]

    async def fails_fast(state: RetryState) -> str:
        attempts.append(state.attempt_number)
        if state.attempt_number < 3:
            raise ValueError("busy")
        return "ok"

    attempts.clear()
    assert await retrying(rule, fails_fast) == "ok" and attempts == [1, 2, 3]


def test_retrying_blocking_hands_over_the_first_failure_as_retrying_does():
    rule = Rule("test", "store", retry_if_exception_type(OSError), stop_after_attempt(3), wait_fixed(0.01))
    seen = []

    def attempt(state: RetryState) -> str:
        seen.append(("attempt", state.attempt_number, [str(f) for f in state.failures]))
        if state.attempt_number < 3:
            raise OSError(f"locked {state.attempt_number}")
        return "written"

    def before_sleep(state: RetryState) -> None:
        seen.append(("sleep", state.attempt_number, state.upcoming_sleep))

    assert retrying_blocking(rule, attempt, before_sleep=before_sleep) == "written"
    assert seen == [
        ("attempt", 1, []),
        ("sleep", 1, 0.01),
        ("attempt", 2, ["locked 1"]),
        ("sleep", 2, 0.01),
        ("attempt", 3, ["locked 1", "locked 2"]),
    ]

    def never_works(state: RetryState) -> str:
        raise OSError(f"locked {state.attempt_number}")

    assert (
        retrying_blocking(rule, never_works, give_up=lambda s: f"gave up after {s.attempt_number}") == "gave up after 3"
    )

    def buggy(state: RetryState) -> str:
        raise KeyError("bug")

    with pytest.raises(KeyError):  # not retried: raised as it is
        retrying_blocking(rule, buggy)
    assert (
        retrying_blocking(rule, buggy, give_up=lambda s: f"after {s.attempt_number}: {s.failures[-1]!r}")
        == "after 1: KeyError('bug')"
    )
