"""The plan tree: a run's state, drawn live as a rich tree or as plain lines (pipe, CI: no control codes).

`PlanView` is an `on_event` callback: it folds each event into its `RunState` with `run_state.apply`, the same
function the engine and the server use, so the tree shows each step as the run has it; a finished or reviewed
plan is drawn from its `Step`s as they stand (`PlanView.of_plan`). A step's question is shown with the
references to steps already answered resolved ("When was {1} born?" reads "When was James Cameron born?").
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from rich.console import Group
from rich.text import Text
from rich.tree import Tree

from decompose.events import (
    ApprovalRequested,
    Event,
    IntentDetected,
    PlanReady,
    Retried,
    RouteChosen,
    StepFailed,
    StepFinished,
    StepSkipped,
)
from decompose.plan import Plan
from decompose.run_state import RunState, StepState, apply

if TYPE_CHECKING:
    from decompose.cli.config import Trace

STATES = {  # the word shown for a step: (terminal icon, style)
    "waiting": ("○", "dim"),
    "running": ("◐", "yellow"),
    "retrying": ("↻", "magenta"),
    "done": ("✓", "green"),
    "failed": ("✗", "red"),
    "skipped": ("–", "dim"),
    "awaiting": ("‖", "bold magenta"),
}
FINISHED = ("done", "failed", "skipped", "awaiting")
SETS_ANSWER = re.compile(r"answer\s*[-+*/]?=[^=]")


class PlanView:
    """The state of one run as its events arrive; `render()` draws it, `log` (if given) gets plain lines."""

    def __init__(
        self,
        question: str,
        *,
        trace: Trace | None = None,
        trace_extra: dict[str, Any] | None = None,
        log: Callable[[str], None] | None = None,
    ):
        self.question = question
        # Replaced by each event, never changed in place: the live display's refresh thread may be reading it.
        self.run = RunState()
        self.started = time.monotonic()
        self.last_retry: str | None = None
        self.trace = trace
        self.trace_extra = trace_extra or {}
        self.log = log
        self.static = False  # a finished or not-yet-run plan: no progress footer
        self.intent: str | None = None  # "card_arrival (0.93) → card_issues" on a routed turn
        self.route: str | None = None  # strategy="auto": "program (a computation …: program answered 18)"

    @classmethod
    def of_plan(cls, plan: Plan, question: str | None = None) -> PlanView:
        """A still picture of `plan`'s steps as they stand (not run yet, or finished)."""
        view = cls(question or plan.question or "(plan)")
        view.run = RunState.of_plan(plan)
        view.static = True
        return view

    def state(self, step_id: int) -> str:
        """The word shown for a step: its status, with "waiting" for pending and "retrying" for a running step
        that has been retried."""
        return word(self.run.steps[step_id])

    # ----- events ------------------------------------------------------------------------------------------

    def __call__(self, event: Event) -> None:
        if self.trace is not None:
            self.trace.write(event, **self.trace_extra)
        before, self.run = self.run, apply(self.run, event)
        match event:
            case IntentDetected():
                self.intent = intent_label(event)
                self._say(f"intent: {self.intent}")
            case RouteChosen():
                self.route = route_label(event.to_dict())
                self._say(f"route: {self.route}")
            case Retried():
                self.last_retry = f"retry {event.attempt} ({event.kind}): {one_line(event.reason)}"
                where = (
                    f"step {event.step_id}"
                    if event.step_id is not None
                    else ("planning" if event.phase == "decompose" else event.phase)
                )
                self._say(f"{where}: {self.last_retry}, waiting {event.wait:.1f}s")
            case PlanReady() if self.log:
                added = [s for i, s in self.run.steps.items() if before.steps.get(i) is not s]
                noun = f"step{'s' if len(added) != 1 else ''}"
                self.log(
                    f"replan {event.replan}: {len(added)} more {noun}" if event.replan else f"plan: {len(added)} {noun}"
                )
                for s in added:
                    self.log("  " + self._plain_label(self.run, s))
            case StepFinished():
                step = self.run.steps[event.step_id]
                self._say(f"step {step.id} done ({step.elapsed:.2f}s): {short(step.answer)}")
            case StepFailed():
                self._say(f"step {event.step_id} failed: {one_line(event.error)}")
            case StepSkipped():
                self._say(f"step {event.step_id} skipped: {one_line(event.reason)}")
            case ApprovalRequested():
                self._say(f"step {event.step_id} waits for approval: {event.tool} {event.args} ({event.reason})")

    def _say(self, line: str) -> None:
        if self.log:
            self.log(line)

    # ----- drawing -----------------------------------------------------------------------------------------

    def render(self) -> Group:
        now, run = time.monotonic(), self.run  # one state throughout, whatever arrives meanwhile
        tree = Tree(Text.assemble(("◆ ", "bold cyan"), (self.question, "bold")))
        if self.intent:
            tree.add(Text(f"◇ intent: {self.intent}", style="magenta"))
        if self.route:
            tree.add(Text(f"◇ route: {self.route}", style="magenta"))
        steps = list(run.steps.values())
        replan = 0
        for s in steps:
            if s.replan != replan:
                replan = s.replan
                tree.add(Text(f"↻ replan {replan}: the answers so far were not enough", style="bold yellow"))
            icon, style = STATES.get(word(s), ("?", ""))
            label = Text.assemble((f"{icon} ", style), (f"{s.id}. ", "bold"), run.shown_question(s.id))
            if s.tool:
                label.append(f"  ⚙ {s.tool}", style="cyan")
            elif s.kind == "program":
                label.append("  λ program", style="cyan")
            if s.depends_on:
                label.append(f"  ← {', '.join(map(str, s.depends_on))}", style="dim")
            label.append("  " + " · ".join(self._meta(s, now)), style=style)
            node = tree.add(label)
            if s.status == "done":
                node.add(Text("→ " + short(s.answer, 160), style="green"))
                if s.sources:
                    node.add(Text("sources: " + source_ids(s.sources), style="dim"))
            elif s.status in ("failed", "skipped", "awaiting") and s.error:
                node.add(Text(short(s.error, 160), style="red" if s.status == "failed" else "dim"))
            if s.program is not None:
                node.add(Text(program_summary(s), style="dim"))
        footer = Text(style="dim")
        if self.static:
            pass
        elif not steps:
            footer.append(f"planning… {now - self.started:.1f}s")
            if run.plan_retries:
                footer.append(f"  ({self.last_retry})")
        elif run.answer is None and all(s.status in FINISHED for s in steps):
            waiting = any(s.status == "awaiting" for s in steps)  # the run stops there: nothing is combined
            footer.append("stopped: awaiting approval" if waiting else f"combining answers… {now - self.started:.1f}s")
        elif run.answer is None:
            running = sum(s.status == "running" for s in steps)
            done = sum(s.status == "done" for s in steps)
            footer.append(f"{done}/{len(steps)} done, {running} running · {now - self.started:.1f}s")
        return Group(tree, footer) if footer.plain else Group(tree)

    def plain_lines(self) -> list[str]:
        run = self.run
        return [f"Plan for: {self.question}", *("  " + self._plain_label(run, s) for s in run.steps.values())]

    def _meta(self, s: StepState, now: float) -> list[str]:
        meta = [word(s) if not s.retries else f"{word(s)} (retry {s.retries})"]
        if s.status == "running" and s.started is not None:
            meta.append(f"{now - s.started:.1f}s")
        elif s.elapsed is not None:
            meta.append(f"{s.elapsed:.2f}s")
        if s.usage:
            meta.append(f"{s.usage.get('input', 0)}→{s.usage.get('output', 0)} tok")
        return meta

    @staticmethod
    def _plain_label(run: RunState, s: StepState) -> str:
        text = f"[{word(s)}] {s.id}. {run.shown_question(s.id)}"
        if s.tool:
            text += f" (tool: {s.tool})"
        elif s.kind == "program":
            text += " (program)"
        if s.depends_on:
            text += f" (after {', '.join(map(str, s.depends_on))})"
        if s.elapsed is not None:
            text += f" {s.elapsed:.2f}s"
        if s.usage:
            text += f" {s.usage.get('input', 0)}/{s.usage.get('output', 0)} tokens"
        if s.status == "done":
            text += f" -> {short(s.answer, 200)}"
        elif s.error:
            text += f": {short(s.error, 200)}"
        if s.program is not None:
            text += f" [{program_summary(s)}]"
        return text


def word(step: StepState) -> str:
    """A step's status as the view words it: "waiting" for pending, "retrying" for a running step retried."""
    if step.status == "pending":
        return "waiting"
    if step.status == "running" and step.retries:
        return "retrying"
    return step.status


def intent_label(event: Any) -> str:
    """`card_arrival (0.93, trained:smollm2) → card_issues`; the reason when the router fell back."""
    how = f"{event.confidence:.2f}, {event.router}" if event.confidence is not None else event.router
    text = f"{event.intent} ({how})"
    if event.route and event.route != event.intent:
        text += f" → {event.route}"
    if event.error:
        text += f" [{one_line(event.error)}]"
    return text


def route_label(route: dict[str, Any]) -> str:
    """`program (a computation on the numbers the question states: program answered 18)`."""
    return f"{route['name']} ({one_line(route['why'])})"


def program_summary(step: StepState) -> str:
    """A program in a line: the line that sets `answer` (else its first), its length, and what it printed."""
    lines = [line.strip() for line in (step.program or "").splitlines() if line.strip()]
    setting = [line for line in lines if SETS_ANSWER.match(line)]
    shown = setting[-1] if setting else lines[0] if lines else "(empty)"
    text = f"program: {short(shown, 80)}" + (f" ({len(lines)} lines)" if len(lines) > 1 else "")
    if step.program_output:
        text += f"; printed: {short(step.program_output, 80)}"
    return text


def source_ids(sources: list[dict[str, Any]]) -> str:
    return ", ".join(
        f"{s['id']} ({s['score']:.2f})" if isinstance(s.get("score"), (int, float)) else str(s["id"]) for s in sources
    )


def short(value: Any, limit: int = 100) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    text = one_line(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def one_line(text: Any) -> str:
    return " ".join(str(text).split())
