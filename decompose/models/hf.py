"""`hf:PATH`: a local Transformers causal LM (a folder or a `.gguf` file) as a LangChain chat model.

Every call goes through the model's `Batcher`, so concurrent calls share one padded `generate` call.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import os
import queue
import sys
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LangSmithParams
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, UsageMetadata, convert_to_messages
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable
from pydantic import ConfigDict, Field, PrivateAttr, SecretStr, model_validator

from decompose.errors import ConfigError, ModelError
from decompose.models.adapter import adapter_info, merge_adapter
from decompose.models.decoding import HELP, OPTIONS, DecodingFields, check_grammar, fold_options, refuse_unknown
from decompose.models.structured import structured_runnable

if TYPE_CHECKING:  # the batcher imports torch, xgrammar and Transformers: not before a model generates
    from decompose.models.batcher import Batcher, Generated, Request

_ROLES = {"human": "user", "ai": "assistant", "system": "system", "tool": "tool"}
_HINT = "pass a folder holding config.json and the weights (what save_pretrained writes), or a .gguf file"
# What a single call may override (`model.invoke(msgs, max_tokens=64)` or `model.bind(...)`); `stop` comes apart.
_CALL_OPTIONS = frozenset({"max_tokens", "max_new_tokens", "timeout", "json_schema", *OPTIONS})
_CALL_HINT = f"per call, use max_tokens (or max_new_tokens), stop, timeout, or a decoding option: {HELP}"
_STRUCTURED_METHODS = (None, "json_schema", "function_calling", "json_mode")


class ChatTransformers(DecodingFields, BaseChatModel):
    """A local causal LM. Greedy by default; sampling and beam search are set by the decoding options
    (`decoding.Decoding`: `temperature`, `top_p`, `num_beams`, ...), as fields or `decoding=Decoding(...)`.

    `max_tokens` (LangChain's standard name) and `max_new_tokens` are the same limit. Per call, `max_tokens`,
    `stop`, `timeout` and every decoding option may be overridden (`model.invoke(msgs, num_beams=4)` or
    `model.bind(...)`). An option the model does not know is refused (`ConfigError`), never ignored.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)
    in_process: ClassVar[bool] = True  # no server: `RetryPolicy.max_total` (an HTTP deadline) does not apply
    grammar_decoding: ClassVar[bool] = True  # structured output decodes under a grammar: see `plan_grammar`

    model_path: str
    max_new_tokens: int = 256
    stop: list[str] | None = None
    timeout: float | None = None  # seconds a call may take, its wait in the batch queue included; None: no limit
    streaming: bool = False  # LangChain's flag: `invoke` then generates through `_stream` (callbacks see tokens)
    # LangChain's standard parameters that a model in this process has no use for: no server to authenticate
    # with, no transport to retry (the Orchestrator's RetryPolicy retries calls). Accepted, so code written for
    # any chat model constructs this one too; they change nothing.
    api_key: SecretStr | None = Field(default=None, exclude=True, repr=False)
    max_retries: int | None = None
    max_batch_size: int = 8
    batch_wait_ms: float = 10.0
    # The adapter merged into the weights, and the decomposer prompt it was trained on (the Decomposer then uses
    # that prompt: see `decompose.chains.decompose.trained_prompt`).
    adapter: str | None = None
    plan_prompt: str | None = None
    planner: Any = Field(default=None, exclude=True, repr=False)  # with an adapter: the model the Decomposer asks
    hf_model: Any = Field(exclude=True, repr=False)
    tokenizer: Any = Field(exclude=True, repr=False)
    _batcher: Batcher | None = PrivateAttr(default=None)
    _batcher_lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    @model_validator(mode="before")
    @classmethod
    def _standard_names(cls, values: Any) -> Any:
        """`max_tokens` sets `max_new_tokens`; an unknown option is an error, not silently dropped."""
        if not isinstance(values, dict):
            return values
        values = fold_options(values)  # `decoding=` spread into the fields; values and combinations checked
        if "max_tokens" in values:
            values["max_new_tokens"] = _one_limit(values.pop("max_tokens"), values.get("max_new_tokens"))
            if values["max_new_tokens"] is None:
                del values["max_new_tokens"]
        refuse_unknown(values, _known_options(), "ChatTransformers", hint=f"use {_options_help()}")
        return values

    def _started_batcher(self) -> Batcher:
        """The model's one batcher, made on the first call: building a model, or refusing a call's options,
        does not import torch, xgrammar and Transformers."""
        with self._batcher_lock:  # concurrent first calls must share one batcher, as all calls do
            if self._batcher is None:
                from decompose.models.batcher import Batcher

                self._batcher = Batcher(
                    self.hf_model, self.tokenizer, max_batch_size=self.max_batch_size, wait_ms=self.batch_wait_ms
                )
            return self._batcher

    @property
    def _llm_type(self) -> str:
        return "transformers"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model_path": self.model_path, "adapter": self.adapter, **self.decoding.options()}

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        """What LangSmith (and LangChain's standard tests) record of a call: the limit, stops and model used."""
        params = super()._get_ls_params(stop=stop, **kwargs)
        params["ls_provider"] = "transformers"
        model = kwargs.get("model")
        params["ls_model_name"] = model if isinstance(model, str) else Path(self.model_path).name
        params["ls_max_tokens"] = (
            _one_limit(kwargs.get("max_tokens"), kwargs.get("max_new_tokens")) or self.max_new_tokens
        )
        if stops := stop or self.stop:
            params["ls_stop"] = stops
        return params

    @property
    def batch_sizes(self) -> Counter[int]:
        """How many `generate` calls ran at each batch size so far (a copy)."""
        return Counter(self._started_batcher().batch_sizes)

    # --- tokens -------------------------------------------------------------------------------------------
    def get_token_ids(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False)

    def get_num_tokens(self, text: str) -> int:
        return len(self.get_token_ids(text))

    def get_num_tokens_from_messages(self, messages: list[BaseMessage], tools: Sequence | None = None) -> int:
        """Tokens of the prompt as the model sees it: chat template and generation prompt included."""
        return len(self._prompt_ids(convert_to_messages(messages)))

    def _prompt_ids(self, messages: list[BaseMessage]) -> list[int]:
        return chat_prompt_ids(self.tokenizer, messages)

    # --- generation ---------------------------------------------------------------------------------------
    def _request(self, messages: list[BaseMessage], stop: list[str] | None, kwargs: dict[str, Any]) -> Request:
        refuse_unknown(kwargs, _CALL_OPTIONS, "a ChatTransformers call", hint=_CALL_HINT)
        decoding = self.decoding.with_options(kwargs).resolved()  # a call's options beat the model's
        if kwargs.get("json_schema"):
            check_grammar(decoding)
        prompt_ids = self._prompt_ids(messages)
        max_new_tokens = _one_limit(kwargs.get("max_tokens"), kwargs.get("max_new_tokens")) or self.max_new_tokens
        self._check_context(len(prompt_ids), max_new_tokens)
        from decompose.models.batcher import Request  # after the checks: a refused call imports no torch

        return Request(
            prompt_ids=prompt_ids,
            max_new_tokens=max_new_tokens,
            stop=[s for s in (stop or self.stop or []) if s],
            decoding=decoding,
            json_schema=kwargs.get("json_schema"),
        )

    def _check_context(self, prompt_tokens: int, max_new_tokens: int) -> None:
        """Past its context a model writes noise (transformers only warns): a clear error instead, before the
        prompt joins a batch it would stall."""
        context = getattr(self.hf_model.config, "max_position_embeddings", None)
        if isinstance(context, int) and prompt_tokens + max_new_tokens > context:
            raise ModelError(
                f"the prompt is {prompt_tokens:,} tokens and {max_new_tokens:,} more may be written, but "
                f"{Path(self.model_path).name} reads at most {context:,}",
                hint="shorten the question or its documents (fewer or shorter passages, shorter tool results), "
                "lower max_new_tokens, or use a model with a longer context",
            )

    def _result(self, result: Generated) -> ChatResult:
        message = AIMessage(content=result.text, usage_metadata=_usage(result), response_metadata=_meta(self, result))
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _timeout(self, kwargs: dict[str, Any]) -> float | None:
        return kwargs.get("timeout", self.timeout)

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        request, timeout = self._request(messages, stop, kwargs), self._timeout(kwargs)
        try:
            return self._result(self._started_batcher().submit(request).result(timeout=timeout))
        except TimeoutError:
            raise _timed_out(timeout) from None
        finally:
            request.cancelled = True  # no-op once finished; frees the batch row after a timeout

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        request, timeout = self._request(messages, stop, kwargs), self._timeout(kwargs)
        try:
            waiter = asyncio.wrap_future(self._started_batcher().submit(request))
            return self._result(await (waiter if timeout is None else asyncio.wait_for(waiter, timeout)))
        except TimeoutError:
            raise _timed_out(timeout) from None
        finally:
            request.cancelled = True  # no-op once finished; frees the batch row if the caller gave up

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        pieces: queue.Queue[str | None] = queue.Queue()
        request, timeout = self._request(messages, stop, kwargs), self._timeout(kwargs)
        deadline = None if timeout is None else time.monotonic() + timeout
        request.on_text = pieces.put
        future = self._started_batcher().submit(request)
        future.add_done_callback(lambda _: pieces.put(None))

        def next_piece() -> str | None:
            try:
                return pieces.get(timeout=None if deadline is None else max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise _timed_out(timeout) from None

        try:
            while (piece := next_piece()) is not None:
                chunk = ChatGenerationChunk(message=AIMessageChunk(content=piece))
                if run_manager:
                    run_manager.on_llm_new_token(piece, chunk=chunk)
                yield chunk
            yield self._last_chunk(future.result())
        finally:
            request.cancelled = True

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        loop = asyncio.get_running_loop()
        pieces: asyncio.Queue[str | None] = asyncio.Queue()

        def put(piece: str | None) -> None:  # runs on the worker thread
            if not loop.is_closed():
                loop.call_soon_threadsafe(pieces.put_nowait, piece)

        request, timeout = self._request(messages, stop, kwargs), self._timeout(kwargs)
        deadline = None if timeout is None else time.monotonic() + timeout
        request.on_text = put
        future = self._started_batcher().submit(request)
        future.add_done_callback(lambda _: put(None))

        async def next_piece() -> str | None:
            try:
                return await asyncio.wait_for(pieces.get(), None if deadline is None else deadline - time.monotonic())
            except TimeoutError:
                raise _timed_out(timeout) from None

        try:
            while (piece := await next_piece()) is not None:
                chunk = ChatGenerationChunk(message=AIMessageChunk(content=piece))
                if run_manager:
                    await run_manager.on_llm_new_token(piece, chunk=chunk)
                yield chunk
            yield self._last_chunk(future.result())
        finally:
            request.cancelled = True

    def _last_chunk(self, result: Generated) -> ChatGenerationChunk:
        message = AIMessageChunk(
            content="", usage_metadata=_usage(result), response_metadata=_meta(self, result), chunk_position="last"
        )
        return ChatGenerationChunk(message=message)

    # --- structured output --------------------------------------------------------------------------------
    def with_structured_output(
        self,
        schema: dict | type | Any,
        *,
        include_raw: bool = False,
        method: str | None = None,
        strict: bool | None = None,
        max_new_tokens: int = 384,
        **kwargs: Any,
    ) -> Runnable:
        """Decode under `schema`'s JSON grammar, so the output always parses (unless `max_new_tokens` cuts it).

        `schema`: a pydantic class, v2 or v1 (parsed into it), a TypedDict, a JSON schema or OpenAI function
        dict (parsed into a dict), or a `BaseTool` (its arguments, as a dict). Every `method` decodes the same
        way, and `strict` changes nothing: a grammar holds the output to the schema more strictly than tool
        calling, JSON mode or a server's strict mode. `kwargs`: `max_string_length`, `max_items` and
        `max_properties` bound what the schema leaves open (see `structured.bound_schema`); decoding options
        (`temperature`, ...) apply to these calls; beam search cannot run under a grammar, so the model's
        `num_beams` default is not used here, and asking for `num_beams > 1` is a `ConfigError`.
        """
        if method not in _STRUCTURED_METHODS:
            raise ConfigError(
                f"unknown structured output method {method!r}",
                hint=f"use one of {list(_STRUCTURED_METHODS)}: all decode under the schema's grammar",
            )
        decoding = {k: kwargs.pop(k) for k in OPTIONS if k in kwargs}
        check_grammar(self.decoding.with_options({"num_beams": None, **decoding}).resolved())
        llm = self.bind(max_new_tokens=max_new_tokens, **{"num_beams": None, **decoding})
        return structured_runnable(llm, schema, include_raw=include_raw, method=method, **kwargs)


def chat_prompt_ids(tokenizer: Any, messages: Sequence[BaseMessage]) -> list[int]:
    """Token ids of `messages` as the model sees them, up to where the assistant speaks: for generation, and
    for training (`decompose.train`), so a fine-tuned model is taught on exactly the prompts it is given."""
    chat = [{"role": _ROLES.get(m.type, m.type), "content": m.text} for m in messages]
    if tokenizer.chat_template:
        text = tokenizer.apply_chat_template(chat, add_generation_prompt=True, tokenize=False)
    else:  # a base model: a plain transcript that ends where the assistant speaks
        text = "".join(f"{c['role']}: {c['content']}\n" for c in chat) + "assistant:"
    return tokenizer.encode(text, add_special_tokens=False)


def _one_limit(max_tokens: int | None, max_new_tokens: int | None) -> int | None:
    """The token limit given under either name (None: neither); both, and different, is an error."""
    if max_tokens is not None and max_new_tokens is not None and max_tokens != max_new_tokens:
        raise ConfigError(
            f"max_tokens={max_tokens} and max_new_tokens={max_new_tokens} disagree",
            hint="they name the same limit: pass one of them",
        )
    return max_tokens if max_tokens is not None else max_new_tokens


def _known_options() -> set[str]:
    """`ChatTransformers` fields and LangChain's aliases of them, `decoding=` (the options as one value)."""
    return set(ChatTransformers.model_fields) | {"max_tokens", "callback_manager", "decoding"}


def _options_help() -> str:
    internal = {
        "model_path",
        "hf_model",
        "tokenizer",
        "adapter",
        "plan_prompt",
        "planner",
        "api_key",
        "max_retries",
        "name",
        "cache",
        "verbose",
        "callbacks",
        "tags",
        "metadata",
        "custom_get_token_ids",
        "rate_limiter",
        "disable_streaming",
        "output_version",
        "profile",
    }
    return ", ".join(
        ["max_tokens (or max_new_tokens)"] + sorted(set(ChatTransformers.model_fields) - internal - {"max_new_tokens"})
    )


def _timed_out(timeout: float | None) -> TimeoutError:
    return TimeoutError(
        f"local generation took longer than its timeout of {timeout:g} s (the wait in the batch "
        "queue included); raise timeout=, or pass timeout=None to wait as long as it takes"
    )


def _usage(result: Generated) -> UsageMetadata:
    return UsageMetadata(
        input_tokens=result.input_tokens,
        output_tokens=result.output_tokens,
        total_tokens=result.input_tokens + result.output_tokens,
    )


def _meta(model: ChatTransformers, result: Generated) -> dict[str, Any]:
    return {"model_name": Path(model.model_path).name, "finish_reason": result.finish_reason}


def load_hf(path: str, *, device: str | None = None, adapter: str | None = None, **kwargs: Any) -> ChatTransformers:
    """Load `path` (a model folder, or a `.gguf` file) as a `ChatTransformers`.

    `device`: "cuda", "cpu", ... (default: CUDA in bf16 when a GPU is present, else CPU in fp32).
    `adapter`: a LoRA adapter folder (what `decompose train` writes), merged into the weights.
    Other kwargs set `ChatTransformers` fields: max_tokens (or max_new_tokens), the decoding options (or
    `decoding=Decoding(...)`), stop, timeout, max_batch_size, batch_wait_ms.
    """
    internal = {"hf_model", "tokenizer", "model_path", "adapter", "plan_prompt", "planner"}
    refuse_unknown(kwargs, _known_options() - internal, f"hf:{path}", hint=f"use {_options_help()}, device or adapter")
    fold_options(kwargs)  # a bad decoding option fails before the slow load
    folder, gguf = _locate(path)
    adapter = str(adapter) if adapter is not None else None  # a Path too
    info = adapter_info(adapter) if adapter is not None else {}  # a wrong folder fails before the slow load

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    hf_logging.disable_progress_bar()
    try:
        with progress_bars_on_terminals_only():
            tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=gguf, local_files_only=True)
            model = AutoModelForCausalLM.from_pretrained(
                folder, gguf_file=gguf, dtype=dtype, device_map=device, local_files_only=True
            )
    except (OSError, ValueError, KeyError, RuntimeError) as err:
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError(f"hf:{path} is not a loadable causal LM ({first_line})", hint=_HINT) from None
    model.eval()
    planner = None
    if adapter is not None:  # the adapter writes plans only: answers and synthesis stay the base model's
        planner = ChatTransformers(
            model_path=str(path),
            hf_model=merge_adapter(copy.deepcopy(model), adapter).eval(),
            tokenizer=tokenizer,
            adapter=adapter,
            plan_prompt=info.get("prompt"),
            **kwargs,
        )
    return ChatTransformers(
        model_path=str(path), hf_model=model, tokenizer=tokenizer, adapter=adapter, planner=planner, **kwargs
    )


def _locate(path: str) -> tuple[str, str | None]:
    """(folder, gguf file name or None) for `path`; ConfigError naming the path when nothing is there."""
    p = Path(path).expanduser()
    if p.is_file() and p.suffix == ".gguf":
        return str(p.parent), p.name
    if p.is_dir() and (p / "config.json").is_file():
        return str(p), None
    ggufs = sorted(p.glob("*.gguf")) if p.is_dir() else []
    if len(ggufs) == 1:
        return str(p), ggufs[0].name
    what = "does not exist" if not p.exists() else "holds no config.json and no single .gguf file"
    raise ConfigError(f"hf:{path}: {what}", hint=_HINT)


@contextlib.contextmanager
def progress_bars_on_terminals_only() -> Iterator[None]:
    """Hide the bars a GGUF load draws with plain tqdm (not transformers' switchable ones) when stderr is a file
    or a pipe: there they are hundreds of lines of noise in a log. Failures still raise."""
    if sys.stderr.isatty():
        yield
        return
    with open(os.devnull, "w") as sink, contextlib.redirect_stderr(sink):
        yield
