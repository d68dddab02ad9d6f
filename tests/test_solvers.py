import pytest
from helpers import plan_json

from decompose import ConfigError, Orchestrator, ScriptedChatModel
from decompose.calls import ModelCaller
from decompose.chains.answer_line import final_answer_line
from decompose.chains.prompts import Prompts
from decompose.events import Usage
from decompose.models.scripted import asks_for_plan, asks_to_combine
from decompose.plan import Step
from decompose.retry import RetryPolicy
from decompose.scoring import normalize_answer
from decompose.solvers import (
    ChainOfThoughtSolver,
    DirectSolver,
    RecursiveSolver,
    SelfConsistencySolver,
    Solved,
    StepContext,
)


def thinks(messages):
    return "step by step" in messages[0].content


def one_step_model(*rules, question="How many legs do 3 spiders have?"):
    return ScriptedChatModel(rules=[(asks_for_plan, plan_json(question)), *rules])


def test_chain_of_thought_keeps_the_final_answer():
    model = one_step_model((thinks, "Each spider has 8 legs.\n3 * 8 = 24.\nAnswer: 24"))
    result = Orchestrator(model, strategy="cot").run("How many legs do 3 spiders have?")
    assert result.answer == "24"
    assert "step by step" in model.calls[1]["prompt"]


def test_self_consistency_votes_and_records_the_vote():
    samples = ["8*3=24\nAnswer: 24", "Answer: 24.0", "Answer: 18", "Answer: 1,000", "Answer: 24"]
    model = one_step_model((thinks, samples))
    result = Orchestrator(model, strategy=SelfConsistencySolver(samples=5, temperature=0.8)).run("Legs?")
    step = result.plan.step(1)
    assert step.answer == "24"
    assert step.vote == {"24": 3.0, "18": 1.0, "1000": 1.0}
    sample_calls = [c for c in model.calls if "step by step" in c["prompt"]]
    assert len(sample_calls) == 5 and all(c["kwargs"].get("temperature") == 0.8 for c in sample_calls)


def test_self_consistency_tie_goes_to_the_first_answer():
    model = one_step_model((thinks, ["Answer: blue", "Answer: red"]), question="Colour?")
    result = Orchestrator(model, strategy=SelfConsistencySolver(samples=2, temperature=0.5)).run("Colour?")
    assert result.answer == "blue"


@pytest.mark.parametrize("kwargs", [{"samples": 0}, {"temperature": 0.0}])
def test_self_consistency_rejects_bad_settings(kwargs):
    with pytest.raises(ConfigError, match="self-consistency"):
        SelfConsistencySolver(**kwargs)


def test_recursive_decomposition_goes_one_level_deeper_then_answers_directly():
    model = ScriptedChatModel(
        rules=[
            (lambda m: asks_for_plan(m) and "Top question" in m[-1].content, plan_json("Part one?", "Part two?")),
            (lambda m: asks_for_plan(m) and "Part one" in m[-1].content, plan_json("Part one a?", "Part one b?")),
            (lambda m: asks_for_plan(m) and "Part two" in m[-1].content, plan_json("Part two?")),
            (
                asks_to_combine,
                lambda m: "combined(" + m[-1].content.split("Original question: ")[1].split("\n")[0] + ")",
            ),
            (r"Question: Part one a", "1a"),
            (r"Question: Part one b", "1b"),
            (r"Question: Part two", "2"),
        ]
    )
    result = Orchestrator(model, strategy=RecursiveSolver(max_depth=2)).run("Top question?")
    assert result.plan.step(1).answer == "combined(Part one?)"
    assert result.plan.step(2).answer == "2"
    assert result.answer == "combined(Top question?)"
    # depth 2 is the last level: "Part one a?" was answered, not decomposed again
    assert not any(asks_for_plan_text(c) and "Part one a" in c["prompt"].splitlines()[-1] for c in model.calls)


def asks_for_plan_text(call):
    return '"steps"' in call["prompt"]


@pytest.mark.parametrize(
    "text, expected",
    [
        ("The answer is: 42", "42"),
        ("x\nAnswer: Paris\n", "Paris"),
        ("no marker\nlast line", "last line"),
        ("", ""),
        # markup a capable model wraps its answer in is dropped
        ("60 * 9 = 540\nAnswer: \\(\\boxed{540}\\)", "540"),
        ("**Answer:** 18 dollars", "18 dollars"),
        ("Reasoning.\nAnswer: $18$", "18"),
    ],
)
def test_final_answer_line(text, expected):
    assert final_answer_line(text) == expected


@pytest.mark.parametrize("a, b", [("The Eiffel Tower.", "eiffel tower"), ("1,000.50", "1000.5"), ("24.0", "24")])
def test_normalize_answer(a, b):
    assert normalize_answer(a) == normalize_answer(b)


@pytest.mark.parametrize(
    "prediction, gold, expected",
    [
        ("She makes $18 every day.", "18", 1.0),
        ("3 + 4 = 7, so 9 eggs", "9", 1.0),
        ("about 1,000.0", "1000", 1.0),
        ("18 dollars, not 17", "18", 0.0),
        ("no number", "18", 0.0),
        ("Yes, because llamas gestate for 11 months.", "yes", 1.0),
        ("False.", "no", 1.0),
        ("It is not", "no", 0.0),
        ("Paris", "paris", 1.0),
        # decimal, currency and percent golds keep their decimal point
        ("10.8 grams", "10.8", 1.0),
        ("108", "10.8", 0.0),
        ("It was $1496.5 million", "$1,496.5", 1.0),
        ("-12.6", "-12.6", 1.0),
        ("40%", "40%", 1.0),
    ],
)
def test_answer_match(prediction, gold, expected):
    from decompose.scoring import answer_match

    assert answer_match(prediction, gold) == expected


async def test_the_built_in_solvers_return_what_they_found_and_never_write_the_step():
    step = Step(id=1, question="Colour of the sky?")
    model = ScriptedChatModel(default="Answer: blue", model_name="sky-model")
    caller = ModelCaller([model], policy=RetryPolicy(), usage=Usage(), emit=lambda event: None)
    ctx = StepContext(step=step, question=step.question, facts=[], caller=caller, prompts=Prompts())
    for solver in (DirectSolver(), ChainOfThoughtSolver(), SelfConsistencySolver(samples=3)):
        solved = await solver.solve(ctx)
        assert solved.model == "sky-model" and solved.answer.endswith("blue")
    assert solved.vote == {"blue": 3.0}
    assert step == Step(id=1, question="Colour of the sky?")  # the run records answers, not the solver


class _Tagging:
    """A custom solver: returns `Solved` with details, or the bare answer."""

    def __init__(self, bare: bool):
        self.bare = bare

    async def solve(self, ctx):
        return "42" if self.bare else Solved("42", model="my-model", vote={"42": 2.0, "41": 1.0})


@pytest.mark.parametrize("bare", [False, True])
def test_the_run_records_what_a_custom_solver_returns(bare):
    result = Orchestrator(one_step_model(), strategy=_Tagging(bare)).run("How many legs do 3 spiders have?")
    step = result.plan.step(1)
    assert step.answer == "42" and step.attempts == 1 and step.elapsed is not None
    assert (step.model, step.vote) == ((None, None) if bare else ("my-model", {"42": 2.0, "41": 1.0}))
    finished = next(e for e in result.events if type(e).__name__ == "StepFinished")
    assert finished.model == step.model and finished.elapsed == step.elapsed
