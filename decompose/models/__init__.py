"""`load_model(spec)`: turn a spec string into a LangChain chat model."""

from __future__ import annotations

import os
from typing import Any

from langchain_core.language_models import BaseChatModel

from decompose.errors import ConfigError

DEFAULT_SPEC = "smollm2"
SPEC_HELP = "use 'openai:MODEL', 'hf:/path/to/model-or.gguf', or 'smollm2' (the embedded default)"


def load_model(spec: str | BaseChatModel | None = None, **kwargs: Any) -> BaseChatModel:
    """Build a chat model from `spec`; a `BaseChatModel` passes through unchanged.

    With no spec, `DECOMPOSE_MODEL` is read, then the embedded SmolLM2 default is used.
    """
    if isinstance(spec, BaseChatModel):
        return spec
    spec = (spec or os.environ.get("DECOMPOSE_MODEL") or DEFAULT_SPEC).strip()
    kind, _, rest = spec.partition(":")
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
