"""`hf:PATH`: a local Transformers causal LM (a folder or a `.gguf` file) as a LangChain chat model.

Every call goes through the model's `Batcher`, so concurrent calls share one padded `generate` call.
"""

from __future__ import annotations

import asyncio
import queue
from collections import Counter
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, convert_to_messages
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable
from pydantic import ConfigDict, Field, PrivateAttr

from decompose.errors import ConfigError
from decompose.models.batcher import Batcher, Request, Result
from decompose.models.grammar import structured_runnable

_ROLES = {"human": "user", "ai": "assistant", "system": "system", "tool": "tool"}
_HINT = "pass a folder holding config.json and the weights (what save_pretrained writes), or a .gguf file"


class ChatTransformers(BaseChatModel):
    """A local causal LM. Greedy by default; `temperature > 0` samples (with `top_p`, and `seed` if set).

    Per call, `max_new_tokens`, `temperature`, `top_p`, `seed` and `stop` may be overridden
    (`model.invoke(msgs, max_new_tokens=64)` or `model.bind(...)`).
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)
    in_process: ClassVar[bool] = True  # no server: `RetryPolicy.max_total` (an HTTP deadline) does not apply

    model_path: str
    max_new_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    stop: list[str] | None = None
    max_batch_size: int = 8
    batch_wait_ms: float = 10.0
    hf_model: Any = Field(exclude=True, repr=False)
    tokenizer: Any = Field(exclude=True, repr=False)
    _batcher: Batcher = PrivateAttr()

    def model_post_init(self, context: Any) -> None:
        self._batcher = Batcher(
            self.hf_model, self.tokenizer, max_batch_size=self.max_batch_size, wait_ms=self.batch_wait_ms
        )

    @property
    def _llm_type(self) -> str:
        return "transformers"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model_path": self.model_path, "temperature": self.temperature, "top_p": self.top_p}

    @property
    def batch_sizes(self) -> Counter[int]:
        """How many `generate` calls ran at each batch size so far (a copy)."""
        return Counter(self._batcher.batch_sizes)

    # --- tokens -------------------------------------------------------------------------------------------
    def get_token_ids(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False)

    def get_num_tokens(self, text: str) -> int:
        return len(self.get_token_ids(text))

    def get_num_tokens_from_messages(self, messages: list[BaseMessage], tools: Sequence | None = None) -> int:
        """Tokens of the prompt as the model sees it: chat template and generation prompt included."""
        return len(self._prompt_ids(convert_to_messages(messages)))

    def _prompt_ids(self, messages: list[BaseMessage]) -> list[int]:
        chat = [{"role": _ROLES.get(m.type, m.type), "content": m.text} for m in messages]
        if self.tokenizer.chat_template:
            text = self.tokenizer.apply_chat_template(chat, add_generation_prompt=True, tokenize=False)
        else:  # a base model: a plain transcript that ends where the assistant speaks
            text = "".join(f"{c['role']}: {c['content']}\n" for c in chat) + "assistant:"
        return self.tokenizer.encode(text, add_special_tokens=False)

    # --- generation ---------------------------------------------------------------------------------------
    def _request(self, messages: list[BaseMessage], stop: list[str] | None, kwargs: dict[str, Any]) -> Request:
        temperature = kwargs.get("temperature", self.temperature)
        return Request(
            prompt_ids=self._prompt_ids(messages),
            max_new_tokens=kwargs.get("max_new_tokens", self.max_new_tokens),
            stop=[s for s in (stop or self.stop or []) if s],
            temperature=temperature,
            top_p=kwargs.get("top_p", self.top_p) if temperature > 0 else 1.0,
            seed=kwargs.get("seed", self.seed) if temperature > 0 else None,
            json_schema=kwargs.get("json_schema"),
        )

    def _result(self, result: Result) -> ChatResult:
        message = AIMessage(content=result.text, usage_metadata=_usage(result), response_metadata=_meta(self, result))
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return self._result(self._batcher.submit(self._request(messages, stop, kwargs)).result())

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        request = self._request(messages, stop, kwargs)
        try:
            return self._result(await asyncio.wrap_future(self._batcher.submit(request)))
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
        request = self._request(messages, stop, kwargs)
        request.on_text = pieces.put
        future = self._batcher.submit(request)
        future.add_done_callback(lambda _: pieces.put(None))
        try:
            while (piece := pieces.get()) is not None:
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

        request = self._request(messages, stop, kwargs)
        request.on_text = put
        future = self._batcher.submit(request)
        future.add_done_callback(lambda _: put(None))
        try:
            while (piece := await pieces.get()) is not None:
                chunk = ChatGenerationChunk(message=AIMessageChunk(content=piece))
                if run_manager:
                    await run_manager.on_llm_new_token(piece, chunk=chunk)
                yield chunk
            yield self._last_chunk(future.result())
        finally:
            request.cancelled = True

    def _last_chunk(self, result: Result) -> ChatGenerationChunk:
        message = AIMessageChunk(content="", usage_metadata=_usage(result), response_metadata=_meta(self, result))
        return ChatGenerationChunk(message=message)

    # --- structured output --------------------------------------------------------------------------------
    def with_structured_output(
        self,
        schema: dict | type | Any,
        *,
        include_raw: bool = False,
        method: str | None = None,
        max_new_tokens: int = 384,
        **grammar_kwargs: Any,
    ) -> Runnable:
        """Decode under `schema`'s JSON grammar, so the output always parses (unless `max_new_tokens` cuts it).

        `schema`: a pydantic class (parsed into it), a JSON schema or OpenAI function dict (parsed into a dict),
        or a `BaseTool` (its arguments, as a dict). Every `method` decodes the same way: a grammar is stronger
        than tool calling or JSON mode. `grammar_kwargs` (`max_string_length`, `max_items`, `max_properties`)
        bound what the schema leaves open; see `grammar.bound_schema`.
        """
        llm = self.bind(max_new_tokens=max_new_tokens)
        return structured_runnable(llm, schema, include_raw=include_raw, **grammar_kwargs)


def _usage(result: Result) -> dict[str, int]:
    return {
        "input_tokens": result.input_tokens,
        "output_tokens": result.output_tokens,
        "total_tokens": result.input_tokens + result.output_tokens,
    }


def _meta(model: ChatTransformers, result: Result) -> dict[str, Any]:
    return {"model_name": Path(model.model_path).name, "finish_reason": result.finish_reason}


def load_hf(path: str, *, device: str | None = None, **kwargs: Any) -> ChatTransformers:
    """Load `path` (a model folder, or a `.gguf` file) as a `ChatTransformers`.

    `device`: "cuda", "cpu", ... (default: CUDA in bf16 when a GPU is present, else CPU in fp32).
    Other kwargs set `ChatTransformers` fields: max_new_tokens, temperature, top_p, seed, stop,
    max_batch_size, batch_wait_ms.
    """
    unknown = set(kwargs) - set(ChatTransformers.model_fields) - {"hf_model", "tokenizer", "model_path"}
    if unknown:
        fields = sorted(set(ChatTransformers.model_fields) - {"hf_model", "tokenizer", "model_path"})
        raise ConfigError(f"unknown option(s) for hf:{path}: {sorted(unknown)}", hint=f"use {fields} or device")
    folder, gguf = _locate(path)

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    hf_logging.disable_progress_bar()
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=gguf, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(
            folder, gguf_file=gguf, dtype=dtype, device_map=device, local_files_only=True
        )
    except (OSError, ValueError, KeyError, RuntimeError) as err:
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError(f"hf:{path} is not a loadable causal LM ({first_line})", hint=_HINT) from None
    model.eval()
    return ChatTransformers(model_path=str(path), hf_model=model, tokenizer=tokenizer, **kwargs)


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
