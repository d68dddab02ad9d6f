"""`FallbackModel`: a fallback answers only when a model says it is unavailable, and every model's failure is kept."""

import pytest
from fault_server import FaultServer, ok, status
from langchain_core.messages import HumanMessage
from servers import free_port

from decompose import (
    BudgetExceeded,
    ConfigError,
    Decomposer,
    ModelAccessError,
    ModelError,
    Orchestrator,
    RetryPolicy,
    ScriptedChatModel,
)
from decompose.calls import ModelCaller
from decompose.events import Retried, Usage
from decompose.models import FallbackModel
from decompose.models.fallback import AllModelsFailed
from decompose.models.openai import load_openai

FAST = RetryPolicy(max_attempts=2, initial_wait=0.01, max_wait=0.05, jitter=0, max_total=5)
PLAIN = Decomposer(structured_output=False)  # one plain call per plan: the servers' hits are easy to count


def at(server: FaultServer, name: str):
    return load_openai(name, base_url=server.base_url, api_key="k", timeout=2.0)


def caller(fallback: FallbackModel, events: list | None = None) -> ModelCaller:
    return ModelCaller(fallback, policy=FAST, usage=Usage(), emit=(events if events is not None else []).append)


async def ask(fallback: FallbackModel, events: list | None = None) -> tuple[str, str]:
    message, name = await caller(fallback, events).invoke([HumanMessage("hi")], phase="solve")
    return message.content, name


@pytest.mark.server
def test_when_every_model_fails_each_failure_is_kept_and_named(fault):
    fault.default = status(503)
    unreachable = f"http://127.0.0.1:{free_port()}/v1"
    backup = load_openai("backup", base_url=unreachable, api_key="k", timeout=1.0)
    with pytest.raises(ModelError) as err:
        Orchestrator(at(fault, "primary"), fallbacks=[backup], retry=FAST, decomposer=PLAIN).run("Capital?")
    error = err.value
    assert isinstance(error, AllModelsFailed) and not isinstance(error, ModelAccessError)
    assert [name for name, _ in error.errors] == ["primary", "backup"]
    message = str(error)
    assert f"'primary': HTTP 503 from {fault.base_url}/chat/completions" in message and "(after 2 attempts)" in message
    assert f"'backup': could not reach {unreachable}/chat/completions" in message
    assert "retry later" in error.hint and "is the server running?" in error.hint  # both fixes
    assert len(fault.hits) == FAST.max_attempts  # the primary's retries ran before its fallback


@pytest.mark.server
def test_access_refused_by_every_model_is_an_access_error_and_ends_the_run(fault):
    fault.default = status(401, message="bad key")
    with pytest.raises(ModelAccessError) as err:
        Orchestrator(at(fault, "primary"), fallbacks=[at(fault, "backup")], retry=FAST, decomposer=PLAIN).run("Q?")
    assert [name for name, _ in err.value.errors] == ["primary", "backup"]
    assert "OPENAI_API_KEY" in err.value.hint
    assert len(fault.hits) == 2  # one call each: a refusal is not retried


@pytest.mark.server
async def test_one_refusal_among_other_failures_is_no_access_error(fault):
    fault.queue(status(401, message="bad key"))
    fault.default = status(503)
    with pytest.raises(AllModelsFailed) as err:
        await ask(FallbackModel(at(fault, "primary"), at(fault, "backup")))
    assert not isinstance(err.value, ModelAccessError)
    assert [type(e) for _, e in err.value.errors] == [ModelAccessError, ModelError]


@pytest.mark.server
async def test_the_fallback_answers_and_is_named_after_the_primarys_retries(fault):
    fault.queue(status(503), status(503), ok("from backup"))
    events = []
    assert await ask(FallbackModel(at(fault, "primary"), at(fault, "backup")), events) == ("from backup", "backup")
    assert [(e.kind, e.reason) for e in events if isinstance(e, Retried)] == [("transport", "HTTP 503")]


def test_a_bug_in_a_model_does_not_fall_back():
    primary = ScriptedChatModel(default=TypeError("unsupported operand"), model_name="custom")
    backup = ScriptedChatModel(default="Paris", model_name="backup")
    with pytest.raises(ModelError) as err:
        Orchestrator(primary, fallbacks=[backup], decomposer=PLAIN).run("Capital of France?")
    assert str(err.value).startswith("model 'custom' failed: TypeError: unsupported operand")
    assert isinstance(err.value.__cause__, TypeError) and backup.calls == []


async def test_our_own_errors_pass_as_they_are():
    spent = BudgetExceeded("token budget exceeded", hint="raise max_tokens")
    backup = ScriptedChatModel(default="fine", model_name="backup")
    with pytest.raises(BudgetExceeded) as err:
        await ask(FallbackModel(ScriptedChatModel(default=spent), backup))
    assert err.value is spent and backup.calls == []


async def test_fallback_on_exception_types_or_a_predicate():
    overloaded = ScriptedChatModel(default=RuntimeError("engine overloaded"), model_name="primary")
    backup = ScriptedChatModel(default="fine", model_name="backup")
    assert await ask(FallbackModel(overloaded, backup, fallback_on=(ModelError, RuntimeError))) == ("fine", "backup")
    assert await ask(FallbackModel(overloaded, backup, fallback_on=lambda e: "overloaded" in str(e))) == (
        "fine",
        "backup",
    )
    with pytest.raises(ModelError, match="model 'primary' failed: RuntimeError"):
        await ask(FallbackModel(overloaded, backup))  # by default only a ModelError says the model is unavailable


async def test_a_model_error_the_predicate_refuses_is_raised_at_once():
    down = ModelError("HTTP 503 from http://127.0.0.1:9/v1/chat/completions", hint="retry later")
    backup = ScriptedChatModel(default="fine", model_name="backup")
    with pytest.raises(ModelError) as err:
        await ask(FallbackModel(ScriptedChatModel(default=down), backup, fallback_on=()))
    assert err.value is down and backup.calls == []


async def test_a_single_model_raises_its_own_error():
    refused = ModelAccessError("HTTP 401 from http://127.0.0.1:9/v1/chat/completions", hint="check OPENAI_API_KEY")
    with pytest.raises(ModelAccessError) as err:
        await ask(FallbackModel(ScriptedChatModel(default=refused)))
    assert err.value is refused and not isinstance(err.value, AllModelsFailed)


@pytest.mark.server
def test_when_no_model_takes_structured_output_the_plan_is_asked_for_as_plain_json(fault):
    refused = status(400, message="response_format json_schema is not supported")
    one_step = '{"steps": [{"id": 1, "question": "Capital of France?"}]}'
    fault.queue(refused, refused, ok(one_step), ok("Paris"))
    result = Orchestrator(at(fault, "primary"), fallbacks=[at(fault, "backup")], retry=FAST).run("Capital of France?")
    assert result.answer == "Paris" and result.plan.step(1).model == "primary"
    asked = [(hit.body["model"], bool(hit.body.get("response_format"))) for hit in fault.hits]
    assert asked == [("primary", True), ("backup", True), ("primary", False), ("primary", False)]


def test_an_orchestrator_takes_a_fallback_model_with_its_own_rule():
    overloaded = ScriptedChatModel(default=RuntimeError("engine overloaded"), model_name="primary")
    backup = ScriptedChatModel(rules=[(r"France", "Paris")], default="Paris", model_name="backup")
    orch = Orchestrator(
        FallbackModel(overloaded, backup, fallback_on=lambda e: "overloaded" in str(e)),
        decomposer=Decomposer(on_failure="direct"),
    )
    result = orch.run("Capital of France?")
    assert result.answer == "Paris" and {s.model for s in result.plan.steps} == {"backup"}
    assert orch.model is overloaded and orch.fallbacks == [backup]
    with pytest.raises(ConfigError, match="fallbacks are given twice"):
        Orchestrator(FallbackModel(overloaded, backup), fallbacks=[backup])
