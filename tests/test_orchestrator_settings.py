"""Settings live on the part they set (solver, decomposer, tool runner, limits); the flat keyword arguments of
earlier versions still work, with a warning that names the new spelling."""

import contextlib

import pytest

from decompose import (
    ConfigError,
    Decomposer,
    Limits,
    Orchestrator,
    RecursiveSolver,
    ScriptedChatModel,
    SelfConsistencySolver,
    ToolRunner,
)


@pytest.fixture
def model():
    return ScriptedChatModel()


def test_the_common_case_is_one_line_with_sensible_defaults(model):
    orch = Orchestrator(model)
    assert orch.limits == Limits() and orch.decomposer.max_steps == 10 and orch.tool_runner.timeout == 60.0


def test_each_setting_lives_on_its_part(model):
    orch = Orchestrator(
        model,
        strategy=SelfConsistencySolver(samples=3),
        decomposer=Decomposer(max_steps=4),
        tool_runner=ToolRunner(timeout=5, max_retries=1),
        limits=Limits(run_timeout=9),
    )
    assert orch.solver.samples == 3 and orch.max_steps == 4
    assert (orch.tool_runner.timeout, orch.tool_runner.max_retries) == (5, 1) and orch.limits.run_timeout == 9


def test_one_decomposer_serves_several_orchestrators_with_their_own_tools(model):
    from langchain_core.tools import tool

    @tool
    def add(a: int, b: int) -> int:
        """Add two numbers."""
        return a + b

    shared = Decomposer(max_steps=3)
    with_tools, without = Orchestrator(model, tools=[add], decomposer=shared), Orchestrator(model, decomposer=shared)
    assert list(with_tools.decomposer.tools) == ["add"] and without.decomposer.tools == {}
    assert shared.tools == {}  # configured copies: the user's object is unchanged
    assert with_tools.tool_runner is not Orchestrator(model, tools=[add]).tool_runner


@pytest.mark.parametrize(
    "old, check",
    [
        ({"max_steps": 4}, lambda o: o.decomposer.max_steps == 4),
        ({"max_plan_retries": 0}, lambda o: o.decomposer.max_retries == 0),
        (
            {"on_plan_failure": "direct", "max_replans": 1},
            lambda o: (o.decomposer.on_failure, o.decomposer.max_replans) == ("direct", 1),
        ),
        ({"tool_timeout": 3}, lambda o: o.tool_runner.timeout == 3),
        ({"run_timeout": 5, "max_tokens_per_run": 100}, lambda o: o.limits == Limits(run_timeout=5, max_tokens=100)),
        ({"strategy": "self_consistency", "samples": 2}, lambda o: o.solver.samples == 2),
        (
            {"strategy": "recursive", "max_depth": 3},
            lambda o: isinstance(o.solver, RecursiveSolver) and o.solver.max_depth == 3,
        ),
    ],
)
def test_earlier_flat_keywords_still_work_with_a_warning(model, old, check):
    with pytest.warns(DeprecationWarning, match=r"Orchestrator\(\w+=\.\.\.\) is now"):
        orch = Orchestrator(model, **old)
    assert check(orch)


@pytest.mark.parametrize(
    "kwargs, guess",
    [
        ({"tool": []}, "tools"),
        ({"limit": None}, "limits"),
        ({"max_stepz": 4}, "max_steps"),
        ({"verbose": True}, None),
    ],
)
def test_a_misspelt_keyword_is_a_type_error_naming_the_valid_ones(model, kwargs, guess):
    with pytest.raises(TypeError) as caught:
        Orchestrator(model, **kwargs)
    message = str(caught.value)
    assert f"unexpected keyword argument {next(iter(kwargs))!r}" in message
    assert "its keyword arguments are model, tools, strategy," in message and "max_concurrency" in message
    assert (f"did you mean {guess!r}?" in message) if guess else "did you mean" not in message


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"max_steps": 4, "decomposer": Decomposer()}, "decomposer is given both"),
        ({"samples": 3}, "strategy 'direct' takes no samples"),
    ],
)
def test_bad_flat_keywords_are_clear_errors(model, kwargs, message):
    moved = set(kwargs) & {"max_steps", "samples"}  # a known flat keyword warns before the error
    with (
        pytest.raises(ConfigError, match=message),
        pytest.warns(DeprecationWarning) if moved else contextlib.nullcontext(),
    ):
        Orchestrator(model, **kwargs)


# ----- replace: a copy with some parts changed ---------------------------------------------------------------


def every_argument():
    """A value unlike the default for each of the Orchestrator's arguments, and how to read it back."""
    from langchain_core.caches import InMemoryCache
    from opentelemetry.sdk.trace import TracerProvider

    from decompose import Prompts, RetryPolicy
    from decompose.checkpoints import CheckpointStore
    from decompose.retrieval import LocalDocsRetriever
    from decompose.tools.calculator import calculator_tools

    primary, backup = ScriptedChatModel(model_name="primary"), ScriptedChatModel(model_name="backup")
    return {
        "model": (primary, lambda o: o.models.models[0]),
        "fallbacks": ([backup], lambda o: o.models.models[1:]),
        "tools": (calculator_tools(), lambda o: o.tools),
        "strategy": (RecursiveSolver(max_depth=1), lambda o: o.solver),
        "retriever": (LocalDocsRetriever.from_texts([("a", "A text.")]), lambda o: o.retriever),
        "decomposer": (Decomposer(max_steps=3), lambda o: o.max_steps),
        "tool_runner": (ToolRunner(timeout=7), lambda o: o.tool_runner.timeout),
        "limits": (Limits(run_timeout=11), lambda o: o.limits),
        "retry": (RetryPolicy(max_attempts=2), lambda o: o.retry),
        "prompts": (Prompts.with_instructions("Be brief."), lambda o: o.prompts),
        "max_concurrency": (3, lambda o: o.max_concurrency),
        "tracer_provider": (TracerProvider(), lambda o: o.tracing.provider),
        "trace_content": (True, lambda o: o.tracing.content),
        "cache": (InMemoryCache(), lambda o: o.cache),  # the same object: a copy shares it
        "checkpoints": (CheckpointStore("sqlite://"), lambda o: o.checkpoints),  # in memory; a copy shares it
        "prices": ({"primary": (1.0, 2.0)}, lambda o: o.prices.table["primary"]),
    }


def test_replace_copies_every_constructor_argument():
    import inspect

    arguments = every_argument()
    # From the signature: a new argument fails here until it is given above, and so cannot be forgotten.
    names = [p.name for p in inspect.signature(Orchestrator).parameters.values() if p.kind is not p.VAR_KEYWORD]
    assert sorted(arguments) == sorted(names)
    orch = Orchestrator(**{name: value for name, (value, _) in arguments.items()})
    copy = orch.replace()
    assert copy is not orch
    for name, (_, read) in arguments.items():
        assert read(copy) == read(orch), name
    assert copy.models is orch.models  # shared, not loaded again


def test_replace_changes_only_what_it_is_given():
    arguments = every_argument()
    orch = Orchestrator(**{name: value for name, (value, _) in arguments.items()})
    copy = orch.replace(max_concurrency=5, tools=[])
    assert (copy.max_concurrency, copy.tools) == (5, [])
    for name, (_, read) in arguments.items():
        if name not in ("max_concurrency", "tools"):
            assert read(copy) == read(orch), name
    assert [m.model_name for m in orch.replace(fallbacks=[]).models.models] == ["primary"]
    assert [m.model_name for m in orch.replace(model=ScriptedChatModel(model_name="other")).models.models] == ["other"]
    with pytest.raises(ConfigError, match="unexpected argument 'max_step'") as err:
        orch.replace(max_step=3)
    assert "max_concurrency" in err.value.hint
