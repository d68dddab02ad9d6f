"""The plan view: what the command draws from the event stream."""

from rich.console import Console

from decompose.cli_view import PlanView
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
    assert view.steps[1].state == "done" and view.steps[1].answer == "330 m"  # not reset to waiting
    assert view.steps[2].state == "waiting" and view.steps[2].replan == 1
    text = drawn(view)
    assert text.index("1. How tall is the Eiffel Tower?") < text.index("↻ replan 1") < text.index("2. How tall")
    assert "sources: eiffel (1.50)" in text
    assert lines[0] == "plan: 1 step" and "replan 1: 1 more step" in lines


def test_a_first_plan_has_no_replan_marker():
    view = PlanView("q")
    view(PlanReady(plan=BOTH))
    assert "replan" not in drawn(view)
