"""`decompose run`: answer one question (or run a saved plan), optionally reviewing the plan first; `--resume` goes
on with a saved run, deciding the calls that await approval with `--approve/--edit/--reject`."""

from __future__ import annotations

import argparse
import asyncio
import sys
import uuid
from collections.abc import Coroutine
from typing import Any

from decompose.cli.config import Trace, build_orchestrator
from decompose.cli.decide import TerminalApprover, at_terminal, awaiting_lines, flag_decisions, undecided
from decompose.cli.exit_codes import EXIT_FAILED, exit_code
from decompose.cli.output import Output
from decompose.cli.plan_view import PlanView
from decompose.cli.review import review
from decompose.errors import ConfigError, DecomposeError, InputError, PlanError
from decompose.plan import Plan
from decompose.result import Result


def run_command(args: argparse.Namespace) -> int:
    if args.resume and (args.question or args.plan or args.review):
        raise ConfigError(
            "--resume goes on with a saved run: it takes no question, --plan or --review",
            hint="drop them to resume, or drop --resume for a new run",
        )
    deciding = args.approve or args.edit or args.reject
    if deciding and not args.resume:
        raise ConfigError(
            "--approve, --edit and --reject decide the calls of a run that awaits approval",
            hint="give the run with --resume RUN_ID (`decompose runs --status awaiting` lists what waits)",
        )
    question = None if args.resume else _question(args)
    plan = _read_plan_file(args.plan) if args.plan else None
    trace = Trace(args.trace) if args.trace else None
    try:
        out = Output(json_mode=args.json)
        approver = TerminalApprover(out) if at_terminal() else None
        orch = build_orchestrator(args, approvals=not args.no_approvals, approver=approver)
        if approver is not None:
            approver.tools = orch.tool_runner.tools
        if plan is not None:
            try:
                orch.check_plan(plan)
            except PlanError as exc:
                raise ConfigError(f"plan file {args.plan} is invalid: {exc.args[0]}", hint=exc.hint) from None
            question = question or plan.question
        with asyncio.Runner() as runner:
            if args.review:
                if plan is None:
                    plan = out.spinner("planning…", runner, orch.aplan(question))
                plan = review(plan, orch, out)
                if plan is None:
                    out.say("cancelled: nothing was run", style="yellow")
                    return EXIT_FAILED
            run_id = _announce(args)
            if args.resume:
                saved = orch.checkpoints.load(args.resume)
                question = saved.question if saved is not None else None
            view = PlanView(question or (plan.question if plan is not None else "") or "(plan)", trace=trace)
            if args.resume:
                pending = {a.step_id: a for a in orch.approvals(args.resume)}
                if pending and not deciding:
                    raise undecided(list(pending.values()), args)
                decisions = flag_decisions(args, pending)
                coro = orch.aresume(args.resume, decisions=decisions or None, on_event=view)
            elif plan is not None:
                coro = orch.aexecute(plan, question=question, run_id=run_id, on_event=view)
            else:
                coro = orch.arun(question, on_event=view, run_id=run_id)
            failure: list[BaseException] = []
            try:
                result = out.watch(view, runner, _noting_failure(coro, failure))
            except (DecomposeError, KeyboardInterrupt) as exc:
                if args.json:  # scripts still get a document with the same keys, and what happened so far
                    partial = Result.partial(failure[0] if failure else exc)
                    print((partial or Result.failed(question, exc)).to_json(), flush=True)
                raise
        out.result(result)
        if result.awaiting_approval:  # on stderr: stdout stays the result (or its JSON)
            print("\n".join(awaiting_lines(result.approvals, args)), file=sys.stderr, flush=True)
        return exit_code(result)
    finally:
        if trace is not None:
            trace.close()


def _announce(args: argparse.Namespace) -> str | None:
    """With --checkpoints, the run's id and how to resume it, on stderr before it starts (a killed process prints
    nothing after). The default store that approvals wait in is not announced: a run that waits says so."""
    if args.checkpoints is None or args.resume:
        return None
    run_id = uuid.uuid4().hex
    where = f" --checkpoints {args.checkpoints}" if args.checkpoints else ""
    print(
        f"run {run_id}: if it stops, resume it with `decompose run --resume {run_id}{where}` and the same "
        "--agent/--model/--tools",
        file=sys.stderr,
        flush=True,
    )
    return run_id


async def _noting_failure(coro: Coroutine[Any, Any, Any], failure: list[BaseException]) -> Any:
    """Await `coro`, keeping the exception it ends with: Ctrl-C reaches the caller as a fresh KeyboardInterrupt,
    while the run's own CancelledError carries the partial result."""
    try:
        return await coro
    except BaseException as exc:
        failure.append(exc)
        raise


def _question(args: argparse.Namespace) -> str | None:
    question = args.question
    if question == "-" or (question is None and not args.plan and not args.review and not sys.stdin.isatty()):
        question = sys.stdin.read()
    if question is not None and question.strip():
        return question.strip()
    if args.plan:
        return None
    raise InputError("no question given", hint='decompose run "your question" (or pipe it on stdin)')


def _read_plan_file(path: str) -> Plan:
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as exc:
        raise ConfigError(
            f"cannot read plan file {path}: {exc.strerror or exc}",
            hint='check the path; a plan file is JSON like {"steps": [...]}',
        ) from None
    except UnicodeDecodeError:
        raise ConfigError(
            f"cannot read plan file {path}: it is not UTF-8 text", hint='a plan file is JSON like {"steps": [...]}'
        ) from None
    try:
        return Plan.from_json(text, max_steps=10_000)  # checked against the Orchestrator's max_steps later
    except PlanError as exc:
        raise ConfigError(f"plan file {path} is invalid: {exc.args[0]}", hint=exc.hint) from None
