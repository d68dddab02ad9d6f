"""Which model calls a cache may answer, and under what key: `CachedCall.of(cache, runnable, input)`.

A call is cached only when its reply is determined by what the key holds:

- the key's `prompt` is the messages as LangChain's own chat-model cache writes it (`dumps`, message ids
  dropped); its `llm_string` is the whole runnable the call reaches (`identity`): every chat model's class and
  settings (model name, endpoint, decoding, LoRA adapter, ...), every binding's call arguments (a structured
  output's schema, `stop`, `temperature`), every parser. Two calls share a key only when all of that is equal, so
  a reply never crosses models, adapters or structured-output modes. Something that cannot be identified (an
  object with no stable description) makes the call uncached rather than risk a wrong hit.
- it does not sample (`samples`): a chat model whose settings or call arguments give a temperature above 0, or
  that leaves the temperature to its server (whose default samples), is not cached. A model with no temperature
  setting at all (a scripted model) is deterministic.
- it succeeded: only a reply is stored (`store`), never an error, and a structured reply only when it parsed.

LangChain's own lookup (`BaseChatModel(cache=...)`) keys a model by `_identifying_params`, which a model may
leave empty, and caches sampled calls too: this is why the lookup is done here, through the same `BaseCache`
interface (`lookup`/`update`), so any LangChain cache plugs in.
"""

from __future__ import annotations

import enum
import functools
import hashlib
import json
import operator
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from langchain_core.caches import BaseCache
from langchain_core.language_models import BaseChatModel
from langchain_core.load import dumps
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration
from langchain_core.runnables import Runnable
from langchain_core.runnables.base import RunnableBindingBase
from pydantic import BaseModel

# What does not change a reply, so not part of a model's identity: a chat model's base fields (callbacks, tags,
# the cache itself, ...), a binding's run config, how long a call may wait and how often it is retried, and how a
# local model batches its calls.
_NOT_IDENTITY = frozenset(BaseChatModel.model_fields) | {
    "config",
    "config_factories",
    "request_timeout",
    "timeout",
    "max_retries",
    "max_batch_size",
    "batch_wait_ms",
}


# A local model's fields that name its weights or its LoRA adapter on disk.
_FILES = ("model_path", "adapter")
# Where a runnable made of a function (RunnableLambda, RunnableGenerator) keeps it.
_FUNCTIONS = ("func", "afunc", "_transform", "_atransform")


class Unidentifiable(Exception):
    """Something in a call has no stable description: the call is not cached."""


@dataclass(frozen=True)
class CachedCall:
    """One cacheable call: where its reply is stored and how it is read back."""

    cache: BaseCache
    prompt: str
    llm_string: str

    @classmethod
    def of(cls, cache: BaseCache | None, runnable: Runnable, input: Any) -> CachedCall | None:
        """The call of `runnable` on `input`, or None when it must not be cached (no cache, sampling, or
        something without a stable identity)."""
        if cache is None or samples(runnable):
            return None
        try:
            return cls(cache, _prompt(input), json.dumps(identity(runnable), sort_keys=True, ensure_ascii=False))
        except (Unidentifiable, RecursionError):  # RecursionError: an object graph with a cycle
            return None

    async def lookup(self) -> Any | None:
        """The stored output, as the runnable returned it (a message, or a structured reply's dict); None on a
        miss."""
        found = await self.cache.alookup(self.prompt, self.llm_string)
        if not found or not isinstance(found[0], ChatGeneration):
            return None
        message, info = found[0].message, found[0].generation_info or {}
        if "parsed" in info:  # a structured reply: `with_structured_output(..., include_raw=True)`
            return {"raw": message, "parsed": info["parsed"], "parsing_error": None}
        return message

    async def store(self, output: Any) -> None:
        """Keep a successful output; a structured reply that did not parse, or an output that is neither a message
        nor a structured reply, is not kept."""
        if isinstance(output, AIMessage):
            await self.cache.aupdate(self.prompt, self.llm_string, [ChatGeneration(message=output)])
        elif (
            isinstance(output, dict)
            and isinstance(output.get("raw"), AIMessage)
            and output.get("parsing_error") is None
            and "parsed" in output
        ):
            parsed = output["parsed"]
            parsed = parsed.model_dump() if isinstance(parsed, BaseModel) else parsed  # read back as a dict
            try:
                json.dumps(parsed)
            except (TypeError, ValueError):
                return
            generation = ChatGeneration(message=output["raw"], generation_info={"parsed": parsed})
            await self.cache.aupdate(self.prompt, self.llm_string, [generation])


def samples(runnable: Any, call_kwargs: Mapping[str, Any] | None = None) -> bool:
    """True when some chat model `runnable` may call samples its reply, with the call arguments bound around it."""
    call_kwargs = call_kwargs or {}
    if isinstance(runnable, BaseChatModel):
        decoding = getattr(runnable, "decoding", None)
        if decoding is not None and hasattr(decoding, "with_options"):  # a local model: greedy unless sampling
            return bool(decoding.with_options(dict(call_kwargs)).sampling)
        if call_kwargs.get("do_sample"):
            return True
        if "temperature" not in type(runnable).model_fields and "temperature" not in call_kwargs:
            return False  # no sampling setting: a deterministic model
        temperature = call_kwargs.get("temperature", getattr(runnable, "temperature", None))
        return temperature != 0  # None leaves it to the server, whose default samples
    if isinstance(runnable, RunnableBindingBase):  # an outer binding's arguments override an inner one's
        return samples(runnable.bound, {**runnable.kwargs, **call_kwargs})
    return any(samples(part, call_kwargs) for part in _parts(runnable))


def _parts(runnable: Any) -> list[Runnable]:
    """The runnables inside a composed one (a sequence, a map, fallbacks, a configurable model, ...)."""
    if not isinstance(runnable, BaseModel):
        return []
    found: list[Runnable] = []
    for name in type(runnable).model_fields:
        value = getattr(runnable, name, None)
        values = (
            value.values() if isinstance(value, Mapping) else value if isinstance(value, (list, tuple)) else [value]
        )
        found.extend(v for v in values if isinstance(v, Runnable))
    return found


def identity(value: Any) -> Any:
    """`value` as plain JSON data that is equal for two values only when they would answer alike; raises
    `Unidentifiable` for an object with no stable description."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, enum.Enum):
        return identity(value.value)
    if isinstance(value, Mapping):
        return {str(k): identity(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        items = [identity(v) for v in value]
        return sorted(items, key=json.dumps) if isinstance(value, (set, frozenset)) else items
    if isinstance(value, type):
        if issubclass(value, BaseModel):  # a schema: what it asks for, not only its name
            return {"schema": value.model_json_schema()}
        return {"type": _qualified(value)}
    if isinstance(value, BaseModel):  # chat models, LangChain's runnables and parsers, settings
        fields = type(value).model_fields
        shown = {
            name: identity(getattr(value, name, None))
            for name, info in fields.items()
            if not info.exclude and name not in _NOT_IDENTITY
        }
        for name in _FILES:  # a local model's weights or adapter retrained in place is another model
            if name in shown and isinstance(shown[name], str):
                shown[name] = {"path": shown[name], "files": _files(shown[name])}
        return {"class": _qualified(type(value)), **shown}
    if hasattr(value, "get_secret_value"):  # a SecretStr: which key does not change the reply
        return "secret"
    if isinstance(value, re.Pattern):
        return {"pattern": value.pattern, "flags": value.flags}
    if isinstance(value, (operator.itemgetter, operator.attrgetter)):
        return {"getter": repr(value)}
    if isinstance(value, functools.partial):
        return {"partial": identity(value.func), "args": identity(value.args), "kwargs": identity(value.keywords)}
    if isinstance(value, BaseException):
        return {"raises": repr(value)}
    code = getattr(value, "__code__", None)
    if code is not None:  # a function: its name, its code and what it closes over
        cells = [identity(cell.cell_contents) for cell in (value.__closure__ or ())]
        return {
            "function": _qualified(value),
            "code": hashlib.sha256(code.co_code).hexdigest(),
            "closure": cells,
            "defaults": identity(value.__defaults__ or ()),
        }
    if isinstance(value, Runnable) and not isinstance(value, BaseModel):  # RunnableLambda, RunnableGenerator
        functions = {a: getattr(value, a) for a in _FUNCTIONS if getattr(value, a, None) is not None}
        if functions:
            return {"class": _qualified(type(value)), **{a: identity(f) for a, f in functions.items()}}
    raise Unidentifiable(type(value).__name__)


def _files(path: str) -> list[list[Any]]:
    """Name, size and modification time of the file at `path`, or of the files in that folder."""
    root = Path(path)
    found = [root] if root.is_file() else sorted(p for p in root.glob("*") if p.is_file()) if root.is_dir() else []
    return [[p.name, p.stat().st_size, p.stat().st_mtime_ns] for p in found]


def _qualified(value: Any) -> str:
    return f"{getattr(value, '__module__', '?')}.{getattr(value, '__qualname__', type(value).__qualname__)}"


def _prompt(input: Any) -> str:
    """The messages as LangChain's chat-model cache writes them: `dumps`, message ids dropped."""
    if isinstance(input, str):
        return dumps(input)
    if isinstance(input, (list, tuple)) and all(isinstance(m, BaseMessage) for m in input):
        return dumps([m.model_copy(update={"id": None}) if m.id is not None else m for m in input])
    raise Unidentifiable(type(input).__name__)
