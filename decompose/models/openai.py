"""`openai:MODEL`: OpenAI, or any OpenAI-compatible server (llama.cpp, xllamacpp, vLLM, Ollama...).

The client is built with its own retries off (`max_retries=0`): `decompose.retry` owns retries, so
a failing model fails over to a fallback instead of retrying inside the SDK. Timeouts are explicit
(connect apart from read), and `stream_usage=True` makes streamed answers report token usage.

Structured output, by server:
- OpenAI (gpt-4o and later), llama.cpp / xllamacpp, vLLM, recent Ollama: `method="json_schema"`.
  The server constrains decoding to the schema (llama.cpp turns it into a grammar), so even a tiny
  local model returns parseable JSON.
- Servers that reject `response_format: json_schema` with an HTTP error: the planner asks that model for
  its plan as plain JSON instead, found in the reply and validated (`chains/decompose.py`), so either kind
  of server works without configuration.
"""

from __future__ import annotations

import os
from typing import Any

import httpx
import openai
from langchain_openai import ChatOpenAI
from pydantic import SecretStr

from decompose.errors import ConfigError
from decompose.tokens import ensure_offline_encodings
from decompose.transport_errors import MalformedResponse

DEFAULT_TIMEOUT = httpx.Timeout(120.0, connect=5.0)
# Local servers ignore the key, but the OpenAI client refuses to start without one.
PLACEHOLDER_KEY = "not-needed"


def load_openai(
    model: str,
    *,
    base_url: str | None = None,
    api_key: str | None = None,
    timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
    **kwargs: Any,
) -> ChatOpenAI:
    """A `ChatOpenAI` for `model`; `base_url` and `api_key` default to the environment's
    OPENAI_BASE_URL and OPENAI_API_KEY.

    A float `timeout` is the read timeout; connecting gets at most 5 s of it. Other keyword
    arguments (temperature, max_tokens, ...) go to `ChatOpenAI`.
    """
    base_url = base_url or os.environ.get("OPENAI_BASE_URL") or None
    api_key = api_key or os.environ.get("OPENAI_API_KEY") or None
    if api_key is None:
        if base_url is None:
            raise ConfigError(
                "no OPENAI_API_KEY set",
                hint="export OPENAI_API_KEY=..., or point at a local OpenAI-compatible server "
                "with OPENAI_BASE_URL=http://127.0.0.1:8080/v1 (or base_url=...)",
            )
        api_key = PLACEHOLDER_KEY
    if not isinstance(timeout, httpx.Timeout):
        timeout = httpx.Timeout(timeout, connect=min(timeout, 5.0))
    ensure_offline_encodings()  # get_num_tokens uses tiktoken
    # A 200 that is not JSON (a proxy's login page) breaks deep inside the SDK's parsers: catch it at the
    # HTTP layer, where the body can still be quoted (on the caller's own clients too).
    for key, default, hook in (
        ("http_client", openai.DefaultHttpxClient, _refuse_non_json),
        ("http_async_client", openai.DefaultAsyncHttpxClient, _arefuse_non_json),
    ):
        client = kwargs.get(key) or default()
        hooks = client.event_hooks.get("response", [])
        if hook not in hooks:  # a client reused for several models gets the check once
            client.event_hooks = {**client.event_hooks, "response": [*hooks, hook]}
        kwargs[key] = client
    kwargs.setdefault("max_retries", 0)
    kwargs.setdefault("stream_usage", True)
    if kwargs.get("max_tokens") and base_url and "api.openai.com" not in base_url:
        # langchain-openai sends the limit as `max_completion_tokens`, which some servers (llama-cpp-python)
        # ignore, generating to the context limit; the older `max_tokens` field is understood by all of them.
        kwargs["extra_body"] = {"max_tokens": kwargs["max_tokens"], **(kwargs.get("extra_body") or {})}
    return OpenAICompatible(model=model, base_url=base_url, api_key=SecretStr(api_key), timeout=timeout, **kwargs)


class OpenAICompatible(ChatOpenAI):
    """`ChatOpenAI` that calls a 200 whose body is not a chat completion what it is: a `MalformedResponse`
    naming the endpoint (retried, then one clear line), not an AttributeError or ValueError from inside."""

    @classmethod
    def lc_id(cls) -> list[str]:
        """Serialized as the `ChatOpenAI` it is, so `langchain_core.load` can read it back (as a `ChatOpenAI`:
        the checks here are this process's, not configuration)."""
        return ChatOpenAI.lc_id()

    def _create_chat_result(self, response: Any, generation_info: dict | None = None) -> Any:
        if isinstance(response, str) or _without_choices(response):
            endpoint = f"{(self.openai_api_base or 'https://api.openai.com/v1').rstrip('/')}/chat/completions"
            shown = response.model_dump(exclude_none=True) if hasattr(response, "model_dump") else response
            raise MalformedResponse(endpoint, shown)
        return super()._create_chat_result(response, generation_info)


def _non_json_completion(response: httpx.Response) -> bool:
    content_type = response.headers.get("content-type", "")
    return (
        response.status_code == 200
        and response.request.url.path.endswith("/chat/completions")
        and "json" not in content_type
        and "event-stream" not in content_type
    )


def _refuse_non_json(response: httpx.Response) -> None:
    if _non_json_completion(response):
        response.read()
        raise MalformedResponse(str(response.request.url), response.text)


async def _arefuse_non_json(response: httpx.Response) -> None:
    if _non_json_completion(response):
        await response.aread()
        raise MalformedResponse(str(response.request.url), response.text)


def _without_choices(response: Any) -> bool:
    """An object with neither choices nor an error (an error is the library's to report)."""
    get = response.get if isinstance(response, dict) else lambda key: getattr(response, key, None)
    return not get("choices") and not get("error")
