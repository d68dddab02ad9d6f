"""Tool approvals: a call that matters waits for a person before it is made.

A tool requires approval when it is marked (`@requires_approval` above `@tool`, or `metadata={"approval": True}`)
or when the `ToolRunner(approval=policy)` policy says so: `policy(tool, args)` returns why ("refunds over 100
dollars need a person") or None. Before such a call, the run asks `ToolRunner(approver=...)` when it has one (the
CLI asks at the terminal); without one, the step stops in `awaiting` with an `ApprovalRequested` event, the other
steps go on, and the run ends awaiting approval (`Result.approvals`, saved in the checkpoint store). A person then
decides, and `orch.resume(run_id, decisions={step_id: Approve() | Edit(args) | Reject(reason)})` goes on: an
approved call is made (once: the side-effect ledger still holds), an edited one with the new arguments (checked
against the tool's schema before anything runs), and a rejected one fails with the reason, its dependants skipped
and the answer saying what was not done.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from langchain_core.tools import BaseTool

from decompose.errors import InputError, ToolError


@dataclass(frozen=True)
class Approve:
    """Make the call as planned."""

    kind = "approve"


@dataclass(frozen=True)
class Edit:
    """Make the call with these arguments instead (checked against the tool's schema)."""

    args: dict[str, Any]
    kind = "edit"


@dataclass(frozen=True)
class Reject:
    """Do not make the call: the step fails with `reason`, which the answer tells."""

    reason: str = "rejected by a person"
    kind = "reject"


Decision = Approve | Edit | Reject
ApprovalPolicy = Callable[[BaseTool, Mapping[str, Any]], str | None]


@dataclass(frozen=True)
class ApprovalRequest:
    """A call waiting for a person: which run and step, the tool, the arguments it would be called with, and why
    it needs approval. `expires_at` (wall-clock seconds) is set once it is saved in a checkpoint store."""

    run_id: str
    step_id: int
    tool: str
    args: dict[str, Any]
    reason: str
    requested_at: float | None = None
    expires_at: float | None = None
    decision: dict[str, Any] | None = field(default=None, compare=False)  # once decided: decision_dict's form

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


Approver = Callable[[ApprovalRequest], "Decision | None | Awaitable[Decision | None]"]


class ApprovalNeeded(ToolError):
    """The step's call waits for a person's decision: the run stops awaiting approval instead of failing."""

    node_status = "waits for approval"  # how its dependants' skip reason words it (scheduler.py)

    def __init__(self, request: ApprovalRequest):
        super().__init__(
            f"step {request.step_id}: {request.tool} waits for approval ({request.reason})",
            hint=f"decide with Orchestrator.resume({request.run_id!r}, decisions={{{request.step_id}: Approve()}})",
        )
        self.request = request


class ApprovalRejected(ToolError):
    """A person rejected the call: the step fails with their reason, and the answer tells it (`told`)."""

    def __init__(self, tool: str, reason: str):
        super().__init__(f"{tool} was not approved: {reason}")
        self.tool, self.reason = tool, reason

    @property
    def told(self) -> str:
        """The sentence the answer gets: the call in words, not the tool's name."""
        reason = self.reason.rstrip(".")
        return f"The request to {self.tool.replace('_', ' ')} was not approved: {reason}."


def requires_approval(tool: BaseTool) -> BaseTool:
    """Mark a tool whose every call waits for a person's approval (use a policy for "only above 100")."""
    tool.metadata = {**(tool.metadata or {}), "approval": True}
    return tool


def approval_reason(tool: BaseTool, args: Mapping[str, Any], policy: ApprovalPolicy | None) -> str | None:
    """Why this call needs approval, or None: the tool's mark first, then the policy."""
    if (tool.metadata or {}).get("approval"):
        return f"every {tool.name} call is approved by a person"
    if policy is None:
        return None
    try:
        reason = policy(tool, args)
    except Exception as exc:  # fail closed: the call is not made
        raise ToolError(
            f"the approval policy failed on {tool.name}: {type(exc).__name__}: {exc}; the call was not made",
            hint="fix the policy given to ToolRunner(approval=...)",
        ) from exc
    return str(reason) if reason else None


def writes_need_approval(tool: BaseTool, args: Mapping[str, Any]) -> str | None:
    """A policy: every tool that changes the world (`@side_effects`) waits for a person."""
    from decompose.tools.runner import has_side_effects  # the runner imports this module

    return f"{tool.name} changes the world" if has_side_effects(tool) else None


def amount_over(limit: float, *, tools: tuple[str, ...] = (), arg: str = "amount") -> ApprovalPolicy:
    """A policy: calls whose `arg` is above `limit` wait for a person (only `tools`' calls, when given), e.g.
    `ToolRunner(approval=amount_over(100, tools=("issue_refund",)))`."""

    def policy(tool: BaseTool, args: Mapping[str, Any]) -> str | None:
        if tools and tool.name not in tools or arg not in args:
            return None
        try:
            value = float(args[arg])
        except (TypeError, ValueError):
            return None  # the tool's own validation says what is wrong with it
        return f"{arg} {value:g} is above {limit:g}" if value > limit else None

    return policy


async def ask(approver: Approver, request: ApprovalRequest) -> Decision | None:
    try:
        decision = approver(request)
        if inspect.isawaitable(decision):
            decision = await decision
    except Exception as exc:  # fail closed: the call is not made
        raise ToolError(
            f"the approver failed on step {request.step_id} ({request.tool}): {type(exc).__name__}: {exc}; "
            "the call was not made",
            hint="fix the approver given to ToolRunner(approver=...)",
        ) from exc
    if decision is not None and not isinstance(decision, (Approve, Edit, Reject)):
        raise ToolError(
            f"the approver returned {type(decision).__name__}, not Approve(), Edit(args), Reject(reason) or None",
            hint="fix the approver given to ToolRunner(approver=...)",
        )
    return decision


def decision_dict(decision: Decision) -> dict[str, Any]:
    """The JSON form a store, the server and the CLI use: {"decision": "approve"}, {"decision": "edit", "args":
    {...}}, {"decision": "reject", "reason": "..."}."""
    match decision:
        case Edit(args=args):
            return {"decision": "edit", "args": args}
        case Reject(reason=reason):
            return {"decision": "reject", "reason": reason}
    return {"decision": "approve"}


def decision_from(data: Any) -> Decision:
    """A decision from its JSON form (a server's body, a stored row); `InputError` naming what is wrong."""
    if isinstance(data, (Approve, Edit, Reject)):
        return data
    kind = data.get("decision") if isinstance(data, dict) else None
    if kind == "approve":
        return Approve()
    if kind == "edit":
        args = data.get("args")
        if not isinstance(args, dict):
            raise InputError('an "edit" decision needs "args", an object of the tool\'s arguments')
        return Edit(args)
    if kind == "reject":
        reason = data.get("reason") or "rejected by a person"
        if not isinstance(reason, str):
            raise InputError('a "reject" decision\'s "reason" is text')
        return Reject(reason.strip() or "rejected by a person")
    raise InputError(
        f"unknown decision {data!r}",
        hint='give {"decision": "approve"}, {"decision": "edit", "args": {...}} or '
        '{"decision": "reject", "reason": "..."}',
    )
