"""Exceptions a user can cause. Each message names the problem; `hint` says how to fix it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from langchain_core.tools import ToolException

if TYPE_CHECKING:
    from decompose.result import Result


class DecomposeError(Exception):
    """Base class: `str(err)` is one line naming the problem, `err.hint` the fix. Raised by a run, it carries
    what the run did before it failed in `result` (calls, usage, events, the plan so far)."""

    result: Result | None = None

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.hint = hint

    def __str__(self) -> str:
        base = super().__str__()
        return f"{base} (hint: {self.hint})" if self.hint else base


class PlanError(DecomposeError):
    """A plan is malformed or invalid (unknown reference, cycle, duplicate id, ...)."""


class ConfigError(DecomposeError):
    """Bad configuration: unknown model spec, missing key, bad option value."""


class ModelError(DecomposeError):
    """A model call failed for good (non-retryable, or retries exhausted)."""


class ModelAccessError(ModelError):
    """The server refused the model for a reason no retry fixes (HTTP 401, 403, 404: key, permission, model
    name or URL): every further call would fail the same way, so a run or an eval stops at the first one."""


class ToolError(DecomposeError, ToolException):
    """A tool is unknown, got bad arguments, or failed.

    Also a LangChain `ToolException`, so a pack tool outside the Orchestrator (`handle_tool_error=True`,
    LangGraph's `ToolNode`, any agent) hands the message back to the model instead of raising. LangChain's
    `handle_tool_error=True` returns the message alone; `handle_tool_error=str` returns it with the hint.
    """


class ProgramError(DecomposeError):
    """A program step's program was refused, failed, or ran past its time or memory limit. It carries the program
    (`program`) and what it printed (`output`), so a failed step still shows them."""

    def __init__(self, message: str, hint: str | None = None, *, program: str | None = None, output: str | None = None):
        super().__init__(message, hint)
        self.program = program
        self.output = output


class StepTimeout(DecomposeError):
    """A step ran past its time limit."""


class BudgetExceeded(DecomposeError):
    """A run reached one of its `Limits`: the token budget (`max_tokens`) or the model-call limit."""


class InputError(DecomposeError):
    """A question or argument given by the user is unusable (empty, wrong type, too long)."""


class CheckpointError(DecomposeError):
    """The checkpoint store could not be written or read (locked past its busy timeout, unreachable, not a
    database). What was written before is kept, so the run can be resumed once the store is usable."""
