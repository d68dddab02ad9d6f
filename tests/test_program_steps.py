"""Program steps through the Orchestrator: the strategy, the plan step kind, the one repair, the failure, and how
the program is recorded and shown. Scripted models; the programs run in the real interpreter."""

import pytest
from helpers import plan_json
from rich.console import Console

from decompose import ConfigError, Orchestrator, Plan, PlanError, ScriptedChatModel
from decompose.cli.plan_view import PlanView
from decompose.events import StepFailed, StepFinished
from decompose.models.scripted import asks_for_plan, asks_to_combine
from decompose.settings import make_solver
from decompose.solvers import ProgramSolver

EGGS = "Tom has 4 boxes of 6 eggs and eats 5 eggs. How many eggs are left?"


PROGRAM_PROMPT = "Answer the question by writing a short Python program"


def asks_for_program(messages) -> bool:
    return messages[0].content.startswith(PROGRAM_PROMPT)


def repairs(messages) -> bool:
    return messages[-1].content.startswith("That program failed")


def fenced(code: str) -> str:
    return f"Here is the program:\n```python\n{code}\n```"


def combine_last(messages) -> str:
    return "Answer: " + messages[-1].content.split("→")[-1].split("\n")[0].strip()


def solve_calls(model: ScriptedChatModel) -> list[dict]:
    return [c for c in model.calls if c["prompt"].startswith(PROGRAM_PROMPT)]


def test_strategy_program_answers_every_step_with_a_program():
    model = ScriptedChatModel(
        rules=[
            (asks_for_plan, plan_json("How many eggs are in 4 boxes of 6 eggs?", "What is {1} minus 5?")),
            (asks_to_combine, combine_last),
            (lambda m: asks_for_program(m) and "Question: How many eggs" in m[-1].content, fenced("answer = 4 * 6")),
            (
                lambda m: asks_for_program(m) and "Question: What is 24 minus 5" in m[-1].content,
                fenced("left = 24 - 5\nprint('left:', left)\nanswer = left"),
            ),
        ]
    )
    result = Orchestrator(model, strategy="program").run(EGGS)
    assert result.ok and result.answer == "19"
    first, second = result.plan.steps
    assert (first.answer, first.program, first.program_output) == (24, "answer = 4 * 6", "")
    assert second.answer == 19 and second.program_output == "left: 19\n"
    assert second.program == "left = 24 - 5\nprint('left:', left)\nanswer = left"
    # the step's known facts are in its prompt; one model call a step
    assert "How many eggs are in 4 boxes of 6 eggs? → 24" in solve_calls(model)[1]["prompt"]
    assert result.usage.phases["solve"].calls == 2
    finished = [e for e in result.events if isinstance(e, StepFinished)]
    assert finished[1].to_dict()["program"] == second.program  # the stream carries it
    step = result.to_dict()["steps"][1]
    assert (step["answer"], step["program"], step["program_output"]) == (19, second.program, "left: 19\n")


def test_a_program_kind_step_is_answered_by_a_program_whatever_the_strategy():
    model = ScriptedChatModel(
        rules=[
            (
                asks_for_plan,
                plan_json(
                    "How many eggs are in a box?",
                    {"id": 2, "question": "What is 4 times {1}, minus 5?", "kind": "program"},
                ),
            ),
            (asks_to_combine, combine_last),
            (asks_for_program, fenced("answer = 4 * 6 - 5")),
            (r"Question: How many eggs are in a box", "6"),
        ]
    )
    result = Orchestrator(model, strategy="cot").run(EGGS)
    first, second = result.plan.steps
    assert first.kind == "model" and first.program is None and first.answer == "6"
    assert second.kind == "program" and second.answer == 19 and second.program == "answer = 4 * 6 - 5"
    assert result.plan.spec()["steps"][1]["kind"] == "program"
    assert "step by step" in model.calls[1]["prompt"]  # the model step went to the run's strategy


def test_a_failed_program_is_shown_to_the_model_once_and_the_repair_answers():
    model = ScriptedChatModel(
        rules=[
            (asks_for_plan, plan_json("What is 120 split among 0 people, or among 4 when there are none?")),
            (repairs, fenced("answer = 120 / 4")),
            (asks_for_program, fenced("people = 0\nanswer = 120 / people")),
        ]
    )
    result = Orchestrator(model, strategy="program").run("What is 120 split among 0 people?")
    step = result.plan.step(1)
    assert step.status == "done" and step.answer == 30.0 and step.program == "answer = 120 / 4"
    calls = solve_calls(model)
    assert len(calls) == 2 and result.usage.phases["solve"].calls == 2
    assert "ZeroDivisionError on line 2: division by zero" in calls[1]["prompt"]
    assert "people = 0" in calls[1]["prompt"]  # the model sees the program it wrote


def test_a_program_that_fails_twice_fails_its_step_and_dependents_are_skipped():
    model = ScriptedChatModel(
        rules=[
            (
                asks_for_plan,
                plan_json({"id": 1, "question": "What is the total?", "kind": "program"}, "Is {1} more than 10?"),
            ),
            (repairs, fenced("import os\nanswer = 1")),
            (asks_for_program, fenced("answer = undefined_total")),
            (asks_to_combine, "Answer: unknown"),
        ]
    )
    result = Orchestrator(model).run("Is the total more than 10?")
    first, second = result.plan.steps
    assert first.status == "failed" and second.status == "skipped"
    assert first.error.startswith("the repaired program failed too: the program was refused: line 1: `import os`")
    assert "(hint: " in first.error and "\n" not in first.error
    assert first.program == "import os\nanswer = 1"  # the failed program, recorded to read beside its error
    assert len(solve_calls(model)) == 2  # one repair, no more
    failed = next(e for e in result.events if isinstance(e, StepFailed))
    assert failed.program == first.program
    assert "step 1 failed" in second.error


def test_a_hand_written_plan_with_a_program_step_runs_through_execute():
    model = ScriptedChatModel(
        rules=[
            (
                asks_for_program,
                fenced("from datetime import date\nanswer = (date(2024, 3, 1) - date(2024, 2, 1)).days"),
            ),
            (asks_to_combine, combine_last),
        ]
    )
    plan = {
        "question": "How many days has February 2024?",
        "steps": [{"id": 1, "question": "How many days are between 2024-02-01 and 2024-03-01?", "kind": "program"}],
    }
    result = Orchestrator(model).execute(plan)
    assert result.plan.step(1).answer == 29 and result.usage.phases["solve"].calls == 1


def test_the_plan_json_keeps_the_kind_and_leaves_model_steps_as_they_were():
    spec = {
        "question": "Q?",
        "steps": [
            {"id": 1, "question": "A?", "depends_on": []},
            {"id": 2, "question": "{1} squared?", "depends_on": [1], "kind": "program"},
        ],
    }
    plan = Plan.from_data(spec)
    assert plan.spec() == spec and Plan.from_json(plan.to_json()).spec() == spec
    assert Plan.from_data({"steps": [{"id": 1, "question": "A?", "kind": None}]}).steps[0].kind == "model"


@pytest.mark.parametrize(
    "step, needle",
    [
        ({"id": 1, "question": "A?", "kind": "code"}, "field 'kind'"),
        (
            {"id": 1, "question": "A?", "kind": "program", "tool": "calculator", "args": {"expression": "1"}},
            'has both a tool and "kind": "program"',
        ),
    ],
)
def test_a_bad_kind_is_a_plan_error(step, needle):
    with pytest.raises(PlanError, match=needle) as caught:
        Plan.from_data({"steps": [step]})
    assert "program" in caught.value.hint
    with pytest.raises(PlanError, match=needle):  # and a plan given to execute is checked before anything runs
        Orchestrator(ScriptedChatModel(default="x")).check_plan({"steps": [step]})


def test_the_program_strategy_by_name_and_its_limits():
    solver = make_solver("program", timeout=2, memory_mb=128)
    assert isinstance(solver, ProgramSolver) and (solver.timeout, solver.memory_mb) == (2, 128)
    orch = Orchestrator(ScriptedChatModel(default="x"), strategy=solver)
    assert orch.program_solver is solver  # program steps run under the strategy's limits
    assert isinstance(Orchestrator(ScriptedChatModel(default="x")).program_solver, ProgramSolver)
    with pytest.raises(ConfigError, match="timeout"):
        ProgramSolver(timeout=0)
    with pytest.raises(ConfigError, match="memory_mb"):
        ProgramSolver(memory_mb=16)
    with pytest.raises(ConfigError, match="takes no samples"):
        make_solver("program", samples=3)


def test_the_tree_shows_the_program_step_its_answer_line_and_output():
    plan = Plan.from_data({"steps": [{"id": 1, "question": "Eggs left?", "kind": "program"}]})
    step = plan.step(1)
    step.status, step.answer, step.elapsed = "done", 19, 0.05
    step.program, step.program_output = "total = 4 * 6\nleft = total - 5\nanswer = left", "checked\n"
    view = PlanView.of_plan(plan, "Eggs?")
    assert view.plain_lines()[1] == (
        "  [done] 1. Eggs left? (program) 0.05s -> 19 [program: answer = left (3 lines); printed: checked]"
    )
    console = Console(width=120, record=True, color_system=None)
    console.print(view.render())
    text = console.export_text()
    assert "λ program" in text and "program: answer = left (3 lines); printed: checked" in text


@pytest.mark.parametrize("command", [["run", "q"], ["eval", "rows.jsonl"], ["chat"], ["serve"]])
def test_every_command_takes_strategy_program(command):
    from decompose.cli.app import build_parser
    from decompose.cli.config import orchestrator_options

    args = build_parser().parse_args([*command, "--strategy", "program"])
    assert isinstance(make_solver(orchestrator_options(args)["strategy"]), ProgramSolver)
