"""`load_openai` against real servers: SmolLM2 behind xllamacpp, and the fault server."""

from __future__ import annotations

import asyncio
from typing import Literal

import pytest
from fault_server import FaultServer, ok
from pydantic import BaseModel
from servers import llama_server

from decompose.errors import ConfigError
from decompose.models import load_model
from decompose.models.openai import PLACEHOLDER_KEY, load_openai
from decompose.retry import RetryPolicy, call_with_retries


class Capital(BaseModel):
    city: Literal["Paris", "London", "Rome"]


@pytest.fixture(scope="module")
def llama_url():
    pytest.importorskip("xllamacpp")
    with llama_server() as url:
        yield url


@pytest.fixture
def no_openai_env(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)


def test_no_key_and_no_base_url_is_a_config_error(no_openai_env):
    with pytest.raises(ConfigError, match="no OPENAI_API_KEY set") as err:
        load_openai("gpt-4o-mini")
    assert "OPENAI_BASE_URL" in err.value.hint


def test_local_server_needs_no_key_and_our_policy_owns_retries(no_openai_env, monkeypatch):
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:8080/v1")
    model = load_model("openai:local-model")
    assert model.openai_api_base == "http://127.0.0.1:8080/v1"
    assert model.openai_api_key.get_secret_value() == PLACEHOLDER_KEY
    assert model.max_retries == 0 and model.stream_usage is True
    assert (model.request_timeout.connect, model.request_timeout.read) == (5.0, 120.0)


def test_arguments_win_over_environment(monkeypatch):
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:1/v1")
    monkeypatch.setenv("OPENAI_API_KEY", "from-env")
    model = load_openai("m", base_url="http://127.0.0.1:2/v1", api_key="from-arg", timeout=2.0)
    assert model.openai_api_base == "http://127.0.0.1:2/v1"
    assert model.openai_api_key.get_secret_value() == "from-arg"
    assert (model.request_timeout.connect, model.request_timeout.read) == (2.0, 2.0)


@pytest.mark.slow
@pytest.mark.model
@pytest.mark.server
def test_answers_with_usage(llama_url):
    model = load_openai("smollm2", base_url=llama_url, max_tokens=12)
    reply = model.invoke("What is the capital of France? Answer in one word.")
    assert "paris" in reply.content.lower()
    usage = reply.usage_metadata
    assert usage["input_tokens"] > 0 and 0 < usage["output_tokens"] <= 12


@pytest.mark.slow
@pytest.mark.model
@pytest.mark.server
def test_max_tokens_is_honoured(llama_url):
    model = load_openai("smollm2", base_url=llama_url, max_tokens=4)
    reply = model.invoke("Write a long story about a dragon.")
    assert reply.usage_metadata["output_tokens"] == 4
    assert reply.response_metadata["finish_reason"] == "length"


@pytest.mark.slow
@pytest.mark.model
@pytest.mark.server
def test_structured_output_with_json_schema(llama_url):
    model = load_openai("smollm2", base_url=llama_url, max_tokens=32)
    parsed = model.with_structured_output(Capital, method="json_schema").invoke("What is the capital of France?")
    assert isinstance(parsed, Capital)


@pytest.mark.slow
@pytest.mark.model
@pytest.mark.server
def test_streaming_reports_usage_under_the_retry_policy(llama_url):
    model = load_openai("smollm2", base_url=llama_url, max_tokens=6)

    async def go():
        return await call_with_retries(lambda: model.ainvoke("Say hi."), RetryPolicy())

    reply = asyncio.run(go())
    assert reply.content
    chunks = list(model.stream("Say hi."))
    assert sum(c.usage_metadata["output_tokens"] for c in chunks if c.usage_metadata) <= 6


@pytest.mark.server
def test_the_token_limit_reaches_servers_that_only_read_max_tokens():
    with FaultServer() as server:
        server.default = ok("short")
        load_openai("m", base_url=server.base_url, max_tokens=7).invoke("hi")
        load_openai("m", base_url=server.base_url).invoke("hi")
        limited, unlimited = (hit.body for hit in server.hits)
    assert limited["max_tokens"] == 7 and limited.get("max_completion_tokens") in (None, 7)
    assert "max_tokens" not in unlimited and "max_completion_tokens" not in unlimited
