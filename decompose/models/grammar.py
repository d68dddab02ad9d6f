"""Constrained decoding for local models: JSON-schema grammars (xgrammar) applied token by token.

A grammar makes every token the model emits keep the output valid JSON for the schema, so even a 135M model
yields a parseable plan. The schema it is compiled from is bounded so the output can finish within the token cap
(`decompose.models.structured.bound_schema`); bounds alone would have to be tiny to fit a token budget in the
worst case (a small model fills every bound), so near the budget's end the decoder also prefers tokens that
close the JSON (see `Closers`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import xgrammar as xgr
from transformers import LogitsProcessor


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
