import asyncio
import json

import pytest
from helpers import RESULT_KEYS, TITANIC, plan_json
from langchain_core.tools import tool

from decompose import ConfigError, Decomposer, InputError, Limits, Orchestrator, Plan, PlanError, ScriptedChatModel
from decompose.events import Answered, PlanReady, Retried, StepFailed, StepFinished, StepSkipped, StepStarted
from decompose.models.scripted import asks_for_plan, asks_to_combine


def test_run_end_to_end(titanic_model):
    result = Orchestrator(titanic_model).run(TITANIC)
    assert result.ok and result.error is None
    assert [s.answer for s in result.plan.steps] == ["James Cameron", "1954", "1997", "43"]
    assert [s.status for s in result.plan.steps] == ["done"] * 4
    assert result.plan.step(4).depends_on == [2, 3]
    # the synthesizer saw every sub-answer, and its reply is the answer
    assert "James Cameron" in result.answer and "→ 43" in result.answer
    usage = result.usage
    assert usage.phases["decompose"].calls == 1 and usage.phases["solve"].calls == 4
    assert usage.phases["synthesize"].calls == 1 and usage.model_calls == 6
    assert usage.input_tokens > 0 and usage.output_tokens > 0
    types = [type(e) for e in result.events]
    assert types[0] is PlanReady and types[-1] is Answered
    assert types.count(StepStarted) == 4 and types.count(StepFinished) == 4
    per_step = [e.usage for e in result.events if isinstance(e, StepFinished)]
    assert all(u["calls"] == 1 and u["input"] > 0 for u in per_step)
    assert result.elapsed > 0


def test_dependent_steps_get_earlier_answers_as_facts(titanic_model):
    Orchestrator(titanic_model).run(TITANIC)
    prompt = next(c["prompt"] for c in titanic_model.calls if "born in 1954 in 1997" in c["prompt"])
    assert "When was James Cameron born? → 1954" in prompt


def test_plan_then_execute_the_edited_plan(titanic_model):
    orch = Orchestrator(titanic_model)
    plan = orch.plan(TITANIC)
    assert [s.id for s in plan.steps] == [1, 2, 3, 4] and all(s.status == "pending" for s in plan.steps)
    plan.steps = plan.steps[:1]  # a person keeps only the first step
    calls_before = len(titanic_model.calls)
    result = orch.execute(plan)
    assert result.plan.steps[0].answer == "James Cameron"
    # one sub-question that is not the whole question: still combined into an answer to the question
    assert result.answer.startswith("Final: 1. Who directed Titanic? → James Cameron")
    assert len(titanic_model.calls) == calls_before + 2
    # a hand-written JSON plan runs too; a step asking the question itself needs no synthesis
    again = orch.execute(
        '{"question": "When was Titanic released?", "steps": [{"id": 1, "question": "When was Titanic released?"}]}'
    )
    assert again.answer == "1997" and again.usage.model_calls == 1


def test_execute_validates_a_hand_edited_plan(titanic_model):
    orch = Orchestrator(titanic_model)
    plan = orch.plan(TITANIC)
    plan.step(1).depends_on = [4]
    with pytest.raises(PlanError, match="cycle"):
        orch.execute(plan)


async def test_arun_and_astream(titanic_model):
    orch = Orchestrator(titanic_model)
    result = await orch.arun(TITANIC)
    assert result.ok
    seen = [event async for event in orch.astream(TITANIC)]
    assert isinstance(seen[0], PlanReady) and isinstance(seen[-1], Answered)
    assert seen[-1].answer.startswith("Final:")
    started = [e.step_id for e in seen if isinstance(e, StepStarted)]
    finished = [e.step_id for e in seen if isinstance(e, StepFinished)]
    assert sorted(started) == sorted(finished) == [1, 2, 3, 4]
    # step 4 starts only after its dependencies 2 and 3 have finished
    order = [(type(e).__name__, getattr(e, "step_id", None)) for e in seen]
    assert order.index(("StepStarted", 4)) > max(order.index(("StepFinished", 2)), order.index(("StepFinished", 3)))


async def test_astream_raises_after_the_events_when_planning_fails():
    orch = Orchestrator(ScriptedChatModel(default="no plan here"), decomposer=Decomposer(max_retries=0))
    with pytest.raises(PlanError):
        async for _ in orch.astream("q?"):
            pass


def test_batch_one_failure_does_not_sink_the_others(titanic_model):
    orch = Orchestrator(titanic_model)
    results = orch.batch([TITANIC, "   ", TITANIC])
    assert results[0].ok and results[2].ok
    assert not results[1].ok and "empty" in results[1].error


def test_batch_max_concurrency_bounds_the_model_calls_of_the_whole_batch():
    class Counting(ScriptedChatModel):
        in_flight: int = 0
        peak: int = 0

        async def _agenerate(self, messages, stop=None, run_manager=None, **kw):
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)
            try:
                await asyncio.sleep(0.02)
                return await super()._agenerate(messages, stop, run_manager, **kw)
            finally:
                self.in_flight -= 1

    model = Counting(
        rules=[(asks_for_plan, plan_json("A?", "B?", "C?")), (asks_to_combine, "abc"), (r"Question: ", "x")]
    )
    results = Orchestrator(model).batch([f"Question {i}?" for i in range(6)], max_concurrency=3)
    assert [r.answer for r in results] == ["abc"] * 6
    assert model.peak == 3  # 6 questions x 3 independent steps, yet never more than 3 calls at once
    model.peak = 0
    Orchestrator(model, max_concurrency=2).batch([f"Question {i}?" for i in range(4)])
    assert model.peak == 2  # the Orchestrator's max_concurrency is the batch's default bound
    with pytest.raises(ConfigError, match="max_concurrency must be at least 1"):
        Orchestrator(model).batch(["Q?"], max_concurrency=-1)


@pytest.mark.parametrize(
    "bad, message",
    [
        ("", "empty"),
        ("   \n", "empty"),
        (None, "must be a string"),
        (42, "must be a string"),
        ("x" * 20_001, "characters long"),
    ],
)
def test_bad_questions(titanic_model, bad, message):
    with pytest.raises(InputError, match=message):
        Orchestrator(titanic_model).run(bad)


def test_braces_in_a_question_are_passed_through_untouched():
    question = "In Python, what does '{x}'.format(x=1) and {0} and {{}} and {1.a} print?"
    model = ScriptedChatModel(
        rules=[(asks_for_plan, plan_json("What does '{x}'.format(x=1) print?")), (r"format", "1")]
    )
    result = Orchestrator(model).run(question)
    assert result.answer == "1"
    assert question in model.calls[0]["prompt"]


def test_garbage_model_gets_a_clear_error_after_n_reasks():
    model = ScriptedChatModel(default=["I am a teapot.", "I am a kettle.", "I am a pot."])
    orch = Orchestrator(model, decomposer=Decomposer(max_retries=2))
    with pytest.raises(PlanError, match=r"did not write a usable plan in 3 tries.*neither JSON") as err:
        orch.run("How tall is the tower?")
    assert err.value.hint and "stronger model" in err.value.hint
    assert len(model.calls) == 3
    # every re-ask quotes the problem back to the model
    assert "could not be used: the model's reply is neither JSON" in model.calls[2]["prompt"]


def test_reask_repairs_an_invalid_plan():
    bad = plan_json({"id": 1, "question": "a {2}"}, {"id": 2, "question": "b {1}"})
    model = ScriptedChatModel(rules=[(asks_for_plan, [bad, plan_json("What is 2+2?")]), (r"2\+2", "4")])
    events = []
    result = Orchestrator(model).run("Sum?", on_event=events.append)
    assert result.answer == "4"
    assert result.usage.parse_retries == 1
    retry = next(e for e in events if isinstance(e, Retried))
    assert retry.kind == "parse" and "cycle" in retry.reason


def test_a_model_that_repeats_its_bad_plan_is_not_asked_again_and_the_usable_steps_run():
    # A weak greedy model writes the same plan every time; step 2 refers to itself (copied from an example).
    bad = plan_json("How many people live in France?", "Which is larger, {1} or {2}?", "Is {1} above 60 million?")
    model = ScriptedChatModel(
        rules=[
            (asks_for_plan, bad),
            (asks_to_combine, lambda msgs: msgs[-1].content.split("Known facts:")[1].strip()),
            (r"Question: How many people live in France", "68 million"),
            (r"Question: Is 68 million above 60 million", "yes"),
        ]
    )
    result = Orchestrator(model, decomposer=Decomposer(max_retries=3)).run("Is France more populous than 60 million?")
    assert [s.question for s in result.plan.steps] == ["How many people live in France?", "Is {1} above 60 million?"]
    assert result.ok and "yes" in result.answer
    assert result.usage.phases["decompose"].calls == 2  # the repeat ended the re-asks
    assert result.usage.parse_retries == 1


def test_a_plan_whose_every_step_refers_to_itself_becomes_the_question_itself():
    model = ScriptedChatModel(
        rules=[(asks_for_plan, plan_json("How many items are in {1}?")), (r"Question: Anything\?", "Nothing.")],
        default="combined",
    )
    result = Orchestrator(model, decomposer=Decomposer(max_retries=3)).run("Anything?")
    assert [s.question for s in result.plan.steps] == ["Anything?"]
    assert result.plan.steps[0].answer == "Nothing." and result.ok


def test_a_plan_that_is_broken_beyond_its_references_still_fails_clearly():
    model = ScriptedChatModel(
        rules=[(asks_for_plan, plan_json({"id": 1, "question": "A?"}, {"id": 1, "question": "B?"}))]
    )
    with pytest.raises(PlanError, match=r"did not write a usable plan in 2 tries.*used twice"):
        Orchestrator(model, decomposer=Decomposer(max_retries=3)).run("Anything?")


def test_on_plan_failure_direct_answers_the_question_itself():
    model = ScriptedChatModel(rules=[(asks_for_plan, "garbage"), (r"Question: Capital of France", "Paris")])
    result = Orchestrator(model, decomposer=Decomposer(on_failure="direct", max_retries=1)).run("Capital of France?")
    assert result.answer == "Paris" and len(result.plan.steps) == 1


def test_a_failed_step_skips_dependants_and_synthesis_is_told():
    model = ScriptedChatModel(
        rules=[
            (asks_for_plan, plan_json("Step A?", "Step B uses {1}?", "Step C?")),
            (asks_to_combine, lambda msgs: msgs[-1].content),
            (r"Question: Step A", ValueError("model exploded")),
            (r"Question: Step C", "c-answer"),
        ]
    )
    result = Orchestrator(model).run("Whole?")
    a, b, c = result.plan.steps
    assert a.status == "failed" and "model exploded" in a.error
    assert b.status == "skipped" and b.error == "step 1 failed"
    assert c.status == "done"
    assert "(not available: step failed" in result.answer and "→ c-answer" in result.answer
    kinds = [type(e) for e in result.events]
    assert StepFailed in kinds and StepSkipped in kinds


def test_all_steps_failing_ends_with_an_error_not_an_answer():
    model = ScriptedChatModel(rules=[(asks_for_plan, plan_json("A?")), (r"Question: A", ValueError("down"))])
    result = Orchestrator(model).run("Whole?")
    assert result.answer is None and "no step could be answered" in result.error


def test_with_on_plan_failure_direct_a_plan_that_answered_nothing_is_answered_directly():
    from decompose.retrieval import LocalDocsRetriever

    model = ScriptedChatModel(
        rules=[
            (asks_for_plan, plan_json("A?")),
            (r"Question: A\?", ValueError("down")),
            (r"Question: Which year", "2018"),
        ]
    )
    docs = LocalDocsRetriever.from_texts([("t", "Sales peaked in the year 2018.")])
    orch = Orchestrator(model, retriever=docs, decomposer=Decomposer(on_failure="direct"))
    result = orch.run("Which year had the most sales?")
    assert result.ok and result.answer == "2018"
    assert result.plan.step(1).status == "failed"  # the plan's record stays as it ran
    direct = next(c["prompt"] for c in model.calls if "Question: Which year" in c["prompt"])
    assert "[t] Sales peaked in the year 2018." in direct
    assert [c["id"] for c in result.citations if c["answer"]] == ["t"]


def test_step_timeout():
    class Slow(ScriptedChatModel):
        async def _agenerate(self, messages, stop=None, run_manager=None, **kw):
            if "Question: slow" in messages[-1].content:
                await asyncio.sleep(30)
            return await super()._agenerate(messages, stop, run_manager, **kw)

    model = Slow(
        rules=[(asks_for_plan, plan_json("slow?", "fast?")), (asks_to_combine, "combined"), (r"fast", "quick")]
    )
    result = Orchestrator(model, limits=Limits(step_timeout=0.2)).run("Both?")
    slow, fast = result.plan.steps
    assert slow.status == "failed" and "timed out after 0.2s" in slow.error
    assert fast.answer == "quick" and result.answer == "combined"


def test_run_timeout_returns_the_partial_result():
    model = ScriptedChatModel(rules=[(asks_for_plan, plan_json("A?", "B {1}?")), (r"Question: A", "a")], default="late")
    model.latency = 0.0

    class SlowSecond(ScriptedChatModel):
        async def _agenerate(self, messages, stop=None, run_manager=None, **kw):
            if "Question: B" in messages[-1].content:
                await asyncio.sleep(30)
            return await super()._agenerate(messages, stop, run_manager, **kw)

    slow = SlowSecond(rules=model.rules, default="late")
    result = Orchestrator(slow, limits=Limits(run_timeout=0.3)).run("Q?")
    assert result.error == "run timed out after 0.3s (1 of 2 steps done, no answer yet)" and result.answer is None
    assert result.plan.step(1).answer == "a" and result.plan.step(2).status == "failed"


@pytest.mark.slow
def test_run_timeout_covers_planning_and_what_is_left_after_it():
    class Slow(ScriptedChatModel):
        plan_seconds: float = 30
        step_seconds: float = 0

        async def _agenerate(self, messages, stop=None, run_manager=None, **kw):
            await asyncio.sleep(self.plan_seconds if asks_for_plan(messages) else self.step_seconds)
            return await super()._agenerate(messages, stop, run_manager, **kw)

    model = Slow(rules=[(asks_for_plan, plan_json("A?")), (r"Question: A", "a")], default="late")
    result = Orchestrator(model, limits=Limits(run_timeout=0.3)).run("Q?")
    assert result.error == "run timed out after 0.3s (while planning)" and result.plan is None
    assert result.elapsed < 10  # ended by the deadline, not by the 30 s plan
    # 0.2 s to plan and 0.2 s for the step: each fits in 0.3 s, both do not. The steps get what is left.
    model.plan_seconds = model.step_seconds = 0.2
    result = Orchestrator(model, limits=Limits(run_timeout=0.3)).run("Q?")
    assert result.error == "run timed out after 0.3s (0 of 1 steps done, no answer yet)"
    in_time = Orchestrator(model, limits=Limits(run_timeout=1)).run("Q?")
    assert in_time.error is None and in_time.plan.step(1).answer == "a"


def test_token_budget_stops_the_run_with_the_partial_result(titanic_model):
    phases = Orchestrator(titanic_model).run(TITANIC).usage.phases
    one_answer = max(1, phases["solve"].total // phases["solve"].calls)
    budget = phases["decompose"].total + one_answer + 5  # enough to plan and answer one step, not all
    result = Orchestrator(titanic_model, limits=Limits(max_tokens=budget)).run(TITANIC)
    assert "token budget exceeded" in result.error and f"max_tokens={budget}" in result.error
    assert result.answer is None and result.usage.total_tokens > budget
    # the figure in the message is the run's final usage, calls in flight at the time included
    assert f"{result.usage.total_tokens} tokens used" in result.error
    statuses = {s.status for s in result.plan.steps}
    assert "done" in statuses and statuses & {"failed", "skipped"}  # partial: some steps ran, the rest stopped
    tiny = Orchestrator(titanic_model, limits=Limits(max_tokens=10)).run(TITANIC)
    assert tiny.plan is None and f"token budget exceeded: {tiny.usage.total_tokens} tokens used" in tiny.error


def test_fallback_model_answers_when_the_primary_fails_for_good():
    from decompose import ModelAccessError

    refused = ModelAccessError("HTTP 401 from http://127.0.0.1:9/v1/chat/completions", hint="check OPENAI_API_KEY")
    primary = ScriptedChatModel(default=refused, model_name="primary")
    backup = ScriptedChatModel(
        rules=[(asks_for_plan, plan_json("Capital of France?")), (r"France", "Paris")], model_name="backup"
    )
    result = Orchestrator(primary, fallbacks=[backup]).run("Capital of France?")
    assert result.answer == "Paris" and result.plan.step(1).model == "backup"


def test_echo_steps_are_dropped():
    question = "How far is the Moon?"
    model = ScriptedChatModel(rules=[(asks_for_plan, plan_json(question, "What unit?")), (r"What unit", "km")])
    plan = Orchestrator(model).plan(question)
    assert [s.question for s in plan.steps] == ["What unit?"]


def test_tool_steps_pass_raw_and_structured_values():
    @tool
    def lookup(order_id: str) -> dict:
        """Find an order."""
        return {"order_id": order_id, "total": 12.5}

    @tool
    def double(x: float) -> float:
        """Double a number."""
        return x * 2

    plan = plan_json(
        {"id": 1, "question": "find", "tool": "lookup", "args": {"order_id": "A7"}},
        {"id": 2, "question": "double it", "tool": "double", "args": {"x": "{1.total}"}},
    )
    model = ScriptedChatModel(rules=[(asks_for_plan, plan), (asks_to_combine, "Twice the total is 25")])
    result = Orchestrator(model, tools=[lookup, double]).run("Double the total of A7")
    assert result.plan.step(1).answer == {"order_id": "A7", "total": 12.5}
    assert result.plan.step(2).answer == 25.0
    assert result.answer == "Twice the total is 25"


def test_unknown_tool_in_a_plan_is_reasked():
    @tool
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    bad = plan_json({"id": 1, "question": "1+2?", "tool": "sum", "args": {"a": 1, "b": 2}})
    good = plan_json({"id": 1, "question": "1+2?", "tool": "add", "args": {"a": 1, "b": 2}})
    model = ScriptedChatModel(rules=[(asks_for_plan, [bad, good])])
    result = Orchestrator(model, tools=[add]).run("1+2?")
    assert result.answer == "3"
    assert "uses tool 'sum', which does not exist; tools: add" in model.calls[1]["prompt"]
    assert "add(a: integer, b: integer)" in model.calls[0]["prompt"]


def test_sync_api_inside_a_running_loop_is_a_clear_error(titanic_model):
    async def inside():
        Orchestrator(titanic_model).run(TITANIC)

    with pytest.raises(ConfigError, match="running event loop"):
        asyncio.run(inside())


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda model: Orchestrator(model, max_concurrency=0), "max_concurrency"),
        (lambda model: Orchestrator(model, strategy="magic"), "unknown strategy"),
        (lambda model: Orchestrator(model, strategy=42), "strategy must be a name or a solver"),
        (lambda model: Orchestrator(model, decomposer=Decomposer(on_failure="ignore")), "on_failure"),
        (lambda model: Orchestrator(model, decomposer=Decomposer(max_steps=0)), "max_steps"),
        (lambda model: Orchestrator(model, decomposer={"max_steps": 3}), "decomposer must be a Decomposer"),
        (lambda model: Orchestrator(model, limits=Limits(run_timeout=-1)), "run_timeout must be a positive"),
        (lambda model: Orchestrator(model).run("Q?", limits={"max_tokens": 5}), "limits must be a Limits"),
    ],
)
def test_bad_config(titanic_model, make, message):
    with pytest.raises(ConfigError, match=message):
        make(titanic_model)


def test_unknown_model_spec():
    with pytest.raises(ConfigError, match="unknown model spec 'gpt5'"):
        Orchestrator("gpt5")


def test_result_json_has_stable_keys(titanic_model):
    data = json.loads(Orchestrator(titanic_model).run(TITANIC).to_json())
    assert set(data) == RESULT_KEYS
    assert set(data["steps"][0]) >= {"id", "question", "depends_on", "status", "answer", "model", "elapsed"}
    assert data["events"][0]["type"] == "PlanReady"


def test_executing_a_plan_never_changes_it_and_runs_never_share_steps():
    plan = Plan.from_data({"steps": [{"id": 1, "question": "What is 2+2?"}]})
    answers = iter(["4", "four"])
    model = ScriptedChatModel(rules=[(r"2\+2", lambda _: next(answers))])
    orch = Orchestrator(model)
    first = orch.execute(plan)
    assert first.plan is not plan and plan.steps[0].status == "pending" and plan.steps[0].answer is None
    second = orch.execute(plan)
    assert (first.answer, second.answer) == ("4", "four")
    assert first.plan.steps[0].answer == "4"  # the second run left the first one's record alone
