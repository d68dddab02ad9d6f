"""decompose: answer hard questions in steps — decompose, solve (in parallel), combine."""

from importlib.metadata import PackageNotFoundError, version

from langchain_core.tools import tool

from decompose.chains.prompts import Prompts
from decompose.errors import (BudgetExceeded, ConfigError, DecomposeError, InputError, ModelError, PlanError,
                              StepTimeout, ToolError)
from decompose.events import (Answered, Event, PlanReady, Retried, StepFailed, StepFinished, StepSkipped,
                              StepStarted, Usage)
from decompose.models import load_model
from decompose.models.scripted import ScriptedChatModel
from decompose.orchestrator import Orchestrator
from decompose.plan import Plan, Step
from decompose.result import Result
from decompose.retry import RetryPolicy
from decompose.tools.runner import RetryableToolError, side_effects

try:
    __version__ = version("decompose-agents")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"

__all__ = [
    "Answered", "BudgetExceeded", "ConfigError", "DecomposeError", "Event", "InputError", "ModelError",
    "Orchestrator", "Plan", "PlanError", "PlanReady", "Prompts", "Result", "Retried", "RetryPolicy",
    "RetryableToolError", "ScriptedChatModel", "Step", "StepFailed", "StepFinished", "StepSkipped", "StepStarted",
    "StepTimeout", "ToolError", "Usage", "load_model", "side_effects", "tool",
]
