"""Where and how a command writes: a terminal (live view, colour; `NO_COLOR` honoured by rich) or plain text."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Coroutine, Iterator
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.panel import Panel
from rich.text import Text

from decompose.cli.plan_view import PlanView, one_line, route_label, source_ids


class Output:
    """Where and how a command writes. `json=True` keeps stdout for the JSON document alone."""

    def __init__(self, *, json_mode: bool = False):
        self.json_mode = json_mode
        self.out = Console(highlight=False)
        self.err = Console(stderr=True, highlight=False)
        # The live view goes where the person is looking: stdout, or stderr when stdout carries JSON.
        self.view_console = self.err if json_mode else self.out
        self.live = self.view_console.is_terminal and not self.view_console.is_dumb_terminal
        self._shown: Live | None = None  # the live view while `watch` draws it

    def log(self, line: str) -> None:
        """Plain progress lines (no terminal): stderr, so stdout stays the result."""
        print(line, file=sys.stderr, flush=True)

    def watch(self, view: PlanView, runner: asyncio.Runner, coro: Coroutine[Any, Any, Any]) -> Any:
        """Run `coro` while showing `view` (live on a terminal)."""
        if not self.live:
            if not self.json_mode:
                view.log = self.log
            return runner.run(coro)
        with Live(
            get_renderable=view.render,
            console=self.view_console,
            refresh_per_second=8,
            transient=False,
            redirect_stdout=False,
            redirect_stderr=False,
        ) as self._shown:
            try:
                return runner.run(coro)
            finally:
                self._shown = None

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Stop redrawing the live view while the person is asked something: it is cleared, what is said and
        answered meanwhile stays above it, and it is drawn again below when they have answered."""
        shown = self._shown
        if shown is None:
            yield
            return
        shown.transient = True  # stop() then clears the tree instead of leaving a stale copy on the screen
        shown.stop()
        try:
            yield
        finally:
            shown.transient = False
            shown.start(refresh=True)

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
                self.out.print(Text("Sources: " + source_ids(result.citations), style="cyan"))
            if result.error:
                self.out.print(Text(f"✗ {result.error}", style="red"))
            self.out.print(Text(summary_line(result), style="dim"))
            return
        print("\n".join(plain_result_lines(result)), flush=True)

    def show_plan(self, plan: Any, question: str | None = None) -> None:
        """Draw `plan`'s steps as they stand, where the view goes (stderr with `--json`)."""
        view = PlanView.of_plan(plan, question)
        if self.live:
            self.view_console.print(view.render())
        else:
            print("\n".join(view.plain_lines()), file=sys.stderr if self.json_mode else sys.stdout, flush=True)

    def ask(self, prompt: str, *, lower: bool = True) -> str | None:
        """A one-line answer from the person (lower-cased unless `lower=False`), None at end of input. The prompt
        goes where the view goes, so `--json` output stays clean."""
        self.view_console.file.write(prompt)
        self.view_console.file.flush()
        try:
            answer = input().strip()
        except EOFError:
            return None
        return answer.lower() if lower else answer

    def say(self, text: str, style: str = "") -> None:
        if self.live:
            self.view_console.print(Text(text, style=style))
        else:
            print(text, file=self.view_console.file, flush=True)


def plain_result_lines(result: Any) -> list[str]:
    lines = [f"Plan for: {result.question}"]
    if result.plan is not None:
        lines = PlanView.of_plan(result.plan, result.question).plain_lines()
    if result.answer is not None:
        lines.append(f"Answer: {result.answer}")
    if result.citations:
        lines.append("Sources: " + source_ids(result.citations))
    if result.error:
        lines.append(f"Error: {one_line(result.error)}")
    lines.append(summary_line(result))
    return lines


def usd(amount: float) -> str:
    """Cents for a dollar or more; a run's fractions of a cent otherwise."""
    return f"${amount:,.2f}" if amount >= 1 else f"${amount:.6f}"


def summary_line(result: Any) -> str:
    usage = result.usage
    retries = usage.transport_retries + usage.parse_retries
    parts = [
        f"{usage.model_calls} model call{'s' if usage.model_calls != 1 else ''}",
        f"{usage.input_tokens} tokens in / {usage.output_tokens} out",
        f"{retries} retr{'ies' if retries != 1 else 'y'}",
        f"{result.elapsed:.2f}s",
    ]
    if usage.cost != 0:  # a billed model was called: what it cost, or that nobody knows (local models are free)
        parts.insert(-1, "unpriced" if usage.cost is None else usd(usage.cost))
    if usage.cache_hits:
        parts.insert(1, f"{usage.cache_hits} from the cache")
    if result.route is not None:
        parts.insert(0, f"route {route_label(result.route)}")
    if result.plan is not None:
        bad = [s for s in result.plan.steps if s.status in ("failed", "skipped")]
        if bad:
            parts.append(f"{len(bad)} step{'s' if len(bad) != 1 else ''} failed or skipped")
    return " · ".join(parts)
