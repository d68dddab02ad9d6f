"""What a model call costs in money: USD per 1M input and output tokens, per model name.

A small table of common OpenAI models ships here; `Orchestrator(prices={"name": (input_per_1m, output_per_1m)})`
or `--prices FILE.json` adds to it or overrides it. LiteLLM and tokencost keep fuller tables, but tokencost pulls in
tiktoken, aiohttp and anthropic and LiteLLM a larger tree still, for a table of about 1,500 models where a run uses
one or two: the user's own prices are one argument away instead.

A model in this process (`smollm2`, `hf:PATH`, a scripted model) costs nothing; a remote model found in neither
table is unpriced, and its cost is None, not 0 — a run that used it has no known cost.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from langchain_core.messages import AIMessage
from langchain_core.runnables import Runnable

from decompose.errors import ConfigError
from decompose.models import chat_model_of, model_name

PRICES_DATE = "2025-08"  # when the prices below were read from openai.com/api/pricing (standard tier)

# USD per 1M tokens: (input, output).
SHIPPED: dict[str, tuple[float, float]] = {
    "gpt-4o": (2.50, 10.00),
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4.1": (2.00, 8.00),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1-nano": (0.10, 0.40),
    "o3": (2.00, 8.00),
    "o3-mini": (1.10, 4.40),
    "o4-mini": (1.10, 4.40),
    "gpt-5": (1.25, 10.00),
    "gpt-5-mini": (0.25, 2.00),
    "gpt-5-nano": (0.05, 0.40),
}

PRICES_HINT = 'give its prices, USD per 1M tokens: prices={"MODEL": (input, output)} or --prices FILE.json'
_DATED = re.compile(r"-\d{4}-\d{2}-\d{2}$")  # "gpt-4o-mini-2024-07-18" is priced as "gpt-4o-mini"

Price = tuple[float, float]


class Prices:
    """The shipped table with the user's prices over it; `price_of(model)` is a model's price, 0 for a local one."""

    def __init__(self, extra: Mapping[str, Any] | None = None):
        self.extra = checked_prices(extra or {})
        self.table = {**SHIPPED, **self.extra}

    def price_of(self, model: Runnable) -> Price | None:
        """(input, output) USD per 1M tokens; (0, 0) for a model in this process; None when unpriced."""
        name = model_name(model)
        names = (name, _DATED.sub("", name))
        if found := next((self.extra[n] for n in names if n in self.extra), None):
            return found  # the user's price first: it may price a scripted model, too
        if _local(model):
            return (0.0, 0.0)
        return next((SHIPPED[n] for n in names if n in SHIPPED), None)


def cost_of(price: Price | None, message: AIMessage | None) -> float | None:
    """USD of one reply at `price`; None for an unpriced model."""
    if price is None:
        return None
    meta = getattr(message, "usage_metadata", None) or {}
    tokens_in, tokens_out = int(meta.get("input_tokens", 0) or 0), int(meta.get("output_tokens", 0) or 0)
    return (tokens_in * price[0] + tokens_out * price[1]) / 1_000_000


def as_prices(prices: Prices | Mapping[str, Any] | str | os.PathLike[str] | None) -> Prices:
    """`Orchestrator(prices=...)`: a mapping, a JSON file of one, or a `Prices`."""
    if isinstance(prices, Prices):
        return prices
    if isinstance(prices, (str, os.PathLike)):
        return Prices(load_prices(prices))
    if prices is not None and not isinstance(prices, Mapping):
        raise ConfigError(
            f"prices must be a mapping of model name to (input, output), got a {type(prices).__name__}",
            hint=PRICES_HINT,
        )
    return Prices(prices)


def load_prices(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A JSON file: {"MODEL": [input_per_1m, output_per_1m], ...}."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read prices file {str(path)!r}: {exc.strerror or exc}", hint=PRICES_HINT) from exc
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"prices file {str(path)!r} is not JSON: {exc}",
            hint='write {"MODEL": [input_per_1m, output_per_1m], ...}',
        ) from exc
    if not isinstance(data, dict):
        raise ConfigError(
            f"prices file {str(path)!r} holds a {type(data).__name__}, not an object",
            hint='write {"MODEL": [input_per_1m, output_per_1m], ...}',
        )
    return data


def checked_prices(prices: Mapping[str, Any]) -> dict[str, Price]:
    """Each entry a model name and two non-negative numbers; a bad one is named with the fix."""
    checked: dict[str, Price] = {}
    for name, price in prices.items():
        pair = list(price) if isinstance(price, (list, tuple)) else None
        if not (isinstance(name, str) and name and pair is not None and len(pair) == 2 and all(map(_usd, pair))):
            raise ConfigError(
                f"price of {name!r} must be two non-negative numbers (input, output USD per 1M tokens), got {price!r}",
                hint=f'write it as "{name}": [input_per_1m, output_per_1m], e.g. [0.15, 0.6]',
            )
        checked[name] = (float(pair[0]), float(pair[1]))
    return checked


def _usd(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value) and value >= 0


def _local(model: Runnable) -> bool:
    """A model that runs in this process, or a scripted one: no provider bills its tokens."""
    from decompose.models.scripted import ScriptedChatModel

    chat_model = chat_model_of(model)
    return bool(getattr(chat_model, "in_process", False)) or isinstance(chat_model, ScriptedChatModel)
