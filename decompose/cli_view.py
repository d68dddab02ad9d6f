"""What the command shows: the live plan tree, the answer and summary, plan review, chat and the agents table.

`PlanView` is an `on_event` callback: it keeps one record per step from the event stream and renders it as a rich
tree (live on a terminal) or as plain lines (pipe, CI: no control codes). `NO_COLOR` is honoured by rich.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Coroutine

from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from decompose.cli import EXIT_FAILED, EXIT_OK
from decompose.cli_config import Trace, build_orchestrator
from decompose.errors import ConfigError, DecomposeError, PlanError

STATES = {  # state: (terminal icon, style)
    "waiting": ("○", "dim"),
    "running": ("◐", "yellow"),
    "retrying": ("↻", "magenta"),
    "done": ("✓", "green"),
    "failed": ("✗", "red"),
    "skipped": ("–", "dim"),
}


@dataclass
class StepView:
    id: int
    question: str
    tool: str | None = None
    depends_on: list[int] = field(default_factory=list)
    state: str = "waiting"
    started: float | None = None
    elapsed: float | None = None
    answer: Any = None
    error: str | None = None
    retries: int = 0
    tokens: tuple[int, int] | None = None  # (in, out) when the event carries usage
    replan: int = 0  # which replan added it (0: the first plan)
    sources: list[dict[str, Any]] | None = None


class PlanView:
    """The state of one run as its events arrive; `render()` draws it, `log` (if given) gets plain lines."""

    def __init__(self, question: str, *, trace: Trace | None = None, trace_extra: dict[str, Any] | None = None,
                 log: Callable[[str], None] | None = None):
        self.question = question
        self.steps: dict[int, StepView] = {}
        self.started = time.monotonic()
        self.answer: str | None = None
        self.plan_retries = 0
        self.last_retry: str | None = None
        self.trace = trace
        self.trace_extra = trace_extra or {}
        self.log = log
        self.static = False  # a finished or not-yet-run plan: no progress footer

    # ----- events ------------------------------------------------------------------------------------------

    def __call__(self, event: Any) -> None:
        if self.trace is not None:
            self.trace.write(event, **self.trace_extra)
        handler = getattr(self, f"_on_{event.type}", None)
        if handler is not None:
            handler(event)

    def _on_PlanReady(self, event: Any) -> None:
        steps = {}
        for raw in event.plan.get("steps", []):
            kept = self.steps.get(raw["id"]) if event.replan else None  # a replan keeps the earlier steps' states
            steps[raw["id"]] = kept or StepView(id=raw["id"], question=raw["question"], tool=raw.get("tool"),
                                                depends_on=list(raw.get("depends_on") or []),
                                                replan=event.replan)
        added = [s for s in steps.values() if s.id not in self.steps] if event.replan else list(steps.values())
        self.steps = steps  # replaced in one go: the refresh thread may be reading the old one
        if self.log:
            noun = f"step{'s' if len(added) != 1 else ''}"
            self.log(f"replan {event.replan}: {len(added)} more {noun}" if event.replan
                     else f"plan: {len(added)} {noun}")
            for s in added:
                self.log("  " + _plain_step_label(s))

    def _on_StepStarted(self, event: Any) -> None:
        step = self._step(event.step_id, event.question, event.tool)
        step.state, step.started = "running", event.t

    def _on_StepFinished(self, event: Any) -> None:
        step = self._step(event.step_id)
        step.state, step.answer, step.elapsed = "done", event.answer, event.elapsed
        step.tokens = _tokens(getattr(event, "usage", None))
        step.sources = getattr(event, "sources", None)
        if self.log:
            self.log(f"step {step.id} done ({step.elapsed:.2f}s): {_short(step.answer)}")

    def _on_StepFailed(self, event: Any) -> None:
        step = self._step(event.step_id)
        step.state, step.error = "failed", event.error
        if step.started is not None:
            step.elapsed = event.t - step.started
        if self.log:
            self.log(f"step {step.id} failed: {_one_line(event.error)}")

    def _on_StepSkipped(self, event: Any) -> None:
        step = self._step(event.step_id)
        step.state, step.error = "skipped", event.reason
        if self.log:
            self.log(f"step {step.id} skipped: {_one_line(event.reason)}")

    def _on_Retried(self, event: Any) -> None:
        phase = "planning" if event.phase == "decompose" else event.phase
        where = f"step {event.step_id}" if event.step_id is not None else phase
        self.last_retry = f"retry {event.attempt} ({event.kind}): {_one_line(event.reason)}"
        if event.step_id is not None and event.step_id in self.steps:
            step = self.steps[event.step_id]
            step.retries += 1
            if step.state in ("running", "retrying"):
                step.state = "retrying"
        elif event.phase == "decompose":
            self.plan_retries += 1
        if self.log:
            self.log(f"{where}: {self.last_retry}, waiting {event.wait:.1f}s")

    def _on_Answered(self, event: Any) -> None:
        self.answer = event.answer

    def _step(self, step_id: int, question: str = "", tool: str | None = None) -> StepView:
        if step_id not in self.steps:
            self.steps = {**self.steps, step_id: StepView(id=step_id, question=question, tool=tool)}
        return self.steps[step_id]

    # ----- drawing -----------------------------------------------------------------------------------------

    def render(self) -> Group:
        now = time.monotonic()
        tree = Tree(Text.assemble(("◆ ", "bold cyan"), (self.question, "bold")))
        steps = list(self.steps.values())
        replan = 0
        for s in steps:
            if s.replan != replan:
                replan = s.replan
                tree.add(Text(f"↻ replan {replan}: the answers so far were not enough", style="bold yellow"))
            icon, style = STATES.get(s.state, ("?", ""))
            label = Text.assemble((f"{icon} ", style), (f"{s.id}. ", "bold"), s.question)
            if s.tool:
                label.append(f"  ⚙ {s.tool}", style="cyan")
            if s.depends_on:
                label.append(f"  ← {', '.join(map(str, s.depends_on))}", style="dim")
            label.append("  " + " · ".join(_meta(s, now)), style=style)
            node = tree.add(label)
            if s.state == "done":
                node.add(Text("→ " + _short(s.answer, 160), style="green"))
                if s.sources:
                    node.add(Text("sources: " + _source_ids(s.sources), style="dim"))
            elif s.state in ("failed", "skipped") and s.error:
                node.add(Text(_short(s.error, 160), style="red" if s.state == "failed" else "dim"))
        footer = Text(style="dim")
        if self.static:
            pass
        elif not steps:
            footer.append(f"planning… {now - self.started:.1f}s")
            if self.plan_retries:
                footer.append(f"  ({self.last_retry})")
        elif self.answer is None and all(s.state in ("done", "failed", "skipped") for s in steps):
            footer.append(f"combining answers… {now - self.started:.1f}s")
        elif self.answer is None:
            running = sum(s.state in ("running", "retrying") for s in steps)
            done = sum(s.state == "done" for s in steps)
            footer.append(f"{done}/{len(steps)} done, {running} running · {now - self.started:.1f}s")
        return Group(tree, footer) if footer.plain else Group(tree)

    def plain_lines(self) -> list[str]:
        lines = [f"Plan for: {self.question}"]
        lines += ["  " + _plain_step_label(s) for s in self.steps.values()]
        return lines


def _meta(s: StepView, now: float) -> list[str]:
    meta = [s.state if not s.retries else f"{s.state} (retry {s.retries})"]
    if s.state in ("running", "retrying") and s.started is not None:
        meta.append(f"{now - s.started:.1f}s")
    elif s.elapsed is not None:
        meta.append(f"{s.elapsed:.2f}s")
    if s.tokens:
        meta.append(f"{s.tokens[0]}→{s.tokens[1]} tok")
    return meta


def _plain_step_label(s: StepView) -> str:
    text = f"[{s.state}] {s.id}. {s.question}"
    if s.tool:
        text += f" (tool: {s.tool})"
    if s.depends_on:
        text += f" (after {', '.join(map(str, s.depends_on))})"
    if s.elapsed is not None:
        text += f" {s.elapsed:.2f}s"
    if s.tokens:
        text += f" {s.tokens[0]}/{s.tokens[1]} tokens"
    if s.state == "done":
        text += f" -> {_short(s.answer, 200)}"
    elif s.error:
        text += f": {_short(s.error, 200)}"
    return text


def _tokens(usage: Any) -> tuple[int, int] | None:
    """Per-step usage, if the event carries it (a dict or an object with input/output)."""
    if usage is None:
        return None
    if isinstance(usage, dict):
        return int(usage.get("input", usage.get("input_tokens", 0)) or 0), \
            int(usage.get("output", usage.get("output_tokens", 0)) or 0)
    return int(getattr(usage, "input", 0) or 0), int(getattr(usage, "output", 0) or 0)


def _source_ids(sources: list[dict[str, Any]]) -> str:
    return ", ".join(f"{s['id']} ({s['score']:.2f})" if isinstance(s.get("score"), (int, float)) else str(s["id"])
                     for s in sources)


def _short(value: Any, limit: int = 100) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    text = _one_line(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _one_line(text: Any) -> str:
    return " ".join(str(text).split())


# ----- output: a terminal (live, colour) or plain text -------------------------------------------------------


class Output:
    """Where and how a command writes. `json=True` keeps stdout for the JSON document alone."""

    def __init__(self, *, json_mode: bool = False):
        self.json_mode = json_mode
        self.out = Console(highlight=False)
        self.err = Console(stderr=True, highlight=False)
        # The live view goes where the person is looking: stdout, or stderr when stdout carries JSON.
        self.view_console = self.err if json_mode else self.out
        self.live = self.view_console.is_terminal and not self.view_console.is_dumb_terminal

    def log(self, line: str) -> None:
        """Plain progress lines (no terminal): stderr, so stdout stays the result."""
        print(line, file=sys.stderr, flush=True)

    def watch(self, view: PlanView, runner: asyncio.Runner, coro: Coroutine[Any, Any, Any]) -> Any:
        """Run `coro` while showing `view` (live on a terminal)."""
        if not self.live:
            if not self.json_mode:
                view.log = self.log
            return runner.run(coro)
        with Live(get_renderable=view.render, console=self.view_console, refresh_per_second=8,
                  transient=False, redirect_stdout=False, redirect_stderr=False):
            return runner.run(coro)

    def spinner(self, message: str, runner: asyncio.Runner, coro: Coroutine[Any, Any, Any]) -> Any:
        if not self.live:
            return runner.run(coro)
        with self.view_console.status(message):
            return runner.run(coro)

    def result(self, result: Any) -> None:
        if self.json_mode:
            print(result.to_json(), flush=True)
            return
        if self.live:
            if result.answer is not None:
                self.out.print(Panel(Text(result.answer), title="Answer", title_align="left", border_style="green"))
            if result.citations:
                self.out.print(Text("Sources: " + _source_ids(result.citations), style="cyan"))
            if result.error:
                self.out.print(Text(f"✗ {result.error}", style="red"))
            self.out.print(Text(summary_line(result), style="dim"))
            return
        print("\n".join(_plain_result_lines(result)), flush=True)

    def show_plan(self, plan: Any) -> None:
        view = PlanView(plan.question or "(plan)")
        view(_plan_event(plan))
        view.static = True
        if self.live:
            self.err.print(view.render()) if self.json_mode else self.out.print(view.render())
        else:
            print("\n".join(view.plain_lines()), file=sys.stderr if self.json_mode else sys.stdout, flush=True)

    def ask(self, prompt: str) -> str | None:
        """A one-line answer from the person (lower-cased), None at end of input. The prompt goes where the
        view goes, so `--json` output stays clean."""
        console = self.err if self.json_mode else self.out
        console.file.write(prompt)
        console.file.flush()
        try:
            return input().strip().lower()
        except EOFError:
            return None

    def say(self, text: str, style: str = "") -> None:
        console = self.err if self.json_mode else self.out
        if self.live:
            console.print(Text(text, style=style))
        else:
            print(text, file=console.file, flush=True)


def _plan_event(plan: Any) -> Any:
    from decompose.events import PlanReady

    return PlanReady(plan=plan.spec())


def _plain_result_lines(result: Any) -> list[str]:
    lines = [f"Plan for: {result.question}"]
    if result.plan is not None:
        view = PlanView(result.question)
        for step in result.plan.steps:
            view.steps[step.id] = StepView(id=step.id, question=step.question, tool=step.tool,
                                           depends_on=list(step.depends_on), state=_state(step.status),
                                           elapsed=step.elapsed, answer=step.answer, error=step.error)
        lines = view.plain_lines()
    if result.answer is not None:
        lines.append(f"Answer: {result.answer}")
    if result.citations:
        lines.append("Sources: " + _source_ids(result.citations))
    if result.error:
        lines.append(f"Error: {_one_line(result.error)}")
    lines.append(summary_line(result))
    return lines


def _state(status: str) -> str:
    return "waiting" if status == "pending" else status


def summary_line(result: Any) -> str:
    usage = result.usage
    retries = usage.transport_retries + usage.parse_retries
    parts = [f"{usage.model_calls} model call{'s' if usage.model_calls != 1 else ''}",
             f"{usage.input_tokens} tokens in / {usage.output_tokens} out",
             f"{retries} retr{'ies' if retries != 1 else 'y'}",
             f"{result.elapsed:.2f}s"]
    if result.plan is not None:
        bad = [s for s in result.plan.steps if s.status in ("failed", "skipped")]
        if bad:
            parts.append(f"{len(bad)} step{'s' if len(bad) != 1 else ''} failed or skipped")
    return " · ".join(parts)


def exit_code(result: Any) -> int:
    """0 when the run answered and every step finished; 1 when it failed or is partial."""
    if not result.ok:
        return EXIT_FAILED
    if result.plan is not None and any(s.status in ("failed", "skipped") for s in result.plan.steps):
        return EXIT_FAILED
    return EXIT_OK


# ----- decompose run --------------------------------------------------------------------------------------


def run_command(args: argparse.Namespace) -> int:
    question = _question(args)
    plan = _read_plan_file(args.plan) if args.plan else None
    trace = Trace(args.trace) if args.trace else None
    try:
        orch = build_orchestrator(args)
        if plan is not None:
            _check_plan_file(plan, orch, args.plan)
            question = question or plan.question
        out = Output(json_mode=args.json)
        with asyncio.Runner() as runner:
            if args.review:
                if plan is None:
                    plan = out.spinner("planning…", runner, orch.aplan(question))
                plan = review(plan, orch, out)
                if plan is None:
                    out.say("cancelled: nothing was run", style="yellow")
                    return EXIT_FAILED
            view = PlanView(question or plan.question or "(plan)", trace=trace)
            if plan is not None:
                coro = orch.aexecute(plan, question=question, on_event=view)
            else:
                coro = orch.arun(question, on_event=view)
            failure: list[BaseException] = []
            try:
                result = out.watch(view, runner, _noting_failure(coro, failure))
            except (DecomposeError, KeyboardInterrupt) as exc:
                if args.json:  # scripts still get a document with the same keys, and what happened so far
                    partial = getattr(failure[0] if failure else exc, "result", None)
                    print((partial or _empty_result(question, exc)).to_json(), flush=True)
                raise
        out.result(result)
        return exit_code(result)
    finally:
        if trace is not None:
            trace.close()


async def _noting_failure(coro: Coroutine[Any, Any, Any], failure: list[BaseException]) -> Any:
    """Await `coro`, keeping the exception it ends with: Ctrl-C reaches the caller as a fresh KeyboardInterrupt,
    while the run's own CancelledError carries the partial result."""
    try:
        return await coro
    except BaseException as exc:
        failure.append(exc)
        raise


def _empty_result(question: str | None, exc: BaseException) -> Any:
    from decompose.events import Usage
    from decompose.result import Result

    error = "interrupted" if isinstance(exc, KeyboardInterrupt) else str(exc)
    return Result(question=question or "", answer=None, plan=None, usage=Usage(), events=[], error=error)


def _question(args: argparse.Namespace) -> str | None:
    question = args.question
    if question == "-" or (question is None and not args.plan and not args.review and not sys.stdin.isatty()):
        question = sys.stdin.read()
    if question is not None and question.strip():
        return question.strip()
    if args.plan:
        return None
    from decompose.errors import InputError

    raise InputError("no question given", hint='decompose run "your question" (or pipe it on stdin)')


def _read_plan_file(path: str) -> Any:
    from decompose.plan import Plan

    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as exc:
        raise ConfigError(f"cannot read plan file {path}: {exc.strerror or exc}",
                          hint="check the path; a plan file is JSON like {\"steps\": [...]}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"cannot read plan file {path}: it is not UTF-8 text",
                          hint="a plan file is JSON like {\"steps\": [...]}") from None
    try:
        return Plan.from_json(text, max_steps=10_000)
    except PlanError as exc:
        raise ConfigError(f"plan file {path} is invalid: {exc.args[0]}", hint=exc.hint) from None


def _check_plan_file(plan: Any, orch: Any, path: str) -> None:
    try:
        _check_plan(plan, orch)
    except PlanError as exc:
        raise ConfigError(f"plan file {path} is invalid: {exc.args[0]}", hint=exc.hint) from None


def _check_plan(plan: Any, orch: Any) -> None:
    plan.validate_plan(max_steps=orch.max_steps)
    decomposer = getattr(orch, "decomposer", None)
    if decomposer is not None and hasattr(decomposer, "check_tools"):
        decomposer.check_tools(plan)


# ----- human in the loop ------------------------------------------------------------------------------------


def review(plan: Any, orch: Any, out: Output) -> Any | None:
    """Show the plan; the person approves (→ plan), edits it in $EDITOR (re-validated), or cancels (→ None)."""
    from decompose.plan import Plan

    text = plan.to_json()
    while True:
        out.show_plan(plan)
        choice = out.ask("[a]pprove, [e]dit, [c]ancel? ")
        if choice is None or choice.startswith("c") or choice.startswith("q"):
            return None
        if choice.startswith("a") or choice.startswith("y"):
            return plan
        if not choice.startswith("e"):
            out.say("please answer a, e or c")
            continue
        while True:
            text = edit_text(text)
            try:
                edited = Plan.from_json(text, max_steps=orch.max_steps)
                _check_plan(edited, orch)
            except PlanError as exc:
                out.say(f"error: {_one_line(exc)}", style="red")
                again = out.ask("edit again? [Y/n] ")
                if again is None or again.startswith("n"):
                    return None
                continue
            plan = edited if edited.question else edited.model_copy(update={"question": plan.question})
            break




def edit_text(text: str) -> str:
    """Open $VISUAL / $EDITOR on `text` and return what the person saved."""
    editor = os.environ.get("VISUAL") or os.environ.get("EDITOR")
    if not editor:
        if not (sys.stdin.isatty() and sys.stdout.isatty()):  # vi on a pipe would wait forever
            raise ConfigError("cannot edit the plan: no $EDITOR is set and this is not a terminal",
                              hint="set $EDITOR (e.g. export EDITOR=nano), or pass an edited plan with --plan FILE")
        editor = "vi"
    with tempfile.NamedTemporaryFile("w", suffix=".json", prefix="decompose-plan-", delete=False,
                                     encoding="utf-8") as f:
        f.write(text)
        path = f.name
    try:
        try:
            code = subprocess.call([*shlex.split(editor), path])
        except OSError as exc:
            raise ConfigError(f"cannot start the editor {editor!r}: {exc.strerror or exc}",
                              hint="set $EDITOR to an editor you have, e.g. export EDITOR=nano") from None
        if code != 0:
            raise ConfigError(f"the editor {editor!r} exited with status {code}; nothing was run",
                              hint="save and close the editor normally to use the edited plan")
        with open(path, encoding="utf-8") as f:
            return f.read()
    finally:
        os.unlink(path)


# ----- decompose chat ---------------------------------------------------------------------------------------

CHAT_HELP = "commands: /plan (last plan), /reset (forget the conversation), /exit; Ctrl-C cancels a turn"


def _ask(prompt: str) -> str:
    """A line from the person; the prompt only on a terminal, so piped chat output is the answers alone."""
    if sys.stdin.isatty():
        return input(prompt)
    line = sys.stdin.readline()
    if not line:
        raise EOFError
    return line


def chat_command(args: argparse.Namespace, *, ask: Callable[[str], str] = _ask) -> int:
    try:
        from decompose.conversation import Conversation
    except ImportError as exc:
        raise ConfigError(f"chat is not available in this installation ({exc})", hint="upgrade decompose") from None
    trace = Trace(args.trace) if args.trace else None
    try:
        orch = build_orchestrator(args)
        options = {"max_history_tokens": args.max_history_tokens} if args.max_history_tokens else {}
        conv = Conversation(orch, **options)
        out = Output()
        if sys.stdin.isatty():
            try:
                import readline  # noqa: F401  (line editing for input())
            except ImportError:
                pass
        who = f"agent {args.agent}" if args.agent else "decompose"
        out.say(f"{who} chat — {CHAT_HELP}", style="dim")
        turn = 0
        with asyncio.Runner() as runner:
            while True:
                try:
                    line = ask("you> ").strip()
                except EOFError:
                    out.say("")
                    break
                except KeyboardInterrupt:
                    out.say("\n(type /exit or press Ctrl-D to leave)", style="dim")
                    continue
                if not line:
                    continue
                if line.startswith("/"):
                    if _chat_command(line, conv, out):
                        break
                    continue
                turn += 1
                view = PlanView(line, trace=trace, trace_extra={"turn": turn})
                try:
                    result = out.watch(view, runner, conv.asend(line, on_event=view))
                except KeyboardInterrupt:
                    out.say("turn cancelled", style="yellow")
                    continue
                except DecomposeError as exc:
                    out.say(f"error: {_one_line(exc)}", style="red")
                    continue
                out.result(result)
        return EXIT_OK
    finally:
        if trace is not None:
            trace.close()


def _chat_command(line: str, conv: Any, out: Output) -> bool:
    """Handle a /command; True means leave the chat."""
    command = line.split()[0].lower()
    if command in ("/exit", "/quit"):
        return True
    if command == "/reset":
        conv.reset()
        out.say("conversation cleared", style="dim")
    elif command == "/plan":
        last = conv.last_result
        if last is None or last.plan is None:
            out.say("no plan yet: ask a question first", style="dim")
        else:
            view = PlanView(last.question)
            view(_plan_event(last.plan))
            view.static = True
            for step in last.plan.steps:
                s = view.steps[step.id]
                s.state, s.answer, s.error, s.elapsed = _state(step.status), step.answer, step.error, step.elapsed
            if out.live:
                out.out.print(view.render())
            else:
                print("\n".join(view.plain_lines()), flush=True)
    elif command == "/help":
        out.say(CHAT_HELP)
    else:
        out.say(f"unknown command {command}; {CHAT_HELP}", style="yellow")
    return False


# ----- decompose agents -------------------------------------------------------------------------------------


def show_agents(args: argparse.Namespace) -> int:
    from decompose.cli_config import _agents_module

    agents = _agents_module().list_agents()
    rows = [{"name": a.name, "description": a.description, "tools": list(a.tool_names()),
             "examples": list(a.examples)} for a in agents]
    if args.json:
        print(json.dumps(rows, indent=2, ensure_ascii=False), flush=True)
        return EXIT_OK
    out = Output()
    if not out.live:
        for row in rows:
            print(f"{row['name']}: {row['description']}")
            print(f"  tools: {', '.join(row['tools']) or 'none'}")
            if row["examples"]:
                print(f"  e.g. {_example(row)}")
        return EXIT_OK
    table = Table(title="Agents", title_justify="left")
    table.add_column("agent", style="bold cyan", no_wrap=True)
    table.add_column("what it does")
    table.add_column("tools", style="green")
    table.add_column("try")
    for row in rows:
        table.add_row(row["name"], row["description"], ", ".join(row["tools"]) or "none", _example(row))
    out.out.print(table)
    return EXIT_OK


def _example(row: dict[str, Any]) -> str:
    if not row["examples"]:
        return ""
    example = row["examples"][0]
    quoted = f'"{example}"' if not any(c in example for c in '"$`\\!') else shlex.quote(example)
    return f"decompose run --agent {row['name']} {quoted}"
