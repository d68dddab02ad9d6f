"""Every model call goes through `ModelCaller`: retries, fallbacks, usage and budget in one place."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Hashable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Protocol

from langchain_core.caches import BaseCache
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.runnables import Runnable

from decompose.call_cache import CachedCall
from decompose.errors import BudgetExceeded, ConfigError
from decompose.events import Emit, TokenCount, Usage
from decompose.limits import Limits
from decompose.models import chat_model_of, model_name
from decompose.models.fallback import FallbackModel
from decompose.pricing import PRICES_HINT, Price, Prices, cost_of
from decompose.retry import RetryPolicy, call_with_retries, retry_events

if TYPE_CHECKING:
    from decompose.tracing import RunTrace


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
        trace: RunTrace | None = None,
        cache: BaseCache | None = None,
        prices: Prices | None = None,
    ):
        self.fallback = models if isinstance(models, FallbackModel) else FallbackModel(*models)
        self.slots = slots  # shared by every run of a batch: bounds the batch's calls in flight
        self.policy = policy
        self.usage = usage
        self.emit = emit
        self.limits = limits or Limits()
        self.trace = trace  # the run's spans (decompose/tracing.py); None, and free, when tracing is off
        self.cache = cache  # replies of calls that do not sample: see `call_cache`
        self.calls_started = 0  # in flight included: what a call limit is checked against
        self.step_usage: dict[int, TokenCount] = {}  # tokens per plan step, for the live view
        self._runnables: dict[Hashable, list[tuple[Runnable, Runnable]]] = {}  # key -> (model, what build made)
        self.prices = prices or Prices()
        self._routes: list[_Route] = []  # what each model's calls need, found at its first call, not at each
        if self.limits.max_cost is not None:  # a cost limit needs every model's price before anything is spent
            for model in self.models:
                if self._route(model).price is None:
                    raise ConfigError(
                        f"max_cost is set but model {self._route(model).name!r} has no price",
                        hint=PRICES_HINT,
                    )

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
        tokens: Tokens | None = None,
    ) -> tuple[Any, str]:
        """Run `build(model)` (default: the model itself) on `input`; return (output, name of the model used).

        `key` names the runnable `build` makes, so it is built once per model rather than per call. What a caller
        needs of a model is its own to say through `build` (the Decomposer asks a model's planner for plans).
        `tokens`: the reply is streamed (the runnable's public `astream`) into it as it is written, each attempt
        (a retry, a fallback model) announced by `tokens.restart()`; without it the call is one `ainvoke`.
        A reply found in the cache is counted in `usage.cached` (`cache_hits`), not as a model call, and its
        tokens (spent by an earlier run) are not counted again; a stream gets it whole, as the answer.
        """
        self.limits.check_before_call(self.usage, self.calls_started)  # nothing is spent past a limit
        self.calls_started += 1
        announce = retry_events(self.emit, self.usage, phase, step_id)
        hits: list[Runnable] = []

        async def call(model: Runnable) -> Any:  # one model's try, its retries included
            runnable = self._runnable(model, build, key)
            cached = CachedCall.of(self.cache, runnable, input)
            if cached is not None and (found := await cached.lookup()) is not None:
                hits.append(model)
                return found
            route = self._route(model)
            async with self.slots or contextlib.nullcontext():
                attempt = (
                    (lambda: runnable.ainvoke(input))
                    if tokens is None
                    else (lambda: _streamed(runnable, input, tokens))
                )
                output = await call_with_retries(attempt, route.policy, announce, endpoint=route.endpoint)
            if cached is not None:  # only a reply reaches here: a failed call raised
                await cached.store(output)
            return output

        attempt: Callable[[Runnable], Awaitable[Any]] = call
        if self.trace is not None:  # each model tried in a span of its own
            attempt = self.trace.model_attempts(call, phase=phase, step_id=step_id, name_of=self.name_of)
        output, model = await self.fallback.call(attempt)
        if hits:
            self.calls_started -= 1  # no call was made
            self.usage.cached.add(_message_of(output))
            return output, self._route(model).name
        message = _message_of(output)
        self.usage.add(phase, message, cost_of(self._route(model).price, message))
        if step_id is not None:
            self.step_usage.setdefault(step_id, TokenCount()).add(message)
        self.limits.check_after_call(self.usage, self.calls_started)
        return output, self._route(model).name

    def name_of(self, model: Runnable) -> str:
        return self._route(model).name

    def _route(self, model: Runnable) -> _Route:
        for route in self._routes:  # by identity: chat models are unhashable, and an id() could be reused
            if route.model is model:
                return route
        self._routes.append(_Route(model, self.policy, self.prices))
        return self._routes[-1]

    def _runnable(self, model: Runnable, build: Callable | None, key: Hashable) -> Runnable:
        if build is None:
            return model
        if key is None:
            return build(model)
        # By identity, beside the model itself: chat models are unhashable, and an id() could be reused.
        made = self._runnables.setdefault(key, [])
        found = next((runnable for owner, runnable in made if owner is model), None)
        if found is None:
            found = build(model)
            made.append((model, found))
        return found

    def budget_exceeded(self) -> BudgetExceeded:
        """The error, from the usage so far: calls that were in flight when a limit was reached still count, so a
        run reports it from its final usage."""
        return self.limits.exceeded(self.usage, self.calls_started)


class Tokens(Protocol):
    """Where a streamed reply goes: `restart()` before each attempt, then each piece of text as it comes."""

    def restart(self) -> None: ...

    def __call__(self, text: str) -> None: ...


async def _streamed(runnable: Runnable, input: Any, tokens: Tokens) -> Any:
    """One attempt, streamed: the chunks added up are the message `ainvoke` would return (usage included)."""
    tokens.restart()
    message = None
    async for chunk in runnable.astream(input):
        message = chunk if message is None else message + chunk
        text = str(chunk.text) if isinstance(chunk, BaseMessage) else ""
        if text:
            tokens(text)
    return message if message is not None else AIMessage(content="")


class _Route:
    """What every call of one model needs: its retry policy, its endpoint (for errors that do not carry their
    request), its name and its price."""

    def __init__(self, model: Runnable, policy: RetryPolicy, prices: Prices):
        chat_model = chat_model_of(model)  # through bind/with_retry/...: what the call really reaches
        self.model = model
        # A model in this process has no server to hang: its calls wait their turn in its batch queue, which
        # on a CPU can rightly take minutes, so the per-call deadline meant for HTTP does not apply to it.
        self.policy = replace(policy, max_total=None) if getattr(chat_model, "in_process", False) else policy
        self.endpoint = _endpoint_of(chat_model)
        self.name = model_name(model)
        self.price: Price | None = prices.price_of(model)


def _endpoint_of(model: BaseChatModel | None) -> str | None:
    """Where an OpenAI-compatible model's calls go, for errors that do not carry their request."""
    base = getattr(model, "openai_api_base", None)
    return f"{base.rstrip('/')}/chat/completions" if isinstance(base, str) and base else None


def _message_of(output: Any) -> AIMessage | None:
    if isinstance(output, AIMessage):
        return output
    if isinstance(output, dict) and isinstance(output.get("raw"), AIMessage):
        return output["raw"]
    return None
