"""`FallbackModel`: a primary model and the models that stand in when it is unavailable.

    FallbackModel(primary, backup)                                 # falls back on ModelError (and ModelAccessError)
    FallbackModel(primary, backup, fallback_on=(ModelError, MyGatewayError))
    FallbackModel(primary, backup, fallback_on=lambda exc: "overloaded" in str(exc))

Only a failure that says the model is unavailable falls back: by default a `ModelError`, i.e. the server failed
for good after its retries, refused the key or the model, or answered with something that is not a completion.
Anything else — a bug in a custom model (TypeError), a spent token budget — is raised at once: another model
would not fix it and would hide it. When every model fails, the one error names each model and its failure and
keeps them all in `.errors`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from langchain_core.runnables import Runnable

from decompose.errors import DecomposeError, ModelAccessError, ModelError
from decompose.models import model_name

T = TypeVar("T")
FallbackOn = Callable[[BaseException], bool] | type[BaseException] | tuple[type[BaseException], ...]


class AllModelsFailed(ModelError):
    """Every model of a `FallbackModel` failed; `errors` holds (model name, its failure) for each, in order."""

    def __init__(self, errors: list[tuple[str, BaseException]]):
        self.errors = errors
        each = "; ".join(f"{name!r}: {_said(error)}" for name, error in errors)
        hints = [error.hint for _, error in errors if isinstance(error, DecomposeError) and error.hint]
        super().__init__(
            f"all {len(errors)} models failed: {each}",
            hint="; ".join(dict.fromkeys(hints)) or "check each model's configuration",
        )


class AllModelsRefused(AllModelsFailed, ModelAccessError):
    """Every model was refused access (key, permission, model name): no later call can succeed either."""


class FallbackModel:
    """Calls the primary model, then each fallback in turn while the failure is one `fallback_on` accepts."""

    def __init__(self, model: Runnable, *fallbacks: Runnable, fallback_on: FallbackOn = ModelError):
        self.models = [model, *fallbacks]
        if isinstance(fallback_on, (type, tuple)):
            types = fallback_on
            self.fallback_on: Callable[[BaseException], bool] = lambda exc: isinstance(exc, types)
        else:
            self.fallback_on = fallback_on

    async def call(self, attempt: Callable[[Runnable], Awaitable[T]]) -> tuple[T, Runnable]:
        """`await attempt(model)` for each model until one succeeds; return (its result, the model). Each model
        keeps what is its own (retry policy, endpoint): `attempt` calls it as that model needs."""
        errors: list[tuple[str, BaseException]] = []
        for model in self.models:
            try:
                return await attempt(model), model
            except Exception as exc:
                if self.fallback_on(exc):
                    errors.append((model_name(model), exc))
                    continue
                if isinstance(exc, DecomposeError):
                    raise  # ours, and it already says what to fix
                # A bug in the model, not an unavailable one: name the model that raised it.
                raise ModelError(
                    f"model {model_name(model)!r} failed: {type(exc).__name__}: {exc}",
                    hint="check the model's configuration; see the error above",
                ) from exc
        if len(errors) == 1:  # no fallback: the model's own error says it all
            raise errors[0][1]
        refused = all(isinstance(error, ModelAccessError) for _, error in errors)
        raise (AllModelsRefused if refused else AllModelsFailed)(errors) from errors[-1][1]


def _said(error: BaseException) -> str:
    if isinstance(error, DecomposeError):
        return str(error.args[0]) if error.args else type(error).__name__
    return f"{type(error).__name__}: {error}"
