"""`decompose chat`: a conversation; each turn shows its plan live. /plan, /reset, /exit; Ctrl-C cancels a turn."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable
from typing import Any

from decompose.cli.config import Trace, build_orchestrator
from decompose.cli.decide import TerminalApprover, at_terminal, awaiting_lines
from decompose.cli.exit_codes import EXIT_OK
from decompose.cli.output import Output
from decompose.cli.plan_view import PlanView, one_line
from decompose.errors import ConfigError, DecomposeError

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
        out = Output()
        approver = TerminalApprover(out) if at_terminal() else None
        orch = build_orchestrator(args, approvals=not args.no_approvals, approver=approver)
        if approver is not None:
            approver.tools = orch.tool_runner.tools
        options = {"max_history_tokens": args.max_history_tokens} if args.max_history_tokens else {}
        if getattr(args, "intents", None):
            options["routing"] = intent_routing(args, orch)
        conv = Conversation(orch, **options)
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
                except DecomposeError as exc:  # the hint names options and flags: for --debug, not the chat
                    out.say(f"error: {one_line(exc if args.debug or not exc.args else exc.args[0])}", style="red")
                    continue
                out.result(result)
                if result.awaiting_approval:  # decided later, outside this chat; the conversation goes on
                    for text in awaiting_lines(result.approvals, args):
                        out.say(text, style="magenta")
        return EXIT_OK
    finally:
        if trace is not None:
            trace.close()


def intent_routing(args: argparse.Namespace, orch: Any) -> Any:
    """`--intents DIR` (a router made by `decompose train --intents`), `--intents zero-shot` (the chat model picks
    one of the agent's routes) or `--intents zero-shot:a,b,c` (one of these intents)."""
    import os

    from decompose.cli.config import agents_module
    from decompose.intents import IntentRouter
    from decompose.routing import IntentRouting

    spec = args.intents.strip()
    if spec == "zero-shot" or spec.startswith("zero-shot:"):
        names = [n.strip() for n in spec.partition(":")[2].split(",") if n.strip()]
        if not names and args.agent:
            names = [r.name for r in agents_module().get_agent(args.agent).routes]
        if not names:
            raise ConfigError(
                "--intents zero-shot needs intent names",
                hint="use --agent customer-service (its routes), or --intents zero-shot:NAME,NAME,...",
            )
        router: IntentRouter = IntentRouter.zero_shot(orch.model, names, retry=orch.retry)
    else:
        # The chat model's own weights give the vectors when the router was trained on that same model (an
        # --adapter never changes them: it is merged into the planner's copy).
        same = (args.model or os.environ.get("DECOMPOSE_MODEL") or "smollm2") == _trained_on(spec)
        router = IntentRouter.load(spec, model=orch.model if same else None)
    if args.agent:
        return agents_module().agent_routing(args.agent, router)
    return IntentRouting(router, ())  # no agent: no routes; each turn still reports its intent


def _trained_on(folder: str) -> str | None:
    import json
    from pathlib import Path

    try:
        return json.loads((Path(folder) / "intent_router.json").read_text(encoding="utf-8")).get("model")
    except (OSError, ValueError):
        return None  # IntentRouter.load names the problem


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
            out.show_plan(last.plan, last.question)
    elif command == "/help":
        out.say(CHAT_HELP)
    else:
        out.say(f"unknown command {command}; {CHAT_HELP}", style="yellow")
    return False
