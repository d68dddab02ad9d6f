"""decompose: answer hard questions in steps — decompose, solve (in parallel), combine."""

# Names are imported on first use (PEP 562), so `import decompose.cli` (and `decompose --help`) does not pay for
# langchain-core, pydantic and the backends. `from decompose import Orchestrator` works exactly as before.

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "Answered": "decompose.events",
    "ApprovalRequested": "decompose.events",
    "Approve": "decompose.approvals",
    "Edit": "decompose.approvals",
    "Reject": "decompose.approvals",
    "ApprovalRequest": "decompose.approvals",
    "requires_approval": "decompose.approvals",
    "Event": "decompose.events",
    "PlanFallback": "decompose.events",
    "PlanReady": "decompose.events",
    "Retried": "decompose.events",
    "StepFailed": "decompose.events",
    "StepFinished": "decompose.events",
    "StepSkipped": "decompose.events",
    "StepStarted": "decompose.events",
    "Usage": "decompose.events",
    "BudgetExceeded": "decompose.errors",
    "ConfigError": "decompose.errors",
    "DecomposeError": "decompose.errors",
    "InputError": "decompose.errors",
    "ModelAccessError": "decompose.errors",
    "ModelError": "decompose.errors",
    "PlanError": "decompose.errors",
    "StepTimeout": "decompose.errors",
    "ToolError": "decompose.errors",
    "ProgramError": "decompose.errors",
    "Orchestrator": "decompose.orchestrator",
    "Limits": "decompose.limits",
    "Decomposer": "decompose.chains.decompose",
    "ToolRunner": "decompose.tools.runner",
    "Solved": "decompose.plan",
    "StepContext": "decompose.solvers",
    "DirectSolver": "decompose.solvers",
    "ChainOfThoughtSolver": "decompose.solvers",
    "SelfConsistencySolver": "decompose.solvers",
    "RecursiveSolver": "decompose.solvers",
    "ProgramSolver": "decompose.solvers",
    "Plan": "decompose.plan",
    "Step": "decompose.plan",
    "Prompts": "decompose.chains.prompts",
    "Result": "decompose.result",
    "RetryPolicy": "decompose.retry",
    "RetryableToolError": "decompose.tools.runner",
    "side_effects": "decompose.tools.runner",
    "load_model": "decompose.models",
    "FallbackModel": "decompose.models.fallback",
    "ScriptedChatModel": "decompose.models.scripted",
    "IntentDetected": "decompose.events",
    "IntentRouter": "decompose.intents",
    "IntentRouting": "decompose.routing",
    "tool": "langchain_core.tools",
}

__all__ = sorted(_EXPORTS)  # plus __version__


def __getattr__(name: str) -> Any:
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            value = version("decompose-agents")
        except PackageNotFoundError:  # running from a source tree that is not installed
            value = "0.0.0"
    elif name in _EXPORTS:
        value = getattr(import_module(_EXPORTS[name]), name)
    else:
        raise AttributeError(f"module 'decompose' has no attribute {name!r}")
    globals()[name] = value  # cache: __getattr__ runs once per name
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS, "__version__"})


if TYPE_CHECKING:  # static analysers and IDEs see the real names
    from langchain_core.tools import tool

    from decompose.approvals import ApprovalRequest, Approve, Edit, Reject, requires_approval
    from decompose.chains.decompose import Decomposer
    from decompose.chains.prompts import Prompts
    from decompose.errors import (
        BudgetExceeded,
        ConfigError,
        DecomposeError,
        InputError,
        ModelAccessError,
        ModelError,
        PlanError,
        ProgramError,
        StepTimeout,
        ToolError,
    )
    from decompose.events import (
        Answered,
        ApprovalRequested,
        Event,
        IntentDetected,
        PlanFallback,
        PlanReady,
        Retried,
        StepFailed,
        StepFinished,
        StepSkipped,
        StepStarted,
        Usage,
    )
    from decompose.intents import IntentRouter
    from decompose.limits import Limits
    from decompose.models import load_model
    from decompose.models.fallback import FallbackModel
    from decompose.models.scripted import ScriptedChatModel
    from decompose.orchestrator import Orchestrator
    from decompose.plan import Plan, Solved, Step
    from decompose.result import Result
    from decompose.retry import RetryPolicy
    from decompose.routing import IntentRouting
    from decompose.solvers import (
        ChainOfThoughtSolver,
        DirectSolver,
        ProgramSolver,
        RecursiveSolver,
        SelfConsistencySolver,
        StepContext,
    )
    from decompose.tools.runner import RetryableToolError, ToolRunner, side_effects
