"""Constrained decoding for local models: JSON-schema grammars (xgrammar) and `with_structured_output`.

A grammar makes every token the model emits keep the output valid JSON for the schema, so even a 135M model
yields a parseable plan. A grammar must also be able to *finish* within the token cap, so the schema the grammar
is compiled from gets bounds (string lengths, array sizes, integer ranges) wherever the caller left them open;
the parsed result is still validated against the caller's original schema. Bounds alone would have to be
tiny to fit a token budget in the worst case (a small model fills every bound), so near the budget's end the
decoder also prefers tokens that close the JSON (see `Closers`).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Sequence
from operator import itemgetter
from typing import Any

import torch
import xgrammar as xgr
from langchain_core.exceptions import OutputParserException
from langchain_core.messages import AIMessage
from langchain_core.runnables import Runnable, RunnableLambda, RunnableMap, RunnablePassthrough
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_json_schema
from pydantic import BaseModel
from pydantic.v1 import BaseModel as BaseModelV1
from transformers import LogitsProcessor

from decompose.errors import ConfigError

# Bounds for what a schema leaves open: roomy for real content, finite so no single field loops forever.
MAX_STRING_LENGTH = 200
MAX_ITEMS = 10
MAX_PROPERTIES = 8
MAX_INT = 10**15  # 16 digits: no id or count needs more, and a digit loop must end
_SCALAR = ["string", "number", "integer", "boolean", "null"]


def resolve_schema(schema: Any) -> tuple[dict, type[BaseModel] | type[BaseModelV1] | None]:
    """The JSON schema to decode under, and the pydantic class (v2 or v1) to parse into (None: return a dict).

    A `BaseTool` stands for its arguments: the result is the dict to pass to `tool.invoke`.
    """
    if isinstance(schema, BaseTool):
        args = schema.args_schema
        if args is None:
            return {"type": "object", "properties": {}}, None
        if isinstance(args, dict):
            return args, None
        return (args.schema() if issubclass(args, BaseModelV1) else args.model_json_schema()), None
    if isinstance(schema, type) and issubclass(schema, BaseModel):
        return schema.model_json_schema(), schema
    if isinstance(schema, type) and issubclass(schema, BaseModelV1):
        return convert_to_json_schema(schema), schema  # its references resolved, as for any other class
    if isinstance(schema, dict) and "parameters" in schema and "name" in schema:  # OpenAI function format
        return schema["parameters"], None
    if isinstance(schema, dict):
        return schema, None
    return convert_to_json_schema(schema), None


def bound_schema(
    schema: dict,
    max_string_length: int = MAX_STRING_LENGTH,
    max_items: int = MAX_ITEMS,
    max_properties: int = MAX_PROPERTIES,
) -> dict:
    """A copy of `schema` with a finite bound on every string, array, integer and free-form object."""

    def visit(node: Any) -> None:
        if isinstance(node, list):
            for item in node:
                visit(item)
            return
        if not isinstance(node, dict):
            return
        types = node.get("type")
        types = types if isinstance(types, list) else [types]
        if "string" in types and not {"maxLength", "enum", "const", "pattern", "format"} & node.keys():
            node["maxLength"] = max_string_length
        if "array" in types:
            node.setdefault("maxItems", max_items)
        if "integer" in types:
            node.setdefault("minimum", -MAX_INT)
            node.setdefault("maximum", MAX_INT)
        if "object" in types and "properties" not in node and node.get("additionalProperties", True) in (True, {}):
            # Free-form object (a step's `args`): scalar values or short scalar lists, so it cannot nest forever.
            scalar = {"type": _SCALAR}
            node["additionalProperties"] = {"anyOf": [scalar, {"type": "array", "items": scalar}]}
            node.setdefault("maxProperties", max_properties)
        for value in node.values():
            visit(value)

    bounded = copy.deepcopy(schema)
    visit(bounded)
    return bounded


class Closers:
    """Which tokens to prefer, in order, once a constrained row nears its token limit.

    Inside a string: a quote that ends it. Outside: tokens made only of `]`, `}` (or eos), which close arrays,
    objects and the document; failing those, tokens that may also add the `,` and `:` needed to get past
    required keys; failing those, a bare `{`, `[` or `"` to start a value that can close at once.
    A plan cut short thus ends as valid JSON with shorter strings and fewer items.
    """

    def __init__(self, tokenizer: Any, vocab_size: int, eos_ids: list[int]):
        self.texts = tokenizer.batch_decode([[i] for i in range(len(tokenizer))])
        self.vocab_size = vocab_size
        self.outside = [
            self._mask(lambda t: set(t) <= set("]}"), eos_ids),
            self._mask(lambda t: set(t) <= set(",:]}")),
            self._mask(lambda t: t in ("{", "[", '"')),  # a value must start: the kind that closes next
        ]
        self.inside = [self._mask(lambda t: t[:1] == '"' and set(t[1:]) <= set(",:]}"))]

    def _mask(self, keep: Callable[[str], bool], extra: Sequence[int] = ()) -> torch.Tensor:
        bits = torch.zeros(xgr.get_bitmask_shape(1, self.vocab_size)[1] * 32, dtype=torch.bool)
        ids = [i for i, t in enumerate(self.texts) if t and keep(t)] + list(extra)
        bits[[i for i in ids if i < self.vocab_size]] = True
        words = (bits.view(-1, 32).long() << torch.arange(32)).sum(1)  # token j is bit j % 32 of word j // 32
        return torch.where(words >= 2**31, words - 2**32, words).to(torch.int32)

    def narrow(self, row_mask: torch.Tensor, in_string: bool) -> None:
        """Narrow one row's bitmask in place to the first preferred set the grammar allows any of."""
        for preferred in self.inside if in_string else self.outside:
            if (narrowed := row_mask & preferred).any():
                row_mask.copy_(narrowed)
                return


def closing_reserve(max_new_tokens: int) -> int:
    """How many tokens before its limit a constrained row starts preferring closing tokens."""
    return max(16, max_new_tokens // 4)


class GrammarProcessor(LogitsProcessor):
    """Masks each constrained row of a batch to the tokens its grammar allows; other rows pass untouched.

    `rows` holds, per batch row, the request object (its `grammar` may be None) whose `ids` the batcher's
    stopping criteria extends as tokens are generated; the matcher catches up on those ids each step.
    Near a row's token limit its mask narrows further to closing tokens (`Closers`).
    """

    def __init__(self, rows: list[Any], closers: Closers):
        self.rows, self.closers = rows, closers
        self.matchers = [xgr.GrammarMatcher(r.grammar) if r.grammar is not None else None for r in rows]
        self.fed = [0] * len(rows)
        self.in_string = [False] * len(rows)
        self.escaped = [False] * len(rows)
        self.bitmask = xgr.allocate_token_bitmask(len(rows), closers.vocab_size)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        active = []
        for i, (row, matcher) in enumerate(zip(self.rows, self.matchers)):
            if matcher is None or row.done:
                continue
            for token in row.ids[self.fed[i] :]:
                matcher.accept_token(token)
                self._track_strings(i, self.closers.texts[token])
            self.fed[i] = len(row.ids)
            matcher.fill_next_token_bitmask(self.bitmask, i)
            if row.max_new_tokens - len(row.ids) <= closing_reserve(row.max_new_tokens):
                self.closers.narrow(self.bitmask[i], self.in_string[i])
            active.append(i)
        if active:
            mask = self.bitmask.to(scores.device)
            xgr.apply_token_bitmask_inplace(scores, mask, vocab_size=self.closers.vocab_size, indices=active)
        return scores

    def _track_strings(self, i: int, text: str) -> None:
        for ch in text:
            if self.escaped[i]:
                self.escaped[i] = False
            elif ch == "\\" and self.in_string[i]:
                self.escaped[i] = True
            elif ch == '"':
                self.in_string[i] = not self.in_string[i]


_GRAMMAR_OPTIONS = ("max_string_length", "max_items", "max_properties")


def structured_runnable(
    llm: Runnable, schema: Any, *, include_raw: bool, method: str | None = None, **grammar_kwargs: Any
) -> Runnable:
    """`llm` bound to decode under `schema`'s grammar, piped into a parser, per LangChain's contract."""
    if unknown := sorted(set(grammar_kwargs) - set(_GRAMMAR_OPTIONS)):
        raise ConfigError(
            f"with_structured_output does not take {unknown}",
            hint=f"use include_raw, method, strict, max_new_tokens, {', '.join(_GRAMMAR_OPTIONS)}",
        )
    json_schema, pydantic_cls = resolve_schema(schema)
    bounded = bound_schema(json_schema, **grammar_kwargs)
    # Traced as LangChain traces every model's structured output: the caller's schema, converted by LangChain.
    traced = {"schema": schema, "kwargs": {"method": method or "json_schema"}}
    bound = llm.bind(json_schema=json.dumps(bounded), ls_structured_output_format=traced)

    def parse(message: AIMessage) -> Any:
        try:
            data = json.loads(message.text)
            if pydantic_cls is None:
                return data
            if issubclass(pydantic_cls, BaseModelV1):
                return pydantic_cls.parse_obj(data)
            return pydantic_cls.model_validate(data)
        except ValueError as err:  # json and pydantic (v2 and v1) errors are all ValueErrors
            raise OutputParserException(f"output does not match the schema: {err}", llm_output=message.text) from err

    parser = RunnableLambda(parse)
    if not include_raw:
        return bound | parser
    parsed = RunnablePassthrough.assign(parsed=itemgetter("raw") | parser, parsing_error=lambda _: None)
    failed = RunnablePassthrough.assign(parsed=lambda _: None)
    return RunnableMap(raw=bound) | parsed.with_fallbacks([failed], exception_key="parsing_error")
