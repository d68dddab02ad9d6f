"""Request batching for local models: requests that arrive together share one left-padded `generate` call.

One worker thread per model owns the model: it waits for a request, collects whatever else arrives within
`wait_ms` (up to `max_batch_size`), and runs them as one batch, so neither the event loop nor any caller's
thread blocks on the model. Callers get a `concurrent.futures.Future`, which works from sync code, from any
event loop (`asyncio.wrap_future`) and from many threads at once. Each row keeps its own token limit and stop
strings: a stopping criterion finishes rows one by one, and `generate` ends when all are finished.

One `generate` call has one decoding config, so a batch is split into groups that decode alike (`Request.key`).
Beam search rows are not single sequences while they run (each is several beams), so a beam group also shares
its limit and stop strings, and its rows are read once `generate` returns; their stream arrives all at once.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import torch
import xgrammar as xgr
from transformers import StoppingCriteria

from decompose.errors import ConfigError, ModelError
from decompose.models.decoding import Decoding, check_grammar
from decompose.models.grammar import Closers, GrammarProcessor

_SCHEMA_HINT = "use a JSON schema (or pydantic model) made of objects, arrays, strings, numbers, booleans, enums"
_IDLE_EXIT_S = 30.0  # the worker exits when idle, so a dropped model is not kept alive by its thread


@dataclass
class Request:
    """One prompt and how to decode it; the worker fills in `ids`, `done` and `finish_reason`."""

    prompt_ids: list[int]
    max_new_tokens: int
    stop: list[str] = field(default_factory=list)
    decoding: Decoding = field(default_factory=lambda: Decoding().resolved())  # resolved: unused settings dropped
    json_schema: str | None = None  # decode under this JSON schema's grammar
    on_text: Callable[[str], None] | None = None  # streaming: called with each new piece of text
    cancelled: bool = False  # set by the caller; the row then stops at the next step
    grammar: Any = None
    ids: list[int] = field(default_factory=list)  # generated ids, eos excluded
    n_generated: int = 0  # eos included: what the model actually produced
    done: bool = False
    finish_reason: str = "length"
    text: str = ""
    _sent: int = 0

    @property
    def key(self) -> tuple:
        """Requests with equal keys can share a `generate` call (one decoding config per call)."""
        if self.decoding.seed is not None:
            return (id(self),)  # alone: the same seed gives the same text whatever else is queued with it
        if self.decoding.beams > 1:
            return (self.decoding, self.max_new_tokens, tuple(self.stop))
        return (self.decoding,)


@dataclass
class Generated:
    text: str
    input_tokens: int
    output_tokens: int
    finish_reason: str


class Batcher:
    def __init__(self, model: Any, tokenizer: Any, *, max_batch_size: int = 8, wait_ms: float = 10.0):
        self.model, self.tokenizer = model, tokenizer
        self.max_batch_size, self.wait_s = max_batch_size, wait_ms / 1000
        gen_eos = model.generation_config.eos_token_id
        eos = gen_eos if isinstance(gen_eos, list) else [gen_eos, tokenizer.eos_token_id]
        self.eos_ids = sorted({i for i in eos if i is not None})
        pad = tokenizer.pad_token_id
        self.pad_id = pad if pad is not None else self.eos_ids[0]
        self.batch_sizes: Counter[int] = Counter()  # batch size -> number of generate calls
        self._queue: queue.Queue[tuple[Request, Future]] = queue.Queue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._compiler: xgr.GrammarCompiler | None = None  # built on the first constrained request
        self._closers: Closers | None = None

    def submit(self, request: Request) -> Future:
        future: Future = Future()
        with self._lock:
            self._queue.put((request, future))
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, name="decompose-batcher", daemon=True)
                self._thread.start()
        return future

    def _work(self) -> None:
        while True:
            try:
                batch = [self._queue.get(timeout=_IDLE_EXIT_S)]
            except queue.Empty:
                with self._lock:
                    if self._queue.empty():
                        self._thread = None
                        return
                continue
            deadline = time.monotonic() + self.wait_s
            while len(batch) < self.max_batch_size and (left := deadline - time.monotonic()) > 0:
                try:
                    batch.append(self._queue.get(timeout=left))
                except queue.Empty:
                    break
            batch = [(r, f) for r, f in batch if f.set_running_or_notify_cancel()]
            for key in dict.fromkeys(r.key for r, _ in batch):
                self._run([(r, f) for r, f in batch if r.key == key])

    def _run(self, group: list[tuple[Request, Future]]) -> None:
        ready = []
        for request, future in group:
            try:  # compiled here, off the event loop; a bad schema fails its own caller only
                request.grammar = self._compile(request.json_schema) if request.json_schema else None
                ready.append((request, future))
            except Exception as err:
                future.set_exception(ConfigError(f"cannot decode under this JSON schema: {err}", hint=_SCHEMA_HINT))
        if not ready:
            return
        try:
            self._generate([r for r, _ in ready])
        except Exception as err:  # one failed batch fails its callers, never the worker
            for _, future in ready:
                future.set_exception(ModelError(f"local generation failed: {err}"))
            return
        for request, future in ready:
            future.set_result(
                Generated(request.text, len(request.prompt_ids), request.n_generated, request.finish_reason)
            )

    @torch.inference_mode()
    def _generate(self, requests: list[Request]) -> None:
        self.batch_sizes[len(requests)] += 1
        width = max(len(r.prompt_ids) for r in requests)
        input_ids = torch.full((len(requests), width), self.pad_id, dtype=torch.long)
        attention_mask = torch.zeros_like(input_ids)
        for i, r in enumerate(requests):  # left padding: every row's next token lands in the same column
            input_ids[i, width - len(r.prompt_ids) :] = torch.tensor(r.prompt_ids)
            attention_mask[i, width - len(r.prompt_ids) :] = 1
        decoding, first = requests[0].decoding, requests[0]
        config = decoding.generation_config(
            max_new_tokens=max(r.max_new_tokens for r in requests), pad_token_id=self.pad_id, eos_token_id=self.eos_ids
        )
        if decoding.seed is not None:
            torch.manual_seed(decoding.seed)  # only this thread generates, so the global RNG is ours
        kwargs: dict[str, Any] = {"stopping_criteria": [_RowStops(requests, self)]}
        if decoding.beams > 1:  # rows are read when it returns; stops end beams, cancelling all ends the call
            config.stop_strings = first.stop or None
            kwargs = {"stopping_criteria": [_AllCancelled(requests)], "tokenizer": self.tokenizer}
        if any(r.grammar is not None for r in requests):
            check_grammar(decoding)
            if self._closers is None:
                self._closers = Closers(self.tokenizer, self.model.config.vocab_size, self.eos_ids)
            kwargs["logits_processor"] = [GrammarProcessor(requests, self._closers)]
        device = self.model.device
        out = self.model.generate(
            input_ids=input_ids.to(device), attention_mask=attention_mask.to(device), generation_config=config, **kwargs
        )
        if decoding.beams > 1:
            for r, row in zip(requests, out[:, width:].tolist()):
                for token in row:  # the winning beam, fed as if generated one token at a time
                    if r.done:
                        break
                    self.advance(r, token)
        for r in requests:
            if not r.done:  # the model's own length limit ended it
                self._finish(r, "length")

    def _compile(self, json_schema: str) -> Any:
        if self._compiler is None:
            info = xgr.TokenizerInfo.from_huggingface(
                self.tokenizer, vocab_size=self.model.config.vocab_size, stop_token_ids=self.eos_ids
            )
            self._compiler = xgr.GrammarCompiler(info)  # caches compiled grammars per schema
        return self._compiler.compile_json_schema(json_schema, any_whitespace=False, separators=(",", ":"))

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)

    def advance(self, r: Request, token: int) -> None:
        """Record one generated token for `r`; finish it at eos, a stop string, its limit, or cancellation."""
        r.n_generated += 1
        if token in self.eos_ids:
            return self._finish(r, "stop")
        r.ids.append(token)
        # A new stop string must end in this token, and L characters span at most 4L byte-level tokens.
        if r.stop and _first_stop(self.decode(r.ids[-4 * max(map(len, r.stop)) :]), r.stop) is not None:
            text = self.decode(r.ids)
            return self._finish(r, "stop", text[: _first_stop(text, r.stop)])
        if len(r.ids) >= r.max_new_tokens or r.cancelled:
            return self._finish(r, "length")
        if r.on_text:
            text = self.decode(r.ids)
            # Hold back half of a multi-byte character, and whatever may be the start of a stop string.
            end = len(text.rstrip("\ufffd"))
            safe = min([end] + [end - _overlap(text[:end], s) for s in r.stop])
            if safe > r._sent:
                r.on_text(text[r._sent : safe])
                r._sent = safe

    def _finish(self, r: Request, reason: str, text: str | None = None) -> None:
        r.done, r.finish_reason = True, reason
        r.text = self.decode(r.ids) if text is None else text
        if r.on_text and len(r.text) > r._sent:
            r.on_text(r.text[r._sent :])
            r._sent = len(r.text)


class _RowStops(StoppingCriteria):
    """Feeds each new token to its request and reports which rows are finished."""

    def __init__(self, requests: list[Request], batcher: Batcher):
        self.requests, self.batcher = requests, batcher

    def __call__(self, input_ids: torch.LongTensor, scores: Any, **kwargs: Any) -> torch.BoolTensor:
        for r, token in zip(self.requests, input_ids[:, -1].tolist()):
            if not r.done:
                self.batcher.advance(r, token)
        # transformers annotates BoolTensor, a legacy type that torch's functions are not typed to return
        return torch.tensor([r.done for r in self.requests], device=input_ids.device)  # type: ignore[return-value]


class _AllCancelled(StoppingCriteria):
    """Ends a beam search once every caller has given up (a beam row cannot be stopped on its own)."""

    def __init__(self, requests: list[Request]):
        self.requests = requests

    def __call__(self, input_ids: torch.LongTensor, scores: Any, **kwargs: Any) -> torch.BoolTensor:
        stop = all(r.cancelled for r in self.requests)
        # transformers annotates BoolTensor, a legacy type that torch's functions are not typed to return
        return torch.full((input_ids.shape[0],), stop, dtype=torch.bool, device=input_ids.device)  # type: ignore[return-value]


def _first_stop(text: str, stops: list[str]) -> int | None:
    hits = [i for s in stops if s and (i := text.find(s)) >= 0]
    return min(hits) if hits else None


def _overlap(text: str, stop: str) -> int:
    """Length of the longest proper prefix of `stop` that `text` ends with."""
    return next((n for n in range(min(len(stop) - 1, len(text)), 0, -1) if text.endswith(stop[:n])), 0)
