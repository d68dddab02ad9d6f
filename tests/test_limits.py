"""`Limits`: a run's time, token and call limits, checked before each model call, replaceable per run."""

import pytest
from helpers import TITANIC

from decompose import ConfigError, Limits, Orchestrator
from decompose.events import Usage


@pytest.mark.parametrize("field", ["run_timeout", "step_timeout", "max_tokens", "max_model_calls"])
@pytest.mark.parametrize("value", [0, -1, "10", True])
def test_a_limit_must_be_a_positive_number(field, value):
    with pytest.raises(ConfigError, match=f"Limits.{field} must be a positive number"):
        Limits(**{field: value})


def test_replace_changes_one_limit_and_keeps_the_others():
    limits = Limits(run_timeout=30, max_tokens=1000)
    assert limits.replace(max_tokens=50) == Limits(run_timeout=30, max_tokens=50)
    assert limits == Limits(run_timeout=30, max_tokens=1000)  # frozen: the original is untouched


def test_a_call_is_refused_once_a_limit_is_reached_not_after():
    limits, usage = Limits(max_model_calls=2), Usage()
    limits.check_before_call(usage, calls_started=1)
    with pytest.raises(ConfigError.__base__, match="model call limit reached: 2 calls made, max_model_calls=2"):
        limits.check_before_call(usage, calls_started=2)


def test_the_call_limit_stops_the_run_before_the_call_past_it(titanic_model):
    # plan (1), then steps 1 and 3 in parallel (2, 3); step 2 would be the 4th call
    result = Orchestrator(titanic_model, limits=Limits(max_model_calls=3)).run(TITANIC)
    assert result.usage.model_calls == 3
    assert result.error.startswith("model call limit reached: 3 calls made, max_model_calls=3")
    assert result.answer is None and result.plan.step(1).answer == "James Cameron"
    assert result.plan.step(4).status in ("failed", "skipped")


def test_the_token_budget_is_checked_before_each_call(titanic_model):
    planning = Orchestrator(titanic_model).run(TITANIC).usage.phases["decompose"].total
    # exactly the planning call's tokens: no step may start, so nothing is spent past the budget
    result = Orchestrator(titanic_model, limits=Limits(max_tokens=planning)).run(TITANIC)
    assert result.usage.model_calls == 1 and result.usage.total_tokens == planning
    assert f"token budget exceeded: {planning} tokens used, max_tokens={planning}" in result.error


def test_a_run_may_replace_the_orchestrators_limits(titanic_model):
    orch = Orchestrator(titanic_model, limits=Limits(max_model_calls=1))
    assert orch.run(TITANIC).error.startswith("model call limit reached")
    assert orch.run(TITANIC, limits=Limits()).answer.startswith("Final:")
    assert orch.run(TITANIC, limits=orch.limits.replace(max_model_calls=None)).error is None
    assert orch.batch([TITANIC], limits=Limits())[0].error is None
    assert orch.limits == Limits(max_model_calls=1)  # a run's limits never change the Orchestrator's
    with pytest.raises(ConfigError, match="limits must be a Limits"):
        orch.run(TITANIC, limits={"max_model_calls": 5})
