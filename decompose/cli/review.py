"""`decompose run --review`: the person approves the plan, edits it in $EDITOR, or cancels it, before it runs."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import tempfile
from typing import Any

from decompose.cli.output import Output
from decompose.cli.plan_view import one_line
from decompose.errors import ConfigError, PlanError
from decompose.plan import Plan


def review(plan: Plan, orch: Any, out: Output) -> Plan | None:
    """Show the plan; the person approves (→ plan), edits it in $EDITOR (re-validated), or cancels (→ None)."""
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
                edited = orch.check_plan(text)
            except PlanError as exc:
                out.say(f"error: {one_line(exc)}", style="red")
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
            raise ConfigError(
                "cannot edit the plan: no $EDITOR is set and this is not a terminal",
                hint="set $EDITOR (e.g. export EDITOR=nano), or pass an edited plan with --plan FILE",
            )
        editor = "vi"
    with tempfile.NamedTemporaryFile(
        "w", suffix=".json", prefix="decompose-plan-", delete=False, encoding="utf-8"
    ) as f:
        f.write(text)
        path = f.name
    try:
        try:
            code = subprocess.call([*shlex.split(editor), path])
        except OSError as exc:
            raise ConfigError(
                f"cannot start the editor {editor!r}: {exc.strerror or exc}",
                hint="set $EDITOR to an editor you have, e.g. export EDITOR=nano",
            ) from None
        if code != 0:
            raise ConfigError(
                f"the editor {editor!r} exited with status {code}; nothing was run",
                hint="save and close the editor normally to use the edited plan",
            )
        with open(path, encoding="utf-8") as f:
            return f.read()
    finally:
        os.unlink(path)
