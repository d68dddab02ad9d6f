"""The command's exit codes, and the one a finished run ends with."""

from __future__ import annotations

from typing import Any

EXIT_OK = 0
EXIT_FAILED = 1  # the run failed or is partial (a step failed, no answer)
EXIT_USAGE = 2  # a usage or configuration error
EXIT_AWAITING = 3  # the run stopped awaiting a person's approval of a tool call: resume it with a decision
EXIT_INTERRUPTED = 130  # Ctrl-C, as shells report SIGINT


def exit_code(result: Any) -> int:
    """0 when the run answered and every step finished; 3 when it awaits approval; 1 when it failed or is partial."""
    if result.awaiting_approval:
        return EXIT_AWAITING
    if not result.ok:
        return EXIT_FAILED
    if result.plan is not None and any(s.status in ("failed", "skipped") for s in result.plan.steps):
        return EXIT_FAILED
    return EXIT_OK
