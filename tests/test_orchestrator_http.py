"""The orchestrator over a real HTTP model server that fails on cue: retries are events, fallbacks fire,
permanent errors are one clear line, and a run ends within its deadline."""

import json
import time

import pytest
from fault_server import HANG, HTML_PAGE, MALFORMED, ok, status
from servers import free_port

from decompose import Decomposer, Limits, ModelError, Orchestrator, RetryPolicy, ScriptedChatModel
from decompose.events import Retried
from decompose.models.openai import load_openai

FAST = RetryPolicy(max_attempts=3, initial_wait=0.05, max_wait=0.2, jitter=0.01, max_total=5)
TEXT_PLANS = Decomposer(structured_output=False)  # the fault server speaks plain chat completions only
ONE_STEP = json.dumps({"steps": [{"id": 1, "question": "Capital of France?"}]})


@pytest.fixture
def model(server):
    server.reset()
    return load_openai("fault-model", base_url=server.base_url, api_key="k", timeout=2.0)


@pytest.mark.server
def test_429_with_retry_after_is_retried_and_reported(server, model):
    server.queue(status(429, {"Retry-After": "0.3"}), ok(ONE_STEP), ok("Paris"))
    events = []
    result = Orchestrator(model, retry=FAST, decomposer=TEXT_PLANS).run("Capital of France?", on_event=events.append)
    assert result.answer == "Paris"
    retried = [e for e in events if isinstance(e, Retried)]
    assert len(retried) == 1 and retried[0].phase == "decompose" and retried[0].reason == "HTTP 429"
    assert retried[0].wait == pytest.approx(0.3)
    assert server.gaps()[0] >= 0.3
    assert result.usage.transport_retries == 1 and len(server.hits) == 3
    assert result.plan.step(1).model == "fault-model"


@pytest.mark.server
def test_401_is_not_retried_and_says_what_to_fix(server, model):
    server.default = status(401, message="bad key")
    with pytest.raises(ModelError) as err:
        Orchestrator(model, retry=FAST, decomposer=TEXT_PLANS).run("Capital of France?")
    assert len(server.hits) == 1
    assert "HTTP 401 from http://127.0.0.1" in str(err.value) and "OPENAI_API_KEY" in str(err.value)


@pytest.mark.server
def test_fallback_answers_when_the_server_keeps_failing(server, model):
    server.default = status(503)
    backup = ScriptedChatModel(
        rules=[(lambda m: '"steps"' in m[0].content, ONE_STEP), (r"France", "Paris")], model_name="backup"
    )
    result = Orchestrator(model, fallbacks=[backup], retry=FAST, decomposer=TEXT_PLANS).run("Capital of France?")
    assert result.answer == "Paris" and result.plan.step(1).model == "backup"
    assert len(server.hits) == 3 * 2  # every attempt of the primary, for the plan and for the step
    assert result.usage.transport_retries == 2 * 2


@pytest.mark.slow
@pytest.mark.server
def test_a_hanging_server_ends_within_the_per_call_deadline(server, model):
    server.default = HANG
    policy = RetryPolicy(max_attempts=10, initial_wait=0.05, max_wait=0.1, jitter=0.01, max_total=1.0)
    with pytest.raises(ModelError, match="timeout|timed out"):
        Orchestrator(model, retry=policy, decomposer=TEXT_PLANS).run("Capital?")
    assert len(server.hits) <= 5


@pytest.mark.server
def test_a_server_refusing_structured_output_gets_plain_json_instead(server, model):
    server.queue(
        status(400, message="response_format json_schema is not supported"),
        ok(ONE_STEP),
        ok("Paris"),
        ok(ONE_STEP),
        ok("Paris"),
    )
    orch = Orchestrator(model, retry=FAST)
    result = orch.run("Capital of France?")
    assert result.answer == "Paris"
    asked = [hit.body.get("response_format") for hit in server.hits]
    assert asked[0] and asked[0]["type"] == "json_schema"  # structured output was tried first
    assert asked[1] is None  # then the plan was asked for as plain JSON
    retried = [e for e in result.events if isinstance(e, Retried)]
    assert [(e.kind, e.phase, e.attempt) for e in retried] == [("format", "decompose", 1)]  # under its named rule
    assert "refused structured output" in retried[0].reason and "HTTP 400" in retried[0].reason
    again = orch.run("Capital of France?")  # the refusal is remembered: plain JSON at once, no retry
    assert again.answer == "Paris" and not [e for e in again.events if isinstance(e, Retried)]
    assert server.hits[3].body.get("response_format") is None


def test_an_unreachable_server_is_not_asked_twice_in_two_formats():
    model = load_openai("m", base_url=f"http://127.0.0.1:{free_port()}/v1", api_key="k", timeout=1.0)
    events = []
    with pytest.raises(ModelError, match="could not reach"):
        Orchestrator(model, retry=FAST).run("Capital?", on_event=events.append)
    assert len([e for e in events if isinstance(e, Retried)]) == FAST.max_attempts - 1


@pytest.mark.server
def test_the_sync_api_can_be_called_again_with_the_same_http_model(server, model):
    # HTTP clients bind to the event loop they first ran on; each sync call must not strand them.
    server.default = ok("Paris")
    server.queue(ok(ONE_STEP))
    orch = Orchestrator(model, retry=FAST, decomposer=TEXT_PLANS)
    assert orch.run("Capital of France?").answer == "Paris"
    server.queue(ok(ONE_STEP))
    assert orch.run("Capital of France?").answer == "Paris"
    server.queue(ok(ONE_STEP))
    assert Orchestrator(model, retry=FAST, decomposer=TEXT_PLANS).plan("Capital?").steps[0].question


@pytest.mark.slow
@pytest.mark.server
def test_the_run_deadline_covers_planning_against_a_server_that_never_answers(server):
    # The per-call timeout (30 s) and the retry policy would wait minutes; the run's deadline is what ends it.
    server.default = HANG
    model = load_openai("fault-model", base_url=server.base_url, api_key="k", timeout=30.0)
    events = []
    started = time.monotonic()
    orch = Orchestrator(model, limits=Limits(run_timeout=1.0), decomposer=TEXT_PLANS)
    result = orch.run("Capital?", on_event=events.append)
    assert time.monotonic() - started < 15  # far below the minutes the per-call timeout and retries allow
    assert result.answer is None and result.plan is None
    assert result.error == "run timed out after 1s (while planning)"
    assert 0.5 <= result.elapsed < 15 and len(server.hits) >= 1


@pytest.mark.server
def test_an_html_page_instead_of_a_structured_plan_is_retried(server, model):
    # Structured output goes through the SDK's own parser, which a non-JSON body used to break with an
    # AttributeError; it is a malformed response like any other.
    server.queue(HTML_PAGE, ok(ONE_STEP), ok("Paris"))
    events = []
    result = Orchestrator(model, retry=FAST).run("Capital of France?", on_event=events.append)
    assert result.answer == "Paris"
    assert [(e.phase, e.reason) for e in events if isinstance(e, Retried)] == [("decompose", "malformed response")]
    assert server.hits[0].body.get("response_format")  # the failed call was the structured one


@pytest.mark.server
def test_a_body_that_never_parses_names_the_endpoint(server, model):
    server.default = MALFORMED  # a truncated JSON body carries no request: the model's own endpoint is named
    with pytest.raises(ModelError) as err:
        Orchestrator(model, retry=FAST, decomposer=TEXT_PLANS).run("Capital?")
    assert str(err.value).startswith(f"malformed response from {server.base_url}/chat/completions (after 3 attempts)")
    server.reset()
    server.default = MALFORMED
    with pytest.raises(ModelError) as err:  # a wrapped model is seen through
        Orchestrator(model.bind(temperature=0), retry=FAST, decomposer=TEXT_PLANS).run("Capital?")
    assert str(err.value).startswith(f"malformed response from {server.base_url}/chat/completions")
