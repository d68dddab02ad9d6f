"""Every model call goes through `ModelCaller`: retries, fallbacks, usage, budget and retry events in one place."""

from __future__ import annotations

from typing import Any, Callable, Hashable, Sequence

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage
from langchain_core.runnables import Runnable

from decompose.errors import BudgetExceeded, DecomposeError, ModelError
from decompose.events import Emit, Retried, Usage
from decompose.retry import RetryPolicy, call_with_retries, error_reason


def model_name(model: BaseChatModel) -> str:
    for attr in ("model_name", "model", "model_id"):
        value = getattr(model, attr, None)
        if isinstance(value, str) and value:
            return value
    return type(model).__name__


class ModelCaller:
    """Calls the primary model, then each fallback once the previous one has failed for good."""

    def __init__(
        self,
        models: Sequence[BaseChatModel],
        *,
        policy: RetryPolicy,
        usage: Usage,
        emit: Emit,
        max_tokens: int | None = None,
    ):
        self.models = list(models)
        self.policy = policy
        self.usage = usage
        self.emit = emit
        self.max_tokens = max_tokens
        self._runnables: dict[tuple[int, Hashable], Runnable] = {}

    async def invoke(
        self,
        input: Any,
        *,
        phase: str,
        step_id: int | None = None,
        build: Callable[[BaseChatModel], Runnable] | None = None,
        key: Hashable = None,
    ) -> tuple[Any, str]:
        """Run `build(model)` (default: the model itself) on `input`; return (output, name of the model used).

        `key` names the runnable `build` makes, so it is built once per model rather than per call.
        """
        last_error: BaseException | None = None
        for model in self.models:
            runnable = self._runnable(model, build, key)

            def on_retry(attempt: int, exc: BaseException, wait: float) -> None:
                self.usage.transport_retries += 1
                self.emit(Retried(phase=phase, attempt=attempt, reason=error_reason(exc), wait=wait,
                                  step_id=step_id))

            try:
                output = await call_with_retries(lambda: runnable.ainvoke(input), self.policy, on_retry)
            except Exception as exc:  # exhausted or permanent: try the next model
                last_error = exc
                continue
            self.usage.add(phase, _message_of(output))
            self._check_budget()
            return output, model_name(model)
        if isinstance(last_error, DecomposeError):
            raise last_error
        # Not a transport failure the retry layer knows: e.g. a custom model raising its own error.
        raise ModelError(f"model {model_name(self.models[-1])!r} failed: {type(last_error).__name__}: {last_error}",
                         hint="check the model's configuration; see the error above") from last_error

    def _runnable(self, model: BaseChatModel, build: Callable | None, key: Hashable) -> Runnable:
        if build is None:
            return model
        cache_key = (id(model), key)
        if key is None or cache_key not in self._runnables:
            self._runnables[cache_key] = build(model)
        return self._runnables[cache_key]

    def _check_budget(self) -> None:
        if self.max_tokens is not None and self.usage.total_tokens > self.max_tokens:
            raise BudgetExceeded(
                f"token budget exceeded: {self.usage.total_tokens} tokens used, max_tokens_per_run="
                f"{self.max_tokens}",
                hint="raise max_tokens_per_run or ask a narrower question",
            )


def _message_of(output: Any) -> AIMessage | None:
    if isinstance(output, AIMessage):
        return output
    if isinstance(output, dict) and isinstance(output.get("raw"), AIMessage):
        return output["raw"]
    return None
