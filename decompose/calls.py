"""Every model call goes through `ModelCaller`: retries, fallbacks, usage, budget and retry events in one place."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import replace
from typing import Any, Callable, Hashable, Sequence

from langchain_core.callbacks import AsyncCallbackManager
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.runnables import Runnable
from langchain_core.runnables.config import ensure_config
from langchain_core.utils.utils import LC_ID_PREFIX
from langchain_core.utils.uuid import uuid7

from decompose.errors import BudgetExceeded, DecomposeError, ModelError
from decompose.events import Emit, Retried, TokenCount, Usage
from decompose.models import chat_model_of
from decompose.retry import RetryPolicy, call_with_retries, error_reason


def model_name(model: Runnable) -> str:
    model = chat_model_of(model) or model  # a wrapped model (bind, with_retry, ...) is named by what it wraps
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
        slots: asyncio.Semaphore | None = None,
    ):
        self.models = list(models)
        self.slots = slots  # shared by every run of a batch: bounds the batch's calls in flight
        self.policy = policy
        # A model in this process has no server to hang: its calls wait their turn in its batch queue, which
        # on a CPU can rightly take minutes, so the per-call deadline meant for HTTP does not apply to it.
        self._local_policy = replace(policy, max_total=None)
        self.usage = usage
        self.emit = emit
        self.max_tokens = max_tokens
        self.step_usage: dict[int, TokenCount] = {}  # tokens per plan step, for the live view
        self._runnables: dict[tuple[int, Hashable], Runnable] = {}
        self._handlerless: dict[int, bool] = {}

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
            chat_model = chat_model_of(model)  # through bind/with_retry/...: what the call really reaches
            policy = self._local_policy if getattr(chat_model, "in_process", False) else self.policy

            def on_retry(attempt: int, exc: BaseException, wait: float) -> None:
                self.usage.transport_retries += 1
                self.emit(Retried(phase=phase, attempt=attempt, reason=error_reason(exc), wait=wait,
                                  step_id=step_id))

            try:
                direct = self._unobserved(runnable)
                async with self.slots or contextlib.nullcontext():
                    output = await call_with_retries(lambda: _ainvoke(runnable, input, direct), policy, on_retry,
                                                     endpoint=_endpoint_of(chat_model))
            except Exception as exc:  # exhausted or permanent: try the next model
                last_error = exc
                continue
            message = _message_of(output)
            self.usage.add(phase, message)
            if step_id is not None:
                self.step_usage.setdefault(step_id, TokenCount()).add(message)
            self._check_budget()
            return output, model_name(model)
        if isinstance(last_error, DecomposeError):
            raise last_error
        # Not a transport failure the retry layer knows: e.g. a custom model raising its own error.
        raise ModelError(f"model {model_name(self.models[-1])!r} failed: {type(last_error).__name__}: {last_error}",
                         hint="check the model's configuration; see the error above") from last_error

    def _unobserved(self, runnable: Runnable) -> bool:
        """True when no callback handler would see a call of this chat model. Asked once per model and run: every
        call of a run happens in tasks that inherit the context the run started in (~20 µs a call saved)."""
        if not isinstance(runnable, BaseChatModel) or not hasattr(runnable, "_agenerate_with_cache"):  # private
            return False
        known = self._handlerless.get(id(runnable))
        if known is None:
            known = self._handlerless[id(runnable)] = not _handlers(runnable)
        return known

    def _runnable(self, model: BaseChatModel, build: Callable | None, key: Hashable) -> Runnable:
        if build is None:
            return model
        cache_key = (id(model), key)
        if key is None or cache_key not in self._runnables:
            self._runnables[cache_key] = build(model)
        return self._runnables[cache_key]

    def _check_budget(self) -> None:
        if self.max_tokens is not None and self.usage.total_tokens > self.max_tokens:
            raise self.budget_exceeded()

    def budget_exceeded(self) -> BudgetExceeded:
        """The error, with the tokens used so far: calls that were in flight when the budget ran out still count,
        so a run reports it from its final usage."""
        return BudgetExceeded(f"token budget exceeded: {self.usage.total_tokens} tokens used, max_tokens_per_run="
                              f"{self.max_tokens}", hint="raise max_tokens_per_run or ask a narrower question")


def _endpoint_of(model: BaseChatModel | None) -> str | None:
    """Where an OpenAI-compatible model's calls go, for errors that do not carry their request."""
    base = getattr(model, "openai_api_base", None)
    return f"{base.rstrip('/')}/chat/completions" if isinstance(base, str) and base else None


async def _ainvoke(runnable: Runnable, input: Any, unobserved: bool) -> Any:
    """`runnable.ainvoke(input)`, minus LangChain's run bookkeeping when nobody is listening.

    A chat model called on plain-text messages, with no callback handler to tell (`unobserved`: none passed in
    or inherited from an enclosing runnable, no LangSmith tracing, no debug/verbose output, no configure hook such
    as `get_usage_metadata_callback`), goes straight to the model's own generation path `_agenerate_with_cache`:
    cache, rate limiter, streaming choice and response metadata stay LangChain's; only run start/end events that
    would reach no one are skipped (~80 µs a call). Any other call, and any call someone observes, uses `ainvoke`.
    """
    if unobserved and _plain_messages(input):
        message = (await runnable._agenerate_with_cache(input)).generations[0].message
        if message.id is None:  # as `ainvoke` names it
            message.id = f"{LC_ID_PREFIX}-{uuid7()}-0"
        return message
    return await runnable.ainvoke(input)


def _plain_messages(input: Any) -> bool:
    return isinstance(input, list) and all(isinstance(m, BaseMessage) and isinstance(m.content, str) for m in input)


def _handlers(model: BaseChatModel) -> list:
    """The handlers `model.ainvoke` would notify, configured exactly as LangChain configures them."""
    config = ensure_config(None)  # picks up callbacks inherited from an enclosing runnable
    return AsyncCallbackManager.configure(config.get("callbacks"), model.callbacks, model.verbose, config.get("tags"),
                                          model.tags, config.get("metadata"), model.metadata).handlers


def _message_of(output: Any) -> AIMessage | None:
    if isinstance(output, AIMessage):
        return output
    if isinstance(output, dict) and isinstance(output.get("raw"), AIMessage):
        return output["raw"]
    return None
