"""`SQLiteCache`: LangChain's `BaseCache` over a SQLite file, so model replies outlive the process.

    Orchestrator(model, cache="replies.sqlite")     # this file (created on first use)
    Orchestrator(model, cache=InMemoryCache())      # or any LangChain cache (langchain_core.caches.BaseCache)

A reply is stored under (prompt, llm_string) as LangChain's caches store it: `ModelCaller` (`calls.py`) decides
which calls may be cached and what their key is (`call_cache.py`); this module only keeps the rows. Each operation
opens its own connection: the cache then crosses threads (the sync API's loop), processes (Ray workers, serve
replicas, where WAL and a busy timeout let them share the file) and pickling without state to carry.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from langchain_core.caches import RETURN_VAL_TYPE, BaseCache
from langchain_core.messages import message_to_dict, messages_from_dict
from langchain_core.outputs import ChatGeneration, Generation

from decompose.errors import ConfigError

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS replies (llm_string TEXT, prompt TEXT, reply TEXT, PRIMARY KEY (llm_string, prompt))"
)


class SQLiteCache(BaseCache):
    """Model replies in the SQLite file at `path`. A file that is not such a cache, or that cannot be written, is a
    `ConfigError` at once, naming the file and the fix."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path).expanduser()
        if self.path.is_dir():
            raise ConfigError(f"model-call cache {self.path} is a folder", hint="give a file path, e.g. replies.sqlite")
        if not self.path.parent.is_dir():
            raise ConfigError(
                f"model-call cache {self.path}: the folder {self.path.parent} does not exist",
                hint="create the folder, or give a path in an existing one",
            )
        with self._connect() as db:
            self._run(db, "BEGIN IMMEDIATE")  # takes the write lock: a read-only file fails here, not mid-run
            self._run(db, _SCHEMA)

    def lookup(self, prompt: str, llm_string: str) -> RETURN_VAL_TYPE | None:
        with self._connect() as db:
            row = self._run(
                db, "SELECT reply FROM replies WHERE llm_string = ? AND prompt = ?", (llm_string, prompt)
            ).fetchone()
        return None if row is None else _generations(row[0])

    def update(self, prompt: str, llm_string: str, return_val: RETURN_VAL_TYPE) -> None:
        with self._connect() as db:
            self._run(db, "INSERT OR REPLACE INTO replies VALUES (?, ?, ?)", (llm_string, prompt, _stored(return_val)))

    def clear(self, **kwargs: Any) -> None:
        with self._connect() as db:
            self._run(db, "DELETE FROM replies")

    # A lookup is one indexed read of a local file: quicker than handing it to a thread, as BaseCache would.
    async def alookup(self, prompt: str, llm_string: str) -> RETURN_VAL_TYPE | None:
        return self.lookup(prompt, llm_string)

    async def aupdate(self, prompt: str, llm_string: str, return_val: RETURN_VAL_TYPE) -> None:
        self.update(prompt, llm_string, return_val)

    async def aclear(self, **kwargs: Any) -> None:
        await asyncio.to_thread(self.clear)

    def __len__(self) -> int:
        with self._connect() as db:
            return int(self._run(db, "SELECT COUNT(*) FROM replies").fetchone()[0])

    def __repr__(self) -> str:
        return f"SQLiteCache({str(self.path)!r})"

    def _connect(self) -> _Connection:
        try:
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        except sqlite3.Error as exc:
            raise self._error(exc) from None
        return _Connection(db, self)

    def _run(self, db: sqlite3.Connection, sql: str, params: Sequence[Any] = ()) -> sqlite3.Cursor:
        try:
            return db.execute(sql, params)
        except sqlite3.Error as exc:
            raise self._error(exc) from None

    def _error(self, exc: sqlite3.Error) -> ConfigError:
        said = str(exc)
        if "not a database" in said or "malformed" in said or "no such table" in said:
            hint = "it is not a model-call cache: delete it (the cache is rebuilt) or give another path"
        elif "readonly" in said or "unable to open" in said or "permission" in said.lower():
            hint = "make the file and its folder writable, or give a path you can write"
        else:
            hint = "check the file, or give another path"
        return ConfigError(f"model-call cache {self.path}: {said}", hint=hint)


class _Connection:
    """One connection, committed (autocommit, or the open transaction) and closed on leaving."""

    def __init__(self, db: sqlite3.Connection, cache: SQLiteCache):
        self.db, self.cache = db, cache

    def __enter__(self) -> sqlite3.Connection:
        return self.db

    def __exit__(self, *exc: object) -> None:
        try:
            if self.db.in_transaction:
                self.cache._run(self.db, "COMMIT" if exc[0] is None else "ROLLBACK")
        finally:
            self.db.close()


def as_cache(cache: BaseCache | str | os.PathLike[str] | None) -> BaseCache | None:
    """`Orchestrator(cache=...)`: a LangChain cache as it is, a path as a `SQLiteCache` on that file."""
    if cache is None or isinstance(cache, BaseCache):
        return cache
    if isinstance(cache, (str, os.PathLike)):
        if not str(cache).strip():
            raise ConfigError("cache='' names no file", hint="give a file path, e.g. cache='replies.sqlite'")
        return SQLiteCache(cache)
    raise ConfigError(
        f"cache must be a file path or a LangChain BaseCache, got a {type(cache).__name__}",
        hint="pass cache='replies.sqlite', or a langchain_core.caches.BaseCache such as InMemoryCache()",
    )


def _stored(generations: RETURN_VAL_TYPE) -> str:
    rows = []
    for generation in generations:
        row: dict[str, Any] = {"text": generation.text, "generation_info": generation.generation_info}
        if isinstance(generation, ChatGeneration):
            row["message"] = message_to_dict(generation.message)
        rows.append(row)
    return json.dumps(rows, ensure_ascii=False)


def _generations(text: str) -> list[Generation]:
    generations: list[Generation] = []
    for row in json.loads(text):
        if "message" in row:
            [message] = messages_from_dict([row["message"]])
            generations.append(ChatGeneration(message=message, generation_info=row["generation_info"]))
        else:
            generations.append(Generation(text=row["text"], generation_info=row["generation_info"]))
    return generations
