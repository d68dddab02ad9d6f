"""`ScriptedChatModel`: a real LangChain chat model that answers by rule — for tests (ours and yours).

    model = ScriptedChatModel(rules=[
        (r"split a question", '{"steps": [{"id": 1, "question": "Who directed Titanic?"}]}'),
        (r"Who directed", "James Cameron"),
    ], default="I don't know")

A rule is (match, reply). `match` is a regex searched (case-insensitively) in the last message — the one being
answered — or a function `messages -> bool`; `asks_for_plan` matches the decompose prompt. `reply` is a string, a
function `messages -> str`, an exception (raised), or a list of these used one after another (the last one
repeats). The first matching rule answers.

It behaves as a LangChain chat model should (it passes LangChain's standard test suites): `stream` yields
chunks, word by word, the last one carrying the usage; every reply names `model_name` in its metadata, so usage
callbacks such as `get_usage_metadata_callback` count it.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

from langchain_core.language_models import BaseChatModel, LangSmithParams
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, UsageMetadata
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from pydantic import ConfigDict, Field, PrivateAttr


class ScriptedChatModel(BaseChatModel):
    model_config = ConfigDict(arbitrary_types_allowed=True)

    rules: list[tuple[Any, Any]] = Field(default_factory=list)
    default: Any = None
    latency: float = 0.0  # seconds each call sleeps: simulates a remote model
    model_name: str = "scripted"

    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)
    _used: dict[int, int] = PrivateAttr(default_factory=dict)
    _calls: list[dict[str, Any]] = PrivateAttr(default_factory=list)

    @property
    def _llm_type(self) -> str:
        return "scripted"

    @property
    def calls(self) -> list[dict[str, Any]]:
        """Every call so far: {'prompt': text, 'reply': text, 'kwargs': {...}}."""
        return list(self._calls)

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        return {**super()._get_ls_params(stop=stop, **kwargs), "ls_provider": "scripted"}

    def _generate(
        self, messages: list[BaseMessage], stop: list[str] | None = None, run_manager: Any = None, **kwargs: Any
    ) -> ChatResult:
        if self.latency:
            time.sleep(self.latency)
        return self._result(*self._reply(messages, kwargs))

    async def _agenerate(
        self, messages: list[BaseMessage], stop: list[str] | None = None, run_manager: Any = None, **kwargs: Any
    ) -> ChatResult:
        if self.latency:
            await asyncio.sleep(self.latency)
        return self._result(*self._reply(messages, kwargs))

    def _stream(
        self, messages: list[BaseMessage], stop: list[str] | None = None, run_manager: Any = None, **kwargs: Any
    ) -> Iterator[ChatGenerationChunk]:
        if self.latency:
            time.sleep(self.latency)
        text, usage = self._reply(messages, kwargs)
        for chunk in self._chunks(text, usage):
            if run_manager and chunk.text:
                run_manager.on_llm_new_token(chunk.text, chunk=chunk)
            yield chunk

    async def _astream(
        self, messages: list[BaseMessage], stop: list[str] | None = None, run_manager: Any = None, **kwargs: Any
    ) -> AsyncIterator[ChatGenerationChunk]:
        if self.latency:
            await asyncio.sleep(self.latency)
        text, usage = self._reply(messages, kwargs)
        for chunk in self._chunks(text, usage):
            if run_manager and chunk.text:
                await run_manager.on_llm_new_token(chunk.text, chunk=chunk)
            yield chunk

    def _result(self, text: str, usage: UsageMetadata) -> ChatResult:
        message = AIMessage(content=text, usage_metadata=usage, response_metadata=self._metadata())
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _chunks(self, text: str, usage: UsageMetadata) -> Iterator[ChatGenerationChunk]:
        """The reply word by word (each word with the spaces after it), then a last, empty chunk that carries
        the usage and metadata once, as a streaming server sends them."""
        for piece in re.findall(r"\s*\S+\s*", text) or ([text] if text else []):
            yield ChatGenerationChunk(message=AIMessageChunk(content=piece))
        yield ChatGenerationChunk(
            message=AIMessageChunk(
                content="", usage_metadata=usage, response_metadata=self._metadata(), chunk_position="last"
            )
        )

    def _metadata(self) -> dict[str, Any]:
        return {"model_name": self.model_name, "finish_reason": "stop"}

    def _reply(self, messages: list[BaseMessage], kwargs: dict[str, Any]) -> tuple[str, UsageMetadata]:
        """The reply text and its usage (words counted as tokens); the call is recorded."""
        prompt = "\n".join(_text(m) for m in messages)
        reply = self._pick(messages, _text(messages[-1]) if messages else "")
        if isinstance(reply, BaseException) or (isinstance(reply, type) and issubclass(reply, BaseException)):
            with self._lock:
                self._calls.append({"prompt": prompt, "reply": None, "kwargs": kwargs})
            raise reply
        text = reply(messages) if callable(reply) else str(reply)
        with self._lock:
            self._calls.append({"prompt": prompt, "reply": text, "kwargs": kwargs})
        usage = UsageMetadata(
            input_tokens=len(prompt.split()),
            output_tokens=len(text.split()),
            total_tokens=len(prompt.split()) + len(text.split()),
        )
        return text, usage

    def _pick(self, messages: list[BaseMessage], last: str) -> Any:
        for index, (match, reply) in enumerate(self.rules):
            hit = match(messages) if callable(match) else re.search(match, last, re.IGNORECASE | re.DOTALL)
            if hit:
                return self._next(index, reply)
        if self.default is None:
            raise ValueError(f"ScriptedChatModel has no rule for this prompt: {last[-200:]!r}")
        return self._next(-1, self.default)

    def _next(self, index: int, reply: Any) -> Any:
        if not isinstance(reply, list):
            return reply
        with self._lock:
            used = self._used.get(index, 0)
            self._used[index] = used + 1
        return reply[min(used, len(reply) - 1)]


def asks_for_plan(messages: list[BaseMessage]) -> bool:
    """True for the decompose prompt (its system message asks for {"steps": ...})."""
    return bool(messages) and '"steps"' in _text(messages[0])


def asks_to_combine(messages: list[BaseMessage]) -> bool:
    """True for the synthesize prompt."""
    return bool(messages) and "Original question:" in _text(messages[-1])


def _text(message: BaseMessage) -> str:
    content = message.content
    if isinstance(content, str):
        return content
    return "".join(b.get("text", "") if isinstance(b, dict) else str(b) for b in content)
