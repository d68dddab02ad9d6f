"""The retry policy against a real misbehaving HTTP server (tests/fault_server.py) on 127.0.0.1."""

from __future__ import annotations

import asyncio
import email.utils
import math
import time

import httpx
import openai
import pytest
from fault_server import HANG, HTML_PAGE, MALFORMED, NO_CHOICES, RESET, FaultServer, ok, status
from servers import free_port

from decompose.errors import ModelError
from decompose.models.openai import load_openai
from decompose.retry import (
    RetryPolicy,
    call_with_retries,
    error_reason,
    is_transient,
    retry_after_seconds,
)

FAST = RetryPolicy(max_attempts=4, initial_wait=0.05, max_wait=0.2, jitter=0.01, max_total=10)


@pytest.fixture(scope="module")
def server():
    with FaultServer() as srv:
        yield srv


@pytest.fixture
def fault(server):
    server.reset()
    return server


def ask(base_url: str, policy: RetryPolicy = FAST, timeout: float = 5.0):
    """Run one chat call under `policy`; returns (answer, on_retry calls)."""
    calls: list[tuple[int, BaseException, float]] = []
    model = load_openai("fault", base_url=base_url, timeout=timeout)

    async def go():
        return await call_with_retries(
            lambda: model.ainvoke("hi"), policy, lambda *a: calls.append(a)
        )

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


@pytest.mark.parametrize("behaviour, reason", [(HANG, "timeout"), (RESET, "connection lost"),
                                               (MALFORMED, "malformed response")])
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
        ask(fault.base_url, RetryPolicy(max_total=0.5), timeout=30)
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

    def http_error(code: int, **headers: str) -> httpx.HTTPStatusError:
        response = httpx.Response(code, headers=headers, request=request)
        return httpx.HTTPStatusError("x", request=request, response=response)

    assert [is_transient(http_error(c)) for c in (408, 409, 429, 500, 502, 503, 504)] == [True] * 7
    assert [is_transient(http_error(c)) for c in (400, 401, 403, 404, 422)] == [False] * 5
    assert is_transient(httpx.ReadTimeout("slow", request=request))
    assert is_transient(ConnectionResetError()) and is_transient(TimeoutError())
    assert not is_transient(ValueError("a parse error is not transient"))
    assert retry_after_seconds(http_error(429, **{"retry-after": "2"})) == 2.0
    assert retry_after_seconds(http_error(429, **{"retry-after-ms": "250"})) == 0.25
    assert retry_after_seconds(http_error(429, **{"retry-after": "soon"})) is None
    assert retry_after_seconds(http_error(500)) is None
