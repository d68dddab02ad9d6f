"""The plan view: what the command draws from the event stream."""

from rich.console import Console

from decompose.cli.plan_view import PlanView
from decompose.events import PlanReady, StepFinished, StepStarted

FIRST = {"steps": [{"id": 1, "question": "How tall is the Eiffel Tower?", "depends_on": []}]}
BOTH = {"steps": [*FIRST["steps"], {"id": 2, "question": "How tall is Big Ben?", "depends_on": []}]}


def drawn(view: PlanView) -> str:
    console = Console(width=120, record=True, color_system=None)
    console.print(view.render())
    return console.export_text()


def test_a_replan_keeps_the_finished_steps_and_shows_the_added_ones():
    lines: list[str] = []
    view = PlanView("Which is taller?", log=lines.append)
    view(PlanReady(plan=FIRST))
    view(StepStarted(step_id=1, question="How tall is the Eiffel Tower?"))
    view(StepFinished(step_id=1, answer="330 m", elapsed=0.1, sources=[{"id": "eiffel", "score": 1.5}]))
    view(PlanReady(plan=BOTH, replan=1))
    assert view.state(1) == "done" and view.run.steps[1].answer == "330 m"  # not reset to waiting
    assert view.state(2) == "waiting" and view.run.steps[2].replan == 1
    text = drawn(view)
    assert text.index("1. How tall is the Eiffel Tower?") < text.index("↻ replan 1") < text.index("2. How tall")
    assert "sources: eiffel (1.50)" in text
    assert lines[0] == "plan: 1 step" and "replan 1: 1 more step" in lines


def test_a_first_plan_has_no_replan_marker():
    view = PlanView("q")
    view(PlanReady(plan=BOTH))
    assert "replan" not in drawn(view)


def test_a_retried_step_reads_retrying_until_it_finishes():
    from decompose.events import Retried

    lines: list[str] = []
    view = PlanView("q", log=lines.append)
    view(PlanReady(plan=FIRST))
    view(StepStarted(step_id=1, question="How tall is the Eiffel Tower?"))
    view(Retried(phase="solve", step_id=1, attempt=1, kind="transport", reason="reset", wait=0.5))
    assert view.state(1) == "retrying" and "retrying (retry 1)" in drawn(view)
    view(StepFinished(step_id=1, answer="330 m", elapsed=0.1, usage={"input": 12, "output": 3, "calls": 2}))
    assert view.state(1) == "done" and "done (retry 1) · 0.10s · 12→3 tok" in drawn(view)
    assert "step 1: retry 1 (transport): reset, waiting 0.5s" in lines


def test_a_finished_plan_is_drawn_from_its_own_steps():
    from decompose.plan import Plan

    plan = Plan.from_data(BOTH)
    plan.steps[0].status, plan.steps[0].answer, plan.steps[0].elapsed = "done", "330 m", 0.5
    plan.steps[1].status, plan.steps[1].error = "skipped", "run timed out"
    view = PlanView.of_plan(plan, "Which is taller?")
    assert view.plain_lines() == [
        "Plan for: Which is taller?",
        "  [done] 1. How tall is the Eiffel Tower? 0.50s -> 330 m",
        "  [skipped] 2. How tall is Big Ben?: run timed out",
    ]
    assert "combining" not in drawn(view) and "✓ 1. How tall is the Eiffel Tower?" in drawn(view)


TITANIC_PLAN = {
    "steps": [
        {"id": 1, "question": "Who directed Titanic?", "depends_on": []},
        {"id": 2, "question": "When was {1} born?", "depends_on": [1]},
        {"id": 3, "question": "Is {2} before {{1}}?", "depends_on": [2]},
    ]
}


def test_a_step_is_shown_with_its_references_resolved_once_they_are_answered():
    lines: list[str] = []
    view = PlanView("When was the director of Titanic born?", log=lines.append)
    view(PlanReady(plan=TITANIC_PLAN))
    assert "2. When was {1} born?" in drawn(view)  # nothing answered yet: the plan as written
    assert lines[2] == "  [waiting] 2. When was {1} born? (after 1)"
    view(StepStarted(step_id=1, question="Who directed Titanic?"))
    view(StepFinished(step_id=1, answer="James Cameron", elapsed=0.1))
    text = drawn(view)
    assert "2. When was James Cameron born?" in text
    assert "3. Is {2} before {{1}}?" in text  # {2} is not answered yet; {{1}} is the literal text, as written
    view(StepStarted(step_id=2, question="When was {1} born?"))
    view(StepFinished(step_id=2, answer=1954, elapsed=0.1))
    assert "3. Is 1954 before {{1}}?" in drawn(view)
    assert view.plain_lines()[2] == "  [done] 2. When was James Cameron born? (after 1) 0.10s -> 1954"


def test_a_finished_plan_shows_its_resolved_questions_too():
    from decompose.plan import Plan

    plan = Plan.from_data(TITANIC_PLAN)
    plan.steps[0].status, plan.steps[0].answer = "done", "James Cameron"
    plan.steps[1].status, plan.steps[1].error = "failed", "timed out"
    lines = PlanView.of_plan(plan).plain_lines()
    assert lines[2] == "  [failed] 2. When was James Cameron born? (after 1): timed out"
    assert lines[3] == "  [waiting] 3. Is {2} before {{1}}? (after 2)"


def test_an_event_out_of_order_is_refused_with_what_went_wrong():
    from decompose.run_state import TransitionError

    view = PlanView("q")
    view(PlanReady(plan=FIRST))
    try:
        view(StepFinished(step_id=1, answer="330 m", elapsed=0.1))
    except TransitionError as exc:
        assert str(exc).startswith("step 1 is pending: StepFinished moves a running step to done")
    else:
        raise AssertionError("a step that never started cannot finish")
    assert view.state(1) == "waiting"  # the refused event changed nothing
