"""`decompose train --bootstrap`: a teacher plans and runs questions over your tools; the traces that check out
train the student (see `decompose.train.bootstrap`)."""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from decompose.errors import ConfigError


def bootstrap_traces(args: argparse.Namespace) -> tuple[Any, list[Any]]:
    """The teacher's traces for the flags' questions and tools: the report, and the tools the student plans."""
    from decompose.train.bootstrap import (
        bootstrap,
        generate_questions,
        load_teacher,
        read_questions,
        write_questions,
    )

    if not args.teacher:
        raise ConfigError("--bootstrap needs a teacher model", hint="add --teacher SPEC, e.g. openai:gpt-4o-mini")
    if bool(args.questions) == bool(args.generate):
        raise ConfigError(
            "--bootstrap needs questions: --questions FILE or --generate N (one of them)",
            hint='a JSONL of {"question": ...} rows, or --generate 200 to have the teacher write them',
        )
    if args.file:
        raise ConfigError(
            "--bootstrap writes its own training rows: drop FILE.jsonl",
            hint="train on an existing file without --bootstrap",
        )
    questions = read_questions(args.questions) if args.questions else None
    make_orchestrator, tools = _teacher_runs(args)  # before the teacher loads: a wrong tool spec fails at once
    teacher = load_teacher(args.teacher, args.teacher_timeout)
    out = Path(args.out or "decomposer-adapter")
    traces = Path(args.traces) if args.traces else out / "traces.jsonl"
    if questions is None:  # written once, beside the traces: a rerun asks the same questions
        saved = traces.with_name(traces.stem + "-questions.jsonl")
        have = read_questions(saved) if saved.is_file() else []
        examples = agent_examples(args.agent) if args.agent else ()
        questions = generate_questions(teacher, tools, args.generate, have=have, examples=examples, seed=args.seed)
        write_questions(saved, questions)
    report = bootstrap(
        lambda: make_orchestrator(teacher),
        questions,
        traces,
        concurrency=args.teacher_concurrency,
        progress=None if args.json else _show,
    )
    if not args.json:
        dropped = ", ".join(f"{n} {reason}" for reason, n in sorted(report.dropped.items())) or "none"
        print(
            f"traces: {report.kept} kept of {report.questions} ({report.traced} traced now); dropped: {dropped}",
            flush=True,
        )
        print(f"traces in {report.traces}; training rows in {report.train_rows}", flush=True)
    if not report.kept:
        raise ConfigError(
            f"the teacher's traces were all dropped ({report.traces})",
            hint="read the traces' reasons; try a stronger --teacher or clearer questions",
        )
    return report, tools


def _teacher_runs(args: argparse.Namespace) -> tuple[Callable[[Any], Any], list[Any]]:
    """A factory of the teacher's Orchestrator, with fresh tools each time (one question's writes never reach
    another's), and the tools' names as the student sees them."""
    from decompose.cli.config import load_mcp_tools, load_tools
    from decompose.retry import RetryPolicy

    # A teacher on a busy shared server may queue a call for minutes: wait for it rather than lose the question.
    patient = RetryPolicy(max_attempts=8, max_total=None)
    mcp = bool(getattr(args, "mcp", None) or getattr(args, "mcp_url", None))
    if sum(map(bool, (args.agent, args.tools, mcp))) != 1:
        raise ConfigError(
            "--bootstrap needs the tools to train for: --agent NAME, --tools MODULE:ATTR or --mcp (one of them)",
            hint="e.g. --agent customer-service, or --tools my_tools.py:tools",
        )
    if args.agent:
        from decompose.agents import build_agent, get_agent

        spec = get_agent(args.agent)
        folder = tempfile.mkdtemp(prefix="decompose-bootstrap-")
        count = iter(range(1 << 62))
        return (
            lambda teacher: build_agent(
                args.agent, teacher, db_path=f"{folder}/shop-{next(count)}.sqlite3", retry=patient
            ),
            spec.make_tools(dry_run=True),
        )
    from decompose.orchestrator import Orchestrator

    if args.tools:
        tools = load_tools(args.tools)
        return (lambda teacher: Orchestrator(teacher, tools=load_tools(args.tools), retry=patient)), tools
    tools = load_mcp_tools(args)  # a server's state is its own: the same tools for every question
    return (lambda teacher: Orchestrator(teacher, tools=tools, retry=patient)), tools


def agent_examples(name: str) -> tuple[str, ...]:
    from decompose.agents import get_agent

    return get_agent(name).examples


def _show(trace: dict[str, Any]) -> None:
    verdict = "kept" if trace["kept"] else f"dropped ({trace['reason']})"
    print(f"{verdict}: {trace['question'][:100]}", file=sys.stderr, flush=True)
