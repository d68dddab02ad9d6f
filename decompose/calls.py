"""Every model call goes through `ModelCaller`: retries, fallbacks, usage and budget in one place."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Hashable, Sequence
from dataclasses import replace
from typing import Any

from langchain_core.callbacks import AsyncCallbackManager
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.runnables import Runnable
from langchain_core.runnables.config import ensure_config
from langchain_core.utils.utils import LC_ID_PREFIX
from langchain_core.utils.uuid import uuid7

from decompose.errors import BudgetExceeded
from decompose.events import Emit, TokenCount, Usage
from decompose.limits import Limits
from decompose.models import chat_model_of, model_name, planner_of
from decompose.models.fallback import FallbackModel
from decompose.retry import RetryPolicy, call_with_retries, retry_events


class ModelCaller:
    """Calls the models of a `FallbackModel` (a list is the primary and its fallbacks), each under its own retry
    policy, and counts what they used."""

    def __init__(
        self,
        models: FallbackModel | Sequence[Runnable],
        *,
        policy: RetryPolicy,
        usage: Usage,
        emit: Emit,
        limits: Limits | None = None,
        slots: asyncio.Semaphore | None = None,
    ):
        self.fallback = models if isinstance(models, FallbackModel) else FallbackModel(*models)
        self.slots = slots  # shared by every run of a batch: bounds the batch's calls in flight
        self.policy = policy
        # A model in this process has no server to hang: its calls wait their turn in its batch queue, which
        # on a CPU can rightly take minutes, so the per-call deadline meant for HTTP does not apply to it.
        self._local_policy = replace(policy, max_total=None)
        self.usage = usage
        self.emit = emit
        self.limits = limits or Limits()
        self.calls_started = 0  # in flight included: what a call limit is checked against
        self.step_usage: dict[int, TokenCount] = {}  # tokens per plan step, for the live view
        self._runnables: dict[tuple[int, Hashable], Runnable] = {}
        self._handlerless: dict[int, bool] = {}

    @property
    def models(self) -> list[Runnable]:
        """The primary model, then its fallbacks."""
        return self.fallback.models

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
        self.limits.check_before_call(self.usage, self.calls_started)  # nothing is spent past a limit
        self.calls_started += 1
        announce = retry_events(self.emit, self.usage, phase, step_id)

        async def call(model: Runnable) -> Any:
            if phase == "decompose":  # a local model with a decomposer adapter plans with it, answers without it
                model = planner_of(model)
            runnable = self._runnable(model, build, key)
            chat_model = chat_model_of(model)  # through bind/with_retry/...: what the call really reaches
            policy = self._local_policy if getattr(chat_model, "in_process", False) else self.policy
            direct = self._unobserved(runnable)
            async with self.slots or contextlib.nullcontext():
                return await call_with_retries(lambda: _ainvoke(runnable, input, direct), policy, announce,
                                               endpoint=_endpoint_of(chat_model))

        output, model = await self.fallback.call(call)
        message = _message_of(output)
        self.usage.add(phase, message)
        if step_id is not None:
            self.step_usage.setdefault(step_id, TokenCount()).add(message)
        self.limits.check_after_call(self.usage, self.calls_started)
        return output, model_name(model)

    def _unobserved(self, runnable: Runnable) -> bool:
        """True when no callback handler would see a call of this chat model. Asked once per model and run: every
        call of a run happens in tasks that inherit the context the run started in (~20 µs a call saved)."""
        if not isinstance(runnable, BaseChatModel) or not hasattr(runnable, "_agenerate_with_cache"):  # private
            return False
        known = self._handlerless.get(id(runnable))
        if known is None:
            known = self._handlerless[id(runnable)] = not _handlers(runnable)
        return known

    def _runnable(self, model: Runnable, build: Callable | None, key: Hashable) -> Runnable:
        if build is None:
            return model
        cache_key = (id(model), key)
        if key is None or cache_key not in self._runnables:
            self._runnables[cache_key] = build(model)
        return self._runnables[cache_key]

    def budget_exceeded(self) -> BudgetExceeded:
        """The error, from the usage so far: calls that were in flight when a limit was reached still count, so a
        run reports it from its final usage."""
        return self.limits.exceeded(self.usage, self.calls_started)


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
    if unobserved and isinstance(runnable, BaseChatModel) and _plain_messages(input):
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
