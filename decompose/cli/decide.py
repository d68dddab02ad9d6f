"""Deciding the tool calls that wait for a person (decompose/approvals.py) from the command line.

At a terminal, `TerminalApprover` asks before the call is made (approve, edit the arguments, reject, or decide
later); off one, the run stops awaiting approval and `awaiting_lines` says what waits and the exact
`decompose run --resume RUN_ID --approve/--edit/--reject` commands that decide it. `flag_decisions` turns those
flags into the decisions `Orchestrator.resume` takes.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from collections.abc import Mapping
from typing import Any

from langchain_core.tools import BaseTool

from decompose.approvals import ApprovalRequest, Approve, Decision, Edit, Reject
from decompose.cli.output import Output
from decompose.errors import ConfigError, InputError
from decompose.tools.runner import validate_args


def at_terminal() -> bool:
    """A person can answer here: stdin and stdout are both terminals (not a pipe, not CI)."""
    return sys.stdin.isatty() and sys.stdout.isatty()


class TerminalApprover:
    """`ToolRunner(approver=...)` for a person at the terminal: shows the call, its arguments and why it needs
    approval, with the live view paused, and returns their decision; "later" (or Ctrl-D) returns None, so the run
    stops awaiting approval and can be resumed with a decision."""

    def __init__(self, out: Output):
        self.out = out
        self.tools: dict[str, BaseTool] = {}  # the Orchestrator's, set once it is built: edits are checked on them

    def __call__(self, request: ApprovalRequest) -> Decision | None:
        with self.out.paused():
            asking = f"‖ step {request.step_id} wants to call {request.tool}: {request.reason}"
            self.out.say(asking, style="bold magenta")
            self.out.say(f"  arguments: {_json(request.args)}", style="cyan")
            while True:
                choice = self.out.ask("[a]pprove, [e]dit the arguments, [r]eject, or decide [l]ater? ")
                if choice is None or choice.startswith("l"):
                    return None
                if choice.startswith(("a", "y")):
                    return Approve()
                if choice.startswith(("r", "n")):
                    reason = self.out.ask("why (the answer tells it)? ", lower=False)
                    return Reject(reason or "rejected by a person")
                if choice.startswith("e"):
                    edited = self._edited(request)
                    if edited is not None:
                        return Edit(edited)
                    continue
                self.out.say("please answer a, e, r or l")

    def _edited(self, request: ApprovalRequest) -> dict[str, Any] | None:
        """New arguments from the person (a JSON object over the planned ones), asked again until they fit the
        tool; None (an empty line, Ctrl-D) goes back to the choice."""
        tool = self.tools.get(request.tool)
        while True:
            text = self.out.ask('new arguments, a JSON object over these (e.g. {"amount": "50"}): ', lower=False)
            if not text:
                return None
            try:
                edited = merged_args(request.args, json.loads(text))
            except ValueError as exc:
                self.out.say(f"error: {exc}", style="red")
                continue
            problem = None if tool is None else validate_args(tool, edited)
            if problem is None:
                return edited
            self.out.say(f"error: {problem}", style="red")


def merged_args(planned: Mapping[str, Any], given: Any) -> dict[str, Any]:
    """An edit's arguments: the given JSON object's over the planned call's (name only what changes)."""
    if not isinstance(given, dict):
        raise ValueError(f"the new arguments must be a JSON object, got {_json(given)}")
    return {**planned, **given}


def flag_decisions(args: argparse.Namespace, pending: Mapping[int, ApprovalRequest]) -> dict[int, Decision]:
    """`--approve STEP`, `--edit STEP=JSON` (merged over the waiting call's arguments) and `--reject STEP=REASON`
    as `Orchestrator.resume` decisions; one decision a step."""
    given: list[tuple[int, Decision]] = [(step, Approve()) for step in args.approve or []]
    for step, edited in args.edit or []:
        request = pending.get(step)
        given.append((step, Edit(merged_args(request.args, edited) if request else edited)))
    given += [(step, Reject(reason or "rejected by a person")) for step, reason in args.reject or []]
    decisions: dict[int, Decision] = {}
    for step, decision in given:
        if step in decisions:
            raise ConfigError(
                f"step {step} is given two decisions", hint="give one of --approve, --edit, --reject for each step"
            )
        decisions[step] = decision
    return decisions


def awaiting_lines(approvals: list[ApprovalRequest], args: argparse.Namespace) -> list[str]:
    """What waits, and the commands that decide it: the run's own flags, so each line can be pasted as it is."""
    run_id = approvals[0].run_id
    resume = f"decompose run --resume {run_id}{same_flags(args)}"
    lines = [f"run {run_id} awaits approval:", *(f"  {approval_line(a)}" for a in approvals)]
    lines.append("decide with one of (a flag for each waiting step, in one command):")
    for a in approvals:
        lines += [
            f"  {resume} --approve {a.step_id}",
            f"  {resume} --edit {a.step_id}={shlex.quote(_json(a.args))}",
            f"  {resume} --reject {a.step_id}={shlex.quote('the reason')}",
        ]
    return lines


def undecided(approvals: list[ApprovalRequest], args: argparse.Namespace) -> InputError:
    """A waiting run resumed without a decision: what waits, and the flags that decide it."""
    waiting = "; ".join(approval_line(a) for a in approvals)
    return InputError(
        f"run {approvals[0].run_id} waits for approval of {waiting}",
        hint=f"decide it: decompose run --resume {approvals[0].run_id}{same_flags(args)} --approve STEP "
        "(or --edit STEP=JSON, --reject STEP=REASON; a flag for each waiting step)",
    )


def approval_line(a: ApprovalRequest) -> str:
    expiry = f"; expires {when(a.expires_at)}" if a.expires_at is not None else ""
    return f"step {a.step_id}: {a.tool} {_json(a.args)} ({a.reason}{expiry})"


def same_flags(args: argparse.Namespace) -> str:
    """The flags a resume needs to find the run and its tools again: the store (unless the default), the agent or
    tools, the model."""
    words: list[str] = []
    if getattr(args, "checkpoints", None):
        words += ["--checkpoints", args.checkpoints]
    if getattr(args, "agent", None):
        words += ["--agent", args.agent]
    if getattr(args, "tools", None):
        words += ["--tools", *args.tools]
    if getattr(args, "model", None):
        words += ["--model", args.model]
    return "".join(" " + shlex.quote(word) for word in words)


def when(seconds: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(seconds))


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)
