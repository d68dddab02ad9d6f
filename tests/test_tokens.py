"""Offline token counts: exact for OpenAI encodings, a model's own tokenizer when it has one."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import tiktoken
from langchain_core.language_models import GenericFakeChatModel
from langchain_openai import ChatOpenAI

import decompose.tokens as tokens
from decompose.tokens import count_message_tokens, count_tokens, encoding_for

CACHE_NAMES = {  # tiktoken's cache file name: sha1 of the blob URL
    "cl100k_base": "9b5ad71b2ce5302211f9c61530b329a4922fc6a4",
    "o200k_base": "fb374d419588a4632f3f557e76b4b70aebbca790",
}


@pytest.fixture
def fresh_cache(monkeypatch, tmp_path):
    """An empty TIKTOKEN_CACHE_DIR, and tiktoken / decompose forgetting what they loaded."""
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(tiktoken.registry, "ENCODINGS", {})
    tokens._seed.cache_clear()
    yield tmp_path
    tokens._seed.cache_clear()


@pytest.mark.parametrize(
    "text, cl100k, o200k",
    [
        ("hello world", 2, 2),
        ("tiktoken is great!", 6, 6),
        ("Where is order A123 and when will it arrive?", 11, 11),
        ("Préfère 東京 🚀 \n\n  x=1234567", 17, 13),  # o200k is leaner outside English
        ("", 0, 0),
    ],
)
def test_exact_counts(text, cl100k, o200k):
    assert count_tokens(text, "gpt-4") == cl100k
    assert count_tokens(text, "gpt-4o") == o200k


def test_known_token_ids():
    # From the openai-cookbook "How to count tokens with tiktoken".
    text = "tiktoken is great!"
    assert encoding_for("gpt-3.5-turbo").encode(text) == [83, 1609, 5963, 374, 2294, 0]
    assert encoding_for("gpt-4o").encode(text) == [83, 8251, 2488, 382, 2212, 0]


def test_encoding_by_model_name():
    models = ("gpt-4", "gpt-3.5-turbo", "gpt-4o-mini", "gpt-4.1", "gpt-5", "o3-mini", "gpt-oss-20b")
    names = {m: encoding_for(m).name for m in models}
    assert names == {
        "gpt-4": "cl100k_base",
        "gpt-3.5-turbo": "cl100k_base",
        "gpt-4o-mini": "o200k_base",
        "gpt-4.1": "o200k_base",
        "gpt-5": "o200k_base",
        "o3-mini": "o200k_base",
        "gpt-oss-20b": "o200k_base",
    }
    assert encoding_for("smollm2").name == encoding_for(None).name == "cl100k_base"  # approximation


@pytest.mark.slow  # builds both encodings from their files
def test_fresh_cache_dir_is_filled_with_verified_files(fresh_cache):
    count_tokens("x")  # seeds the cache tiktoken now reads
    assert tiktoken.get_encoding("o200k_base").encode("hello world") == [24912, 2375]
    for name, key in CACHE_NAMES.items():
        blob = (fresh_cache / key).read_bytes()
        assert hashlib.sha256(blob).hexdigest() == tokens._SHA256[name]


def test_a_working_user_cache_is_left_alone_and_a_corrupt_file_is_repaired(fresh_cache):
    tokens.ensure_offline_encodings()
    good = fresh_cache / CACHE_NAMES["cl100k_base"]
    bad = fresh_cache / CACHE_NAMES["o200k_base"]
    os.utime(good, (1, 1))
    bad.write_bytes(b"truncated")
    tokens._seed.cache_clear()
    tokens.ensure_offline_encodings()
    assert good.stat().st_mtime == 1
    assert hashlib.sha256(bad.read_bytes()).hexdigest() == tokens._SHA256["o200k_base"]


@pytest.mark.slow  # builds an encoding from its file
def test_a_disabled_cache_still_counts_offline_and_leaves_the_environment_alone(fresh_cache, monkeypatch):
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", "")  # tiktoken would download on every use
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")  # a proxy that refuses: a download would fail
    tokens._bundled_encoding.cache_clear()
    before = dict(os.environ)
    assert count_tokens("hello world", "gpt-4o") == 2
    assert encoding_for("gpt-4").encode("tiktoken is great!") == [83, 1609, 5963, 374, 2294, 0]
    assert dict(os.environ) == before and not list(fresh_cache.iterdir())


@pytest.mark.slow
def test_plain_tiktoken_and_chat_openai_work_offline_in_a_new_process(tmp_path):
    # A proxy that refuses connections: any download attempt would fail loudly, even on a
    # machine that has network.
    code = textwrap.dedent("""
        import decompose.tokens, tiktoken
        from langchain_openai import ChatOpenAI
        decompose.tokens.ensure_offline_encodings()  # nothing is written on import
        print(len(tiktoken.get_encoding("o200k_base").encode("hello world")),
              ChatOpenAI(model="gpt-4o", api_key="x").get_num_tokens("hello world"))
    """)
    env = {
        **os.environ,
        "TIKTOKEN_CACHE_DIR": str(tmp_path / "cache"),
        "HTTPS_PROXY": "http://127.0.0.1:9",
        "HTTP_PROXY": "http://127.0.0.1:9",
        "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
    }
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["2", "2"]


def test_a_model_with_its_own_tokenizer_counts_for_itself():
    class CharModel(GenericFakeChatModel):  # like our hf: models, which override get_num_tokens
        def get_num_tokens(self, text: str) -> int:
            return len(text)

    model = CharModel(messages=iter([]))
    assert count_tokens("hello world", model) == 11
    assert count_message_tokens([("human", "hello")], model) > 5  # the base class formats messages


def test_a_model_without_a_tokenizer_is_approximated():
    model = GenericFakeChatModel(messages=iter([]))
    assert count_tokens("hello world", model) == 2


def test_message_counts_match_openai_rules():
    messages = [("system", "You are helpful."), ("human", "hello world")]
    gpt4o = ChatOpenAI(model="gpt-4o", api_key="x")
    # 3 priming + 2 messages x (3 format + 1 role) + 4 + 2 content tokens
    assert count_message_tokens(messages, "gpt-4o") == 17
    assert (
        count_message_tokens(messages, gpt4o)
        == gpt4o.get_num_tokens_from_messages(tokens.convert_to_messages(messages))
        == 17
    )
    # ChatOpenAI refuses to count for a local model name; we fall back to the same rules.
    local = ChatOpenAI(model="smollm2", api_key="x", base_url="http://127.0.0.1:1/v1")
    assert count_message_tokens(messages, local) == 17


@pytest.mark.slow  # a new Python process
def test_importing_decompose_writes_nothing(tmp_path):
    cache = tmp_path / "cache"
    env = {**os.environ, "TIKTOKEN_CACHE_DIR": str(cache), "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    code = "import decompose, decompose.tokens, os; print(os.environ['TIKTOKEN_CACHE_DIR'])"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str(cache) and not cache.exists()
