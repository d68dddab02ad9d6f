"""`load_model(spec)`: turn a spec string into a LangChain chat model."""

from __future__ import annotations

import os
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.runnables import Runnable, RunnableWithFallbacks
from langchain_core.runnables.base import RunnableBindingBase
from langchain_core.runnables.configurable import DynamicRunnable

from decompose.errors import ConfigError
from decompose.models.decoding import Decoding  # noqa: F401  (load_model("smollm2", decoding=Decoding(...)))

DEFAULT_SPEC = "smollm2"
SPEC_HELP = (
    "use 'openai:MODEL', 'hf:/path/to/model-or.gguf', 'smollm2' (the embedded default), "
    "'py:MODULE:ATTR', 'py:FILE.py:ATTR' or 'scripted:FILE.py[:ATTR]'"
)
RUNNABLE_HELP = (
    "pass a LangChain chat model, as it is or wrapped by bind(), with_config(), with_retry(), "
    "with_fallbacks([...]) or configurable_fields(...), or a spec string: " + SPEC_HELP
)


def load_model(
    spec: str | Runnable | None = None, *, adapter: str | os.PathLike | bool | None = None, **kwargs: Any
) -> Runnable:
    """Build a chat model from `spec`; a chat model, or a Runnable wrapping only chat models, passes through.

    With no spec, `DECOMPOSE_MODEL` is read, then the embedded SmolLM2 default is used. `py:` and `scripted:`
    specs name Python code (see `decompose.models.python_specs`); `kwargs` are for the other backends.
    `adapter`: a LoRA adapter folder (what `decompose train` writes) that writes a local model's plans (`smollm2`,
    `hf:PATH`); the embedded model plans with its shipped adapter unless given another, or False / "none".
    `decoding=Decoding(...)` (or a dict) sets a local model's decoding (`decompose.models.decoding`).
    """
    local = (
        (spec or os.environ.get("DECOMPOSE_MODEL") or "").strip() or DEFAULT_SPEC
        if (spec is None or isinstance(spec, str))
        else ""
    )
    if "decoding" in kwargs and not (local == DEFAULT_SPEC or local.startswith("hf:")):
        raise ConfigError(
            f"decoding= is for local models, not {local or type(spec).__name__!r}",
            hint="use it with 'smollm2' or 'hf:PATH'; other models take their own options "
            "(openai: temperature, top_p, seed)",
        )
    from decompose.models.adapter import NO_ADAPTER, adapter_info  # no third-party import: cheap

    if adapter in NO_ADAPTER:  # the embedded model without its shipped adapter
        if local == DEFAULT_SPEC:
            kwargs["adapter"] = None
    elif adapter is not None:
        if not (local == DEFAULT_SPEC or local.startswith("hf:")):
            raise ConfigError(
                f"an adapter needs a local model, not {local or type(spec).__name__!r}",
                hint="use it with 'smollm2' or 'hf:PATH' (the base model it was trained on)",
            )
        if isinstance(adapter, bool):
            raise ConfigError(
                "adapter=True names no adapter", hint="pass the adapter's folder, or adapter=False for none"
            )
        adapter_info(adapter)  # a wrong folder fails at once, not after a model conversion or load
        kwargs["adapter"] = adapter
    if isinstance(spec, BaseChatModel):
        return spec
    if isinstance(spec, Runnable):
        if not _only_chat_models(spec):
            raise ConfigError(
                f"a {type(spec).__name__} is not a chat model (messages in, an AIMessage out)", hint=RUNNABLE_HELP
            )
        return spec
    if spec is not None and not isinstance(spec, str):
        raise ConfigError(
            f"model must be a chat model or a spec string, got a {type(spec).__name__}", hint=RUNNABLE_HELP
        )
    spec = (spec or os.environ.get("DECOMPOSE_MODEL") or "").strip() or DEFAULT_SPEC
    kind, _, rest = spec.partition(":")
    if kind in ("py", "scripted"):
        if kwargs:
            raise ConfigError(
                f"model spec {spec!r} takes no options (got {', '.join(sorted(kwargs))})",
                hint="configure the model in the code the spec names",
            )
        from decompose.models.python_specs import load_py, load_scripted

        return (load_py if kind == "py" else load_scripted)(rest, spec)
    if kind == "openai" and rest:
        from decompose.models.openai import load_openai

        return load_openai(rest, **kwargs)
    if kind == "hf" and rest:
        from decompose.models.hf import load_hf

        return load_hf(rest, **kwargs)
    if spec == DEFAULT_SPEC:
        from decompose.models.embedded import load_embedded

        return load_embedded(**kwargs)
    raise ConfigError(f"unknown model spec {spec!r}", hint=SPEC_HELP)


def chat_model_of(model: Any) -> BaseChatModel | None:
    """The chat model that answers a call of `model`: itself, or the one inside a binding (`bind`,
    `with_config`, `with_retry`), a fallback chain (its first model) or a configurable model (its default).
    None when `model` is not one of these around a chat model."""
    while not isinstance(model, BaseChatModel):
        if isinstance(model, RunnableBindingBase):
            model = model.bound
        elif isinstance(model, RunnableWithFallbacks):
            model = model.runnable
        elif isinstance(model, DynamicRunnable):
            model = model.default
        else:
            return None
    return model


def planner_of(model: Runnable) -> Runnable:
    """The model that writes `model`'s plans: a local model's sibling carrying a decomposer adapter, or itself."""
    return getattr(chat_model_of(model), "planner", None) or model


def model_name(model: Runnable) -> str:
    """The name a model answers to (its `model_name`, `model` or `model_id`), seen through any wrapper."""
    model = chat_model_of(model) or model
    for attr in ("model_name", "model", "model_id"):
        value = getattr(model, attr, None)
        if isinstance(value, str) and value:
            return value
    return type(model).__name__


def __getattr__(name: str) -> Any:
    if name == "FallbackModel":  # imported on first use: it imports `model_name` from here
        from decompose.models.fallback import FallbackModel

        return FallbackModel
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _only_chat_models(model: Any) -> bool:
    """True when every model `model` may call is a chat model (a fallback too, not only the first)."""
    if isinstance(model, RunnableWithFallbacks):
        return all(_only_chat_models(m) for m in (model.runnable, *model.fallbacks))
    if isinstance(model, RunnableBindingBase):
        return _only_chat_models(model.bound)
    if isinstance(model, DynamicRunnable):
        alternatives = getattr(model, "alternatives", {}).values()  # configurable_alternatives(...)
        return _only_chat_models(model.default) and all(
            _only_chat_models(m) for m in alternatives if isinstance(m, Runnable)
        )
    return isinstance(model, BaseChatModel)
