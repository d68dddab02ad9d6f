"""The plan tree: a run's `Step` records, drawn live as a rich tree or as plain lines (pipe, CI: no control codes).

`PlanView` is an `on_event` callback. A live run's plan exists only inside the Orchestrator, so the view keeps its
own `Step` records, built from `PlanReady` and updated by the step events as the Orchestrator updates its own; a
finished or reviewed plan is drawn from its `Step`s as they are (`PlanView.of_plan`). What a `Step` does not
record (when it started, retries, tokens, which replan added it) the view keeps in `StepProgress`.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rich.console import Group
from rich.text import Text
from rich.tree import Tree

from decompose.plan import Plan, Step

if TYPE_CHECKING:
    from decompose.cli.config import Trace

STATES = {  # the word shown for a step: (terminal icon, style)
    "waiting": ("○", "dim"),
    "running": ("◐", "yellow"),
    "retrying": ("↻", "magenta"),
    "done": ("✓", "green"),
    "failed": ("✗", "red"),
    "skipped": ("–", "dim"),
}
FINISHED = ("done", "failed", "skipped")
SETS_ANSWER = re.compile(r"answer\s*[-+*/]?=[^=]")


@dataclass
class StepProgress:
    """What the event stream tells about a step beyond its `Step` record."""

    started: float | None = None  # the StepStarted event's time (monotonic)
    retries: int = 0
    tokens: tuple[int, int] | None = None  # (in, out) when the step's model calls reported usage
    replan: int = 0  # which replan added it (0: the first plan)


class PlanView:
    """The state of one run as its events arrive; `render()` draws it, `log` (if given) gets plain lines."""

    def __init__(self, question: str, *, trace: Trace | None = None, trace_extra: dict[str, Any] | None = None,
                 log: Callable[[str], None] | None = None):
        self.question = question
        # Both are replaced in one go, never grown in place: the live display's refresh thread may be reading.
        self.steps: dict[int, Step] = {}
        self.progress: dict[int, StepProgress] = {}
        self.started = time.monotonic()
        self.answer: str | None = None
        self.plan_retries = 0
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
        view.steps = {s.id: s for s in plan.steps}
        view.progress = {s.id: StepProgress() for s in plan.steps}
        view.static = True
        return view

    def state(self, step_id: int) -> str:
        """The word shown for a step: its status, with "waiting" for pending and "retrying" for a running step
        that has been retried."""
        status = self.steps[step_id].status
        if status == "pending":
            return "waiting"
        if status == "running" and self._progress(step_id).retries:
            return "retrying"
        return status

    def _progress(self, step_id: int) -> StepProgress:
        # The refresh thread may draw between a new plan's two assignments: a step not tracked yet has none.
        return self.progress.get(step_id) or StepProgress()

    # ----- events ------------------------------------------------------------------------------------------

    def __call__(self, event: Any) -> None:
        if self.trace is not None:
            self.trace.write(event, **self.trace_extra)
        handler = getattr(self, f"_on_{event.type}", None)
        if handler is not None:
            handler(event)

    def _on_IntentDetected(self, event: Any) -> None:
        self.intent = intent_label(event)
        if self.log:
            self.log(f"intent: {self.intent}")

    def _on_RouteChosen(self, event: Any) -> None:
        self.route = route_label(event.to_dict())
        if self.log:
            self.log(f"route: {self.route}")

    def _on_PlanReady(self, event: Any) -> None:
        steps, progress, added = {}, {}, []
        for raw in event.plan.get("steps", []):
            kept = event.replan and raw["id"] in self.steps  # a replan keeps the earlier steps as they are
            if kept:
                steps[raw["id"]], progress[raw["id"]] = self.steps[raw["id"]], self.progress[raw["id"]]
            else:
                steps[raw["id"]], progress[raw["id"]] = Step.model_validate(raw), StepProgress(replan=event.replan)
                added.append(steps[raw["id"]])
        self.progress, self.steps = progress, steps
        if self.log:
            noun = f"step{'s' if len(added) != 1 else ''}"
            self.log(f"replan {event.replan}: {len(added)} more {noun}" if event.replan
                     else f"plan: {len(added)} {noun}")
            for s in added:
                self.log("  " + self._plain_label(s))

    def _on_StepStarted(self, event: Any) -> None:
        step = self._step(event.step_id, event.question, event.tool)
        step.status = "running"
        self.progress[step.id].started = event.t

    def _on_StepFinished(self, event: Any) -> None:
        step = self._step(event.step_id)
        step.status, step.answer, step.elapsed, step.sources = "done", event.answer, event.elapsed, event.sources
        step.program, step.program_output = event.program, event.program_output
        if event.usage:
            self.progress[step.id].tokens = (event.usage.get("input", 0), event.usage.get("output", 0))
        if self.log:
            self.log(f"step {step.id} done ({step.elapsed:.2f}s): {short(step.answer)}")

    def _on_StepFailed(self, event: Any) -> None:
        step = self._step(event.step_id)
        step.status, step.error = "failed", event.error
        step.program, step.program_output = event.program, event.program_output
        started = self.progress[step.id].started
        if started is not None:
            step.elapsed = event.t - started
        if self.log:
            self.log(f"step {step.id} failed: {one_line(event.error)}")

    def _on_StepSkipped(self, event: Any) -> None:
        step = self._step(event.step_id)
        step.status, step.error = "skipped", event.reason
        if self.log:
            self.log(f"step {step.id} skipped: {one_line(event.reason)}")

    def _on_Retried(self, event: Any) -> None:
        phase = "planning" if event.phase == "decompose" else event.phase
        where = f"step {event.step_id}" if event.step_id is not None else phase
        self.last_retry = f"retry {event.attempt} ({event.kind}): {one_line(event.reason)}"
        if event.step_id is not None and event.step_id in self.steps:
            self.progress[event.step_id].retries += 1
        elif event.phase == "decompose":
            self.plan_retries += 1
        if self.log:
            self.log(f"{where}: {self.last_retry}, waiting {event.wait:.1f}s")

    def _on_Answered(self, event: Any) -> None:
        self.answer = event.answer

    def _step(self, step_id: int, question: str = "", tool: str | None = None) -> Step:
        """The view's record of a step, made on first sight when no plan named it."""
        if step_id not in self.steps:
            self.progress = {**self.progress, step_id: StepProgress()}
            self.steps = {**self.steps, step_id: Step(id=step_id, question=question, tool=tool)}
        return self.steps[step_id]

    # ----- drawing -----------------------------------------------------------------------------------------

    def render(self) -> Group:
        now = time.monotonic()
        tree = Tree(Text.assemble(("◆ ", "bold cyan"), (self.question, "bold")))
        if self.intent:
            tree.add(Text(f"◇ intent: {self.intent}", style="magenta"))
        if self.route:
            tree.add(Text(f"◇ route: {self.route}", style="magenta"))
        steps = list(self.steps.values())
        replan = 0
        for s in steps:
            if self._progress(s.id).replan != replan:
                replan = self._progress(s.id).replan
                tree.add(Text(f"↻ replan {replan}: the answers so far were not enough", style="bold yellow"))
            state = self.state(s.id)
            icon, style = STATES.get(state, ("?", ""))
            label = Text.assemble((f"{icon} ", style), (f"{s.id}. ", "bold"), s.question)
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
            elif s.status in ("failed", "skipped") and s.error:
                node.add(Text(short(s.error, 160), style="red" if s.status == "failed" else "dim"))
            if s.program is not None:
                node.add(Text(program_summary(s), style="dim"))
        footer = Text(style="dim")
        if self.static:
            pass
        elif not steps:
            footer.append(f"planning… {now - self.started:.1f}s")
            if self.plan_retries:
                footer.append(f"  ({self.last_retry})")
        elif self.answer is None and all(s.status in FINISHED for s in steps):
            footer.append(f"combining answers… {now - self.started:.1f}s")
        elif self.answer is None:
            running = sum(s.status == "running" for s in steps)
            done = sum(s.status == "done" for s in steps)
            footer.append(f"{done}/{len(steps)} done, {running} running · {now - self.started:.1f}s")
        return Group(tree, footer) if footer.plain else Group(tree)

    def plain_lines(self) -> list[str]:
        return [f"Plan for: {self.question}", *("  " + self._plain_label(s) for s in self.steps.values())]

    def _meta(self, s: Step, now: float) -> list[str]:
        state, progress = self.state(s.id), self._progress(s.id)
        meta = [state if not progress.retries else f"{state} (retry {progress.retries})"]
        if s.status == "running" and progress.started is not None:
            meta.append(f"{now - progress.started:.1f}s")
        elif s.elapsed is not None:
            meta.append(f"{s.elapsed:.2f}s")
        if progress.tokens:
            meta.append(f"{progress.tokens[0]}→{progress.tokens[1]} tok")
        return meta

    def _plain_label(self, s: Step) -> str:
        text = f"[{self.state(s.id)}] {s.id}. {s.question}"
        if s.tool:
            text += f" (tool: {s.tool})"
        elif s.kind == "program":
            text += " (program)"
        if s.depends_on:
            text += f" (after {', '.join(map(str, s.depends_on))})"
        if s.elapsed is not None:
            text += f" {s.elapsed:.2f}s"
        tokens = self._progress(s.id).tokens
        if tokens:
            text += f" {tokens[0]}/{tokens[1]} tokens"
        if s.status == "done":
            text += f" -> {short(s.answer, 200)}"
        elif s.error:
            text += f": {short(s.error, 200)}"
        if s.program is not None:
            text += f" [{program_summary(s)}]"
        return text


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


def program_summary(step: Step) -> str:
    """A program in a line: the line that sets `answer` (else its first), its length, and what it printed."""
    lines = [line.strip() for line in (step.program or "").splitlines() if line.strip()]
    setting = [line for line in lines if SETS_ANSWER.match(line)]
    shown = setting[-1] if setting else lines[0] if lines else "(empty)"
    text = f"program: {short(shown, 80)}" + (f" ({len(lines)} lines)" if len(lines) > 1 else "")
    if step.program_output:
        text += f"; printed: {short(step.program_output, 80)}"
    return text


def source_ids(sources: list[dict[str, Any]]) -> str:
    return ", ".join(f"{s['id']} ({s['score']:.2f})" if isinstance(s.get("score"), (int, float)) else str(s["id"])
                     for s in sources)


def short(value: Any, limit: int = 100) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    text = one_line(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def one_line(text: Any) -> str:
    return " ".join(str(text).split())
